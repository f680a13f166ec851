//! The issues service's storage: one SQL dialect for SQLite and PostgreSQL
//! (see `linli_core::db`). Each move is one transaction: a guarded update on
//! the expected version, a timeline event with the community's next stream
//! seq, and an audit record. Code holding a transaction never asks the pool
//! for another connection (SQLite pools have one).
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;

use linli_core::audit::{self, Change};
use linli_core::db::{fetch_by_id, text_col};
use linli_core::idempotency::{self, Claim as KeyClaim, IdemKey};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{Micros, now_micros, opt_timestamp, to_timestamp};
use linli_core::{Actor, Db, Error, Result, new_id};
use linli_proto::issues::v1 as pb;

use crate::domain::{
    self, Action, Attachment, Category, Claimant, DeadlinePolicy, EventKind, IssueState,
    PhotoPhase, Source, ThreeMost,
};

#[derive(Clone)]
pub struct Store {
    pub db: Db,
    pub policy: Arc<DeadlinePolicy>,
    /// Wakes this replica's watchers when it writes an event; watchers also
    /// poll, for events other replicas write.
    pub events_written: Arc<Notify>,
}

pub struct NewIssue {
    pub community_id: String,
    pub compound_id: String,
    pub building_id: String,
    pub household_id: String,
    pub title: String,
    pub description: String,
    pub category: Category,
    pub three_most: Option<ThreeMost>,
    pub location_text: String,
    pub latitude: f64,
    pub longitude: f64,
    pub source: Source,
    pub attachments: Vec<Attachment>,
    pub reported_at: Micros,
}

/// A move as requested: which issue, the version read, a note, when.
pub struct Move {
    pub issue_id: String,
    pub expected_version: i64,
    pub note: String,
    pub at: Option<Micros>,
}

/// An issue as stored.
#[derive(Debug, Clone)]
pub struct IssueRecord {
    pub community_id: String,
    pub id: String,
    pub compound_id: String,
    pub building_id: String,
    pub household_id: String,
    pub title: String,
    pub description: String,
    pub category: Category,
    pub three_most: Option<ThreeMost>,
    pub location_text: String,
    pub latitude: f64,
    pub longitude: f64,
    pub source: Source,
    pub reported_at: Micros,
    pub response_due_at: Micros,
    pub last_event_at: Micros,
    pub version: i64,
    pub domain: domain::Issue,
}

const ISSUE_COLS: &str = "community_id, id, compound_id, building_id, household_id, title, description, category, three_most, \
     location_text, latitude, longitude, source, state, claim_cadre_id, claim_unit_id, claim_participants, claimed_at, \
     first_claimed_at, reported_at, response_due_at, resolution_due_at, responded_at, resolved_at, closed_at, rating, \
     rating_comment, duplicate_of, reject_reason, reopen_count, attachments_json, last_event_at, version";
const EVENT_COLS: &str = "community_id, seq, id, issue_id, at, actor, kind, from_state, to_state, note, attachments_json";

fn attachments_to_json(list: &[Attachment]) -> String {
    serde_json::Value::Array(
        list.iter().map(|a| json!({ "url": a.url, "sha256": a.sha256, "mime_type": a.mime_type, "phase": a.phase.as_str() })).collect(),
    )
    .to_string()
}

fn attachments_from_json(s: &str) -> Vec<Attachment> {
    let items: Vec<serde_json::Value> = serde_json::from_str(s).unwrap_or_default();
    items
        .iter()
        .filter_map(|v| {
            Some(Attachment {
                url: v["url"].as_str()?.to_owned(),
                sha256: v["sha256"].as_str()?.to_owned(),
                mime_type: v["mime_type"].as_str()?.to_owned(),
                phase: PhotoPhase::parse(v["phase"].as_str()?)?,
            })
        })
        .collect()
}

pub fn attachment_to_proto(a: &Attachment) -> pb::Attachment {
    pb::Attachment {
        url: a.url.clone(),
        sha256: a.sha256.clone(),
        mime_type: a.mime_type.clone(),
        phase: a.phase.to_proto(),
    }
}

fn participants_to_db(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(",{},", ids.join(","))
    }
}

