//! Supervision (跟进监督): deadlines swept and escalated, notes from supervisors, the overdue list and the audit trail.

use serde_json::json;
use sqlx::Row;
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::time::{Micros, now_micros, past_or_now, to_timestamp};
use linli_core::validate::{parse_id, parse_text};
use linli_core::{Actor, Error, Result};
use linli_proto::issues::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

pub(crate) async fn add_supervision_note(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::AddSupervisionNoteRequest>,
) -> Resp<pb::AddSupervisionNoteResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let issue_id = parse_id("issue_id", &r.issue_id)?;
    api.issue_in_reach(actor, &issue_id).await?;
    let note = parse_text("note", &r.note, 1000)?;
    if note.is_empty() {
        return Err(Error::invalid("note", "must not be empty").into());
    }
    let event = api.store.add_note(actor, &idem, &issue_id, &note).await?;
    Ok(Response::new(pb::AddSupervisionNoteResponse {
        event: Some(event),
    }))
}

pub(crate) async fn list_overdue_issues(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::ListOverdueIssuesRequest>,
) -> Resp<pb::ListOverdueIssuesResponse> {
    let r = req.into_inner();
    let community = actor.community_filter("community_id", &r.community_id)?;
    let as_of = linli_core::time::optional("as_of", r.as_of.as_ref())?.unwrap_or_else(now_micros);
    let limit =
        usize::try_from(r.limit).map_err(|_| Error::invalid("limit", "must not be negative"))?;
    if !r.community_id.is_empty() {
        // A community with no issues is not one that does not exist: people knows which.
        api.people.community(actor, &community).await?;
    }
    Ok(Response::new(pb::ListOverdueIssuesResponse {
        issues: api.store.overdue(&community, as_of, limit).await?,
    }))
}

pub(crate) async fn run_supervision(
    api: &IssuesApi,
    req: Request<pb::RunSupervisionRequest>,
) -> Resp<pb::RunSupervisionResponse> {
    let as_of = past_or_now("as_of", req.get_ref().as_of.as_ref())?;
    let sweep = api.store.run_supervision(as_of).await?;
    Ok(Response::new(pb::RunSupervisionResponse {
        escalated: sweep.escalated,
        auto_closed: sweep.auto_closed,
    }))
}

linli_core::audit_handlers!(IssuesApi);

impl Store {
    pub async fn add_note(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        issue_id: &str,
        note: &str,
    ) -> Result<pb::IssueEvent> {
        let issue = self.record(issue_id).await?;
        let ctx = (self, actor, idem, &issue, note);
        let mut event = idempotency::create(
            &ctx,
            &self.db,
            actor,
            "issues.note",
            idem,
            |&(_, _, _, issue, _), tx, existing| {
                Box::pin(async move {
                    let row = sqlx::query(&format!(
                        "SELECT {EVENT_COLS} FROM issue_events WHERE community_id = $1 AND issue_id = $2 AND id = $3"
                    ))
                    .bind(&issue.community_id)
                    .bind(&issue.id)
                    .bind(existing)
                    .fetch_one(&mut *tx)
                    .await?;
                    event_from_row(&row)
                })
            },
            |&(s, actor, idem, issue, note), tx, _| {
                Box::pin(async move {
                    // Read again inside the write: the note goes after the issue's last event.
                    let issue = s.load(&mut *tx, &issue.id).await?;
                    let at = now_micros().max(issue.last_event_at);
                    let new = NewEvent {
                        issue: &issue,
                        at,
                        kind: EventKind::SupervisionNote,
                        from: None,
                        to: None,
                        note,
                        attachments: &[],
                    };
                    let event = append_event(&mut *tx, actor, new).await?;
                    // The key was claimed before the event had an id; a retry finds it by the key.
                    idempotency::made(&mut *tx, "issues.note", &idem.key, &event.id).await?;
                    let change = Change::created(
                        &issue.community_id,
                        "issue.supervision_note",
                        "issue",
                        &issue.id,
                        json!({ "event_id": event.id, "note": note }),
                    );
                    Ok(Made::new(event, change))
                })
            },
        )
        .await?;
        self.heads.written();
        event.actor = actor.id.clone();
        Ok(event)
    }

