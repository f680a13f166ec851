//! On-site duty (每周下沉 check-ins and attendance) and visits to households with the care cadence they owe.
use std::collections::{BTreeMap, HashMap, HashSet};

use linli_core::time::opt_timestamp;
use serde_json::json;
use sqlx::Row;
use tonic::{Request, Response};

use linli_core::audit::Change;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{Micros, now_micros, past_or_now, to_timestamp};
use linli_core::validate::required_enum;
use linli_core::{Actor, Error, Result};
use linli_proto::people::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

impl TryFrom<pb::CheckInRequest> for NewCheckIn {
    type Error = Error;

    fn try_from(r: pb::CheckInRequest) -> Result<NewCheckIn> {
        Ok(NewCheckIn {
            cadre_id: parse_id("cadre_id", &r.cadre_id)?,
            community_id: parse_id("community_id", &r.community_id)?,
            at: past_or_now("at", r.at.as_ref())?,
            activity: parse_text("activity", &r.activity, MAX_TEXT_CHARS)?,
        })
    }
}

impl TryFrom<pb::LogVisitRequest> for NewVisit {
    type Error = Error;

    fn try_from(r: pb::LogVisitRequest) -> Result<NewVisit> {
        Ok(NewVisit {
            household_id: parse_id("household_id", &r.household_id)?,
            cadre_id: parse_id("cadre_id", &r.cadre_id)?,
            at: past_or_now("at", r.at.as_ref())?,
            kind: required_enum("kind", r.kind, domain::VisitKind::from_proto)?,
            outcome: required_enum("outcome", r.outcome, domain::VisitOutcome::from_proto)?,
            note: parse_text("note", &r.note, MAX_TEXT_CHARS)?,
        })
    }
}

pub(crate) async fn check_in(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::CheckInRequest>,
) -> Resp<pb::CheckInResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let new = NewCheckIn::try_from(r)?;
    actor.check_community_id(&new.community_id)?;
    check_own_cadre(actor, &new.cadre_id)?;
    let check_in = api.store.check_in(actor, &idem, new).await?;
    Ok(Response::new(pb::CheckInResponse {
        check_in: Some(check_in),
    }))
}

pub(crate) async fn list_check_ins(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ListCheckInsRequest>,
) -> Resp<pb::ListCheckInsResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let community = actor.community_filter("community_id", &r.community_id)?;
    let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
    let from = linli_core::time::optional("from", r.from.as_ref())?;
    let to = linli_core::time::optional("to", r.to.as_ref())?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(Error::invalid("to", "is before from").into());
    }
    let (check_ins, next_page_token) = api
        .store
        .list_check_ins(&community, &cadre, from, to, &page)
        .await?;
    Ok(Response::new(pb::ListCheckInsResponse {
        check_ins,
        next_page_token,
    }))
}

pub(crate) async fn get_attendance_report(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::GetAttendanceReportRequest>,
) -> Resp<pb::GetAttendanceReportResponse> {
    let r = req.into_inner();
    let unit = parse_opt_id("unit_id", &r.unit_id)?.unwrap_or_default();
    let community = if r.community_id.is_empty() && !unit.is_empty() && actor.is_county() {
        String::new()
    } else {
        actor.community_filter("community_id", &r.community_id)?
    };
    if community.is_empty() && unit.is_empty() {
        return Err(Error::invalid("community_id", "set community_id, unit_id or both").into());
    }
    let week_of =
        linli_core::time::optional("week_of", r.week_of.as_ref())?.unwrap_or_else(now_micros);
    Ok(Response::new(
        api.store
            .attendance_report(&community, &unit, week_of)
            .await?,
    ))
}

pub(crate) async fn log_visit(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::LogVisitRequest>,
) -> Resp<pb::LogVisitResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let new = NewVisit::try_from(r)?;
    api.household_in_reach(actor, &new.household_id).await?;
    check_own_cadre(actor, &new.cadre_id)?;
    let visit = api.store.log_visit(actor, &idem, new).await?;
    Ok(Response::new(pb::LogVisitResponse { visit: Some(visit) }))
}

pub(crate) async fn list_visits(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ListVisitsRequest>,
) -> Resp<pb::ListVisitsResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let community = actor.community_filter("community_id", &r.community_id)?;
    let household = parse_opt_id("household_id", &r.household_id)?.unwrap_or_default();
    let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
    let (visits, next_page_token) = api
        .store
        .list_visits(&community, &household, &cadre, &page)
        .await?;
    Ok(Response::new(pb::ListVisitsResponse {
        visits,
        next_page_token,
    }))
}