fn record_from_row(row: &AnyRow) -> Result<IssueRecord> {
    let three_most: String = row.try_get("three_most")?;
    let cadre: String = row.try_get("claim_cadre_id")?;
    let unit: String = row.try_get("claim_unit_id")?;
    let participants: String = row.try_get("claim_participants")?;
    let claim = (!cadre.is_empty() || !unit.is_empty()).then(|| Claimant {
        cadre_id: Some(cadre).filter(|c| !c.is_empty()),
        unit_id: unit,
        participants: participants
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    });
    Ok(IssueRecord {
        community_id: row.try_get("community_id")?,
        id: row.try_get("id")?,
        compound_id: row.try_get("compound_id")?,
        building_id: row.try_get("building_id")?,
        household_id: row.try_get("household_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        category: text_col(row, "category", Category::parse)?,
        three_most: ThreeMost::parse(&three_most),
        location_text: row.try_get("location_text")?,
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        source: text_col(row, "source", Source::parse)?,
        reported_at: row.try_get("reported_at")?,
        response_due_at: row.try_get("response_due_at")?,
        last_event_at: row.try_get("last_event_at")?,
        version: row.try_get("version")?,
        domain: domain::Issue {
            state: text_col(row, "state", IssueState::parse)?,
            claim,
            claimed_at: row.try_get("claimed_at")?,
            first_claimed_at: row.try_get("first_claimed_at")?,
            responded_at: row.try_get("responded_at")?,
            resolved_at: row.try_get("resolved_at")?,
            closed_at: row.try_get("closed_at")?,
            resolution_due_at: row.try_get("resolution_due_at")?,
            rating: row.try_get::<Option<i64>, _>("rating")?.map(|r| r as i32),
            rating_comment: row.try_get("rating_comment")?,
            duplicate_of: row.try_get("duplicate_of")?,
            reject_reason: row.try_get("reject_reason")?,
            reopen_count: row.try_get::<i64, _>("reopen_count")? as i32,
            attachments: attachments_from_json(&row.try_get::<String, _>("attachments_json")?),
        },
    })
}

impl IssueRecord {
    pub fn to_proto(&self, watchers: Vec<String>) -> pb::Issue {
        let d = &self.domain;
        pb::Issue {
            id: self.id.clone(),
            community_id: self.community_id.clone(),
            compound_id: self.compound_id.clone(),
            building_id: self.building_id.clone(),
            household_id: self.household_id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            category: self.category.to_proto(),
            three_most: self.three_most.map_or(0, ThreeMost::to_proto),
            location: Some(pb::Location {
                text: self.location_text.clone(),
                latitude: self.latitude,
                longitude: self.longitude,
            }),
            source: self.source.to_proto(),
            state: d.state.to_proto(),
            claim: d.claim.as_ref().map(|c| pb::Claim {
                cadre_id: c.cadre_id.clone().unwrap_or_default(),
                unit_id: c.unit_id.clone(),
                participant_cadre_ids: c.participants.clone(),
                claimed_at: opt_timestamp(d.claimed_at),
            }),
            reported_at: Some(to_timestamp(self.reported_at)),
            response_due_at: Some(to_timestamp(self.response_due_at)),
            resolution_due_at: Some(to_timestamp(d.resolution_due_at)),
            responded_at: opt_timestamp(d.responded_at),
            resolved_at: opt_timestamp(d.resolved_at),
            closed_at: opt_timestamp(d.closed_at),
            rating: d.rating.unwrap_or(0),
            rating_comment: d.rating_comment.clone(),
            duplicate_of: d.duplicate_of.clone(),
            reject_reason: d.reject_reason.clone(),
            reopen_count: d.reopen_count,
            attachments: d.attachments.iter().map(attachment_to_proto).collect(),
            watcher_household_ids: watchers,
            version: self.version,
        }
    }

    fn audit_json(&self) -> serde_json::Value {
        let d = &self.domain;
        json!({
            "id": self.id, "title": self.title, "category": self.category.as_str(),
            "three_most": self.three_most.map(ThreeMost::as_str), "state": d.state.as_str(),
            "claim": d.claim.as_ref().map(|c| json!({ "cadre_id": c.cadre_id, "unit_id": c.unit_id, "participants": c.participants })),
            "resolution_due_at": d.resolution_due_at, "rating": d.rating, "duplicate_of": d.duplicate_of,
            "reject_reason": d.reject_reason, "reopen_count": d.reopen_count, "version": self.version,
        })
    }
}

fn event_from_row(row: &AnyRow) -> Result<pb::IssueEvent> {
    let state = |col: &str| -> Result<i32> {
        let s: String = row.try_get(col)?;
        Ok(IssueState::parse(&s).map_or(0, IssueState::to_proto))
    };
    Ok(pb::IssueEvent {
        id: row.try_get("id")?,
        issue_id: row.try_get("issue_id")?,
        community_id: row.try_get("community_id")?,
        seq: row.try_get("seq")?,
        at: Some(to_timestamp(row.try_get("at")?)),
        actor: row.try_get("actor")?,
        kind: text_col(row, "kind", EventKind::parse)?.to_proto(),
        from_state: state("from_state")?,
        to_state: state("to_state")?,
        note: row.try_get("note")?,
        attachments: attachments_from_json(&row.try_get::<String, _>("attachments_json")?)
            .iter()
            .map(attachment_to_proto)
            .collect(),
    })
}

/// One event to append to an issue's timeline and its community's stream.
struct NewEvent<'a> {
    issue: &'a IssueRecord,
    at: Micros,
    kind: EventKind,
    from: Option<IssueState>,
    to: Option<IssueState>,
    note: &'a str,
    attachments: &'a [Attachment],
}

