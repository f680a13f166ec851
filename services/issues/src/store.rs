//! The issues service's storage: one SQL dialect for SQLite and PostgreSQL
//! (see `linli_core::db`). Each move is one transaction: a guarded update on
//! the expected version, a timeline event with the community's next stream
//! seq, and an audit record. Code holding a transaction never asks the pool
//! for another connection (SQLite pools have one).
use std::sync::Arc;

use linli_core::feed::Heads;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use linli_core::db::{fetch_by_id, text_col};
use linli_core::time::{Micros, opt_timestamp, to_timestamp};
use linli_core::{Actor, Db, Error, Result, new_id};
use linli_proto::issues::v1 as pb;

use crate::domain::{
    self, Attachment, Category, Claimant, DeadlinePolicy, EventKind, IssueState, PhotoPhase,
    Source, ThreeMost,
};

#[derive(Clone)]
pub struct Store {
    pub db: Db,
    pub policy: Arc<DeadlinePolicy>,
    /// Where each community's events stand, for the watchers: read at once
    /// when this replica writes an event, and polled for other replicas'.
    pub heads: Heads,
    /// The local time zone, for the times written into notes.
    pub utc_offset: chrono::FixedOffset,
    /// How reports reach the database: alone, or together under load.
    pub reports: crate::intake::Reports,
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
    pub reporter_contact: Option<Contact>,
}

/// How to call back whoever reported an issue through an app.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    pub name: String,
    pub phone: String,
    pub email: String,
}

impl Contact {
    /// The stored form: '' for none.
    pub(crate) fn to_db(contact: Option<&Contact>) -> String {
        contact.map_or_else(String::new, |c| {
            serde_json::to_string(c).expect("plain strings serialize")
        })
    }

    fn from_db(s: &str) -> Option<Contact> {
        serde_json::from_str(s).ok()
    }

    /// Whole, for those who call back.
    pub fn to_proto(&self) -> pb::ReporterContact {
        pb::ReporterContact {
            name: self.name.clone(),
            phone: self.phone.clone(),
            email: self.email.clone(),
        }
    }

    /// Masked, for everyone else.
    pub fn to_masked_proto(&self) -> pb::ReporterContact {
        use linli_core::mask::{mask_email, mask_name, mask_phone};
        pb::ReporterContact {
            name: mask_name(&self.name),
            phone: mask_phone(&self.phone),
            email: mask_email(&self.email),
        }
    }
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
    pub reporter_contact: Option<Contact>,
    /// The resolution deadline first given; a reopen moves only the working one.
    pub original_resolution_due_at: Micros,
    pub domain: domain::Issue,
}

/// The columns an issue is read with: those it is written with, and its first deadline.
pub(crate) const ISSUE_COLS: &str = "community_id, id, compound_id, building_id, household_id, title, description, category, three_most, \
     location_text, latitude, longitude, source, state, claim_cadre_id, claim_unit_id, claim_participants, claimed_at, \
     first_claimed_at, reported_at, response_due_at, resolution_due_at, responded_at, resolved_at, closed_at, rating, \
     rating_comment, duplicate_of, reject_reason, reopen_count, attachments_json, last_event_at, version, reporter_contact, \
     COALESCE(first_resolution_due_at, resolution_due_at) AS original_resolution_due_at";
/// The columns an issue is written with, in the order of the INSERT's values.
pub(crate) const ISSUE_INSERT_COLS: &str = "community_id, id, compound_id, building_id, household_id, title, description, category, three_most, \
     location_text, latitude, longitude, source, state, claim_cadre_id, claim_unit_id, claim_participants, claimed_at, \
     first_claimed_at, reported_at, response_due_at, resolution_due_at, responded_at, resolved_at, closed_at, rating, \
     rating_comment, duplicate_of, reject_reason, reopen_count, attachments_json, last_event_at, version, reporter_contact";
pub(crate) const EVENT_COLS: &str = "community_id, seq, id, issue_id, at, actor, kind, from_state, to_state, note, attachments_json";

pub(crate) fn attachments_to_json(list: &[Attachment]) -> String {
    serde_json::Value::Array(
        list.iter().map(|a| json!({ "url": a.url, "sha256": a.sha256, "mime_type": a.mime_type, "phase": a.phase.as_str() })).collect(),
    )
    .to_string()
}

pub(crate) fn attachments_from_json(s: &str) -> Vec<Attachment> {
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

pub(crate) fn participants_to_db(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(",{},", ids.join(","))
    }
}

