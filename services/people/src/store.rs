//! The people service's storage: one SQL implementation that SQLite and
//! PostgreSQL both run (see `linli_core::db`). Every mutation runs in one
//! transaction with its idempotency key and its audit record, so a failure
//! leaves nothing half-written.
//!
//! SQLite pools hold one connection: code that holds a transaction must not
//! ask the pool for a second connection, so helpers take `&mut AnyConnection`.
use std::sync::Arc;

use chrono::FixedOffset;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use linli_core::db::text_col;
use linli_core::time::{Micros, now_micros, opt_timestamp, to_timestamp};
use linli_core::{Db, Error, Result, Role};
use linli_proto::people::v1 as pb;

use crate::domain::{self, Care, CarePolicy, PairingRole, PlaceKind, RegistrationState, Tag};

pub use linli_core::idempotency::IdemKey;

#[derive(Clone)]
pub struct Store {
    pub db: Db,
    pub(crate) policy: Arc<CarePolicy>,
    pub(crate) utc_offset: FixedOffset,
}

// Validated inputs, made from requests in `service.rs`.
pub struct NewPlace {
    pub kind: PlaceKind,
    pub parent_id: Option<String>,
    pub name: String,
    pub code: String,
}
pub struct NewHousehold {
    pub community_id: String,
    pub compound_id: Option<String>,
    pub building_id: Option<String>,
    pub address: String,
    pub external_ref: String,
}
pub struct NewResident {
    pub household_id: String,
    pub name: String,
    pub gender: domain::Gender,
    pub birth_date: chrono::NaiveDate,
    pub phone: Option<domain::Phone>,
    pub id_number: Option<domain::IdNumber>,
    pub relation: domain::Relation,
    pub tags: Vec<Tag>,
}
#[derive(Default)]
pub struct ResidentChanges {
    pub phone: Option<Option<domain::Phone>>,
    pub relation: Option<domain::Relation>,
    pub tags: Option<Vec<Tag>>,
}
pub struct NewCadre {
    pub unit_id: String,
    pub name: String,
    pub phone: Option<domain::Phone>,
    pub title: String,
}
pub struct NewPairing {
    pub household_id: String,
    pub role: PairingRole,
    pub cadre_id: Option<String>,
    pub member_name: Option<String>,
    pub member_phone: Option<domain::Phone>,
}
pub struct NewCheckIn {
    pub cadre_id: String,
    pub community_id: String,
    pub at: Micros,
    pub activity: String,
}
pub struct NewVisit {
    pub household_id: String,
    pub cadre_id: String,
    pub at: Micros,
    pub kind: domain::VisitKind,
    pub outcome: domain::VisitOutcome,
    pub note: String,
}
pub struct NewAccount {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub community_id: Option<String>,
    pub cadre_id: Option<String>,
    pub resident_id: Option<String>,
    /// The password was set by someone else: the holder changes it before logging in.
    pub must_change_password: bool,
}

/// A household with everything a profile shows.
pub struct HouseholdProfile {
    pub household: pb::Household,
    pub residents: Vec<pb::Resident>,
    pub care: Care,
    pub pairings: Vec<pb::Pairing>,
}

pub(crate) const PLACE_COLS: &str = "id, kind, parent_id, name, code, community_id, created_at";
pub(crate) const HOUSEHOLD_COLS: &str = "community_id, id, compound_id, building_id, address, external_ref, member_count, care_level, \
     visit_every_days, care_reason, care_since, created_at, version";
pub(crate) const RESIDENT_COLS: &str = "community_id, id, household_id, name, gender, birth_date, phone, id_number, relation, tags, \
     created_at, removed_at, version";
pub(crate) const REGISTRATION_COLS: &str =
    "community_id, id, cadre_id, state, requested_at, activated_at, ended_at, end_reason, version";
pub(crate) const PAIRING_COLS: &str = "community_id, id, household_id, role, cadre_id, member_name, member_phone, started_at, ended_at";
pub(crate) const ACCOUNT_COLS: &str = "id, username, role, community_id, cadre_id, resident_id, created_at, disabled_at, disabled_reason, must_change_password, session_epoch";