    /// The open issues past a deadline as of `as_of` (what `deadlines::breaches`
    /// finds, chosen by the database rather than by reading every open issue).
    pub(crate) async fn breached_records(
        &self,
        community_id: &str,
        as_of: Micros,
    ) -> Result<Vec<IssueRecord>> {
        // Written out, not guarded by a parameter, so that both the one
        // community and the open states are seen by the planner, which reads
        // them from the open issues' index (`issues_open`).
        let community = if community_id.is_empty() {
            "$1 = ''"
        } else {
            "community_id = $1"
        };
        let rows = sqlx::query(&format!(
            "SELECT {ISSUE_COLS} FROM issues WHERE {community} AND {OPEN_SQL} AND {} ORDER BY id",
            crate::deadlines::overdue_sql("$2")
        ))
        .bind(community_id)
        .bind(as_of)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Whether this breach was escalated already (by this replica or another).
    async fn escalated(&self, r: &IssueRecord, kind: DeadlineKind, due: Micros) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM escalations WHERE community_id = $1 AND issue_id = $2 AND deadline_kind = $3 AND due_at = $4",
        )
        .bind(&r.community_id)
        .bind(&r.id)
        .bind(kind.as_str())
        .bind(due)
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Open issues past a deadline as of `as_of`, most overdue first; at
    /// most `limit` of them (0: all), whose watchers alone are read.
    pub async fn overdue(
        &self,
        community_id: &str,
        as_of: Micros,
        limit: usize,
    ) -> Result<Vec<pb::OverdueIssue>> {
        let mut late = Vec::new();
        for r in self.breached_records(community_id, as_of).await? {
            let breach = domain::breaches(
                r.domain.state,
                r.response_due_at,
                r.domain.resolution_due_at,
                as_of,
            )
            .into_iter()
            .min_by_key(|(_, due)| *due);
            if let Some(breach) = breach {
                late.push((r, breach));
            }
        }
        // Most overdue first (the earliest deadline); the same deadline in id order.
        late.sort_by(|(a, (_, a_due)), (b, (_, b_due))| {
            a_due.cmp(b_due).then_with(|| a.id.cmp(&b.id))
        });
        if limit > 0 {
            late.truncate(limit);
        }
        let records: Vec<IssueRecord> = late.iter().map(|(r, _)| r.clone()).collect();
        let issues = self.with_watchers(&records).await?;
        Ok(issues
            .into_iter()
            .zip(late)
            .map(|(issue, (_, (kind, due)))| pb::OverdueIssue {
                issue: Some(issue),
                deadline: kind.to_proto(),
                due_at: Some(to_timestamp(due)),
                overdue_seconds: (as_of - due) / 1_000_000,
            })
            .collect())
    }

    /// Escalates every missed deadline once, and closes resolutions nobody
    /// confirmed in time. Several replicas may run this at once: a breach's
    /// row in `escalations` is claimed by exactly one of them, and auto-close
    /// is a guarded move on the version.
    pub async fn run_supervision(&self, as_of: Micros) -> Result<Sweep> {
        let system = Actor::local("supervision");
        let mut sweep = Sweep::default();
        for r in self.breached_records("", as_of).await? {
            for (kind, due) in domain::breaches(
                r.domain.state,
                r.response_due_at,
                r.domain.resolution_due_at,
                as_of,
            ) {
                // Most breaches were escalated by an earlier sweep: a read says so
                // without taking the write lock. The claim below still decides races.
                if self.escalated(&r, kind, due).await? {
                    continue;
                }
                let mut tx = self.db.begin_write().await?;
                let claimed = sqlx::query("INSERT INTO escalations (community_id, issue_id, deadline_kind, due_at, escalated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                    .bind(&r.community_id)
                    .bind(&r.id)
                    .bind(kind.as_str())
                    .bind(due)
                    .bind(as_of)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if claimed == 0 {
                    continue;
                }
                let note = format!(
                    "{} deadline missed (due {})",
                    kind.as_str(),
                    linli_core::time::local(due, self.utc_offset)
                );
                let at = as_of.max(r.last_event_at);
                append_event(
                    &mut tx,
                    &system,
                    NewEvent {
                        issue: &r,
                        at,
                        kind: EventKind::Escalated,
                        from: None,
                        to: None,
                        note: &note,
                        attachments: &[],
                    },
                )
                .await?;
                audit::record(
                    &mut tx,
                    &system,
                    Change::created(
                        &r.community_id,
                        "issue.escalated",
                        "issue",
                        &r.id,
                        json!({ "deadline": kind.as_str(), "due_at": due }),
                    ),
                )
                .await?;
                tx.commit().await?;
                sweep.escalated += 1;
            }
        }
        let cutoff = as_of - self.policy.auto_close_after();
        let rows = sqlx::query("SELECT id, version, resolved_at, last_event_at FROM issues WHERE state = 'resolved' AND resolved_at < $1")
            .bind(cutoff)
            .fetch_all(&self.db.pool)
            .await?;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let version: i64 = row.try_get("version")?;
            let resolved_at: i64 = row.try_get("resolved_at")?;
            let last_event_at: i64 = row.try_get("last_event_at")?;
            let at = (resolved_at + self.policy.auto_close_after()).max(last_event_at);
            let mv_id = id.clone();
            let mv = Move {
                issue_id: id,
                expected_version: version,
                note: format!("not confirmed within {} days", self.policy.auto_close_days),
                at: Some(at),
            };
            match self
                .transition(&system, mv, |_, _| Ok(Action::AutoClose))
                .await
            {
                Ok(_) => sweep.auto_closed += 1,
                // Confirmed, reopened or closed by someone else meanwhile.
                Err(
                    Error::Aborted(_)
                    | Error::FailedPrecondition(_)
                    | Error::InvalidArgument { .. },
                ) => {}
                // One issue that cannot be closed is logged and tried again at the next sweep.
                Err(e) => tracing::warn!(issue = %mv_id, error = %e, "auto-close failed"),
            }
        }
        if sweep != Sweep::default() {
            self.heads.written();
        }
        Ok(sweep)
    }
}