async fn append_event(
    conn: &mut AnyConnection,
    actor: &Actor,
    e: NewEvent<'_>,
) -> Result<pb::IssueEvent> {
    let community = &e.issue.community_id;
    sqlx::query("INSERT INTO event_heads (community_id, seq) VALUES ($1, 0) ON CONFLICT (community_id) DO NOTHING")
        .bind(community)
        .execute(&mut *conn)
        .await?;
    // The head's row lock orders one community's events, so seqs are gapless and in commit order.
    let (seq,): (i64,) = sqlx::query_as(
        "UPDATE event_heads SET seq = seq + 1 WHERE community_id = $1 RETURNING seq",
    )
    .bind(community)
    .fetch_one(&mut *conn)
    .await?;
    let id = new_id();
    sqlx::query(&format!("INSERT INTO issue_events ({EVENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"))
        .bind(community)
        .bind(seq)
        .bind(&id)
        .bind(&e.issue.id)
        .bind(e.at)
        .bind(&actor.id)
        .bind(e.kind.as_str())
        .bind(e.from.map_or("", IssueState::as_str))
        .bind(e.to.map_or("", IssueState::as_str))
        .bind(e.note)
        .bind(attachments_to_json(e.attachments))
        .execute(&mut *conn)
        .await?;
    Ok(pb::IssueEvent {
        id,
        issue_id: e.issue.id.clone(),
        community_id: community.clone(),
        seq,
        at: Some(to_timestamp(e.at)),
        actor: actor.id.clone(),
        kind: e.kind.to_proto(),
        from_state: e.from.map_or(0, IssueState::to_proto),
        to_state: e.to.map_or(0, IssueState::to_proto),
        note: e.note.to_owned(),
        attachments: e.attachments.iter().map(attachment_to_proto).collect(),
    })
}

/// Filters for listing issues.
#[derive(Default)]
pub struct IssueFilter {
    pub community_id: String,
    pub state: Option<IssueState>,
    pub category: Option<Category>,
    pub three_most: Option<ThreeMost>,
    pub claimant_id: String,
    pub overdue_only: bool,
    pub title_contains: String,
    /// A resident's view: only their household's issues and those of no household.
    pub household_id: String,
}

/// What one supervision sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub escalated: i32,
    pub auto_closed: i32,
}

impl Store {
    pub fn new(db: Db, policy: DeadlinePolicy) -> Store {
        Store {
            db,
            policy: Arc::new(policy),
            events_written: Arc::new(Notify::new()),
        }
    }

    async fn load(&self, conn: &mut AnyConnection, id: &str) -> Result<IssueRecord> {
        fetch_by_id(
            conn,
            &format!("SELECT {ISSUE_COLS} FROM issues WHERE id = $1"),
            id,
            "issue",
            record_from_row,
        )
        .await
    }