pub(crate) async fn get_compliance_report(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::GetComplianceReportRequest>,
) -> Resp<pb::GetComplianceReportResponse> {
    let r = req.into_inner();
    let community = actor.community_or_own("community_id", &r.community_id)?;
    let as_of = linli_core::time::optional("as_of", r.as_of.as_ref())?.unwrap_or_else(now_micros);
    Ok(Response::new(
        api.store
            .compliance_report(&community, as_of, r.overdue_only)
            .await?,
    ))
}

impl Store {
    pub async fn check_in(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewCheckIn,
    ) -> Result<pb::CheckIn> {
        idempotency::create(
            self,
            &self.db,
            actor,
            "people.check_in",
            idem,
            |_s, tx, existing| {
                Box::pin(async move {

                    let row = sqlx::query(
                        "SELECT community_id, id, cadre_id, at, activity FROM check_ins WHERE id = $1",
                    )
                    .bind(existing)
                    .fetch_one(&mut *tx)
                    .await?;
                    check_in_from_row(&row)
                })
            },
            |s, tx, id| {
                Box::pin(async move {

                    s.load_community(&mut *tx, &new.community_id).await?;
                    s.require_registered_at(&mut *tx, &new.cadre_id, &new.community_id, new.at)
                        .await?;
                    sqlx::query("INSERT INTO check_ins (community_id, id, cadre_id, at, activity) VALUES ($1, $2, $3, $4, $5)")
                        .bind(&new.community_id)
                        .bind(id)
                        .bind(&new.cadre_id)
                        .bind(new.at)
                        .bind(&new.activity)
                        .execute(&mut *tx)
                        .await?;
                    let c = pb::CheckIn {
                        id: id.to_owned(),
                        cadre_id: new.cadre_id,
                        community_id: new.community_id,
                        at: Some(to_timestamp(new.at)),
                        activity: new.activity,
                    };
                    let after =
                        json!({ "id": c.id, "cadre_id": c.cadre_id, "at": new.at, "activity": c.activity });
                    let change = Change::created(&c.community_id, "check_in.create", "check_in", id, after);
                    Ok(Made::new(c, change))
                })
            },
        )
        .await
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

    pub async fn log_visit(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewVisit,
    ) -> Result<pb::Visit> {
        idempotency::create(
            self,
            &self.db,
            actor,
            "people.visit",
            idem,
            |_s, tx, existing| {
                Box::pin(async move {

                    let row = sqlx::query("SELECT community_id, id, household_id, cadre_id, at, kind, outcome, note FROM visits WHERE id = $1").bind(existing).fetch_one(&mut *tx).await?;
                    visit_from_row(&row)
                })
            },
            |s, tx, id| {
                Box::pin(async move {

                    let household = s.load_household(&mut *tx, &new.household_id).await?;
                    s.require_registered(&mut *tx, &new.cadre_id, &household.community_id)
                        .await?;
                    sqlx::query("INSERT INTO visits (community_id, id, household_id, cadre_id, at, kind, outcome, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                        .bind(&household.community_id)
                        .bind(id)
                        .bind(&household.id)
                        .bind(&new.cadre_id)
                        .bind(new.at)
                        .bind(new.kind.as_str())
                        .bind(new.outcome.as_str())
                        .bind(&new.note)
                        .execute(&mut *tx)
                        .await?;
                    let v = pb::Visit {
                        id: id.to_owned(),
                        household_id: household.id,
                        community_id: household.community_id,
                        cadre_id: new.cadre_id,
                        at: Some(to_timestamp(new.at)),
                        kind: new.kind.to_proto(),
                        outcome: new.outcome.to_proto(),
                        note: new.note,
                    };
                    let after = json!({ "id": v.id, "household_id": v.household_id, "cadre_id": v.cadre_id, "at": new.at, "kind": new.kind.as_str(), "outcome": new.outcome.as_str(), "note": v.note });
                    let change = Change::created(&v.community_id, "visit.log", "visit", id, after);
                    Ok(Made::new(v, change))
                })
            },
        )
        .await
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
        // Only what care is judged by: a community's residents' names, phones
        // and ID numbers are not read (or held) to count its vulnerable households.
        let residents: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT household_id, birth_date, tags FROM residents WHERE community_id = $1 AND created_at <= $2 AND (removed_at IS NULL OR removed_at > $2)",
        )
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
        let mut members: HashMap<String, Vec<crate::care::MemberFacts>> = HashMap::new();
        for (household, birth_date, tags) in residents {
            members
                .entry(household)
                .or_default()
                .push(crate::care::MemberFacts::of(&birth_date, &tags, day));
        }
        let mut report = pb::GetComplianceReportResponse {
            as_of: Some(to_timestamp(as_of)),
            ..Default::default()
        };
        for row in &households {
            let id: String = row.try_get("id")?;
            let care = self
                .policy
                .evaluate(members.get(&id).map(Vec::as_slice).unwrap_or_default());
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
}
