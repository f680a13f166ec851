//! The gRPC handlers: read the caller, validate the request (naming the
//! field), check what the people service knows, call the store, answer.
use std::pin::Pin;
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use linli_core::idempotency::idem_key;
use linli_core::page::PageRequest;
use linli_core::time::{now_micros, past_or_now};
use linli_core::validate::{
    optional_enum, parse_id, parse_name, parse_opt_id, parse_text, required_enum,
};
use linli_core::{Actor, Error, Result, Role, audit};
use linli_proto::issues::v1 as pb;
use linli_proto::issues::v1::issues_service_server::IssuesService;

use crate::domain::{self, Action, Category, Claimant, IssueState, PhotoPhase, Source, ThreeMost};
use crate::policy::POLICY;
use crate::store::{IssueFilter, Move, NewIssue, Store, ranking, statistics};
use linli_core::people::People;

type Resp<T> = std::result::Result<Response<T>, Status>;

pub struct IssuesApi {
    store: Store,
    people: People,
}

impl IssuesApi {
    pub fn new(store: Store, people: People) -> Self {
        IssuesApi { store, people }
    }

    /// Checks a claimant with the people service: the unit exists, and every
    /// cadre is actively registered with the issue's community.
    async fn claimant(
        &self,
        actor: &Actor,
        community_id: &str,
        cadre_id: &str,
        unit_id: &str,
        participants: &[String],
    ) -> Result<Claimant> {
        // The shape is checked first; only then is people asked who the unit is.
        let claimant = match domain::parse_claimant(cadre_id, unit_id, participants)? {
            Claimant {
                cadre_id: Some(cadre),
                participants,
                ..
            } => {
                let unit_id = self.people.cadre(actor, &cadre).await?.unit_id;
                Claimant {
                    cadre_id: Some(cadre),
                    unit_id,
                    participants,
                }
            }
            unit_claim => {
                self.people.unit(actor, &unit_claim.unit_id).await?;
                unit_claim
            }
        };
        for cadre in claimant.cadres() {
            if !self
                .people
                .is_registered(actor, cadre, community_id)
                .await?
            {
                return Err(Error::FailedPrecondition(format!(
                    "cadre {cadre} is not actively registered with community {community_id} (双报到)"
                )));
            }
        }
        Ok(claimant)
    }

    /// The issue, if the caller may see it: in their community and, for a
    /// resident, their household's or no household's.
    async fn issue_in_reach(&self, actor: &Actor, id: &str) -> Result<crate::store::IssueRecord> {
        let record = self.store.record(id).await?;
        actor.check_community("issue", id, &record.community_id)?;
        if !record.household_id.is_empty() && actor.check_household(&record.household_id).is_err() {
            return Err(Error::not_found("issue", id));
        }
        Ok(record)
    }

    /// Only the reporting household may confirm or reopen; an issue no household
    /// reported may be confirmed by any household of its community.
    async fn check_household(
        &self,
        actor: &Actor,
        issue: &crate::store::IssueRecord,
        household_id: &str,
    ) -> Result<()> {
        let household_id = parse_id("household_id", household_id)?;
        if actor.role == Role::Resident && actor.household.as_deref() != Some(household_id.as_str())
        {
            return Err(Error::PermissionDenied(
                "a resident confirms or reopens for their own household only".into(),
            ));
        }
        if issue.household_id.is_empty() {
            let h = self.people.household(actor, &household_id).await?;
            if h.community_id != issue.community_id {
                return Err(Error::PermissionDenied(
                    "the household is not in the issue's community".into(),
                ));
            }
        } else if issue.household_id != household_id {
            return Err(Error::PermissionDenied(
                "only the household that reported the issue can confirm or reopen it".into(),
            ));
        }
        Ok(())
    }
}