    async fn watchers(
        &self,
        conn: &mut AnyConnection,
        community_id: &str,
        issue_id: &str,
    ) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT household_id FROM issue_watchers WHERE community_id = $1 AND issue_id = $2 ORDER BY household_id")
            .bind(community_id)
            .bind(issue_id)
            .fetch_all(&mut *conn)
            .await?;
        Ok(rows.into_iter().map(|(h,)| h).collect())
    }

    async fn to_proto(&self, conn: &mut AnyConnection, r: &IssueRecord) -> Result<pb::Issue> {
        let watchers = self.watchers(conn, &r.community_id, &r.id).await?;
        Ok(r.to_proto(watchers))
    }

    pub async fn record(&self, id: &str) -> Result<IssueRecord> {
        let mut conn = self.db.pool.acquire().await?;
        self.load(&mut conn, id).await
    }

    pub async fn get(&self, id: &str) -> Result<pb::Issue> {
        let mut conn = self.db.pool.acquire().await?;
        let r = self.load(&mut conn, id).await?;
        self.to_proto(&mut conn, &r).await
    }

    pub async fn report(&self, actor: &Actor, idem: &IdemKey, new: NewIssue) -> Result<pb::Issue> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let KeyClaim::Replay(existing) =
            idempotency::claim(&mut tx, "issues.issue", &idem.key, &idem.fingerprint, &id).await?
        {
            let r = self.load(&mut tx, &existing).await?;
            let issue = self.to_proto(&mut tx, &r).await?;
            tx.commit().await?;
            return Ok(issue);
        }
        let response_due = self.policy.response_due(new.reported_at, new.three_most);
        let resolution_due =
            self.policy
                .resolution_due(new.reported_at, new.category, new.three_most);
        sqlx::query(&format!(
            "INSERT INTO issues ({ISSUE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'reported', '', '', '', NULL, NULL, \
             $14, $15, $16, NULL, NULL, NULL, NULL, '', '', '', 0, $17, $14, 1)"
        ))
        .bind(&new.community_id)
        .bind(&id)
        .bind(&new.compound_id)
        .bind(&new.building_id)
        .bind(&new.household_id)
        .bind(&new.title)
        .bind(&new.description)
        .bind(new.category.as_str())
        .bind(new.three_most.map_or("", ThreeMost::as_str))
        .bind(&new.location_text)
        .bind(new.latitude)
        .bind(new.longitude)
        .bind(new.source.as_str())
        .bind(new.reported_at)
        .bind(response_due)
        .bind(resolution_due)
        .bind(attachments_to_json(&new.attachments))
        .execute(&mut *tx)
        .await?;
        if !new.household_id.is_empty() {
            sqlx::query("INSERT INTO issue_watchers (community_id, issue_id, household_id) VALUES ($1, $2, $3)")
                .bind(&new.community_id)
                .bind(&id)
                .bind(&new.household_id)
                .execute(&mut *tx)
                .await?;
        }
        let r = self.load(&mut tx, &id).await?;
        append_event(
            &mut tx,
            actor,
            NewEvent {
                issue: &r,
                at: new.reported_at,
                kind: EventKind::Reported,
                from: None,
                to: Some(IssueState::Reported),
                note: "",
                attachments: &new.attachments,
            },
        )
        .await?;
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &r.community_id,
                "issue.report",
                "issue",
                &id,
                r.audit_json(),
            ),
        )
        .await?;
        let issue = self.to_proto(&mut tx, &r).await?;
        tx.commit().await?;
        self.events_written.notify_waiters();
        Ok(issue)
    }

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
        let kind = domain::apply(&mut after.domain, action, at)?;
        after.version += 1;
        after.last_event_at = at;
        let d = &after.domain;
        let claim = d.claim.clone().unwrap_or_default();
        let updated = sqlx::query(
            "UPDATE issues SET state = $3, claim_cadre_id = $4, claim_unit_id = $5, claim_participants = $6, claimed_at = $7, \
             first_claimed_at = $8, responded_at = $9, resolved_at = $10, closed_at = $11, resolution_due_at = $12, rating = $13, \
             rating_comment = $14, duplicate_of = $15, reject_reason = $16, reopen_count = $17, attachments_json = $18, \
             last_event_at = $19, version = version + 1 WHERE community_id = $1 AND id = $2 AND version = $20",
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
        append_event(
            &mut tx,
            actor,
            NewEvent {
                issue: &after,
                at,
                kind,
                from: Some(before.domain.state),
                to: Some(after.domain.state),
                note: &note,
                attachments: &attachments,
            },
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
        self.events_written.notify_waiters();
        Ok(issue)
    }

    /// A duplicate's watchers follow the original from now on.
    async fn join_watchers(
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

    pub async fn add_note(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        issue_id: &str,
        note: &str,
    ) -> Result<pb::IssueEvent> {
        let mut tx = self.db.begin_write().await?;
        let issue = self.load(&mut tx, issue_id).await?;
        // The event id is chosen here so that a retry finds it by the key.
        let mut event = match idempotency::claim(
            &mut tx,
            "issues.note",
            &idem.key,
            &idem.fingerprint,
            "pending",
        )
        .await?
        {
            KeyClaim::Replay(existing) => {
                let row = sqlx::query(&format!(
                    "SELECT {EVENT_COLS} FROM issue_events WHERE community_id = $1 AND id = $2"
                ))
                .bind(&issue.community_id)
                .bind(&existing)
                .fetch_one(&mut *tx)
                .await?;
                let event = event_from_row(&row)?;
                tx.commit().await?;
                return Ok(event);
            }
            KeyClaim::New => {
                let at = now_micros().max(issue.last_event_at);
                append_event(
                    &mut tx,
                    actor,
                    NewEvent {
                        issue: &issue,
                        at,
                        kind: EventKind::SupervisionNote,
                        from: None,
                        to: None,
                        note,
                        attachments: &[],
                    },
                )
                .await?
            }
        };
        idempotency::made(&mut tx, "issues.note", &idem.key, &event.id).await?;
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &issue.community_id,
                "issue.supervision_note",
                "issue",
                &issue.id,
                json!({ "event_id": event.id, "note": note }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.events_written.notify_waiters();
        event.actor = actor.id.clone();
        Ok(event)
    }

    pub async fn list(
        &self,
        filter: &IssueFilter,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Issue>, String)> {
        let escaped = filter
            .title_contains
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let title = if escaped.is_empty() {
            String::new()
        } else {
            format!("%{}%", escaped.to_lowercase())
        };
        let claimant = if filter.claimant_id.is_empty() {
            String::new()
        } else {
            format!("%,{},%", filter.claimant_id)
        };
        let now = now_micros();
        let sql = format!(
            "SELECT {ISSUE_COLS} FROM issues WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR state = $2) AND ($3 = '' OR category = $3) \
             AND ($4 = '' OR three_most = $4) AND ($5 = '' OR claim_cadre_id = $5 OR claim_unit_id = $5 OR claim_participants LIKE $6) \
             AND ($7 = 0 OR (state = 'reported' AND response_due_at < $8) OR (state IN ('reported', 'acknowledged', 'claimed', 'in_progress', 'reopened') AND resolution_due_at < $8)) \
             AND ($9 = '' OR LOWER(title) LIKE $9 ESCAPE '\\') AND ($10 = '' OR household_id = $10 OR household_id = '') AND id > $11 ORDER BY id LIMIT $12"
        );
        let binds = vec![
            filter.community_id.as_str().into(),
            filter.state.map_or("", IssueState::as_str).into(),
            filter.category.map_or("", Category::as_str).into(),
            filter.three_most.map_or("", ThreeMost::as_str).into(),
            filter.claimant_id.as_str().into(),
            claimant.as_str().into(),
            i64::from(filter.overdue_only).into(),
            now.into(),
            title.as_str().into(),
            filter.household_id.as_str().into(),
        ];
        let (records, next) =
            fetch_page(&self.db, &sql, binds, page, record_from_row, |r| &r.id).await?;
        Ok((self.with_watchers(&records).await?, next))
    }

    /// Issues as sent, with their watchers read in one query for the whole list.
    async fn with_watchers(&self, records: &[IssueRecord]) -> Result<Vec<pb::Issue>> {
        let mut watchers: HashMap<String, Vec<String>> = HashMap::new();
        // Bounded batches keep the IN list well within both databases' placeholder limits.
        for chunk in records.chunks(500) {
            let placeholders = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT issue_id, household_id FROM issue_watchers WHERE issue_id IN ({placeholders}) ORDER BY household_id"
            );
            let mut q = sqlx::query_as::<_, (String, String)>(&sql);
            for r in chunk {
                q = q.bind(&r.id);
            }
            for (issue, household) in q.fetch_all(&self.db.pool).await? {
                watchers.entry(issue).or_default().push(household);
            }
        }
        Ok(records
            .iter()
            .map(|r| r.to_proto(watchers.remove(&r.id).unwrap_or_default()))
            .collect())
    }

    async fn open_records(&self, community_id: &str) -> Result<Vec<IssueRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ISSUE_COLS} FROM issues WHERE ($1 = '' OR community_id = $1) AND state IN ('reported', 'acknowledged', 'claimed', 'in_progress', 'reopened') ORDER BY id"
        ))
        .bind(community_id)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    pub async fn overdue(
        &self,
        community_id: &str,
        as_of: Micros,
    ) -> Result<Vec<pb::OverdueIssue>> {
        let mut late = Vec::new();
        for r in self.open_records(community_id).await? {
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
        let records: Vec<IssueRecord> = late.iter().map(|(r, _)| r.clone()).collect();
        let issues = self.with_watchers(&records).await?;
        let mut out: Vec<pb::OverdueIssue> = issues
            .into_iter()
            .zip(late)
            .map(|(issue, (_, (kind, due)))| pb::OverdueIssue {
                issue: Some(issue),
                deadline: kind.to_proto(),
                due_at: Some(to_timestamp(due)),
                overdue_seconds: (as_of - due) / 1_000_000,
            })
            .collect();
        out.sort_by_key(|o| std::cmp::Reverse(o.overdue_seconds));
        Ok(out)
    }

    /// Escalates every missed deadline once, and closes resolutions nobody
    /// confirmed in time. Several replicas may run this at once: a breach's
    /// row in `escalations` is claimed by exactly one of them, and auto-close
    /// is a guarded move on the version.
    pub async fn run_supervision(&self, as_of: Micros) -> Result<Sweep> {
        let system = Actor::local("supervision");
        let mut sweep = Sweep::default();
        for r in self.open_records("").await? {
            for (kind, due) in domain::breaches(
                r.domain.state,
                r.response_due_at,
                r.domain.resolution_due_at,
                as_of,
            ) {
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
                    linli_core::time::to_datetime(due).format("%Y-%m-%d %H:%M UTC")
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
                Err(e) => return Err(e),
            }
        }
        if sweep != Sweep::default() {
            self.events_written.notify_waiters();
        }
        Ok(sweep)
    }

    pub async fn timeline(&self, issue_id: &str) -> Result<Vec<pb::IssueEvent>> {
        let mut conn = self.db.pool.acquire().await?;
        let issue = self.load(&mut conn, issue_id).await?;
        let rows = sqlx::query(&format!("SELECT {EVENT_COLS} FROM issue_events WHERE community_id = $1 AND issue_id = $2 ORDER BY seq"))
            .bind(&issue.community_id)
            .bind(issue_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// A community's events after `after_seq`, in order.
    pub async fn events_after(
        &self,
        community_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<pb::IssueEvent>> {
        let rows = sqlx::query(&format!("SELECT {EVENT_COLS} FROM issue_events WHERE community_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"))
            .bind(community_id)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Issues reported in [from, to), in a community, claimed by a unit, or county-wide.
    pub async fn records_in(
        &self,
        community_id: &str,
        unit_id: &str,
        from: Micros,
        to: Micros,
    ) -> Result<Vec<IssueRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ISSUE_COLS} FROM issues WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR claim_unit_id = $2) AND reported_at >= $3 AND reported_at < $4"
        ))
        .bind(community_id)
        .bind(unit_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    pub async fn summary(&self, community_id: &str) -> Result<pb::GetCommunitySummaryResponse> {
        let now = now_micros();
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM issues WHERE community_id = $1 GROUP BY state",
        )
        .bind(community_id)
        .fetch_all(&self.db.pool)
        .await?;
        let by: HashMap<String, i64> = counts.into_iter().collect();
        let count = |states: &[IssueState]| {
            states
                .iter()
                .map(|s| by.get(s.as_str()).copied().unwrap_or(0))
                .sum::<i64>() as i32
        };
        let (overdue,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM issues WHERE community_id = $1 AND ((state = 'reported' AND response_due_at < $2) \
             OR (state IN ('reported', 'acknowledged', 'claimed', 'in_progress', 'reopened') AND resolution_due_at < $2))",
        )
        .bind(community_id)
        .bind(now)
        .fetch_one(&self.db.pool)
        .await?;
        use IssueState::*;
        Ok(pb::GetCommunitySummaryResponse {
            community_id: community_id.to_owned(),
            open_issues: count(&[Reported, Acknowledged, Claimed, InProgress, Reopened]),
            overdue_issues: overdue as i32,
            resolved_issues: count(&[Resolved, Verified, ClosedUnconfirmed]),
        })
    }
}

