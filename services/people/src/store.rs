//! The people service's storage: one SQL implementation that SQLite and
//! PostgreSQL both run (see `linli_core::db`). Every mutation runs in one
//! transaction with its idempotency key and its audit record, so a failure
//! leaves nothing half-written.
//!
//! SQLite pools hold one connection: code that holds a transaction must not
//! ask the pool for a second connection, so helpers take `&mut AnyConnection`.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::FixedOffset;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use linli_core::audit::{self, Change};
use linli_core::db::{fetch_by_id, text_col};
use linli_core::idempotency::{self, Claim};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{Micros, now_micros, opt_timestamp, to_timestamp};
use linli_core::{Actor, Db, Error, Result, Role, new_id};
use linli_proto::people::v1 as pb;

use crate::domain::{
    self, Care, CareLevel, CarePolicy, Carer, MemberFacts, PairingRole, PlaceKind,
    RegistrationState, Tag,
};

pub use linli_core::idempotency::IdemKey;

#[derive(Clone)]
pub struct Store {
    pub db: Db,
    policy: Arc<CarePolicy>,
    utc_offset: FixedOffset,
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
    pub phone: Option<String>,
    pub id_number: Option<String>,
    pub relation: domain::Relation,
    pub tags: Vec<Tag>,
}
#[derive(Default)]
pub struct ResidentChanges {
    pub phone: Option<Option<String>>,
    pub relation: Option<domain::Relation>,
    pub tags: Option<Vec<Tag>>,
}
pub struct NewCadre {
    pub unit_id: String,
    pub name: String,
    pub phone: Option<String>,
    pub title: String,
}
pub struct NewPairing {
    pub household_id: String,
    pub role: PairingRole,
    pub cadre_id: Option<String>,
    pub member_name: Option<String>,
    pub member_phone: Option<String>,
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
}

/// A household with everything a profile shows.
pub struct HouseholdProfile {
    pub household: pb::Household,
    pub residents: Vec<pb::Resident>,
    pub care: Care,
    pub pairings: Vec<pb::Pairing>,
}

const PLACE_COLS: &str = "id, kind, parent_id, name, code, community_id, created_at";
const HOUSEHOLD_COLS: &str = "community_id, id, compound_id, building_id, address, external_ref, member_count, care_level, \
     visit_every_days, care_reason, care_since, created_at, version";
const RESIDENT_COLS: &str = "community_id, id, household_id, name, gender, birth_date, phone, id_number, relation, tags, \
     created_at, removed_at, version";
const REGISTRATION_COLS: &str =
    "community_id, id, cadre_id, state, requested_at, activated_at, ended_at, end_reason, version";
const PAIRING_COLS: &str = "community_id, id, household_id, role, cadre_id, member_name, member_phone, started_at, ended_at";
const ACCOUNT_COLS: &str = "id, username, role, community_id, cadre_id, resident_id, created_at";

fn place_from_row(row: &AnyRow) -> Result<pb::Place> {
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

fn household_from_row(row: &AnyRow) -> Result<pb::Household> {
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

fn resident_from_row(row: &AnyRow, today: chrono::NaiveDate) -> Result<pb::Resident> {
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
        tags: domain::tags_from_db(&row.try_get::<String, _>("tags")?)
            .into_iter()
            .map(Tag::to_proto)
            .collect(),
        age,
        removed_at: opt_timestamp(row.try_get("removed_at")?),
        version: row.try_get("version")?,
    })
}