fn parse_move(t: Option<pb::Transition>) -> Result<Move> {
    let t = t.ok_or_else(|| Error::required("transition"))?;
    Ok(Move {
        issue_id: parse_id("transition.issue_id", &t.issue_id)?,
        expected_version: t.expected_version,
        note: parse_text("transition.note", &t.note, 1000)?,
        at: t
            .at
            .as_ref()
            .map(|at| past_or_now("transition.at", Some(at)))
            .transpose()?,
    })
}

fn parse_attachments(list: &[pb::Attachment]) -> Result<Vec<domain::Attachment>> {
    if list.len() > 20 {
        return Err(Error::invalid("attachments", "at most 20 per request"));
    }
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            domain::parse_attachment(
                &format!("attachments[{i}]"),
                &a.url,
                &a.sha256,
                &a.mime_type,
                PhotoPhase::from_proto(a.phase),
            )
        })
        .collect()
}

/// The reporting period [from, to), defaulting to everything up to now.
fn period(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
) -> Result<(i64, i64)> {
    let from = linli_core::time::optional("from", from)?.unwrap_or(i64::MIN);
    let to = linli_core::time::optional("to", to)?.unwrap_or_else(|| now_micros() + 1);
    if from >= to {
        return Err(Error::invalid("to", "must be after from"));
    }
    Ok((from, to))
}

#[tonic::async_trait]
impl IssuesService for IssuesApi {
    async fn report_issue(
        &self,
        req: Request<pb::ReportIssueRequest>,
    ) -> Resp<pb::ReportIssueResponse> {
        let actor = POLICY.allow("ReportIssue", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let source = required_enum("source", r.source, Source::from_proto)?;
        let location = r.location.unwrap_or_default();
        if !(-90.0..=90.0).contains(&location.latitude) || location.latitude.is_nan() {
            return Err(Error::invalid("location.latitude", "must be between -90 and 90").into());
        }
        if !(-180.0..=180.0).contains(&location.longitude) || location.longitude.is_nan() {
            return Err(
                Error::invalid("location.longitude", "must be between -180 and 180").into(),
            );
        }
        let household_id = parse_opt_id("household_id", &r.household_id)?;
        let community_id = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community_id, &community_id)?;
        if actor.role == Role::Resident && household_id.as_deref() != actor.household.as_deref() {
            return Err(Error::invalid("household_id", "must be your own household").into());
        }
        if source == Source::ResidentReport && household_id.is_none() {
            return Err(
                Error::invalid("household_id", "is required for a resident's report").into(),
            );
        }
        let title = parse_name("title", &r.title)?;
        let new = NewIssue {
            community_id,
            compound_id: parse_opt_id("compound_id", &r.compound_id)?.unwrap_or_default(),
            building_id: parse_opt_id("building_id", &r.building_id)?.unwrap_or_default(),
            household_id: household_id.clone().unwrap_or_default(),
            title,
            description: parse_text("description", &r.description, 2000)?,
            category: required_enum("category", r.category, Category::from_proto)?,
            three_most: optional_enum("three_most", r.three_most, ThreeMost::from_proto)?,
            location_text: parse_text("location.text", &location.text, 200)?,
            latitude: location.latitude,
            longitude: location.longitude,
            source,
            attachments: parse_attachments(&r.attachments)?,
            reported_at: past_or_now("reported_at", r.reported_at.as_ref())?,
        };
        self.people.community(&actor, &new.community_id).await?;
        if let Some(h) = &household_id {
            let household = self.people.household(&actor, h).await?;
            if household.community_id != new.community_id {
                return Err(Error::invalid("household_id", "is not in this community").into());
            }
        }
        let issue = self.store.report(&actor, &idem, new).await?;
        Ok(Response::new(pb::ReportIssueResponse {
            issue: Some(issue),
        }))
    }

    async fn get_issue(&self, req: Request<pb::GetIssueRequest>) -> Resp<pb::GetIssueResponse> {
        let actor = POLICY.allow("GetIssue", &req)?;
        let id = parse_id("issue_id", &req.get_ref().issue_id)?;
        self.issue_in_reach(&actor, &id).await?;
        Ok(Response::new(pb::GetIssueResponse {
            issue: Some(self.store.get(&id).await?),
        }))
    }

