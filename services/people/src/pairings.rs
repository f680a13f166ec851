//! Pairings (包户, 三包一): at most three carers look after a household.
use std::collections::HashSet;

use sqlx::AnyConnection;
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::db::fetch_by_id;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::now_micros;
use linli_core::validate::required_enum;
use linli_core::{Actor, Error, Result};
use linli_proto::people::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

impl TryFrom<pb::PairHouseholdRequest> for NewPairing {
    type Error = Error;

    /// A cadre is named by their record; the other carers by name and phone.
    fn try_from(r: pb::PairHouseholdRequest) -> Result<NewPairing> {
        let role = required_enum("role", r.role, domain::PairingRole::from_proto)?;
        let cadre_id = parse_opt_id("cadre_id", &r.cadre_id)?;
        let member_name = match (role, &cadre_id) {
            (domain::PairingRole::Cadre, None) => {
                return Err(Error::invalid("cadre_id", "is required for the cadre role"));
            }
            (domain::PairingRole::Cadre, Some(_)) => None,
            (_, Some(_)) => {
                return Err(Error::invalid("cadre_id", "is only for the cadre role"));
            }
            (_, None) => Some(parse_name("member_name", &r.member_name)?),
        };
        Ok(NewPairing {
            household_id: parse_id("household_id", &r.household_id)?,
            role,
            cadre_id,
            member_name,
            member_phone: domain::parse_phone("member_phone", &r.member_phone)?,
        })
    }
}

pub(crate) async fn pair_household(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::PairHouseholdRequest>,
) -> Resp<pb::PairHouseholdResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let new = NewPairing::try_from(r)?;
    api.household_in_reach(actor, &new.household_id).await?;
    let pairing = api.store.pair_household(actor, &idem, new).await?;
    Ok(Response::new(pb::PairHouseholdResponse {
        pairing: Some(present_pairing(pairing, actor)),
    }))
}

pub(crate) async fn end_pairing(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::EndPairingRequest>,
) -> Resp<pb::EndPairingResponse> {
    let id = parse_id("pairing_id", &req.get_ref().pairing_id)?;
    let reason = parse_text("reason", &req.get_ref().reason, MAX_TEXT_CHARS)?;
    let pairing = api.store.get_pairing(&id).await?;
    actor.check_community("pairing", &id, &pairing.community_id)?;
    let pairing = api.store.end_pairing(actor, &id, &reason).await?;
    Ok(Response::new(pb::EndPairingResponse {
        pairing: Some(present_pairing(pairing, actor)),
    }))
}

pub(crate) async fn list_pairings(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ListPairingsRequest>,
) -> Resp<pb::ListPairingsResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let community = actor.community_filter("community_id", &r.community_id)?;
    let household = parse_opt_id("household_id", &r.household_id)?.unwrap_or_default();
    let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
    let (pairings, next_page_token) = api
        .store
        .list_pairings(&community, &household, &cadre, r.include_ended, &page)
        .await?;
    Ok(Response::new(pb::ListPairingsResponse {
        pairings: pairings
            .into_iter()
            .map(|p| present_pairing(p, actor))
            .collect(),
        next_page_token,
    }))
}

pub(crate) async fn get_coverage_report(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::GetCoverageReportRequest>,
) -> Resp<pb::GetCoverageReportResponse> {
    let community = actor.community_or_own("community_id", &req.get_ref().community_id)?;
    Ok(Response::new(api.store.coverage_report(&community).await?))
}

impl Store {
    pub(crate) async fn load_pairing(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::Pairing> {
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
        idempotency::create(
            self,
            &self.db,
            actor,
            "people.pairing",
            idem,
            |s, tx, existing| {
                Box::pin(async move {

                    let p = s.load_pairing(&mut *tx, existing).await?;
                    Ok(p)
                })
            },
            |s, tx, id| {
                Box::pin(async move {

                    let household = s.load_household(&mut *tx, &new.household_id).await?;
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
                            s.require_registered(&mut *tx, cadre_id, &household.community_id)
                                .await?;
                            let c = s.load_cadre(&mut *tx, cadre_id).await?;
                            (c.name, new.member_phone.clone().map_or(c.phone, Phone::into_inner))
                        }
                        None => (
                            new.member_name.clone().unwrap_or_default(),
                            new.member_phone.clone().map(Phone::into_inner).unwrap_or_default(),
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
                        .bind(id)
                        .bind(&household.id)
                        .bind(new.role.as_str())
                        .bind(new.cadre_id.unwrap_or_default())
                        .bind(&name)
                        .bind(&phone)
                        .bind(now_micros())
                        .execute(&mut *tx)
                        .await?;
                    let p = s.load_pairing(&mut *tx, id).await?;
                    let change = Change::created(
                            &p.community_id,
                            "pairing.create",
                            "pairing",
                            id,
                            pairing_json(&p),
                        );
                    Ok(Made::new(p, change))
                })
            },
        )
        .await
    }

    pub(crate) async fn end_pairing_in(
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
}