pub(crate) fn place_from_row(row: &AnyRow) -> Result<pb::Place> {
    Ok(pb::Place {
        id: row.try_get("id")?,
        kind: text_col(row, "kind", PlaceKind::parse)?.to_proto(),
        parent_id: row.try_get("parent_id")?,
        name: row.try_get("name")?,
        code: row.try_get("code")?,
        community_id: row.try_get("community_id")?,
        created_at: Some(to_timestamp(row.try_get("created_at")?)),
    })
}

pub(crate) fn household_from_row(row: &AnyRow) -> Result<pb::Household> {
    let level: i64 = row.try_get("care_level")?;
    Ok(pb::Household {
        id: row.try_get("id")?,
        community_id: row.try_get("community_id")?,
        compound_id: row.try_get("compound_id")?,
        building_id: row.try_get("building_id")?,
        address: row.try_get("address")?,
        external_ref: row.try_get("external_ref")?,
        member_count: row.try_get::<i64, _>("member_count")? as i32,
        care_level: level as i32,
        visit_every_days: row.try_get::<i64, _>("visit_every_days")? as i32,
        created_at: Some(to_timestamp(row.try_get("created_at")?)),
        version: row.try_get("version")?,
    })
}

pub(crate) fn resident_from_row(row: &AnyRow, today: chrono::NaiveDate) -> Result<pb::Resident> {
    let birth_date: String = row.try_get("birth_date")?;
    let age = chrono::NaiveDate::parse_from_str(&birth_date, "%Y-%m-%d")
        .map(|b| domain::age_on(b, today))
        .unwrap_or(0);
    Ok(pb::Resident {
        id: row.try_get("id")?,
        household_id: row.try_get("household_id")?,
        community_id: row.try_get("community_id")?,
        name: row.try_get("name")?,
        gender: text_col(row, "gender", domain::Gender::parse)?.to_proto(),
        birth_date,
        phone: row.try_get("phone")?,
        id_number: row.try_get("id_number")?,
        relation: text_col(row, "relation", domain::Relation::parse)?.to_proto(),
        // Elderly is derived from the birth date as well as tagged by hand.
        tags: crate::care::MemberFacts {
            age: Some(age),
            tags: domain::tags_from_db(&row.try_get::<String, _>("tags")?),
        }
        .effective_tags()
        .into_iter()
        .map(Tag::to_proto)
        .collect(),
        age,
        removed_at: opt_timestamp(row.try_get("removed_at")?),
        version: row.try_get("version")?,
    })
}

pub(crate) fn registration_from_row(row: &AnyRow) -> Result<pb::Registration> {
    Ok(pb::Registration {
        id: row.try_get("id")?,
        cadre_id: row.try_get("cadre_id")?,
        community_id: row.try_get("community_id")?,
        state: text_col(row, "state", RegistrationState::parse)?.to_proto(),
        requested_at: Some(to_timestamp(row.try_get("requested_at")?)),
        activated_at: opt_timestamp(row.try_get("activated_at")?),
        ended_at: opt_timestamp(row.try_get("ended_at")?),
        end_reason: row.try_get("end_reason")?,
        version: row.try_get("version")?,
    })
}

pub(crate) fn pairing_from_row(row: &AnyRow) -> Result<pb::Pairing> {
    Ok(pb::Pairing {
        id: row.try_get("id")?,
        household_id: row.try_get("household_id")?,
        community_id: row.try_get("community_id")?,
        role: text_col(row, "role", PairingRole::parse)?.to_proto(),
        cadre_id: row.try_get("cadre_id")?,
        member_name: row.try_get("member_name")?,
        member_phone: row.try_get("member_phone")?,
        started_at: Some(to_timestamp(row.try_get("started_at")?)),
        ended_at: opt_timestamp(row.try_get("ended_at")?),
    })
}

pub(crate) fn cadre_from_row(row: &AnyRow) -> Result<pb::Cadre> {
    Ok(pb::Cadre {
        id: row.try_get("id")?,
        unit_id: row.try_get("unit_id")?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        title: row.try_get("title")?,
        created_at: Some(to_timestamp(row.try_get("created_at")?)),
    })
}

pub(crate) fn unit_from_row(row: &AnyRow) -> Result<pb::Unit> {
    Ok(pb::Unit {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: Some(to_timestamp(row.try_get("created_at")?)),
    })
}