    async fn list_issues(
        &self,
        req: Request<pb::ListIssuesRequest>,
    ) -> Resp<pb::ListIssuesResponse> {
        let actor = POLICY.allow("ListIssues", &req)?;
        let r = req.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let filter = IssueFilter {
            community_id: actor.community_filter("community_id", &r.community_id)?,
            state: optional_enum("state", r.state, IssueState::from_proto)?,
            category: optional_enum("category", r.category, Category::from_proto)?,
            three_most: optional_enum("three_most", r.three_most, ThreeMost::from_proto)?,
            claimant_id: parse_opt_id("claimant_id", &r.claimant_id)?.unwrap_or_default(),
            overdue_only: r.overdue_only,
            title_contains: parse_text("title_contains", &r.title_contains, 100)?,
            household_id: match actor.role {
                Role::Resident => actor.household.clone().unwrap_or_else(|| "-".into()),
                _ => String::new(),
            },
        };
        let (issues, next_page_token) = self.store.list(&filter, &page).await?;
        Ok(Response::new(pb::ListIssuesResponse {
            issues,
            next_page_token,
        }))
    }

    async fn acknowledge_issue(
        &self,
        req: Request<pb::AcknowledgeIssueRequest>,
    ) -> Resp<pb::AcknowledgeIssueResponse> {
        let actor = POLICY.allow("AcknowledgeIssue", &req)?;
        let mv = parse_move(req.into_inner().transition)?;
        self.issue_in_reach(&actor, &mv.issue_id).await?;
        let issue = self
            .store
            .transition(&actor, mv, |_, _| Ok(Action::Acknowledge))
            .await?;
        Ok(Response::new(pb::AcknowledgeIssueResponse {
            issue: Some(issue),
        }))
    }

    async fn claim_issue(
        &self,
        req: Request<pb::ClaimIssueRequest>,
    ) -> Resp<pb::ClaimIssueResponse> {
        let actor = POLICY.allow("ClaimIssue", &req)?;
        let r = req.into_inner();
        let mv = parse_move(r.transition)?;
        let record = self.issue_in_reach(&actor, &mv.issue_id).await?;
        if actor.role == Role::Cadre {
            let own = actor.cadre.as_deref().unwrap_or_default();
            if r.cadre_id != own && !r.participant_cadre_ids.iter().any(|p| p == own) {
                return Err(Error::PermissionDenied(
                    "a cadre claims as themselves: name yourself as cadre_id or a participant"
                        .into(),
                )
                .into());
            }
        }
        let claimant = self
            .claimant(
                &actor,
                &record.community_id,
                &r.cadre_id,
                &r.unit_id,
                &r.participant_cadre_ids,
            )
            .await?;
        let issue = self
            .store
            .transition(&actor, mv, |_, _| Ok(Action::Claim(claimant)))
            .await?;
        Ok(Response::new(pb::ClaimIssueResponse { issue: Some(issue) }))
    }

    async fn unclaim_issue(
        &self,
        req: Request<pb::UnclaimIssueRequest>,
    ) -> Resp<pb::UnclaimIssueResponse> {
        let actor = POLICY.allow("UnclaimIssue", &req)?;
        let mv = parse_move(req.into_inner().transition)?;
        self.issue_in_reach(&actor, &mv.issue_id).await?;
        let issue = self
            .store
            .transition(&actor, mv, |_, _| Ok(Action::Unclaim))
            .await?;
        Ok(Response::new(pb::UnclaimIssueResponse {
            issue: Some(issue),
        }))
    }

    async fn reassign_issue(
        &self,
        req: Request<pb::ReassignIssueRequest>,
    ) -> Resp<pb::ReassignIssueResponse> {
        let actor = POLICY.allow("ReassignIssue", &req)?;
        let r = req.into_inner();
        let mv = parse_move(r.transition)?;
        let record = self.issue_in_reach(&actor, &mv.issue_id).await?;
        let claimant = self
            .claimant(
                &actor,
                &record.community_id,
                &r.cadre_id,
                &r.unit_id,
                &r.participant_cadre_ids,
            )
            .await?;
        let issue = self
            .store
            .transition(&actor, mv, |_, _| Ok(Action::Reassign(claimant)))
            .await?;
        Ok(Response::new(pb::ReassignIssueResponse {
            issue: Some(issue),
        }))
    }

