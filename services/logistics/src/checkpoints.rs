//! Checkpoints and their rosters: whole-hour shifts for registered cadres, conflicts refused, gaps reported.
use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use sqlx::{AnyConnection, Row};
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::db::fetch_by_id;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{Micros, from_timestamp, now_micros, past_or_now, to_timestamp};
use linli_core::validate::{parse_id, parse_name, parse_opt_id};
use linli_core::{Actor, Error, Result, Role};
use linli_proto::logistics::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

/// A cadre listing their own shifts, across checkpoints.
pub(crate) fn own_shifts(actor: &Actor, cadre: &str) -> bool {
    actor.role == Role::Cadre && actor.cadre.as_deref() == Some(cadre)
}

pub(crate) async fn create_checkpoint(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::CreateCheckpointRequest>,
) -> Resp<pb::CreateCheckpointResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let community = parse_id("community_id", &r.community_id)?;
    actor.check_community_id(&community)?;
    let name = parse_name("name", &r.name)?;
    if !(1..=50).contains(&r.required_staff) {
        return Err(Error::invalid("required_staff", "must be from 1 to 50").into());
    }
    api.people.community(actor, &community).await?;
    let checkpoint = api
        .store
        .create_checkpoint(actor, &idem, &community, &name, r.required_staff)
        .await?;
    Ok(Response::new(pb::CreateCheckpointResponse {
        checkpoint: Some(checkpoint),
    }))
}

pub(crate) async fn list_checkpoints(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::ListCheckpointsRequest>,
) -> Resp<pb::ListCheckpointsResponse> {
    let community = actor.community_or_own("community_id", &req.get_ref().community_id)?;
    Ok(Response::new(pb::ListCheckpointsResponse {
        checkpoints: api.store.list_checkpoints(&community).await?,
    }))
}

pub(crate) async fn assign_shift(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::AssignShiftRequest>,
) -> Resp<pb::AssignShiftResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let checkpoint_id = parse_id("checkpoint_id", &r.checkpoint_id)?;
    let cadre = parse_id("cadre_id", &r.cadre_id)?;
    let start = from_timestamp(
        "starts_at",
        r.starts_at
            .as_ref()
            .ok_or_else(|| Error::required("starts_at"))?,
    )?;
    let end = from_timestamp(
        "ends_at",
        r.ends_at
            .as_ref()
            .ok_or_else(|| Error::required("ends_at"))?,
    )?;
    let span = domain::parse_shift(start, end)?;
    api.in_reach(actor, Owned::Checkpoint, &checkpoint_id)
        .await?;
    let checkpoint = api.store.checkpoint(&checkpoint_id).await?;
    let unit = api.people.cadre(actor, &cadre).await?.unit_id;
    if !api
        .people
        .is_registered(actor, &cadre, &checkpoint.community_id)
        .await?
    {
        return Err(api
            .people
            .not_registered(actor, &cadre, &checkpoint.community_id)
            .await
            .into());
    }
    let shift = api
        .store
        .assign_shift(actor, &idem, &checkpoint_id, &cadre, &unit, span)
        .await?;
    Ok(Response::new(pb::AssignShiftResponse {
        shift: Some(shift),
    }))
}

pub(crate) async fn cancel_shift(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::CancelShiftRequest>,
) -> Resp<pb::CancelShiftResponse> {
    let id = parse_id("shift_id", &req.get_ref().shift_id)?;
    api.in_reach(actor, Owned::Shift, &id).await?;
    let shift = api
        .store
        .update_shift(actor, &id, ShiftAction::Cancel, now_micros())
        .await?;
    Ok(Response::new(pb::CancelShiftResponse {
        shift: Some(shift),
    }))
}

pub(crate) async fn check_in_shift(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::CheckInShiftRequest>,
) -> Resp<pb::CheckInShiftResponse> {
    let id = parse_id("shift_id", &req.get_ref().shift_id)?;
    api.own_in_reach(actor, Owned::Shift, &id).await?;
    let at = past_or_now("at", req.get_ref().at.as_ref())?;
    let shift = api
        .store
        .update_shift(actor, &id, ShiftAction::CheckIn, at)
        .await?;
    Ok(Response::new(pb::CheckInShiftResponse {
        shift: Some(shift),
    }))
}