/// Statistics over a set of issues, as of `as_of` (see the proto for the definitions).
pub fn statistics(records: &[IssueRecord], as_of: Micros) -> pb::GetStatisticsResponse {
    let mut by_state: BTreeMap<&str, i32> = BTreeMap::new();
    let mut by_category: BTreeMap<&str, i32> = BTreeMap::new();
    let mut by_three_most: BTreeMap<&str, i32> = BTreeMap::new();
    let (mut resp_num, mut resp_den, mut res_num, mut res_den, mut sat_num, mut sat_den) =
        (0, 0, 0, 0, 0, 0);
    let mut to_claim = Vec::new();
    let mut to_resolve = Vec::new();
    let mut out = pb::GetStatisticsResponse {
        total: records.len() as i32,
        ..Default::default()
    };
    for r in records {
        let d = &r.domain;
        *by_state.entry(d.state.as_str()).or_default() += 1;
        *by_category.entry(r.category.as_str()).or_default() += 1;
        *by_three_most
            .entry(r.three_most.map_or("none", ThreeMost::as_str))
            .or_default() += 1;
        match d.state {
            IssueState::Verified => out.verified += 1,
            IssueState::ClosedUnconfirmed => out.closed_unconfirmed += 1,
            _ => {}
        }
        if d.state.is_dismissed() {
            continue;
        }
        if d.responded_at.is_some() || as_of > r.response_due_at {
            resp_den += 1;
            if d.responded_at.is_some_and(|t| t <= r.response_due_at) {
                resp_num += 1;
            }
        }
        res_den += 1;
        if d.state.is_resolved() {
            res_num += 1;
        }
        if let Some(rating) = d.rating {
            sat_den += 1;
            if rating >= 4 {
                sat_num += 1;
            }
        }
        if let Some(t) = d.first_claimed_at {
            to_claim.push((t - r.reported_at) / 1_000_000);
        }
        if let (Some(t), true) = (d.resolved_at, d.state.is_resolved()) {
            to_resolve.push((t - r.reported_at) / 1_000_000);
        }
    }
    let rate = |n: i32, d: i32| pb::Rate {
        numerator: n,
        denominator: d,
        value: if d == 0 {
            0.0
        } else {
            f64::from(n) / f64::from(d)
        },
    };
    let durations = |mut v: Vec<i64>| {
        v.sort_unstable();
        pb::Durations {
            samples: v.len() as i32,
            median_seconds: domain::percentile(&v, 0.5).unwrap_or(0),
            p90_seconds: domain::percentile(&v, 0.9).unwrap_or(0),
        }
    };
    let counts = |m: BTreeMap<&str, i32>| {
        m.into_iter()
            .map(|(k, count)| pb::Count {
                key: k.to_owned(),
                count,
            })
            .collect()
    };
    out.by_state = counts(by_state);
    out.by_category = counts(by_category);
    out.by_three_most = counts(by_three_most);
    out.response_rate = Some(rate(resp_num, resp_den));
    out.resolution_rate = Some(rate(res_num, res_den));
    out.satisfaction_rate = Some(rate(sat_num, sat_den));
    out.time_to_claim = Some(durations(to_claim));
    out.time_to_resolve = Some(durations(to_resolve));
    out
}

/// Communities or units, best first by the Wilson lower bound of their on-time resolution rate.
pub fn ranking(records: &[IssueRecord], by_unit: bool) -> Vec<pb::RankingEntry> {
    let mut tally: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for r in records {
        if r.domain.state.is_dismissed() {
            continue;
        }
        let key = if by_unit {
            match &r.domain.claim {
                Some(c) if !c.unit_id.is_empty() => c.unit_id.as_str(),
                _ => continue,
            }
        } else {
            r.community_id.as_str()
        };
        let t = tally.entry(key).or_default();
        t.1 += 1;
        if r.domain.state.is_resolved()
            && r.domain
                .resolved_at
                .is_some_and(|at| at <= r.domain.resolution_due_at)
        {
            t.0 += 1;
        }
    }
    let mut entries: Vec<pb::RankingEntry> = tally
        .into_iter()
        .map(|(id, (k, n))| pb::RankingEntry {
            id: id.to_owned(),
            issues: n as i32,
            resolved_on_time: k as i32,
            raw_rate: f64::from(k) / f64::from(n),
            score: domain::wilson_lower_bound(k, n),
        })
        .collect();
    entries.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.issues.cmp(&a.issues))
            .then(a.id.cmp(&b.id))
    });
    entries
}