    async fn start_work(&self, req: Request<pb::StartWorkRequest>) -> Resp<pb::StartWorkResponse> {
        let actor = POLICY.allow("StartWork", &req)?;
        let mv = parse_move(req.into_inner().transition)?;
        self.issue_in_reach(&actor, &mv.issue_id).await?;
        let issue = self
            .store
            .transition(&actor, mv, |_, _| Ok(Action::Start))
            .await?;
        Ok(Response::new(pb::StartWorkResponse { issue: Some(issue) }))
    }

    async fn resolve_issue(
        &self,
        req: Request<pb::ResolveIssueRequest>,
    ) -> Resp<pb::ResolveIssueResponse> {
        let actor = POLICY.allow("ResolveIssue", &req)?;
        let r = req.into_inner();
        let mv = parse_move(r.transition)?;
        self.issue_in_reach(&actor, &mv.issue_id).await?;
        let attachments = parse_attachments(&r.attachments)?;
        let issue = self
            .store
            .transition(&actor, mv, |_, _| Ok(Action::Resolve(attachments)))
            .await?;
        Ok(Response::new(pb::ResolveIssueResponse {
            issue: Some(issue),
        }))
    }

    async fn confirm_resolution(
        &self,
        req: Request<pb::ConfirmResolutionRequest>,
    ) -> Resp<pb::ConfirmResolutionResponse> {
        let actor = POLICY.allow("ConfirmResolution", &req)?;
        let r = req.into_inner();
        let mv = parse_move(r.transition)?;
        let rating = domain::parse_rating("rating", r.rating)?;
        let comment = parse_text("comment", &r.comment, 1000)?;
        let record = self.issue_in_reach(&actor, &mv.issue_id).await?;
        self.check_household(&actor, &record, &r.household_id)
            .await?;
        let issue = self
            .store
            .transition(&actor, mv, |_, _| Ok(Action::Confirm { rating, comment }))
            .await?;
        Ok(Response::new(pb::ConfirmResolutionResponse {
            issue: Some(issue),
        }))
    }

    async fn reopen_issue(
        &self,
        req: Request<pb::ReopenIssueRequest>,
    ) -> Resp<pb::ReopenIssueResponse> {
        let actor = POLICY.allow("ReopenIssue", &req)?;
        let r = req.into_inner();
        let mv = parse_move(r.transition)?;
        let record = self.issue_in_reach(&actor, &mv.issue_id).await?;
        self.check_household(&actor, &record, &r.household_id)
            .await?;
        let policy = self.store.policy.clone();
        let issue = self
            .store
            .transition(&actor, mv, |issue, at| {
                Ok(Action::Reopen {
                    resolution_due_at: policy.resolution_due(at, issue.category, issue.three_most),
                })
            })
            .await?;
        Ok(Response::new(pb::ReopenIssueResponse {
            issue: Some(issue),
        }))
    }

    async fn reject_issue(
        &self,
        req: Request<pb::RejectIssueRequest>,
    ) -> Resp<pb::RejectIssueResponse> {
        let actor = POLICY.allow("RejectIssue", &req)?;
        let mv = parse_move(req.into_inner().transition)?;
        self.issue_in_reach(&actor, &mv.issue_id).await?;
        if mv.note.is_empty() {
            return Err(Error::invalid(
                "transition.note",
                "is required: give the reason for rejecting",
            )
            .into());
        }
        let reason = mv.note.clone();
        let issue = self
            .store
            .transition(&actor, mv, |_, _| Ok(Action::Reject { reason }))
            .await?;
        Ok(Response::new(pb::RejectIssueResponse {
            issue: Some(issue),
        }))
    }