pub(crate) async fn check_out_shift(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::CheckOutShiftRequest>,
) -> Resp<pb::CheckOutShiftResponse> {
    let id = parse_id("shift_id", &req.get_ref().shift_id)?;
    api.own_in_reach(actor, Owned::Shift, &id).await?;
    let at = past_or_now("at", req.get_ref().at.as_ref())?;
    let shift = api
        .store
        .update_shift(actor, &id, ShiftAction::CheckOut, at)
        .await?;
    Ok(Response::new(pb::CheckOutShiftResponse {
        shift: Some(shift),
    }))
}

pub(crate) async fn list_shifts(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::ListShiftsRequest>,
) -> Resp<pb::ListShiftsResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let checkpoint = parse_opt_id("checkpoint_id", &r.checkpoint_id)?.unwrap_or_default();
    let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
    if !checkpoint.is_empty() {
        api.in_reach(actor, Owned::Checkpoint, &checkpoint).await?;
    } else if !(actor.is_county() || own_shifts(actor, &cadre)) {
        // Shifts are listed by checkpoint; a cadre may list their own across checkpoints.
        return Err(Error::required("checkpoint_id").into());
    }
    let from = linli_core::time::optional("from", r.from.as_ref())?.unwrap_or(i64::MIN);
    let to = linli_core::time::optional("to", r.to.as_ref())?.unwrap_or(i64::MAX);
    let (shifts, next_page_token) = api
        .store
        .list_shifts(&checkpoint, &cadre, from, to, &page)
        .await?;
    Ok(Response::new(pb::ListShiftsResponse {
        shifts,
        next_page_token,
    }))
}

pub(crate) async fn get_roster_report(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::GetRosterReportRequest>,
) -> Resp<pb::GetRosterReportResponse> {
    let r = req.into_inner();
    let community = actor.community_or_own("community_id", &r.community_id)?;
    let from = from_timestamp(
        "from",
        r.from.as_ref().ok_or_else(|| Error::required("from"))?,
    )?;
    let to = from_timestamp("to", r.to.as_ref().ok_or_else(|| Error::required("to"))?)?;
    if from % domain::HOUR != 0 {
        return Err(Error::invalid("from", "must be on the hour").into());
    }
    if to <= from || (to - from) % domain::HOUR != 0 || to - from > 120 * domain::DAY {
        return Err(
            Error::invalid("to", "must be whole hours after from, at most 120 days").into(),
        );
    }
    Ok(Response::new(
        api.store.roster_report(&community, from, to).await?,
    ))
}