pub(crate) fn record_from_row(row: &AnyRow) -> Result<IssueRecord> {
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
        reporter_contact: Contact::from_db(&row.try_get::<String, _>("reporter_contact")?),
        original_resolution_due_at: row.try_get("original_resolution_due_at")?,
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
    /// NOT_FOUND unless the caller may see this issue: it is in their community
    /// and, for a resident, their household's or no household's.
    pub(crate) fn check_visible(&self, actor: &Actor) -> Result<()> {
        actor.check_community("issue", &self.id, &self.community_id)?;
        if !self.household_id.is_empty() && actor.check_household(&self.household_id).is_err() {
            return Err(Error::not_found("issue", &self.id));
        }
        Ok(())
    }

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
            // Whole only where a caller who calls back asks for it (GetIssue).
            reporter_contact: self.reporter_contact.as_ref().map(Contact::to_masked_proto),
        }
    }

    pub(crate) fn audit_json(&self) -> serde_json::Value {
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

pub(crate) fn event_from_row(row: &AnyRow) -> Result<pb::IssueEvent> {
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
pub(crate) struct NewEvent<'a> {
    pub(crate) issue: &'a IssueRecord,
    pub(crate) at: Micros,
    pub(crate) kind: EventKind,
    pub(crate) from: Option<IssueState>,
    pub(crate) to: Option<IssueState>,
    pub(crate) note: &'a str,
    pub(crate) attachments: &'a [Attachment],
}

/// Moves a community's running count of resolved issues (`issue_counts`,
/// which its summary reads) by `delta`, in the caller's transaction. Taken
/// after the community's event head, as every writer does, so the two row
/// locks are always taken in the same order.
pub(crate) async fn count_resolved(
    conn: &mut AnyConnection,
    community_id: &str,
    delta: i64,
) -> Result<()> {
    if delta != 0 {
        sqlx::query(
            "INSERT INTO issue_counts (community_id, resolved) VALUES ($1, $2) \
             ON CONFLICT (community_id) DO UPDATE SET resolved = issue_counts.resolved + excluded.resolved",
        )
        .bind(community_id)
        .bind(delta)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(crate) async fn append_event(
    conn: &mut AnyConnection,
    actor: &Actor,
    e: NewEvent<'_>,
) -> Result<pb::IssueEvent> {
    let mut events = append_events(conn, vec![(actor, e)]).await?;
    Ok(events.remove(0))
}

/// Appends events to their issues' timelines and their communities' streams,
/// in the order given within each community; they come back in the order of
/// `events`. The communities' heads are moved on together, once for all of
/// their events (a head's row lock orders one community's events, so seqs
/// are gapless and in commit order; see `linli_core::db::advance_heads`), and
/// the events are written in one statement.
pub(crate) async fn append_events(
    conn: &mut AnyConnection,
    events: Vec<(&Actor, NewEvent<'_>)>,
) -> Result<Vec<pb::IssueEvent>> {
    let mut by_community = std::collections::BTreeMap::<&str, Vec<usize>>::new();
    for (i, (_, e)) in events.iter().enumerate() {
        by_community
            .entry(e.issue.community_id.as_str())
            .or_default()
            .push(i);
    }
    let counts = by_community
        .iter()
        .map(|(community, indexes)| (*community, indexes.len() as i64))
        .collect();
    let heads = linli_core::db::advance_heads(
        conn,
        "event_heads",
        "seq",
        "INSERT INTO event_heads (community_id, seq) VALUES ($1, 0) ON CONFLICT (community_id) DO NOTHING",
        &counts,
    )
    .await?;
    let mut seqs = vec![0; events.len()];
    for (community, indexes) in by_community {
        let last: i64 = heads[community].try_get("seq")?;
        for (seq, i) in (last - indexes.len() as i64 + 1..).zip(indexes) {
            seqs[i] = seq;
        }
    }
    let mut rows = linli_core::db::Values::default();
    let mut out = Vec::with_capacity(events.len());
    for ((actor, e), seq) in events.iter().zip(seqs) {
        let id = new_id();
        rows.bind(e.issue.community_id.clone())?
            .bind(seq)?
            .bind(id.clone())?
            .bind(e.issue.id.clone())?
            .bind(e.at)?
            .bind(actor.id.clone())?
            .bind(e.kind.as_str())?
            .bind(e.from.map_or("", IssueState::as_str))?
            .bind(e.to.map_or("", IssueState::as_str))?
            .bind(e.note.to_owned())?
            .bind(attachments_to_json(e.attachments))?
            .row();
        out.push(pb::IssueEvent {
            id,
            issue_id: e.issue.id.clone(),
            community_id: e.issue.community_id.clone(),
            seq,
            at: Some(to_timestamp(e.at)),
            actor: actor.id.clone(),
            kind: e.kind.to_proto(),
            from_state: e.from.map_or(0, IssueState::to_proto),
            to_state: e.to.map_or(0, IssueState::to_proto),
            note: e.note.to_owned(),
            attachments: e.attachments.iter().map(attachment_to_proto).collect(),
        });
    }
    rows.insert(
        &mut *conn,
        &format!("INSERT INTO issue_events ({EVENT_COLS})"),
    )
    .await?;
    Ok(out)
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
    /// Only issues still waiting for someone to act.
    pub open_only: bool,
    pub title_contains: String,
    /// A resident's view: only their household's issues and those of no household.
    pub household_id: String,
    /// Only issues this household reported.
    pub reported_by: String,
    /// Reported in [from, before), micros; unbounded where `None`.
    pub reported_from: Option<i64>,
    pub reported_before: Option<i64>,
    pub newest_first: bool,
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
            heads: Heads::in_table(&db, "event_heads"),
            db,
            policy: Arc::new(policy),
            utc_offset: linli_core::time::china_standard_time(),
            reports: crate::intake::Reports::default(),
        }
    }

    /// At most `max` reports are written together in one transaction; 1
    /// writes each alone.
    pub fn with_report_batch(mut self, max: usize) -> Store {
        self.reports = crate::intake::Reports::new(max);
        self
    }

    /// Times in the service's notes are written in this zone.
    pub fn with_utc_offset(mut self, offset: chrono::FixedOffset) -> Store {
        self.utc_offset = offset;
        self
    }

    pub(crate) async fn load(&self, conn: &mut AnyConnection, id: &str) -> Result<IssueRecord> {
        fetch_by_id(
            conn,
            &format!("SELECT {ISSUE_COLS} FROM issues WHERE id = $1"),
            id,
            "issue",
            record_from_row,
        )
        .await
    }

    pub(crate) async fn watchers(
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

    pub(crate) async fn to_proto(
        &self,
        conn: &mut AnyConnection,
        r: &IssueRecord,
    ) -> Result<pb::Issue> {
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
}
