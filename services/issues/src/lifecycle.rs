//! The lifecycle: acknowledged, claimed (主动认领), worked, resolved, confirmed or reopened by the residents, rejected or merged.

use sqlx::AnyConnection;
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::time::{Micros, now_micros};
use linli_core::validate::{parse_id, parse_text};
use linli_core::{Actor, Error, Result, Role};
use linli_proto::issues::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

pub(crate) async fn acknowledge_issue(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::AcknowledgeIssueRequest>,
) -> Resp<pb::AcknowledgeIssueResponse> {
    let mv = parse_move(req.into_inner().transition)?;
    let issue = api
        .store
        .transition(actor, mv, |_, _| Ok(Action::Acknowledge))
        .await?;
    Ok(Response::new(pb::AcknowledgeIssueResponse {
        issue: Some(issue),
    }))
}

pub(crate) async fn claim_issue(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::ClaimIssueRequest>,
) -> Resp<pb::ClaimIssueResponse> {
    let r = req.into_inner();
    let mv = parse_move(r.transition)?;
    let record = api.issue_in_reach(actor, &mv.issue_id).await?;
    if actor.role == Role::Cadre {
        let own = actor.cadre.as_deref().unwrap_or_default();
        if r.cadre_id != own && !r.participant_cadre_ids.iter().any(|p| p == own) {
            return Err(Error::PermissionDenied(
                "a cadre claims as themselves: name yourself as cadre_id or a participant".into(),
            )
            .into());
        }
    }
    let claimant = api
        .claimant(
            actor,
            &record.community_id,
            &r.cadre_id,
            &r.unit_id,
            &r.participant_cadre_ids,
        )
        .await?;
    let issue = api
        .store
        .transition(actor, mv, |_, _| Ok(Action::Claim(claimant)))
        .await?;
    Ok(Response::new(pb::ClaimIssueResponse { issue: Some(issue) }))
}

pub(crate) async fn unclaim_issue(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::UnclaimIssueRequest>,
) -> Resp<pb::UnclaimIssueResponse> {
    let mv = parse_move(req.into_inner().transition)?;
    let issue = api
        .store
        .transition(actor, mv, |_, _| Ok(Action::Unclaim))
        .await?;
    Ok(Response::new(pb::UnclaimIssueResponse {
        issue: Some(issue),
    }))
}

pub(crate) async fn reassign_issue(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::ReassignIssueRequest>,
) -> Resp<pb::ReassignIssueResponse> {
    let r = req.into_inner();
    let mv = parse_move(r.transition)?;
    let record = api.issue_in_reach(actor, &mv.issue_id).await?;
    let claimant = api
        .claimant(
            actor,
            &record.community_id,
            &r.cadre_id,
            &r.unit_id,
            &r.participant_cadre_ids,
        )
        .await?;
    let issue = api
        .store
        .transition(actor, mv, |_, _| Ok(Action::Reassign(claimant)))
        .await?;
    Ok(Response::new(pb::ReassignIssueResponse {
        issue: Some(issue),
    }))
}

pub(crate) async fn start_work(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::StartWorkRequest>,
) -> Resp<pb::StartWorkResponse> {
    let mv = parse_move(req.into_inner().transition)?;
    let issue = api
        .store
        .transition(actor, mv, |_, _| Ok(Action::Start))
        .await?;
    Ok(Response::new(pb::StartWorkResponse { issue: Some(issue) }))
}

pub(crate) async fn resolve_issue(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::ResolveIssueRequest>,
) -> Resp<pb::ResolveIssueResponse> {
    let r = req.into_inner();
    let mv = parse_move(r.transition)?;
    let attachments = parse_attachments(&r.attachments)?;
    let issue = api
        .store
        .transition(actor, mv, |_, _| Ok(Action::Resolve(attachments)))
        .await?;
    Ok(Response::new(pb::ResolveIssueResponse {
        issue: Some(issue),
    }))
}