pub(crate) fn check_in_from_row(row: &AnyRow) -> Result<pb::CheckIn> {
    Ok(pb::CheckIn {
        id: row.try_get("id")?,
        cadre_id: row.try_get("cadre_id")?,
        community_id: row.try_get("community_id")?,
        at: Some(to_timestamp(row.try_get("at")?)),
        activity: row.try_get("activity")?,
    })
}

pub(crate) fn visit_from_row(row: &AnyRow) -> Result<pb::Visit> {
    Ok(pb::Visit {
        id: row.try_get("id")?,
        household_id: row.try_get("household_id")?,
        community_id: row.try_get("community_id")?,
        cadre_id: row.try_get("cadre_id")?,
        at: Some(to_timestamp(row.try_get("at")?)),
        kind: text_col(row, "kind", domain::VisitKind::parse)?.to_proto(),
        outcome: text_col(row, "outcome", domain::VisitOutcome::parse)?.to_proto(),
        note: row.try_get("note")?,
    })
}

pub(crate) fn account_from_row(row: &AnyRow) -> Result<pb::Account> {
    let role: String = row.try_get("role")?;
    let role: Role = role
        .parse()
        .map_err(|_| Error::Internal(anyhow::anyhow!("unknown role {role:?} stored")))?;
    Ok(pb::Account {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        role: role.to_proto(),
        community_id: row.try_get("community_id")?,
        cadre_id: row.try_get("cadre_id")?,
        resident_id: row.try_get("resident_id")?,
        created_at: Some(to_timestamp(row.try_get("created_at")?)),
        disabled_at: opt_timestamp(row.try_get("disabled_at")?),
        disabled_reason: row.try_get("disabled_reason")?,
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        session_epoch: row.try_get("session_epoch")?,
    })
}

/// Audit snapshots hold masked personal data: the trail is read by supervisors,
/// who do not need residents' phone or ID numbers.
pub(crate) fn resident_json(r: &pb::Resident) -> serde_json::Value {
    json!({
        "id": r.id, "household_id": r.household_id, "name": r.name, "gender": r.gender,
        "birth_date": r.birth_date, "phone": domain::mask_phone(&r.phone),
        "id_number": domain::mask_id_number(&r.id_number), "relation": r.relation, "tags": r.tags,
        "removed": r.removed_at.is_some(), "version": r.version,
    })
}

pub(crate) fn household_json(h: &pb::Household) -> serde_json::Value {
    json!({
        "id": h.id, "compound_id": h.compound_id, "building_id": h.building_id, "address": h.address,
        "external_ref": h.external_ref, "member_count": h.member_count, "care_level": h.care_level,
        "visit_every_days": h.visit_every_days, "version": h.version,
    })
}

pub(crate) fn registration_json(r: &pb::Registration) -> serde_json::Value {
    let state = RegistrationState::from_proto(r.state)
        .map(|s| s.as_str())
        .unwrap_or_default();
    json!({ "id": r.id, "cadre_id": r.cadre_id, "state": state, "end_reason": r.end_reason, "version": r.version })
}

pub(crate) fn pairing_json(p: &pb::Pairing) -> serde_json::Value {
    let role = PairingRole::from_proto(p.role)
        .map(|s| s.as_str())
        .unwrap_or_default();
    json!({ "id": p.id, "household_id": p.household_id, "role": role, "cadre_id": p.cadre_id,
            "member_name": p.member_name, "ended": p.ended_at.is_some() })
}

impl Store {
    pub fn new(db: Db, policy: CarePolicy, utc_offset: FixedOffset) -> Store {
        Store {
            db,
            policy: Arc::new(policy),
            utc_offset,
        }
    }

    pub fn utc_offset(&self) -> FixedOffset {
        self.utc_offset
    }

    pub(crate) fn today(&self) -> chrono::NaiveDate {
        self.local_date(now_micros())
    }

    // ---- places ----

    // ---- households and residents ----

    // ---- units and cadres ----

    // ---- registrations ----

    // ---- pairings ----

    // ---- on-site duty ----

    // ---- visits ----

    // ---- accounts ----

    // ---- summary ----

    /// The date of `at` in the service's time zone.
    pub fn local_date(&self, at: Micros) -> chrono::NaiveDate {
        domain::local_day(at, self.utc_offset)
    }
}

impl Store {}