    async fn mark_duplicate(
        &self,
        req: Request<pb::MarkDuplicateRequest>,
    ) -> Resp<pb::MarkDuplicateResponse> {
        let actor = POLICY.allow("MarkDuplicate", &req)?;
        let r = req.into_inner();
        let mv = parse_move(r.transition)?;
        self.issue_in_reach(&actor, &mv.issue_id).await?;
        let original_id = parse_id("original_issue_id", &r.original_issue_id)?;
        if original_id == mv.issue_id {
            return Err(Error::invalid("original_issue_id", "is the issue itself").into());
        }
        let original = self.issue_in_reach(&actor, &original_id).await?;
        if original.domain.state.is_dismissed() {
            return Err(Error::FailedPrecondition(format!(
                "the original issue is {}; point at the issue it duplicates",
                original.domain.state.as_str()
            ))
            .into());
        }
        let issue = self
            .store
            .transition(&actor, mv, |issue, _| {
                if issue.community_id != original.community_id {
                    return Err(Error::invalid(
                        "original_issue_id",
                        "is in another community",
                    ));
                }
                Ok(Action::MarkDuplicate {
                    original: original_id,
                })
            })
            .await?;
        Ok(Response::new(pb::MarkDuplicateResponse {
            issue: Some(issue),
        }))
    }

    async fn add_supervision_note(
        &self,
        req: Request<pb::AddSupervisionNoteRequest>,
    ) -> Resp<pb::AddSupervisionNoteResponse> {
        let actor = POLICY.allow("AddSupervisionNote", &req)?;
        let mut r = req.into_inner();
        let idem = idem_key(&actor, &mut r, |r| &mut r.idempotency_key)?;
        let issue_id = parse_id("issue_id", &r.issue_id)?;
        self.issue_in_reach(&actor, &issue_id).await?;
        let note = parse_text("note", &r.note, 1000)?;
        if note.is_empty() {
            return Err(Error::invalid("note", "must not be empty").into());
        }
        let event = self.store.add_note(&actor, &idem, &issue_id, &note).await?;
        Ok(Response::new(pb::AddSupervisionNoteResponse {
            event: Some(event),
        }))
    }

    async fn list_overdue_issues(
        &self,
        req: Request<pb::ListOverdueIssuesRequest>,
    ) -> Resp<pb::ListOverdueIssuesResponse> {
        let actor = POLICY.allow("ListOverdueIssues", &req)?;
        let r = req.into_inner();
        let community = actor.community_filter("community_id", &r.community_id)?;
        let as_of =
            linli_core::time::optional("as_of", r.as_of.as_ref())?.unwrap_or_else(now_micros);
        Ok(Response::new(pb::ListOverdueIssuesResponse {
            issues: self.store.overdue(&community, as_of).await?,
        }))
    }

    async fn run_supervision(
        &self,
        req: Request<pb::RunSupervisionRequest>,
    ) -> Resp<pb::RunSupervisionResponse> {
        POLICY.allow("RunSupervision", &req)?;
        let as_of = past_or_now("as_of", req.get_ref().as_of.as_ref())?;
        let sweep = self.store.run_supervision(as_of).await?;
        Ok(Response::new(pb::RunSupervisionResponse {
            escalated: sweep.escalated,
            auto_closed: sweep.auto_closed,
        }))
    }

    async fn get_timeline(
        &self,
        req: Request<pb::GetTimelineRequest>,
    ) -> Resp<pb::GetTimelineResponse> {
        let actor = POLICY.allow("GetTimeline", &req)?;
        let id = parse_id("issue_id", &req.get_ref().issue_id)?;
        self.issue_in_reach(&actor, &id).await?;
        Ok(Response::new(pb::GetTimelineResponse {
            events: self.store.timeline(&id).await?,
        }))
    }