pub(crate) async fn confirm_resolution(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::ConfirmResolutionRequest>,
) -> Resp<pb::ConfirmResolutionResponse> {
    let r = req.into_inner();
    let mv = parse_move(r.transition)?;
    let rating = domain::parse_rating("rating", r.rating)?;
    let comment = parse_text("comment", &r.comment, 1000)?;
    let record = api.issue_in_reach(actor, &mv.issue_id).await?;
    api.check_household(actor, &record, &r.household_id).await?;
    let issue = api
        .store
        .transition(actor, mv, |_, _| Ok(Action::Confirm { rating, comment }))
        .await?;
    Ok(Response::new(pb::ConfirmResolutionResponse {
        issue: Some(issue),
    }))
}

pub(crate) async fn reopen_issue(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::ReopenIssueRequest>,
) -> Resp<pb::ReopenIssueResponse> {
    let r = req.into_inner();
    let mv = parse_move(r.transition)?;
    let record = api.issue_in_reach(actor, &mv.issue_id).await?;
    api.check_household(actor, &record, &r.household_id).await?;
    let policy = api.store.policy.clone();
    let issue = api
        .store
        .transition(actor, mv, |issue, at| {
            Ok(Action::Reopen {
                resolution_due_at: policy.resolution_due(at, issue.category, issue.three_most),
            })
        })
        .await?;
    Ok(Response::new(pb::ReopenIssueResponse {
        issue: Some(issue),
    }))
}

pub(crate) async fn reject_issue(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::RejectIssueRequest>,
) -> Resp<pb::RejectIssueResponse> {
    let mv = parse_move(req.into_inner().transition)?;
    if mv.note.is_empty() {
        return Err(Error::invalid(
            "transition.note",
            "is required: give the reason for rejecting",
        )
        .into());
    }
    let reason = mv.note.clone();
    let issue = api
        .store
        .transition(actor, mv, |_, _| Ok(Action::Reject { reason }))
        .await?;
    Ok(Response::new(pb::RejectIssueResponse {
        issue: Some(issue),
    }))
}

