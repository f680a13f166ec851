//! Households: the unit care is planned for, their care level kept current as members change.

use sqlx::AnyConnection;
use tonic::{Request, Response};

use linli_core::audit::Change;
use linli_core::db::fetch_by_id;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::now_micros;
use linli_core::validate::optional_enum;
use linli_core::{Actor, Error, Result};
use linli_proto::people::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

impl TryFrom<pb::CreateHouseholdRequest> for NewHousehold {
    type Error = Error;

    /// The request checked field by field (its idempotency key already taken out).
    fn try_from(r: pb::CreateHouseholdRequest) -> Result<NewHousehold> {
        let address = parse_text("address", &r.address, 200)?;
        if address.is_empty() {
            return Err(Error::invalid("address", "must not be empty"));
        }
        Ok(NewHousehold {
            community_id: parse_id("community_id", &r.community_id)?,
            compound_id: parse_opt_id("compound_id", &r.compound_id)?,
            building_id: parse_opt_id("building_id", &r.building_id)?,
            address,
            external_ref: parse_text("external_ref", &r.external_ref, 64)?,
        })
    }
}

pub(crate) async fn create_household(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::CreateHouseholdRequest>,
) -> Resp<pb::CreateHouseholdResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let new = NewHousehold::try_from(r)?;
    actor.check_community_id(&new.community_id)?;
    let household = api.store.create_household(actor, &idem, new).await?;
    Ok(Response::new(pb::CreateHouseholdResponse {
        household: Some(household),
    }))
}

pub(crate) async fn get_household(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::GetHouseholdRequest>,
) -> Resp<pb::GetHouseholdResponse> {
    let full = full_view(actor, req.get_ref().view)?;
    let id = parse_id("household_id", &req.get_ref().household_id)?;
    let p = api.store.household_profile(&id).await?;
    actor.check_community("household", &id, &p.household.community_id)?;
    actor.check_household(&id)?;
    Ok(Response::new(pb::GetHouseholdResponse {
        household: Some(p.household),
        residents: p.residents.into_iter().map(|r| present(r, full)).collect(),
        care: Some(pb::Care {
            level: p.care.level.to_proto(),
            visit_every_days: p.care.every_days,
            reason: p.care.reason,
        }),
        pairings: p
            .pairings
            .into_iter()
            .map(|p| present_pairing(p, actor))
            .collect(),
    }))
}

pub(crate) async fn list_households(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ListHouseholdsRequest>,
) -> Resp<pb::ListHouseholdsResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let community = actor.community_or_own("community_id", &r.community_id)?;
    let compound = parse_opt_id("compound_id", &r.compound_id)?.unwrap_or_default();
    let min = optional_enum(
        "min_care_level",
        r.min_care_level,
        domain::CareLevel::from_proto,
    )?;
    let (households, next_page_token) = api
        .store
        .list_households(&community, &compound, min, &page)
        .await?;
    Ok(Response::new(pb::ListHouseholdsResponse {
        households,
        next_page_token,
    }))
}

impl Store {
    pub(crate) async fn load_household(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::Household> {
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
        idempotency::create(
            self,
            &self.db,
            actor,
            "people.household",
            idem,
            |s, tx, existing| {
                Box::pin(async move {

                    let h = s.load_household(&mut *tx, existing).await?;
                    Ok(h)
                })
            },
            |s, tx, id| {
                Box::pin(async move {

                    s.load_community(&mut *tx, &new.community_id).await?;
                    let compound = match &new.compound_id {
                        Some(cid) => match s.load_place(&mut *tx, cid).await? {
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
                        match s.load_place(&mut *tx, bid).await? {
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
                    .bind(id)
                    .bind(new.compound_id.unwrap_or_default())
                    .bind(new.building_id.unwrap_or_default())
                    .bind(&new.address)
                    .bind(&new.external_ref)
                    .bind(i64::from(none.level.to_proto()))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let h = s.load_household(&mut *tx, id).await?;
                    let change = Change::created(
                            &h.community_id,
                            "household.create",
                            "household",
                            &h.id,
                            household_json(&h),
                        );
                    Ok(Made::new(h, change))
                })
            },
        )
        .await
    }

    pub(crate) async fn load_residents(
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

    pub(crate) fn member_facts(
        residents: &[pb::Resident],
        on: chrono::NaiveDate,
    ) -> Vec<MemberFacts> {
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
    /// Recomputes a household's member count and care level after its members
    /// changed; the change to the household, if any, for the caller to record.
    pub(crate) async fn refresh_household(
        &self,
        conn: &mut AnyConnection,
        community_id: &str,
        household_id: &str,
    ) -> Result<Option<Change>> {
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
            return Ok(Some(Change::updated(
                community_id,
                "household.care",
                "household",
                household_id,
                household_json(&before),
                household_json(&after),
            )));
        }
        Ok(None)
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
}