    async fn get_statistics(
        &self,
        req: Request<pb::GetStatisticsRequest>,
    ) -> Resp<pb::GetStatisticsResponse> {
        let actor = POLICY.allow("GetStatistics", &req)?;
        let r = req.into_inner();
        let unit = parse_opt_id("unit_id", &r.unit_id)?.unwrap_or_default();
        let community = if r.community_id.is_empty() && !unit.is_empty() && actor.is_county() {
            String::new()
        } else {
            actor.community_filter("community_id", &r.community_id)?
        };
        let (from, to) = period(r.from.as_ref(), r.to.as_ref())?;
        let records = self.store.records_in(&community, &unit, from, to).await?;
        Ok(Response::new(statistics(&records, now_micros())))
    }

    async fn get_ranking(
        &self,
        req: Request<pb::GetRankingRequest>,
    ) -> Resp<pb::GetRankingResponse> {
        POLICY.allow("GetRanking", &req)?;
        let r = req.into_inner();
        let by_unit = match pb::RankingScope::try_from(r.scope) {
            Ok(pb::RankingScope::Community) => false,
            Ok(pb::RankingScope::Unit) => true,
            Ok(pb::RankingScope::Unspecified) => return Err(Error::required("scope").into()),
            Err(_) => {
                let n = r.scope;
                return Err(Error::invalid("scope", format!("{n} is not a known value")).into());
            }
        };
        let (from, to) = period(r.from.as_ref(), r.to.as_ref())?;
        let records = self.store.records_in("", "", from, to).await?;
        Ok(Response::new(pb::GetRankingResponse {
            entries: ranking(&records, by_unit),
        }))
    }

    type WatchIssuesStream =
        Pin<Box<dyn Stream<Item = std::result::Result<pb::WatchIssuesResponse, Status>> + Send>>;

    async fn watch_issues(
        &self,
        req: Request<pb::WatchIssuesRequest>,
    ) -> Resp<Self::WatchIssuesStream> {
        let actor = POLICY.allow("WatchIssues", &req)?;
        let r = req.into_inner();
        let community = parse_id("community_id", &r.community_id)?;
        actor.check_community("community", &community, &community)?;
        if r.after_seq < 0 {
            return Err(Error::invalid("after_seq", "must not be negative").into());
        }
        let store = self.store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut cursor = r.after_seq;
            loop {
                // Register for a wake-up before reading, so an event written in between is not missed.
                let written = store.events_written.notified();
                match store.events_after(&community, cursor, 200).await {
                    Ok(events) if !events.is_empty() => {
                        for event in events {
                            cursor = event.seq;
                            if tx
                                .send(Ok(pb::WatchIssuesResponse { event: Some(event) }))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                }
                // Events from other replicas arrive through the database: poll as well as wait.
                tokio::select! {
                    _ = written => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_community_summary(
        &self,
        req: Request<pb::GetCommunitySummaryRequest>,
    ) -> Resp<pb::GetCommunitySummaryResponse> {
        let actor = POLICY.allow("GetCommunitySummary", &req)?;
        let community = parse_id("community_id", &req.get_ref().community_id)?;
        actor.check_community("community", &community, &community)?;
        Ok(Response::new(self.store.summary(&community).await?))
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Resp<pb::ListAuditEventsResponse> {
        let actor = POLICY.allow("ListAuditEvents", &req)?;
        let r = req.into_inner();
        actor.check_community("community", &r.community_id, &r.community_id)?;
        let (events, next_page_token) = audit::list_request(
            &self.store.db,
            &r.community_id,
            &r.entity_id,
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events,
            next_page_token,
        }))
    }

    async fn verify_audit_trail(
        &self,
        req: Request<pb::VerifyAuditTrailRequest>,
    ) -> Resp<pb::VerifyAuditTrailResponse> {
        let actor = POLICY.allow("VerifyAuditTrail", &req)?;
        let community = &req.get_ref().community_id;
        actor.check_community("community", community, community)?;
        let verification = audit::verify_request(&self.store.db, community).await?;
        Ok(Response::new(pb::VerifyAuditTrailResponse {
            verification: Some(verification),
        }))
    }
}