pub(crate) async fn mark_duplicate(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::MarkDuplicateRequest>,
) -> Resp<pb::MarkDuplicateResponse> {
    let r = req.into_inner();
    let mv = parse_move(r.transition)?;
    let original_id = parse_id("original_issue_id", &r.original_issue_id)?;
    if original_id == mv.issue_id {
        return Err(Error::invalid("original_issue_id", "is the issue itself").into());
    }
    let original = api.issue_in_reach(actor, &original_id).await?;
    if original.domain.state.is_dismissed() {
        return Err(Error::FailedPrecondition(format!(
            "the original issue is {}; point at the issue it duplicates",
            original.domain.state.as_str()
        ))
        .into());
    }
    let issue = api
        .store
        .transition(actor, mv, |issue, _| {
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

impl Store {
    /// Applies a move. `action` builds the move from the issue as it stands
    /// (e.g. a reopen's new deadline depends on its category).
    pub async fn transition(
        &self,
        actor: &Actor,
        mv: Move,
        action: impl FnOnce(&IssueRecord, Micros) -> Result<Action>,
    ) -> Result<pb::Issue> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load(&mut tx, &mv.issue_id).await?;
        // Every move is kept to what the caller may see, whichever RPC asked for it.
        before.check_visible(actor)?;
        linli_core::validate::check_version(
            "transition.expected_version",
            mv.expected_version,
            before.version,
        )?;
        let at = mv.at.unwrap_or_else(now_micros);
        if at < before.last_event_at {
            return Err(Error::invalid(
                "transition.at",
                "is before the issue's last event",
            ));
        }
        let action = action(&before, at)?;
        let attachments = match &action {
            Action::Resolve(a) => a.clone(),
            _ => Vec::new(),
        };
        let mut after = before.clone();
        // 主动认领: a cadre who claims a reported issue has answered it too. The claim
        // acknowledges it first, and both are recorded, in that order.
        let implied_ack = matches!(action, Action::Claim(_))
            && before.domain.state == domain::IssueState::Reported;
        if implied_ack {
            domain::apply(&mut after.domain, Action::Acknowledge, at)?;
        }
        let from_state = after.domain.state;
        let kind = domain::apply(&mut after.domain, action, at)?;
        after.version += 1;
        after.last_event_at = at;
        let d = &after.domain;
        let claim = d.claim.clone().unwrap_or_default();
        let updated = sqlx::query(
            "UPDATE issues SET state = $3, claim_cadre_id = $4, claim_unit_id = $5, claim_participants = $6, claimed_at = $7, \
             first_claimed_at = $8, responded_at = $9, resolved_at = $10, closed_at = $11, resolution_due_at = $12, rating = $13, \
             rating_comment = $14, duplicate_of = $15, reject_reason = $16, reopen_count = $17, attachments_json = $18, \
             last_event_at = $19, version = version + 1, \
             first_resolution_due_at = COALESCE(first_resolution_due_at, resolution_due_at) \
             WHERE community_id = $1 AND id = $2 AND version = $20",
        )
        .bind(&after.community_id)
        .bind(&after.id)
        .bind(d.state.as_str())
        .bind(claim.cadre_id.clone().unwrap_or_default())
        .bind(&claim.unit_id)
        .bind(participants_to_db(&claim.participants))
        .bind(d.claimed_at)
        .bind(d.first_claimed_at)
        .bind(d.responded_at)
        .bind(d.resolved_at)
        .bind(d.closed_at)
        .bind(d.resolution_due_at)
        .bind(d.rating.map(i64::from))
        .bind(&d.rating_comment)
        .bind(&d.duplicate_of)
        .bind(&d.reject_reason)
        .bind(i64::from(d.reopen_count))
        .bind(attachments_to_json(&d.attachments))
        .bind(at)
        .bind(before.version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(
                "the issue changed since you read it; read it again".into(),
            ));
        }
        let note = match kind {
            EventKind::Rejected => after.domain.reject_reason.clone(),
            _ => mv.note.clone(),
        };
        if implied_ack {
            append_event(
                &mut tx,
                actor,
                NewEvent {
                    issue: &after,
                    at,
                    kind: EventKind::Acknowledged,
                    from: Some(before.domain.state),
                    to: Some(from_state),
                    note: "acknowledged by the claim",
                    attachments: &[],
                },
            )
            .await?;
        }
        append_event(
            &mut tx,
            actor,
            NewEvent {
                issue: &after,
                at,
                kind,
                from: Some(from_state),
                to: Some(after.domain.state),
                note: &note,
                attachments: &attachments,
            },
        )
        .await?;
        let resolved = |r: &IssueRecord| i64::from(r.domain.state.is_resolved());
        count_resolved(
            &mut tx,
            &after.community_id,
            resolved(&after) - resolved(&before),
        )
        .await?;
        if kind == EventKind::MarkedDuplicate {
            self.join_watchers(&mut tx, actor, &after, at).await?;
        }
        audit::record(
            &mut tx,
            actor,
            Change::updated(
                &after.community_id,
                format!("issue.{}", kind.as_str()),
                "issue",
                &after.id,
                before.audit_json(),
                after.audit_json(),
            ),
        )
        .await?;
        let issue = self.to_proto(&mut tx, &after).await?;
        tx.commit().await?;
        self.heads.written();
        Ok(issue)
    }

    /// A duplicate's watchers follow the original from now on.
    pub(crate) async fn join_watchers(
        &self,
        conn: &mut AnyConnection,
        actor: &Actor,
        duplicate: &IssueRecord,
        at: Micros,
    ) -> Result<()> {
        let original = self.load(conn, &duplicate.domain.duplicate_of).await?;
        for household in self
            .watchers(conn, &duplicate.community_id, &duplicate.id)
            .await?
        {
            let added = sqlx::query("INSERT INTO issue_watchers (community_id, issue_id, household_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(&original.community_id)
                .bind(&original.id)
                .bind(&household)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if added == 1 {
                let note = format!(
                    "household {household} joined from duplicate {}",
                    duplicate.id
                );
                append_event(
                    conn,
                    actor,
                    NewEvent {
                        issue: &original,
                        at,
                        kind: EventKind::WatcherJoined,
                        from: None,
                        to: None,
                        note: &note,
                        attachments: &[],
                    },
                )
                .await?;
            }
        }
        Ok(())
    }
}