fn registration_from_row(row: &AnyRow) -> Result<pb::Registration> {
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

fn pairing_from_row(row: &AnyRow) -> Result<pb::Pairing> {
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

fn cadre_from_row(row: &AnyRow) -> Result<pb::Cadre> {
    Ok(pb::Cadre {
        id: row.try_get("id")?,
        unit_id: row.try_get("unit_id")?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        title: row.try_get("title")?,
        created_at: Some(to_timestamp(row.try_get("created_at")?)),
    })
}

fn unit_from_row(row: &AnyRow) -> Result<pb::Unit> {
    Ok(pb::Unit {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: Some(to_timestamp(row.try_get("created_at")?)),
    })
}

fn check_in_from_row(row: &AnyRow) -> Result<pb::CheckIn> {
    Ok(pb::CheckIn {
        id: row.try_get("id")?,
        cadre_id: row.try_get("cadre_id")?,
        community_id: row.try_get("community_id")?,
        at: Some(to_timestamp(row.try_get("at")?)),
        activity: row.try_get("activity")?,
    })
}

fn visit_from_row(row: &AnyRow) -> Result<pb::Visit> {
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

fn account_from_row(row: &AnyRow) -> Result<pb::Account> {
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
    })
}

/// Audit snapshots hold masked personal data: the trail is read by supervisors,
/// who do not need residents' phone or ID numbers.
fn resident_json(r: &pb::Resident) -> serde_json::Value {
    json!({
        "id": r.id, "household_id": r.household_id, "name": r.name, "gender": r.gender,
        "birth_date": r.birth_date, "phone": domain::mask_phone(&r.phone),
        "id_number": domain::mask_id_number(&r.id_number), "relation": r.relation, "tags": r.tags,
        "removed": r.removed_at.is_some(), "version": r.version,
    })
}

fn household_json(h: &pb::Household) -> serde_json::Value {
    json!({
        "id": h.id, "compound_id": h.compound_id, "building_id": h.building_id, "address": h.address,
        "external_ref": h.external_ref, "member_count": h.member_count, "care_level": h.care_level,
        "visit_every_days": h.visit_every_days, "version": h.version,
    })
}

fn registration_json(r: &pb::Registration) -> serde_json::Value {
    let state = RegistrationState::from_proto(r.state)
        .map(|s| s.as_str())
        .unwrap_or_default();
    json!({ "id": r.id, "cadre_id": r.cadre_id, "state": state, "end_reason": r.end_reason, "version": r.version })
}

fn pairing_json(p: &pb::Pairing) -> serde_json::Value {
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

    fn today(&self) -> chrono::NaiveDate {
        self.local_date(now_micros())
    }

    // ---- places ----

    async fn load_place(&self, conn: &mut AnyConnection, id: &str) -> Result<Option<pb::Place>> {
        let row = sqlx::query(&format!("SELECT {PLACE_COLS} FROM places WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(place_from_row).transpose()
    }

    pub async fn get_place(&self, id: &str) -> Result<pb::Place> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_place(&mut conn, id)
            .await?
            .ok_or_else(|| Error::not_found("place", id))
    }

    /// The community with this id; NOT_FOUND when there is none.
    async fn load_community(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Place> {
        match self.load_place(conn, id).await? {
            Some(p) if p.kind == PlaceKind::Community.to_proto() => Ok(p),
            _ => Err(Error::not_found("community", id)),
        }
    }

    pub async fn community(&self, id: &str) -> Result<pb::Place> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_community(&mut conn, id).await
    }

    /// Finds a community by id or by exact name, for command-line use.
    pub async fn find_community(&self, id_or_name: &str) -> Result<pb::Place> {
        let rows = sqlx::query(&format!(
            "SELECT {PLACE_COLS} FROM places WHERE kind = 'community' AND (id = $1 OR name = $1)"
        ))
        .bind(id_or_name)
        .fetch_all(&self.db.pool)
        .await?;
        match rows.as_slice() {
            [one] => place_from_row(one),
            [] => Err(Error::not_found("community", id_or_name)),
            _ => Err(Error::FailedPrecondition(format!(
                "several communities are named {id_or_name}; use the id"
            ))),
        }
    }

    pub async fn create_place(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewPlace,
    ) -> Result<pb::Place> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) =
            idempotency::claim(&mut tx, "people.place", &idem.key, &idem.fingerprint, &id).await?
        {
            tx.commit().await?;
            return self.get_place(&existing).await;
        }
        let parent = match &new.parent_id {
            Some(pid) => Some(
                self.load_place(&mut tx, pid)
                    .await?
                    .ok_or_else(|| Error::not_found("parent place", pid))?,
            ),
            None => None,
        };
        let expected = new.kind.parent_kind();
        let parent_kind = parent.as_ref().and_then(|p| PlaceKind::from_proto(p.kind));
        if parent_kind != expected {
            let want = expected.map_or("no parent".to_owned(), |k| {
                format!("a {} as parent", k.as_str())
            });
            return Err(Error::invalid(
                "parent_id",
                format!("a {} needs {want}", new.kind.as_str()),
            ));
        }
        let community_id = match new.kind {
            PlaceKind::County | PlaceKind::Town => String::new(),
            PlaceKind::Community => id.clone(),
            PlaceKind::Compound | PlaceKind::Building => parent
                .as_ref()
                .map(|p| p.community_id.clone())
                .unwrap_or_default(),
        };
        let now = now_micros();
        let place = pb::Place {
            id: id.clone(),
            kind: new.kind.to_proto(),
            parent_id: new.parent_id.unwrap_or_default(),
            name: new.name,
            code: new.code,
            community_id,
            created_at: Some(to_timestamp(now)),
        };
        sqlx::query("INSERT INTO places (id, kind, parent_id, name, code, community_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&place.id)
            .bind(new.kind.as_str())
            .bind(&place.parent_id)
            .bind(&place.name)
            .bind(&place.code)
            .bind(&place.community_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let after = json!({ "id": place.id, "kind": new.kind.as_str(), "parent_id": place.parent_id, "name": place.name, "code": place.code });
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &place.community_id,
                "place.create",
                "place",
                &place.id,
                after,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(place)
    }

    pub async fn list_places(
        &self,
        parent_id: &str,
        kind: Option<PlaceKind>,
        community_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Place>, String)> {
        let sql = format!(
            "SELECT {PLACE_COLS} FROM places WHERE ($1 = '' OR parent_id = $1) AND ($2 = '' OR kind = $2) AND ($3 = '' OR community_id = $3) \
             AND id > $4 ORDER BY id LIMIT $5"
        );
        let kind = kind.map(|k| k.as_str()).unwrap_or_default();
        fetch_page(
            &self.db,
            &sql,
            vec![parent_id.into(), kind.into(), community_id.into()],
            page,
            place_from_row,
            |p| &p.id,
        )
        .await
    }

    // ---- households and residents ----

    async fn load_household(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Household> {
        fetch_by_id(
            conn,
            &format!("SELECT {HOUSEHOLD_COLS} FROM households WHERE id = $1"),
            id,
            "household",
            household_from_row,
        )
        .await
    }

    pub async fn get_household(&self, id: &str) -> Result<pb::Household> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_household(&mut conn, id).await
    }

    pub async fn create_household(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewHousehold,
    ) -> Result<pb::Household> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "people.household",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let h = self.load_household(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(h);
        }
        self.load_community(&mut tx, &new.community_id).await?;
        let compound = match &new.compound_id {
            Some(cid) => match self.load_place(&mut tx, cid).await? {
                Some(p)
                    if p.kind == PlaceKind::Compound.to_proto()
                        && p.community_id == new.community_id =>
                {
                    Some(p)
                }
                _ => {
                    return Err(Error::invalid(
                        "compound_id",
                        "is not a compound of this community",
                    ));
                }
            },
            None => None,
        };
        if let Some(bid) = &new.building_id {
            match self.load_place(&mut tx, bid).await? {
                Some(p)
                    if p.kind == PlaceKind::Building.to_proto()
                        && p.community_id == new.community_id
                        && compound.as_ref().is_none_or(|c| c.id == p.parent_id) => {}
                _ => {
                    return Err(Error::invalid(
                        "building_id",
                        "is not a building of this compound",
                    ));
                }
            }
        }
        let now = now_micros();
        let none = Care::none();
        sqlx::query(
            "INSERT INTO households (community_id, id, compound_id, building_id, address, external_ref, member_count, care_level, \
             visit_every_days, care_reason, care_since, created_at, version) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 0, '', NULL, $8, 1)",
        )
        .bind(&new.community_id)
        .bind(&id)
        .bind(new.compound_id.unwrap_or_default())
        .bind(new.building_id.unwrap_or_default())
        .bind(&new.address)
        .bind(&new.external_ref)
        .bind(i64::from(none.level.to_proto()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let h = self.load_household(&mut tx, &id).await?;
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &h.community_id,
                "household.create",
                "household",
                &h.id,
                household_json(&h),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(h)
    }

    async fn load_residents(
        &self,
        conn: &mut AnyConnection,
        community_id: &str,
        household_id: &str,
        include_removed: bool,
    ) -> Result<Vec<pb::Resident>> {
        let rows = sqlx::query(&format!(
            "SELECT {RESIDENT_COLS} FROM residents WHERE community_id = $1 AND household_id = $2 AND ($3 = 1 OR removed_at IS NULL) ORDER BY id"
        ))
        .bind(community_id)
        .bind(household_id)
        .bind(i64::from(include_removed))
        .fetch_all(&mut *conn)
        .await?;
        let today = self.today();
        rows.iter().map(|r| resident_from_row(r, today)).collect()
    }

    fn member_facts(residents: &[pb::Resident], on: chrono::NaiveDate) -> Vec<MemberFacts> {
        residents
            .iter()
            .map(|r| MemberFacts {
                age: chrono::NaiveDate::parse_from_str(&r.birth_date, "%Y-%m-%d")
                    .ok()
                    .map(|b| domain::age_on(b, on)),
                tags: r.tags.iter().filter_map(|t| Tag::from_proto(*t)).collect(),
            })
            .collect()
    }

    /// Recomputes a household's members and care after a change of residents,
    /// under the household's row lock.
    async fn refresh_household(
        &self,
        conn: &mut AnyConnection,
        actor: &Actor,
        community_id: &str,
        household_id: &str,
    ) -> Result<()> {
        let before = self.load_household(conn, household_id).await?;
        let members = self
            .load_residents(conn, community_id, household_id, false)
            .await?;
        let care = self
            .policy
            .evaluate(&Self::member_facts(&members, self.today()));
        let was_cared = before.care_level > CareLevel::None.to_proto();
        sqlx::query(
            "UPDATE households SET member_count = $3, care_level = $4, visit_every_days = $5, care_reason = $6, \
             care_since = CASE WHEN $7 = 0 THEN NULL WHEN care_since IS NULL THEN $8 ELSE care_since END, version = version + 1 \
             WHERE community_id = $1 AND id = $2",
        )
        .bind(community_id)
        .bind(household_id)
        .bind(members.len() as i64)
        .bind(i64::from(care.level.to_proto()))
        .bind(i64::from(care.every_days))
        .bind(&care.reason)
        .bind(i64::from(care.is_vulnerable()))
        .bind(now_micros())
        .execute(&mut *conn)
        .await?;
        let after = self.load_household(conn, household_id).await?;
        if after.care_level != before.care_level
            || after.member_count != before.member_count
            || was_cared != care.is_vulnerable()
        {
            audit::record(
                conn,
                actor,
                Change::updated(
                    community_id,
                    "household.care",
                    "household",
                    household_id,
                    household_json(&before),
                    household_json(&after),
                ),
            )
            .await?;
        }
        Ok(())
    }

    pub async fn household_profile(&self, id: &str) -> Result<HouseholdProfile> {
        let mut conn = self.db.pool.acquire().await?;
        let household = self.load_household(&mut conn, id).await?;
        let residents = self
            .load_residents(&mut conn, &household.community_id, id, false)
            .await?;
        let care = self
            .policy
            .evaluate(&Self::member_facts(&residents, self.today()));
        let rows = sqlx::query(&format!("SELECT {PAIRING_COLS} FROM pairings WHERE community_id = $1 AND household_id = $2 AND ended_at IS NULL ORDER BY id"))
            .bind(&household.community_id)
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
        let pairings = rows.iter().map(pairing_from_row).collect::<Result<_>>()?;
        Ok(HouseholdProfile {
            household,
            residents,
            care,
            pairings,
        })
    }

    pub async fn list_households(
        &self,
        community_id: &str,
        compound_id: &str,
        min_level: Option<CareLevel>,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Household>, String)> {
        self.community(community_id).await?;
        let sql = format!(
            "SELECT {HOUSEHOLD_COLS} FROM households WHERE community_id = $1 AND ($2 = '' OR compound_id = $2) AND care_level >= $3 \
             AND id > $4 ORDER BY id LIMIT $5"
        );
        let min = i64::from(min_level.map_or(0, |l| l.to_proto()));
        fetch_page(
            &self.db,
            &sql,
            vec![community_id.into(), compound_id.into(), min.into()],
            page,
            household_from_row,
            |h| &h.id,
        )
        .await
    }

    async fn load_resident(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Resident> {
        let row = sqlx::query(&format!(
            "SELECT {RESIDENT_COLS} FROM residents WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref()
            .map(|r| resident_from_row(r, self.today()))
            .transpose()?
            .ok_or_else(|| Error::not_found("resident", id))
    }

    pub async fn get_resident(&self, id: &str) -> Result<pb::Resident> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_resident(&mut conn, id).await
    }

    pub async fn add_resident(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewResident,
    ) -> Result<pb::Resident> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "people.resident",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let r = self.load_resident(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(r);
        }
        let household = self.load_household(&mut tx, &new.household_id).await?;
        if let Some(idn) = &new.id_number {
            let clash: Option<(String,)> = sqlx::query_as("SELECT household_id FROM residents WHERE community_id = $1 AND id_number = $2 AND removed_at IS NULL")
                .bind(&household.community_id)
                .bind(idn)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some((other,)) = clash {
                return Err(Error::AlreadyExists(format!(
                    "a resident with this id_number already lives in household {other}"
                )));
            }
        }
        let now = now_micros();
        sqlx::query(
            "INSERT INTO residents (community_id, id, household_id, name, gender, birth_date, phone, id_number, relation, tags, created_at, removed_at, removed_reason, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, '', 1)",
        )
        .bind(&household.community_id)
        .bind(&id)
        .bind(&household.id)
        .bind(&new.name)
        .bind(new.gender.as_str())
        .bind(new.birth_date.format("%Y-%m-%d").to_string())
        .bind(new.phone.unwrap_or_default())
        .bind(new.id_number.unwrap_or_default())
        .bind(new.relation.as_str())
        .bind(domain::tags_to_db(&new.tags))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let r = self.load_resident(&mut tx, &id).await?;
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &r.community_id,
                "resident.add",
                "resident",
                &r.id,
                resident_json(&r),
            ),
        )
        .await?;
        self.refresh_household(&mut tx, actor, &household.community_id, &household.id)
            .await?;
        tx.commit().await?;
        Ok(r)
    }

    pub async fn list_residents(
        &self,
        community_id: &str,
        household_id: &str,
        tag: Option<Tag>,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Resident>, String)> {
        self.community(community_id).await?;
        let sql = format!(
            "SELECT {RESIDENT_COLS} FROM residents WHERE community_id = $1 AND ($2 = '' OR household_id = $2) AND ($3 = '' OR tags LIKE $3) \
             AND removed_at IS NULL AND id > $4 ORDER BY id LIMIT $5"
        );
        let tag = tag
            .map(|t| format!("%,{},%", t.as_str()))
            .unwrap_or_default();
        let today = self.today();
        fetch_page(
            &self.db,
            &sql,
            vec![
                community_id.into(),
                household_id.into(),
                tag.as_str().into(),
            ],
            page,
            |r| resident_from_row(r, today),
            |r| &r.id,
        )
        .await
    }

    pub async fn update_resident(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        changes: ResidentChanges,
    ) -> Result<pb::Resident> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_resident(&mut tx, id).await?;
        if before.removed_at.is_some() {
            return Err(Error::FailedPrecondition(
                "the resident has moved out".into(),
            ));
        }
        domain::check_version("expected_version", expected_version, before.version)?;
        let phone = match changes.phone {
            Some(p) => p.unwrap_or_default(),
            None => before.phone.clone(),
        };
        let relation = changes
            .relation
            .or_else(|| domain::Relation::from_proto(before.relation))
            .unwrap_or(domain::Relation::Other);
        let tags = match changes.tags {
            Some(t) => t,
            None => before
                .tags
                .iter()
                .filter_map(|t| Tag::from_proto(*t))
                .collect(),
        };
        let updated = sqlx::query("UPDATE residents SET phone = $3, relation = $4, tags = $5, version = version + 1 WHERE community_id = $1 AND id = $2 AND version = $6")
            .bind(&before.community_id)
            .bind(id)
            .bind(&phone)
            .bind(relation.as_str())
            .bind(domain::tags_to_db(&tags))
            .bind(expected_version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(
                "the resident changed since you read it; read it again".into(),
            ));
        }
        let after = self.load_resident(&mut tx, id).await?;
        audit::record(
            &mut tx,
            actor,
            Change::updated(
                &after.community_id,
                "resident.update",
                "resident",
                id,
                resident_json(&before),
                resident_json(&after),
            ),
        )
        .await?;
        self.refresh_household(&mut tx, actor, &after.community_id, &after.household_id)
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn remove_resident(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        reason: &str,
    ) -> Result<pb::Resident> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_resident(&mut tx, id).await?;
        if before.removed_at.is_some() {
            return Err(Error::FailedPrecondition(
                "the resident has already moved out".into(),
            ));
        }
        domain::check_version("expected_version", expected_version, before.version)?;
        let updated = sqlx::query("UPDATE residents SET removed_at = $3, removed_reason = $4, version = version + 1 WHERE community_id = $1 AND id = $2 AND version = $5")
            .bind(&before.community_id)
            .bind(id)
            .bind(now_micros())
            .bind(reason)
            .bind(expected_version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(
                "the resident changed since you read it; read it again".into(),
            ));
        }
        let after = self.load_resident(&mut tx, id).await?;
        audit::record(
            &mut tx,
            actor,
            Change::updated(
                &after.community_id,
                "resident.remove",
                "resident",
                id,
                resident_json(&before),
                resident_json(&after),
            ),
        )
        .await?;
        self.refresh_household(&mut tx, actor, &after.community_id, &after.household_id)
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    // ---- units and cadres ----

    pub async fn create_unit(&self, actor: &Actor, idem: &IdemKey, name: &str) -> Result<pb::Unit> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) =
            idempotency::claim(&mut tx, "people.unit", &idem.key, &idem.fingerprint, &id).await?
        {
            let row = sqlx::query("SELECT id, name, created_at FROM units WHERE id = $1")
                .bind(&existing)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            return unit_from_row(&row);
        }
        let taken: Option<(String,)> = sqlx::query_as("SELECT id FROM units WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some((other,)) = taken {
            return Err(Error::AlreadyExists(format!(
                "a unit named {name} exists already ({other})"
            )));
        }
        let now = now_micros();
        sqlx::query("INSERT INTO units (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            actor,
            Change::created(
                "",
                "unit.create",
                "unit",
                &id,
                json!({ "id": id, "name": name }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::Unit {
            id,
            name: name.to_owned(),
            created_at: Some(to_timestamp(now)),
        })
    }

    pub async fn get_unit(&self, id: &str) -> Result<pb::Unit> {
        let row = sqlx::query("SELECT id, name, created_at FROM units WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref()
            .map(unit_from_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("unit", id))
    }

    pub async fn list_units(&self, page: &PageRequest) -> Result<(Vec<pb::Unit>, String)> {
        fetch_page(
            &self.db,
            "SELECT id, name, created_at FROM units WHERE id > $1 ORDER BY id LIMIT $2",
            vec![],
            page,
            unit_from_row,
            |u| &u.id,
        )
        .await
    }

    async fn load_cadre(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Cadre> {
        fetch_by_id(
            conn,
            "SELECT id, unit_id, name, phone, title, created_at FROM cadres WHERE id = $1",
            id,
            "cadre",
            cadre_from_row,
        )
        .await
    }

    pub async fn create_cadre(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewCadre,
    ) -> Result<pb::Cadre> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) =
            idempotency::claim(&mut tx, "people.cadre", &idem.key, &idem.fingerprint, &id).await?
        {
            let c = self.load_cadre(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(c);
        }
        let unit: Option<(String,)> = sqlx::query_as("SELECT id FROM units WHERE id = $1")
            .bind(&new.unit_id)
            .fetch_optional(&mut *tx)
            .await?;
        if unit.is_none() {
            return Err(Error::not_found("unit", &new.unit_id));
        }
        sqlx::query("INSERT INTO cadres (id, unit_id, name, phone, title, created_at, version) VALUES ($1, $2, $3, $4, $5, $6, 1)")
            .bind(&id)
            .bind(&new.unit_id)
            .bind(&new.name)
            .bind(new.phone.unwrap_or_default())
            .bind(&new.title)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        let c = self.load_cadre(&mut tx, &id).await?;
        let after = json!({ "id": c.id, "unit_id": c.unit_id, "name": c.name, "title": c.title, "phone": domain::mask_phone(&c.phone) });
        audit::record(
            &mut tx,
            actor,
            Change::created("", "cadre.create", "cadre", &id, after),
        )
        .await?;
        tx.commit().await?;
        Ok(c)
    }

    /// A cadre and their registration that is not ended, if any.
    pub async fn get_cadre(&self, id: &str) -> Result<(pb::Cadre, Option<pb::Registration>)> {
        let mut conn = self.db.pool.acquire().await?;
        let cadre = self.load_cadre(&mut conn, id).await?;
        let open = self.open_registration(&mut conn, id).await?;
        Ok((cadre, open))
    }

    pub async fn list_cadres(
        &self,
        unit_id: &str,
        community_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Cadre>, String)> {
        let sql = "SELECT id, unit_id, name, phone, title, created_at FROM cadres WHERE ($1 = '' OR unit_id = $1) \
             AND ($2 = '' OR id IN (SELECT cadre_id FROM registrations WHERE community_id = $2 AND state = 'active')) \
             AND id > $3 ORDER BY id LIMIT $4";
        fetch_page(
            &self.db,
            sql,
            vec![unit_id.into(), community_id.into()],
            page,
            cadre_from_row,
            |c| &c.id,
        )
        .await
    }

    // ---- registrations ----

    async fn open_registration(
        &self,
        conn: &mut AnyConnection,
        cadre_id: &str,
    ) -> Result<Option<pb::Registration>> {
        let row = sqlx::query(&format!("SELECT {REGISTRATION_COLS} FROM registrations WHERE cadre_id = $1 AND state <> 'ended' ORDER BY id DESC LIMIT 1"))
            .bind(cadre_id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(registration_from_row).transpose()
    }

    async fn load_registration(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::Registration> {
        fetch_by_id(
            conn,
            &format!("SELECT {REGISTRATION_COLS} FROM registrations WHERE id = $1"),
            id,
            "registration",
            registration_from_row,
        )
        .await
    }

    pub async fn get_registration(&self, id: &str) -> Result<pb::Registration> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_registration(&mut conn, id).await
    }

    /// The cadre's active registration with this community, if they have one.
    async fn active_registration(
        &self,
        conn: &mut AnyConnection,
        cadre_id: &str,
        community_id: &str,
    ) -> Result<Option<pb::Registration>> {
        let row = sqlx::query(&format!("SELECT {REGISTRATION_COLS} FROM registrations WHERE community_id = $1 AND cadre_id = $2 AND state = 'active'"))
            .bind(community_id)
            .bind(cadre_id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(registration_from_row).transpose()
    }

    async fn require_registered(
        &self,
        conn: &mut AnyConnection,
        cadre_id: &str,
        community_id: &str,
    ) -> Result<()> {
        self.load_cadre(conn, cadre_id).await?;
        if self
            .active_registration(conn, cadre_id, community_id)
            .await?
            .is_none()
        {
            return Err(Error::FailedPrecondition(format!(
                "cadre {cadre_id} is not actively registered with community {community_id} (双报到)"
            )));
        }
        Ok(())
    }

    pub async fn check_registration(
        &self,
        cadre_id: &str,
        community_id: &str,
    ) -> Result<Option<pb::Registration>> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_cadre(&mut conn, cadre_id).await?;
        self.load_community(&mut conn, community_id).await?;
        self.active_registration(&mut conn, cadre_id, community_id)
            .await
    }

    pub async fn request_registration(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        cadre_id: &str,
        community_id: &str,
    ) -> Result<pb::Registration> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "people.registration",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let r = self.load_registration(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(r);
        }
        self.load_community(&mut tx, community_id).await?;
        // The cadre's row lock orders concurrent requests for one cadre.
        let locked = sqlx::query("UPDATE cadres SET version = version + 1 WHERE id = $1")
            .bind(cadre_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if locked == 0 {
            return Err(Error::not_found("cadre", cadre_id));
        }
        if let Some(open) = self.open_registration(&mut tx, cadre_id).await? {
            return Err(Error::FailedPrecondition(format!(
                "the cadre already has a registration with community {} that is not ended; end it first",
                open.community_id
            )));
        }
        sqlx::query("INSERT INTO registrations (community_id, id, cadre_id, state, requested_at, activated_at, ended_at, end_reason, version) VALUES ($1, $2, $3, 'requested', $4, NULL, NULL, '', 1)")
            .bind(community_id)
            .bind(&id)
            .bind(cadre_id)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        let r = self.load_registration(&mut tx, &id).await?;
        audit::record(
            &mut tx,
            actor,
            Change::created(
                community_id,
                "registration.request",
                "registration",
                &id,
                registration_json(&r),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(r)
    }

    pub async fn move_registration(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        to: RegistrationState,
        reason: &str,
    ) -> Result<pb::Registration> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_registration(&mut tx, id).await?;
        let from = RegistrationState::from_proto(before.state)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("bad state")))?;
        domain::check_version("expected_version", expected_version, before.version)?;
        domain::check_registration_move(from, to)?;
        let now = now_micros();
        let updated = sqlx::query(
            "UPDATE registrations SET state = $3, activated_at = CASE WHEN $3 = 'active' THEN $4 ELSE activated_at END, \
             ended_at = CASE WHEN $3 = 'ended' THEN $4 ELSE ended_at END, end_reason = $5, version = version + 1 \
             WHERE community_id = $1 AND id = $2 AND version = $6",
        )
        .bind(&before.community_id)
        .bind(id)
        .bind(to.as_str())
        .bind(now)
        .bind(reason)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(
                "the registration changed since you read it; read it again".into(),
            ));
        }
        let after = self.load_registration(&mut tx, id).await?;
        let action = if to == RegistrationState::Active {
            "registration.approve"
        } else {
            "registration.end"
        };
        audit::record(
            &mut tx,
            actor,
            Change::updated(
                &after.community_id,
                action,
                "registration",
                id,
                registration_json(&before),
                registration_json(&after),
            ),
        )
        .await?;
        if to == RegistrationState::Ended {
            // A cadre who leaves the community stops looking after its households.
            let rows = sqlx::query(&format!("SELECT {PAIRING_COLS} FROM pairings WHERE community_id = $1 AND cadre_id = $2 AND ended_at IS NULL"))
                .bind(&after.community_id)
                .bind(&after.cadre_id)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                let p = pairing_from_row(row)?;
                self.end_pairing_in(&mut tx, actor, p, "registration ended")
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(after)
    }

    pub async fn list_registrations(
        &self,
        community_id: &str,
        cadre_id: &str,
        state: Option<RegistrationState>,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Registration>, String)> {
        let sql = format!(
            "SELECT {REGISTRATION_COLS} FROM registrations WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR cadre_id = $2) \
             AND ($3 = '' OR state = $3) AND id > $4 ORDER BY id LIMIT $5"
        );
        let state = state.map(|s| s.as_str()).unwrap_or_default();
        fetch_page(
            &self.db,
            &sql,
            vec![community_id.into(), cadre_id.into(), state.into()],
            page,
            registration_from_row,
            |r| &r.id,
        )
        .await
    }

    // ---- pairings ----

    async fn load_pairing(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Pairing> {
        fetch_by_id(
            conn,
            &format!("SELECT {PAIRING_COLS} FROM pairings WHERE id = $1"),
            id,
            "pairing",
            pairing_from_row,
        )
        .await
    }

    pub async fn get_pairing(&self, id: &str) -> Result<pb::Pairing> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_pairing(&mut conn, id).await
    }

    pub async fn pair_household(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewPairing,
    ) -> Result<pb::Pairing> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) =
            idempotency::claim(&mut tx, "people.pairing", &idem.key, &idem.fingerprint, &id).await?
        {
            let p = self.load_pairing(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(p);
        }
        let household = self.load_household(&mut tx, &new.household_id).await?;
        // The household's row lock orders concurrent pairings, so the limit holds under races.
        sqlx::query(
            "UPDATE households SET version = version + 1 WHERE community_id = $1 AND id = $2",
        )
        .bind(&household.community_id)
        .bind(&household.id)
        .execute(&mut *tx)
        .await?;
        let (name, phone) = match &new.cadre_id {
            Some(cadre_id) => {
                self.require_registered(&mut tx, cadre_id, &household.community_id)
                    .await?;
                let c = self.load_cadre(&mut tx, cadre_id).await?;
                (c.name, new.member_phone.clone().unwrap_or(c.phone))
            }
            None => (
                new.member_name.clone().unwrap_or_default(),
                new.member_phone.clone().unwrap_or_default(),
            ),
        };
        let rows = sqlx::query(&format!("SELECT {PAIRING_COLS} FROM pairings WHERE community_id = $1 AND household_id = $2 AND ended_at IS NULL"))
            .bind(&household.community_id)
            .bind(&household.id)
            .fetch_all(&mut *tx)
            .await?;
        let team = rows
            .iter()
            .map(|r| {
                let p = pairing_from_row(r)?;
                Ok(Carer {
                    role: PairingRole::from_proto(p.role).unwrap_or(PairingRole::Cadre),
                    cadre_id: Some(p.cadre_id).filter(|c| !c.is_empty()),
                    name: p.member_name,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        domain::check_can_pair(
            &team,
            &Carer {
                role: new.role,
                cadre_id: new.cadre_id.clone(),
                name: name.clone(),
            },
        )?;
        sqlx::query("INSERT INTO pairings (community_id, id, household_id, role, cadre_id, member_name, member_phone, started_at, ended_at, end_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, '')")
            .bind(&household.community_id)
            .bind(&id)
            .bind(&household.id)
            .bind(new.role.as_str())
            .bind(new.cadre_id.unwrap_or_default())
            .bind(&name)
            .bind(&phone)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        let p = self.load_pairing(&mut tx, &id).await?;
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &p.community_id,
                "pairing.create",
                "pairing",
                &id,
                pairing_json(&p),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(p)
    }

    async fn end_pairing_in(
        &self,
        conn: &mut AnyConnection,
        actor: &Actor,
        before: pb::Pairing,
        reason: &str,
    ) -> Result<pb::Pairing> {
        let updated = sqlx::query("UPDATE pairings SET ended_at = $3, end_reason = $4 WHERE community_id = $1 AND id = $2 AND ended_at IS NULL")
            .bind(&before.community_id)
            .bind(&before.id)
            .bind(now_micros())
            .bind(reason)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(Error::FailedPrecondition(
                "the pairing has already ended".into(),
            ));
        }
        let after = self.load_pairing(conn, &before.id).await?;
        audit::record(
            conn,
            actor,
            Change::updated(
                &after.community_id,
                "pairing.end",
                "pairing",
                &after.id,
                pairing_json(&before),
                pairing_json(&after),
            ),
        )
        .await?;
        Ok(after)
    }

    pub async fn end_pairing(&self, actor: &Actor, id: &str, reason: &str) -> Result<pb::Pairing> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_pairing(&mut tx, id).await?;
        let after = self.end_pairing_in(&mut tx, actor, before, reason).await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn list_pairings(
        &self,
        community_id: &str,
        household_id: &str,
        cadre_id: &str,
        include_ended: bool,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Pairing>, String)> {
        let sql = format!(
            "SELECT {PAIRING_COLS} FROM pairings WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR household_id = $2) \
             AND ($3 = '' OR cadre_id = $3) AND ($4 = 1 OR ended_at IS NULL) AND id > $5 ORDER BY id LIMIT $6"
        );
        fetch_page(
            &self.db,
            &sql,
            vec![
                community_id.into(),
                household_id.into(),
                cadre_id.into(),
                i64::from(include_ended).into(),
            ],
            page,
            pairing_from_row,
            |p| &p.id,
        )
        .await
    }

    pub async fn coverage_report(
        &self,
        community_id: &str,
    ) -> Result<pb::GetCoverageReportResponse> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_community(&mut conn, community_id).await?;
        let households: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, care_level FROM households WHERE community_id = $1 ORDER BY id",
        )
        .bind(community_id)
        .fetch_all(&mut *conn)
        .await?;
        let pairings: Vec<(String, String)> = sqlx::query_as(
            "SELECT household_id, role FROM pairings WHERE community_id = $1 AND ended_at IS NULL",
        )
        .bind(community_id)
        .fetch_all(&mut *conn)
        .await?;
        let paired: HashSet<&str> = pairings.iter().map(|(h, _)| h.as_str()).collect();
        let with_cadre: HashSet<&str> = pairings
            .iter()
            .filter(|(_, r)| r == PairingRole::Cadre.as_str())
            .map(|(h, _)| h.as_str())
            .collect();
        let watch = i64::from(CareLevel::Watch.to_proto());
        let mut report = pb::GetCoverageReportResponse {
            households_total: households.len() as i32,
            ..Default::default()
        };
        for (id, level) in &households {
            if paired.contains(id.as_str()) {
                report.households_paired += 1;
            } else {
                report.unpaired_household_ids.push(id.clone());
            }
            if *level >= watch {
                report.vulnerable_total += 1;
                if !with_cadre.contains(id.as_str()) {
                    report.vulnerable_without_cadre_ids.push(id.clone());
                }
            }
        }
        Ok(report)
    }

    // ---- on-site duty ----

    pub async fn check_in(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewCheckIn,
    ) -> Result<pb::CheckIn> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "people.check_in",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let row = sqlx::query(
                "SELECT community_id, id, cadre_id, at, activity FROM check_ins WHERE id = $1",
            )
            .bind(&existing)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return check_in_from_row(&row);
        }
        self.load_community(&mut tx, &new.community_id).await?;
        self.require_registered(&mut tx, &new.cadre_id, &new.community_id)
            .await?;
        sqlx::query("INSERT INTO check_ins (community_id, id, cadre_id, at, activity) VALUES ($1, $2, $3, $4, $5)")
            .bind(&new.community_id)
            .bind(&id)
            .bind(&new.cadre_id)
            .bind(new.at)
            .bind(&new.activity)
            .execute(&mut *tx)
            .await?;
        let c = pb::CheckIn {
            id: id.clone(),
            cadre_id: new.cadre_id,
            community_id: new.community_id,
            at: Some(to_timestamp(new.at)),
            activity: new.activity,
        };
        let after =
            json!({ "id": c.id, "cadre_id": c.cadre_id, "at": new.at, "activity": c.activity });
        audit::record(
            &mut tx,
            actor,
            Change::created(&c.community_id, "check_in.create", "check_in", &id, after),
        )
        .await?;
        tx.commit().await?;
        Ok(c)
    }

    pub async fn list_check_ins(
        &self,
        community_id: &str,
        cadre_id: &str,
        from: Option<Micros>,
        to: Option<Micros>,
        page: &PageRequest,
    ) -> Result<(Vec<pb::CheckIn>, String)> {
        let sql = "SELECT community_id, id, cadre_id, at, activity FROM check_ins WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR cadre_id = $2) \
             AND at >= $3 AND at < $4 AND id > $5 ORDER BY id LIMIT $6";
        let binds = vec![
            community_id.into(),
            cadre_id.into(),
            from.unwrap_or(i64::MIN).into(),
            to.unwrap_or(i64::MAX).into(),
        ];
        fetch_page(&self.db, sql, binds, page, check_in_from_row, |c| &c.id).await
    }

    /// Attendance for the duty week containing `week_of`: cadres registered
    /// during that week (with the community, or of the unit), and their check-ins.
    pub async fn attendance_report(
        &self,
        community_id: &str,
        unit_id: &str,
        week_of: Micros,
    ) -> Result<pb::GetAttendanceReportResponse> {
        let mut conn = self.db.pool.acquire().await?;
        if !community_id.is_empty() {
            self.load_community(&mut conn, community_id).await?;
        }
        let (start, end) = domain::week_bounds(week_of, self.utc_offset);
        let cadres = sqlx::query(
            "SELECT DISTINCT c.id, c.name, c.unit_id, u.name AS unit_name FROM cadres c JOIN units u ON u.id = c.unit_id \
             JOIN registrations r ON r.cadre_id = c.id \
             WHERE ($1 = '' OR r.community_id = $1) AND ($2 = '' OR c.unit_id = $2) \
             AND r.activated_at IS NOT NULL AND r.activated_at < $4 AND (r.ended_at IS NULL OR r.ended_at >= $3)",
        )
        .bind(community_id)
        .bind(unit_id)
        .bind(start)
        .bind(end)
        .fetch_all(&mut *conn)
        .await?;
        let check_ins: Vec<(String, i64)> = sqlx::query_as("SELECT cadre_id, at FROM check_ins WHERE ($1 = '' OR community_id = $1) AND at >= $2 AND at < $3")
            .bind(community_id)
            .bind(start)
            .bind(end)
            .fetch_all(&mut *conn)
            .await?;
        let mut by_cadre: HashMap<&str, Vec<i64>> = HashMap::new();
        for (cadre, at) in &check_ins {
            by_cadre.entry(cadre.as_str()).or_default().push(*at);
        }
        let mut units: BTreeMap<String, pb::UnitAttendance> = BTreeMap::new();
        let mut report = pb::GetAttendanceReportResponse {
            week_start: Some(to_timestamp(start)),
            week_end: Some(to_timestamp(end)),
            ..Default::default()
        };
        for row in &cadres {
            let id: String = row.try_get("id")?;
            let unit_id: String = row.try_get("unit_id")?;
            let ats = by_cadre
                .get(id.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let days: HashSet<_> = ats
                .iter()
                .map(|a| domain::local_day(*a, self.utc_offset))
                .collect();
            let unit = units
                .entry(unit_id.clone())
                .or_insert_with(|| pb::UnitAttendance {
                    unit_id: unit_id.clone(),
                    unit_name: row.try_get("unit_name").unwrap_or_default(),
                    ..Default::default()
                });
            unit.cadres_registered += 1;
            unit.check_ins += ats.len() as i32;
            if !ats.is_empty() {
                unit.cadres_present += 1;
            }
            report.cadres.push(pb::CadreAttendance {
                cadre_id: id,
                cadre_name: row.try_get("name")?,
                unit_id,
                check_ins: ats.len() as i32,
                days_present: days.len() as i32,
            });
        }
        report.cadres.sort_by(|a, b| {
            (&a.unit_id, &a.cadre_name, &a.cadre_id).cmp(&(&b.unit_id, &b.cadre_name, &b.cadre_id))
        });
        report.units = units
            .into_values()
            .map(|mut u| {
                u.attendance_rate = if u.cadres_registered > 0 {
                    f64::from(u.cadres_present) / f64::from(u.cadres_registered)
                } else {
                    0.0
                };
                u
            })
            .collect();
        Ok(report)
    }

    // ---- visits ----

    pub async fn log_visit(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewVisit,
    ) -> Result<pb::Visit> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) =
            idempotency::claim(&mut tx, "people.visit", &idem.key, &idem.fingerprint, &id).await?
        {
            let row = sqlx::query("SELECT community_id, id, household_id, cadre_id, at, kind, outcome, note FROM visits WHERE id = $1").bind(&existing).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            return visit_from_row(&row);
        }
        let household = self.load_household(&mut tx, &new.household_id).await?;
        self.require_registered(&mut tx, &new.cadre_id, &household.community_id)
            .await?;
        sqlx::query("INSERT INTO visits (community_id, id, household_id, cadre_id, at, kind, outcome, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(&household.community_id)
            .bind(&id)
            .bind(&household.id)
            .bind(&new.cadre_id)
            .bind(new.at)
            .bind(new.kind.as_str())
            .bind(new.outcome.as_str())
            .bind(&new.note)
            .execute(&mut *tx)
            .await?;
        let v = pb::Visit {
            id: id.clone(),
            household_id: household.id,
            community_id: household.community_id,
            cadre_id: new.cadre_id,
            at: Some(to_timestamp(new.at)),
            kind: new.kind.to_proto(),
            outcome: new.outcome.to_proto(),
            note: new.note,
        };
        let after = json!({ "id": v.id, "household_id": v.household_id, "cadre_id": v.cadre_id, "at": new.at, "kind": new.kind.as_str(), "outcome": new.outcome.as_str(), "note": v.note });
        audit::record(
            &mut tx,
            actor,
            Change::created(&v.community_id, "visit.log", "visit", &id, after),
        )
        .await?;
        tx.commit().await?;
        Ok(v)
    }

    pub async fn list_visits(
        &self,
        community_id: &str,
        household_id: &str,
        cadre_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Visit>, String)> {
        let sql = "SELECT community_id, id, household_id, cadre_id, at, kind, outcome, note FROM visits WHERE ($1 = '' OR community_id = $1) \
             AND ($2 = '' OR household_id = $2) AND ($3 = '' OR cadre_id = $3) AND id > $4 ORDER BY id LIMIT $5";
        fetch_page(
            &self.db,
            sql,
            vec![community_id.into(), household_id.into(), cadre_id.into()],
            page,
            visit_from_row,
            |v| &v.id,
        )
        .await
    }

    /// Which vulnerable households are overdue for a visit as of `as_of`. Care
    /// is evaluated afresh on that day, so a resident who has turned 80 counts
    /// even if nothing about the household has changed since.
    pub async fn compliance_report(
        &self,
        community_id: &str,
        as_of: Micros,
        overdue_only: bool,
    ) -> Result<pb::GetComplianceReportResponse> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_community(&mut conn, community_id).await?;
        let households = sqlx::query("SELECT id, address, care_since, created_at FROM households WHERE community_id = $1 AND created_at <= $2")
            .bind(community_id)
            .bind(as_of)
            .fetch_all(&mut *conn)
            .await?;
        let residents = sqlx::query(&format!(
            "SELECT {RESIDENT_COLS} FROM residents WHERE community_id = $1 AND created_at <= $2 AND (removed_at IS NULL OR removed_at > $2)"
        ))
        .bind(community_id)
        .bind(as_of)
        .fetch_all(&mut *conn)
        .await?;
        let last_visits: Vec<(String, i64)> = sqlx::query_as(
            "SELECT household_id, MAX(at) FROM visits WHERE community_id = $1 AND at <= $2 AND outcome <> $3 GROUP BY household_id",
        )
        .bind(community_id)
        .bind(as_of)
        .bind(domain::VisitOutcome::NotHome.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let last: HashMap<String, i64> = last_visits.into_iter().collect();
        let day = domain::local_day(as_of, self.utc_offset);
        let mut members: HashMap<String, Vec<pb::Resident>> = HashMap::new();
        for row in &residents {
            let r = resident_from_row(row, day)?;
            members.entry(r.household_id.clone()).or_default().push(r);
        }
        let mut report = pb::GetComplianceReportResponse {
            as_of: Some(to_timestamp(as_of)),
            ..Default::default()
        };
        for row in &households {
            let id: String = row.try_get("id")?;
            let care = self.policy.evaluate(&Self::member_facts(
                members.get(&id).map(Vec::as_slice).unwrap_or_default(),
                day,
            ));
            if !care.is_vulnerable() {
                continue;
            }
            report.vulnerable_households += 1;
            let care_since: Option<i64> = row.try_get("care_since")?;
            let since = care_since
                .filter(|s| *s <= as_of)
                .unwrap_or(row.try_get("created_at")?);
            let last_visit = last.get(&id).copied();
            let status = domain::visit_status(&care, since, last_visit, as_of);
            let overdue = status.overdue_micros > 0;
            if overdue {
                report.overdue_households += 1;
            } else if overdue_only {
                continue;
            }
            report.entries.push(pb::ComplianceEntry {
                household_id: id,
                address: row.try_get("address")?,
                care_level: care.level.to_proto(),
                visit_every_days: care.every_days,
                last_visit_at: opt_timestamp(last_visit),
                due_at: Some(to_timestamp(status.due_at)),
                overdue,
                overdue_seconds: status.overdue_micros / 1_000_000,
                reason: care.reason,
            });
        }
        report.entries.sort_by(|a, b| {
            b.overdue_seconds
                .cmp(&a.overdue_seconds)
                .then_with(|| a.household_id.cmp(&b.household_id))
        });
        Ok(report)
    }

    // ---- accounts ----

    async fn load_account(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Account> {
        fetch_by_id(
            conn,
            &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1"),
            id,
            "account",
            account_from_row,
        )
        .await
    }

    pub async fn get_account(&self, id: &str) -> Result<pb::Account> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_account(&mut conn, id).await
    }

    pub async fn create_account(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewAccount,
    ) -> Result<pb::Account> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) =
            idempotency::claim(&mut tx, "people.account", &idem.key, &idem.fingerprint, &id).await?
        {
            let a = self.load_account(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(a);
        }
        let taken: Option<(String,)> =
            sqlx::query_as("SELECT id FROM accounts WHERE username = $1")
                .bind(&new.username)
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(Error::AlreadyExists(format!(
                "the username {} is taken",
                new.username
            )));
        }
        if let Some(c) = &new.community_id {
            self.load_community(&mut tx, c).await?;
        }
        if let Some(c) = &new.cadre_id {
            self.load_cadre(&mut tx, c).await?;
        }
        if let Some(r) = &new.resident_id {
            let resident = self.load_resident(&mut tx, r).await?;
            if new.community_id.as_deref() != Some(resident.community_id.as_str()) {
                return Err(Error::invalid(
                    "resident_id",
                    "lives in another community than community_id",
                ));
            }
        }
        sqlx::query("INSERT INTO accounts (id, username, password_hash, role, community_id, cadre_id, resident_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(&id)
            .bind(&new.username)
            .bind(&new.password_hash)
            .bind(new.role.as_str())
            .bind(new.community_id.clone().unwrap_or_default())
            .bind(new.cadre_id.unwrap_or_default())
            .bind(new.resident_id.unwrap_or_default())
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        let a = self.load_account(&mut tx, &id).await?;
        let after = json!({ "id": a.id, "username": a.username, "role": new.role.as_str(), "community_id": a.community_id, "cadre_id": a.cadre_id, "resident_id": a.resident_id });
        audit::record(
            &mut tx,
            actor,
            Change::created("", "account.create", "account", &id, after),
        )
        .await?;
        tx.commit().await?;
        Ok(a)
    }

    pub async fn list_accounts(
        &self,
        community_id: &str,
        role: Option<Role>,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Account>, String)> {
        let sql = format!(
            "SELECT {ACCOUNT_COLS} FROM accounts WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR role = $2) AND id > $3 ORDER BY id LIMIT $4"
        );
        let role = role.map(|r| r.as_str()).unwrap_or_default();
        fetch_page(
            &self.db,
            &sql,
            vec![community_id.into(), role.into()],
            page,
            account_from_row,
            |a| &a.id,
        )
        .await
    }

    /// The account and its password hash, for a login check.
    pub async fn account_for_login(&self, username: &str) -> Result<Option<(pb::Account, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLS}, password_hash FROM accounts WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|r| Ok((account_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    // ---- summary ----

    pub async fn community_summary(
        &self,
        community_id: &str,
    ) -> Result<pb::GetCommunitySummaryResponse> {
        let mut conn = self.db.pool.acquire().await?;
        let community = self.load_community(&mut conn, community_id).await?;
        let (households, vulnerable, intensive): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN care_level >= $2 THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN care_level >= $3 THEN 1 ELSE 0 END), 0) AS BIGINT) FROM households WHERE community_id = $1",
        )
        .bind(community_id)
        .bind(i64::from(CareLevel::Watch.to_proto()))
        .bind(i64::from(CareLevel::Intensive.to_proto()))
        .fetch_one(&mut *conn)
        .await?;
        let count =
            |sql: &'static str| sqlx::query_as::<_, (i64,)>(sql).bind(community_id.to_owned());
        let (residents,) =
            count("SELECT COUNT(*) FROM residents WHERE community_id = $1 AND removed_at IS NULL")
                .fetch_one(&mut *conn)
                .await?;
        let (cadres,) = count(
            "SELECT COUNT(*) FROM registrations WHERE community_id = $1 AND state = 'active'",
        )
        .fetch_one(&mut *conn)
        .await?;
        let (paired,) = count("SELECT COUNT(DISTINCT household_id) FROM pairings WHERE community_id = $1 AND ended_at IS NULL").fetch_one(&mut *conn).await?;
        Ok(pb::GetCommunitySummaryResponse {
            community: Some(community),
            households: households as i32,
            residents: residents as i32,
            vulnerable_households: vulnerable as i32,
            intensive_care_households: intensive as i32,
            cadres_registered: cadres as i32,
            households_paired: paired as i32,
        })
    }

    /// The date of `at` in the service's time zone.
    pub fn local_date(&self, at: Micros) -> chrono::NaiveDate {
        domain::local_day(at, self.utc_offset)
    }
}

impl Store {
    /// When a resident record was made; the import tells new records from earlier ones by it.
    pub async fn resident_created_at(&self, id: &str) -> Result<Micros> {
        let (at,): (i64,) = sqlx::query_as("SELECT created_at FROM residents WHERE id = $1")
            .bind(id)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(at)
    }
}
