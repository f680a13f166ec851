//! The gRPC handlers: read the caller, validate the request (naming the
//! field), check what the people service knows, call the store, answer.

use tonic::{Request, Response, Status};

use linli_core::time::{now_micros, past_or_now};
use linli_core::validate::{parse_id, parse_text};
use linli_core::{Actor, Error, Result, Role};
use linli_proto::issues::v1 as pb;
use linli_proto::issues::v1::issues_service_server::IssuesService;

use crate::domain::{self, Claimant, PhotoPhase};
use crate::policy::POLICY;
use crate::store::{Move, Store};
use crate::{intake, lifecycle, statistics, supervision, watch};
use linli_core::people::People;

pub(crate) type Resp<T> = std::result::Result<Response<T>, Status>;

pub struct IssuesApi {
    pub(crate) store: Store,
    pub(crate) people: People,
}

impl IssuesApi {
    pub fn new(store: Store, people: People) -> Self {
        IssuesApi { store, people }
    }

    /// Checks a claimant with the people service: the unit exists, and every
    /// cadre is actively registered with the issue's community.
    pub(crate) async fn claimant(
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
                return Err(self.people.not_registered(actor, cadre, community_id).await);
            }
        }
        Ok(claimant)
    }

    /// The issue, if the caller may see it: in their community and, for a
    /// resident, their household's or no household's.
    pub(crate) async fn issue_in_reach(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<crate::store::IssueRecord> {
        let record = self.store.record(id).await?;
        record.check_visible(actor)?;
        Ok(record)
    }

    /// Only the reporting household may confirm or reopen; an issue no household
    /// reported may be confirmed by any household of its community.
    pub(crate) async fn check_household(
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

pub(crate) fn parse_move(t: Option<pb::Transition>) -> Result<Move> {
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

pub(crate) fn parse_attachments(list: &[pb::Attachment]) -> Result<Vec<domain::Attachment>> {
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
pub(crate) fn period(
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
    type WatchIssuesStream = watch::WatchStream;

    async fn report_issue(
        &self,
        req: Request<pb::ReportIssueRequest>,
    ) -> Resp<pb::ReportIssueResponse> {
        let actor = POLICY.allow("ReportIssue", &req)?;
        intake::report_issue(self, &actor, req).await
    }

    async fn get_issue(&self, req: Request<pb::GetIssueRequest>) -> Resp<pb::GetIssueResponse> {
        let actor = POLICY.allow("GetIssue", &req)?;
        intake::get_issue(self, &actor, req).await
    }

    async fn list_issues(
        &self,
        req: Request<pb::ListIssuesRequest>,
    ) -> Resp<pb::ListIssuesResponse> {
        let actor = POLICY.allow("ListIssues", &req)?;
        intake::list_issues(self, &actor, req).await
    }

    async fn acknowledge_issue(
        &self,
        req: Request<pb::AcknowledgeIssueRequest>,
    ) -> Resp<pb::AcknowledgeIssueResponse> {
        let actor = POLICY.allow("AcknowledgeIssue", &req)?;
        lifecycle::acknowledge_issue(self, &actor, req).await
    }

    async fn claim_issue(
        &self,
        req: Request<pb::ClaimIssueRequest>,
    ) -> Resp<pb::ClaimIssueResponse> {
        let actor = POLICY.allow("ClaimIssue", &req)?;
        lifecycle::claim_issue(self, &actor, req).await
    }

    async fn unclaim_issue(
        &self,
        req: Request<pb::UnclaimIssueRequest>,
    ) -> Resp<pb::UnclaimIssueResponse> {
        let actor = POLICY.allow("UnclaimIssue", &req)?;
        lifecycle::unclaim_issue(self, &actor, req).await
    }

    async fn reassign_issue(
        &self,
        req: Request<pb::ReassignIssueRequest>,
    ) -> Resp<pb::ReassignIssueResponse> {
        let actor = POLICY.allow("ReassignIssue", &req)?;
        lifecycle::reassign_issue(self, &actor, req).await
    }

    async fn start_work(&self, req: Request<pb::StartWorkRequest>) -> Resp<pb::StartWorkResponse> {
        let actor = POLICY.allow("StartWork", &req)?;
        lifecycle::start_work(self, &actor, req).await
    }

    async fn resolve_issue(
        &self,
        req: Request<pb::ResolveIssueRequest>,
    ) -> Resp<pb::ResolveIssueResponse> {
        let actor = POLICY.allow("ResolveIssue", &req)?;
        lifecycle::resolve_issue(self, &actor, req).await
    }

    async fn confirm_resolution(
        &self,
        req: Request<pb::ConfirmResolutionRequest>,
    ) -> Resp<pb::ConfirmResolutionResponse> {
        let actor = POLICY.allow("ConfirmResolution", &req)?;
        lifecycle::confirm_resolution(self, &actor, req).await
    }

    async fn reopen_issue(
        &self,
        req: Request<pb::ReopenIssueRequest>,
    ) -> Resp<pb::ReopenIssueResponse> {
        let actor = POLICY.allow("ReopenIssue", &req)?;
        lifecycle::reopen_issue(self, &actor, req).await
    }

    async fn reject_issue(
        &self,
        req: Request<pb::RejectIssueRequest>,
    ) -> Resp<pb::RejectIssueResponse> {
        let actor = POLICY.allow("RejectIssue", &req)?;
        lifecycle::reject_issue(self, &actor, req).await
    }

    async fn mark_duplicate(
        &self,
        req: Request<pb::MarkDuplicateRequest>,
    ) -> Resp<pb::MarkDuplicateResponse> {
        let actor = POLICY.allow("MarkDuplicate", &req)?;
        lifecycle::mark_duplicate(self, &actor, req).await
    }

    async fn add_supervision_note(
        &self,
        req: Request<pb::AddSupervisionNoteRequest>,
    ) -> Resp<pb::AddSupervisionNoteResponse> {
        let actor = POLICY.allow("AddSupervisionNote", &req)?;
        supervision::add_supervision_note(self, &actor, req).await
    }

    async fn list_overdue_issues(
        &self,
        req: Request<pb::ListOverdueIssuesRequest>,
    ) -> Resp<pb::ListOverdueIssuesResponse> {
        let actor = POLICY.allow("ListOverdueIssues", &req)?;
        supervision::list_overdue_issues(self, &actor, req).await
    }

    async fn run_supervision(
        &self,
        req: Request<pb::RunSupervisionRequest>,
    ) -> Resp<pb::RunSupervisionResponse> {
        POLICY.allow("RunSupervision", &req)?;
        supervision::run_supervision(self, req).await
    }

    async fn get_timeline(
        &self,
        req: Request<pb::GetTimelineRequest>,
    ) -> Resp<pb::GetTimelineResponse> {
        let actor = POLICY.allow("GetTimeline", &req)?;
        intake::get_timeline(self, &actor, req).await
    }

    async fn get_statistics(
        &self,
        req: Request<pb::GetStatisticsRequest>,
    ) -> Resp<pb::GetStatisticsResponse> {
        let actor = POLICY.allow("GetStatistics", &req)?;
        statistics::get_statistics(self, &actor, req).await
    }

    async fn get_ranking(
        &self,
        req: Request<pb::GetRankingRequest>,
    ) -> Resp<pb::GetRankingResponse> {
        POLICY.allow("GetRanking", &req)?;
        statistics::get_ranking(self, req).await
    }

    async fn watch_issues(
        &self,
        req: Request<pb::WatchIssuesRequest>,
    ) -> Resp<Self::WatchIssuesStream> {
        let actor = POLICY.allow("WatchIssues", &req)?;
        watch::watch_issues(self, &actor, req).await
    }

    async fn get_community_summary(
        &self,
        req: Request<pb::GetCommunitySummaryRequest>,
    ) -> Resp<pb::GetCommunitySummaryResponse> {
        let actor = POLICY.allow("GetCommunitySummary", &req)?;
        statistics::get_community_summary(self, &actor, req).await
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Resp<pb::ListAuditEventsResponse> {
        let actor = POLICY.allow("ListAuditEvents", &req)?;
        supervision::list_audit_events(self, &actor, req).await
    }

    async fn verify_audit_trail(
        &self,
        req: Request<pb::VerifyAuditTrailRequest>,
    ) -> Resp<pb::VerifyAuditTrailResponse> {
        let actor = POLICY.allow("VerifyAuditTrail", &req)?;
        supervision::verify_audit_trail(self, &actor, req).await
    }
}
