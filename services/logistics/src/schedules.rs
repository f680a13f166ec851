//! Recurring deliveries: each occurrence planned once, whichever replica's scheduler gets there first.

use serde_json::json;
use sqlx::Row;
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::time::{Micros, now_micros, past_or_now};
use linli_core::validate::{parse_id, parse_name};
use linli_core::{Actor, Error, Result, new_id};
use linli_proto::logistics::v1 as pb;

use linli_core::auth::Keys;
use linli_core::people::People;

use crate::context::*;
use crate::domain::{self};
use crate::store::*;

pub(crate) async fn create_recurring_delivery(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::CreateRecurringDeliveryRequest>,
) -> Resp<pb::CreateRecurringDeliveryResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let community = parse_id("community_id", &r.community_id)?;
    actor.check_community_id(&community)?;
    let depot_id = parse_id("depot_id", &r.depot_id)?;
    let name = parse_name("name", &r.name)?;
    let bundle = parse_bundle("bundle", &r.bundle)?;
    let recipients = parse_recipients(r.recipients.as_ref())?;
    if !(1..=90).contains(&r.every_days) {
        return Err(Error::invalid("every_days", "must be from 1 to 90").into());
    }
    let first_at =
        linli_core::time::optional("first_at", r.first_at.as_ref())?.unwrap_or_else(now_micros);
    let depot = api.store.depot(&depot_id).await?;
    if depot.community_id != community {
        return Err(Error::invalid("depot_id", "is in another community").into());
    }
    let json = serde_json::to_string(&recipients).map_err(|e| Error::Internal(e.into()))?;
    let schedule_id = api
        .store
        .create_schedule(
            actor,
            &idem,
            NewSchedule {
                depot_id: &depot_id,
                name: &name,
                bundle: &bundle,
                recipients_json: &json,
                every_days: i64::from(r.every_days),
                first_at,
            },
        )
        .await?;
    Ok(Response::new(pb::CreateRecurringDeliveryResponse {
        schedule_id,
    }))
}

pub(crate) async fn run_schedules(
    api: &LogisticsApi,
    req: Request<pb::RunSchedulesRequest>,
) -> Resp<pb::RunSchedulesResponse> {
    let as_of = past_or_now("as_of", req.get_ref().as_of.as_ref())?;
    Ok(Response::new(pb::RunSchedulesResponse {
        batches: LogisticsApi::run_schedules(&api.store, &api.people, &api.keys, as_of).await?,
    }))
}