impl Store {
    pub async fn create_checkpoint(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        community_id: &str,
        name: &str,
        required_staff: i32,
    ) -> Result<pb::Checkpoint> {
        idempotency::create(
            &(self, community_id, name),
            &self.db,
            actor,
            "logistics.checkpoint",
            idem,
            |&(s, _community_id, _name), tx, existing| {
                Box::pin(async move {

                    let c = s.load_checkpoint(&mut *tx, existing).await?;
                    Ok(c)
                })
            },
            |&(_s, community_id, name), tx, id| {
                Box::pin(async move {

                    sqlx::query("INSERT INTO checkpoints (community_id, id, name, required_staff, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(community_id)
                        .bind(id)
                        .bind(name)
                        .bind(i64::from(required_staff))
                        .bind(now_micros())
                        .execute(&mut *tx)
                        .await?;
                    let change = Change::created(
                            community_id,
                            "checkpoint.create",
                            "checkpoint",
                            id,
                            json!({ "name": name, "required_staff": required_staff }),
                        );
                    Ok(Made::new(pb::Checkpoint {
            id: id.to_owned(),
            community_id: community_id.into(),
            name: name.into(),
            required_staff,
        }, change))
                })
            },
        )
        .await
    }

    pub(crate) async fn load_checkpoint(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::Checkpoint> {
        fetch_by_id(
            conn,
            "SELECT community_id, id, name, required_staff FROM checkpoints WHERE id = $1",
            id,
            "checkpoint",
            checkpoint_from_row,
        )
        .await
    }

    pub async fn checkpoint(&self, id: &str) -> Result<pb::Checkpoint> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_checkpoint(&mut conn, id).await
    }

    pub async fn list_checkpoints(&self, community_id: &str) -> Result<Vec<pb::Checkpoint>> {
        let rows = sqlx::query("SELECT community_id, id, name, required_staff FROM checkpoints WHERE community_id = $1 ORDER BY id").bind(community_id).fetch_all(&self.db.pool).await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    /// Puts a cadre on a shift, unless they are elsewhere then or over the hours rule.
    pub async fn assign_shift(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        checkpoint_id: &str,
        cadre_id: &str,
        unit_id: &str,
        span: Span,
    ) -> Result<pb::Shift> {
        idempotency::create(
            &(self, checkpoint_id, cadre_id, unit_id),
            &self.db,
            actor,
            "logistics.shift",
            idem,
            |&(s, checkpoint_id, _cadre_id, _unit_id), tx, existing| {
                Box::pin(async move {
                    let _checkpoint = s.load_checkpoint(&mut *tx, checkpoint_id).await?;
                    let s = s.load_shift(&mut *tx, existing).await?;
                    Ok(s)
                })
            },
            |&(s, checkpoint_id, cadre_id, unit_id), tx, id| {
                Box::pin(async move {
                    let checkpoint = s.load_checkpoint(&mut *tx, checkpoint_id).await?;
                    // The cadre's lock row orders concurrent assignments of one cadre, across checkpoints and replicas.
                    sqlx::query("INSERT INTO cadre_locks (cadre_id, version) VALUES ($1, 0) ON CONFLICT (cadre_id) DO NOTHING").bind(cadre_id).execute(&mut *tx).await?;
                    sqlx::query("UPDATE cadre_locks SET version = version + 1 WHERE cadre_id = $1")
                        .bind(cadre_id)
                        .execute(&mut *tx)
                        .await?;
                    let others: Vec<(i64, i64)> = sqlx::query_as("SELECT starts_at, ends_at FROM shifts WHERE cadre_id = $1 AND cancelled = 0 AND ends_at > $2 AND starts_at < $3")
                        .bind(cadre_id)
                        .bind(span.start - domain::DAY)
                        .bind(span.end + domain::DAY)
                        .fetch_all(&mut *tx)
                        .await?;
                    let others: Vec<Span> = others
                        .into_iter()
                        .map(|(start, end)| Span { start, end })
                        .collect();
                    domain::check_shift(span, &others, s.max_duty_hours_per_day, s.utc_offset)?;
                    sqlx::query(&format!(
                        "INSERT INTO shifts ({SHIFT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, 0)"
                    ))
                    .bind(&checkpoint.community_id)
                    .bind(id)
                    .bind(checkpoint_id)
                    .bind(cadre_id)
                    .bind(unit_id)
                    .bind(span.start)
                    .bind(span.end)
                    .execute(&mut *tx)
                    .await?;
                    let shift = s.load_shift(&mut *tx, id).await?;
                    let after = json!({ "checkpoint_id": checkpoint_id, "cadre_id": cadre_id, "starts_at": span.start, "ends_at": span.end });
                    let change = Change::created(
                            &checkpoint.community_id,
                            "shift.assign",
                            "shift",
                            id,
                            after,
                        );
                    Ok(Made::new(shift, change))
                })
            },
        )
        .await
    }

    pub(crate) async fn load_shift(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Shift> {
        fetch_by_id(
            conn,
            &format!("SELECT {SHIFT_COLS} FROM shifts WHERE id = $1"),
            id,
            "shift",
            shift_from_row,
        )
        .await
    }

    /// Cancels, checks in to or checks out of a shift.
    pub async fn update_shift(
        &self,
        actor: &Actor,
        id: &str,
        action: ShiftAction,
        at: Micros,
    ) -> Result<pb::Shift> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_shift(&mut tx, id).await?;
        if before.cancelled {
            return Err(Error::FailedPrecondition("the shift was cancelled".into()));
        }
        let (sql, name) = match action {
            ShiftAction::Cancel if before.checked_in_at.is_some() => {
                return Err(Error::FailedPrecondition(
                    "the shift has started; it cannot be cancelled".into(),
                ));
            }
            ShiftAction::Cancel => (
                "UPDATE shifts SET cancelled = 1 WHERE community_id = $1 AND id = $2 AND $3 >= 0",
                "shift.cancel",
            ),
            ShiftAction::CheckIn if before.checked_in_at.is_some() => {
                return Err(Error::FailedPrecondition("already checked in".into()));
            }
            ShiftAction::CheckIn => (
                "UPDATE shifts SET checked_in_at = $3 WHERE community_id = $1 AND id = $2",
                "shift.check_in",
            ),
            ShiftAction::CheckOut if before.checked_in_at.is_none() => {
                return Err(Error::FailedPrecondition(
                    "check in before checking out".into(),
                ));
            }
            ShiftAction::CheckOut if before.checked_out_at.is_some() => {
                return Err(Error::FailedPrecondition("already checked out".into()));
            }
            ShiftAction::CheckOut => {
                if before
                    .checked_in_at
                    .as_ref()
                    .is_some_and(|t| linli_core::time::micros(t) > at)
                {
                    return Err(Error::invalid("at", "is before the check-in"));
                }
                (
                    "UPDATE shifts SET checked_out_at = $3 WHERE community_id = $1 AND id = $2",
                    "shift.check_out",
                )
            }
        };
        sqlx::query(sql)
            .bind(&before.community_id)
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        let after = self.load_shift(&mut tx, id).await?;
        let snap = |s: &pb::Shift| json!({ "cancelled": s.cancelled, "checked_in": s.checked_in_at.is_some(), "checked_out": s.checked_out_at.is_some() });
        audit::record(
            &mut tx,
            actor,
            Change::updated(
                &after.community_id,
                name,
                "shift",
                id,
                snap(&before),
                snap(&after),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn list_shifts(
        &self,
        checkpoint_id: &str,
        cadre_id: &str,
        from: Micros,
        to: Micros,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Shift>, String)> {
        let sql = format!(
            "SELECT {SHIFT_COLS} FROM shifts WHERE ($1 = '' OR checkpoint_id = $1) AND ($2 = '' OR cadre_id = $2) AND ends_at > $3 AND starts_at < $4 AND id > $5 ORDER BY id LIMIT $6"
        );
        fetch_page(
            &self.db,
            &sql,
            vec![
                checkpoint_id.into(),
                cadre_id.into(),
                from.into(),
                to.into(),
            ],
            page,
            shift_from_row,
            |s| &s.id,
        )
        .await
    }

    /// Gaps, coverage and person-shifts of a community's checkpoints over [from, to).
    pub async fn roster_report(
        &self,
        community_id: &str,
        from: Micros,
        to: Micros,
    ) -> Result<pb::GetRosterReportResponse> {
        let checkpoints = self.list_checkpoints(community_id).await?;
        let rows = sqlx::query(&format!("SELECT {SHIFT_COLS} FROM shifts WHERE community_id = $1 AND cancelled = 0 AND ends_at > $2 AND starts_at < $3"))
            .bind(community_id)
            .bind(from)
            .bind(to)
            .fetch_all(&self.db.pool)
            .await?;
        let mut spans: HashMap<String, Vec<Span>> = HashMap::new();
        let mut by_cadre: BTreeMap<String, (i32, i64)> = BTreeMap::new();
        let mut by_unit: BTreeMap<String, (i32, i64)> = BTreeMap::new();
        let mut report = pb::GetRosterReportResponse::default();
        for row in &rows {
            let (start, end): (i64, i64) = (row.try_get("starts_at")?, row.try_get("ends_at")?);
            let checkpoint: String = row.try_get("checkpoint_id")?;
            spans
                .entry(checkpoint)
                .or_default()
                .push(Span { start, end });
            if (from..to).contains(&start) {
                report.person_shifts += 1;
                let hours = (end - start) / domain::HOUR;
                for (map, key) in [
                    (&mut by_cadre, row.try_get::<String, _>("cadre_id")?),
                    (&mut by_unit, row.try_get::<String, _>("unit_id")?),
                ] {
                    let e = map.entry(key).or_default();
                    e.0 += 1;
                    e.1 += hours;
                }
            }
        }
        let hours = ((to - from) / domain::HOUR) as i32;
        for c in &checkpoints {
            let gaps = domain::gaps(
                c.required_staff,
                spans.get(&c.id).map(Vec::as_slice).unwrap_or_default(),
                from,
                to,
            );
            let gap_hours: i64 = gaps.iter().map(|(s, e, _)| (e - s) / domain::HOUR).sum();
            report.coverage.push(pb::CheckpointCoverage {
                checkpoint_id: c.id.clone(),
                hours,
                covered_hours: hours - gap_hours as i32,
            });
            report
                .gaps
                .extend(gaps.into_iter().map(|(s, e, staffed)| pb::Gap {
                    checkpoint_id: c.id.clone(),
                    starts_at: Some(to_timestamp(s)),
                    ends_at: Some(to_timestamp(e)),
                    staffed,
                    required: c.required_staff,
                }));
        }
        let totals = |m: BTreeMap<String, (i32, i64)>| {
            m.into_iter()
                .map(|(id, (shifts, hours))| pb::PersonShifts { id, shifts, hours })
                .collect()
        };
        report.by_cadre = totals(by_cadre);
        report.by_unit = totals(by_unit);
        Ok(report)
    }
}