impl Store {
    pub async fn create_schedule(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewSchedule<'_>,
    ) -> Result<String> {
        let NewSchedule {
            depot_id,
            name,
            bundle,
            recipients_json,
            every_days,
            first_at,
        } = new;
        idempotency::create(
            &(self, depot_id, name, bundle, recipients_json),
            &self.db,
            actor,
            "logistics.schedule",
            idem,
            |_, _, existing| Box::pin(std::future::ready(Ok(existing.to_owned()))),
            |&(s, depot_id, name, bundle, recipients_json), tx, id| {
                Box::pin(async move {
                    let depot = s.load_depot(&mut *tx, depot_id).await?;
                    s.check_items(&mut *tx, bundle).await?;
                    sqlx::query("INSERT INTO schedules (community_id, id, depot_id, name, bundle_json, recipients_json, every_days, next_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                        .bind(&depot.community_id)
                        .bind(id)
                        .bind(depot_id)
                        .bind(name)
                        .bind(lines_to_json(bundle))
                        .bind(recipients_json)
                        .bind(every_days)
                        .bind(first_at)
                        .bind(now_micros())
                        .execute(&mut *tx)
                        .await?;
                    let after = json!({ "name": name, "depot_id": depot_id, "bundle": bundle, "every_days": every_days, "first_at": first_at });
                    let change = Change::created(
                            &depot.community_id,
                            "schedule.create",
                            "schedule",
                            id,
                            after,
                        );
                    Ok(Made::new(id.to_owned(), change))
                })
            },
        )
        .await
    }

    /// Schedules due at `as_of`: (id, community, depot, name, bundle, recipients JSON, every_days, next_at).
    pub async fn due_schedules(&self, as_of: Micros) -> Result<Vec<DueSchedule>> {
        let rows = sqlx::query("SELECT community_id, id, depot_id, name, bundle_json, recipients_json, every_days, next_at FROM schedules WHERE next_at <= $1 ORDER BY next_at")
            .bind(as_of)
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DueSchedule {
                    id: r.try_get("id")?,
                    community_id: r.try_get("community_id")?,
                    depot_id: r.try_get("depot_id")?,
                    name: r.try_get("name")?,
                    bundle: lines_from_json(&r.try_get::<String, _>("bundle_json")?),
                    recipients_json: r.try_get("recipients_json")?,
                    every_days: r.try_get("every_days")?,
                    next_at: r.try_get("next_at")?,
                })
            })
            .collect()
    }

    /// Plans one occurrence of a schedule and moves it on, once, whichever replica gets there first.
    pub async fn run_occurrence(
        &self,
        actor: &Actor,
        s: &DueSchedule,
        households: Vec<(String, i32)>,
    ) -> Result<Option<pb::Batch>> {
        let mut tx = self.db.begin_write().await?;
        let advanced = sqlx::query("UPDATE schedules SET next_at = $3 WHERE community_id = $1 AND id = $2 AND next_at = $4")
            .bind(&s.community_id)
            .bind(&s.id)
            .bind(s.next_at + s.every_days * domain::DAY)
            .bind(s.next_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if advanced == 0 {
            return Ok(None);
        }
        let name = format!(
            "{} ({})",
            s.name,
            linli_core::time::to_datetime(s.next_at).format("%Y-%m-%d")
        );
        let recipients = households
            .into_iter()
            .map(|(household_id, care_level)| Recipient {
                household_id,
                care_level,
                lines: s.bundle.clone(),
            })
            .collect();
        let source = format!("schedule:{}", s.id);
        let (batch, change) = self
            .create_batch(
                &mut tx,
                actor,
                NewBatch {
                    id: new_id(),
                    community_id: &s.community_id,
                    depot_id: &s.depot_id,
                    name: &name,
                    bundle: &s.bundle,
                    source: &source,
                    recipients,
                },
            )
            .await?;
        audit::record(&mut tx, actor, change).await?;
        tx.commit().await?;
        Ok(Some(batch))
    }
}

impl LogisticsApi {
    /// Plans every recurring delivery that is due; shared by the RPC and the timer.
    pub async fn run_schedules(
        store: &Store,
        people: &People,
        keys: &Keys,
        as_of: i64,
    ) -> Result<Vec<pb::Batch>> {
        // Schedules are planned by the service itself, whoever triggered the run.
        let actor = keys.service_actor("logistics");
        let mut out = Vec::new();
        for s in store.due_schedules(as_of).await? {
            // One schedule that cannot be planned (out of stock, a bad row) is
            // logged and retried at the next run; it never holds up the others.
            match Self::run_one(store, people, &actor, &s).await {
                Ok(Some(batch)) => out.push(batch),
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    schedule = %s.id,
                    community = %s.community_id,
                    error = %e,
                    "recurring delivery not planned; retrying at the next run"
                ),
            }
        }
        Ok(out)
    }

    async fn run_one(
        store: &Store,
        people: &People,
        actor: &Actor,
        s: &crate::store::DueSchedule,
    ) -> Result<Option<pb::Batch>> {
        let recipients: Recipients =
            serde_json::from_str(&s.recipients_json).map_err(|e| Error::Internal(e.into()))?;
        let households = Self::households(people, actor, &s.community_id, &recipients).await?;
        store.run_occurrence(actor, s, households).await
    }
}
