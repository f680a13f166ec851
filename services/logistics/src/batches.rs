//! Distribution batches and their deliveries: planned most vulnerable first, assigned to registered cadres, confirmed at the door.
use std::collections::BTreeMap;

use serde_json::json;
use sqlx::AnyConnection;
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::db::fetch_by_id;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{now_micros, past_or_now, to_timestamp};
use linli_core::validate::{
    optional_enum, parse_id, parse_name, parse_opt_id, parse_text, required_enum,
};
use linli_core::{Actor, Error, Result, new_id};
use linli_proto::logistics::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::stock::move_stock;
use crate::store::*;

/// Where batch keys are kept.
const BATCH_SCOPE: &str = "logistics.batch";

pub(crate) async fn plan_batch(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::PlanBatchRequest>,
) -> Resp<pb::PlanBatchResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let community = parse_id("community_id", &r.community_id)?;
    actor.check_community_id(&community)?;
    let depot_id = parse_id("depot_id", &r.depot_id)?;
    let name = parse_name("name", &r.name)?;
    let bundle = parse_bundle("bundle", &r.bundle)?;
    let recipients = parse_recipients(r.recipients.as_ref())?;
    let depot = api.store.depot(&depot_id).await?;
    if depot.community_id != community {
        return Err(Error::invalid("depot_id", "is in another community").into());
    }
    // A retry gets the batch it made, without asking people again.
    if let Some(id) = idempotency::replayed(&api.store.db, BATCH_SCOPE, &idem).await? {
        let batch = api.store.batch(&id).await?;
        return Ok(Response::new(pb::PlanBatchResponse { batch: Some(batch) }));
    }
    // Ask people first: if it cannot answer, nothing is reserved.
    let households = LogisticsApi::households(&api.people, actor, &community, &recipients).await?;
    let batch = api
        .store
        .plan_batch(actor, &idem, &depot_id, &name, &bundle, households)
        .await?;
    Ok(Response::new(pb::PlanBatchResponse { batch: Some(batch) }))
}

pub(crate) async fn assign_deliveries(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::AssignDeliveriesRequest>,
) -> Resp<pb::AssignDeliveriesResponse> {
    let r = req.into_inner();
    let batch_id = parse_id("batch_id", &r.batch_id)?;
    let cadre = parse_id("cadre_id", &r.cadre_id)?;
    let ids = r
        .delivery_ids
        .iter()
        .enumerate()
        .map(|(i, d)| parse_id(&format!("delivery_ids[{i}]"), d))
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() && !(1..=500).contains(&r.count) {
        return Err(Error::invalid("count", "give delivery_ids, or a count from 1 to 500").into());
    }
    api.in_reach(actor, Owned::Batch, &batch_id).await?;
    let batch = api.store.batch(&batch_id).await?;
    if !api
        .people
        .is_registered(actor, &cadre, &batch.community_id)
        .await?
    {
        return Err(api
            .people
            .not_registered(actor, &cadre, &batch.community_id)
            .await
            .into());
    }
    let deliveries = api
        .store
        .assign(actor, &batch_id, &cadre, &ids, i64::from(r.count))
        .await?;
    Ok(Response::new(pb::AssignDeliveriesResponse { deliveries }))
}

pub(crate) async fn record_delivery_outcome(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::RecordDeliveryOutcomeRequest>,
) -> Resp<pb::RecordDeliveryOutcomeResponse> {
    let r = req.into_inner();
    let id = parse_id("delivery_id", &r.delivery_id)?;
    api.own_in_reach(actor, Owned::Delivery, &id).await?;
    let outcome = required_enum("outcome", r.outcome, DeliveryOutcome::from_proto)?;
    let confirmed_by = parse_text("confirmed_by", &r.confirmed_by, 64)?;
    if outcome == DeliveryOutcome::Delivered && confirmed_by.is_empty() {
        return Err(Error::invalid("confirmed_by", "name who received the delivery").into());
    }
    let note = parse_text("note", &r.note, 500)?;
    let at = past_or_now("at", r.at.as_ref())?;
    let report = OutcomeReport {
        expected_version: r.expected_version,
        outcome,
        confirmed_by: &confirmed_by,
        note: &note,
        at,
    };
    let delivery = api.store.record_outcome(actor, &id, report).await?;
    Ok(Response::new(pb::RecordDeliveryOutcomeResponse {
        delivery: Some(delivery),
    }))
}

pub(crate) async fn get_batch_progress(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::GetBatchProgressRequest>,
) -> Resp<pb::GetBatchProgressResponse> {
    let id = parse_id("batch_id", &req.get_ref().batch_id)?;
    api.in_reach(actor, Owned::Batch, &id).await?;
    Ok(Response::new(api.store.batch_progress(&id).await?))
}

pub(crate) async fn list_batches(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::ListBatchesRequest>,
) -> Resp<pb::ListBatchesResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let community = actor.community_or_own("community_id", &r.community_id)?;
    let (batches, next_page_token) = api.store.list_batches(&community, &page).await?;
    Ok(Response::new(pb::ListBatchesResponse {
        batches,
        next_page_token,
    }))
}

pub(crate) async fn list_deliveries(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::ListDeliveriesRequest>,
) -> Resp<pb::ListDeliveriesResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let status = optional_enum("status", r.status, DeliveryStatus::from_proto)?;
    let cadre = parse_opt_id("cadre_id", &r.cadre_id)?.unwrap_or_default();
    let household = parse_opt_id("household_id", &r.household_id)?.unwrap_or_default();
    let of = if r.batch_id.is_empty() && !household.is_empty() {
        // A household's deliveries across batches, within the caller's communities.
        DeliveriesOf::Household {
            community_id: actor.community_filter("community_id", "")?,
            household_id: household,
        }
    } else {
        let batch = parse_id("batch_id", &r.batch_id)?;
        api.in_reach(actor, Owned::Batch, &batch).await?;
        let community_id = api.store.batch(&batch).await?.community_id;
        DeliveriesOf::Batch {
            community_id,
            batch_id: batch,
            household_id: household,
        }
    };
    let (deliveries, next_page_token) = api
        .store
        .list_deliveries(&of, status, &cadre, &page)
        .await?;
    Ok(Response::new(pb::ListDeliveriesResponse {
        deliveries,
        next_page_token,
    }))
}

/// Which deliveries a list is of.
pub enum DeliveriesOf {
    /// One batch's (in its community), optionally to one household.
    Batch {
        community_id: String,
        batch_id: String,
        household_id: String,
    },
    /// Every delivery to a household, in one community ("" for county-wide callers).
    Household {
        community_id: String,
        household_id: String,
    },
}

impl Store {
    /// Makes a batch inside the caller's transaction: reserves its stock (all
    /// or nothing) and plans one delivery per recipient, closest care first.
    /// Plans a batch, reserving its stock; the batch and the change that describes
    /// it, for the caller to record after the stock movements.
    pub(crate) async fn create_batch(
        &self,
        conn: &mut AnyConnection,
        actor: &Actor,
        b: NewBatch<'_>,
    ) -> Result<(pb::Batch, Change)> {
        if b.recipients.is_empty() {
            return Err(Error::FailedPrecondition(
                "no households match; nothing to deliver".into(),
            ));
        }
        let now = now_micros();
        let mut totals: Lines = BTreeMap::new();
        for r in &b.recipients {
            for (item, qty) in &r.lines {
                *totals.entry(item.clone()).or_default() += qty;
            }
        }
        for (item, total) in &totals {
            let change = StockChange {
                community_id: b.community_id,
                depot_id: b.depot_id,
                item_id: item,
                kind: MovementKind::AllocationOut,
                quantity: -total,
                reason: "",
                reference: &b.id,
                at: now,
            };
            move_stock(conn, actor, change).await?;
        }
        sqlx::query("INSERT INTO batches (community_id, id, depot_id, name, bundle_json, source, households, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(b.community_id)
            .bind(&b.id)
            .bind(b.depot_id)
            .bind(b.name)
            .bind(lines_to_json(b.bundle))
            .bind(b.source)
            .bind(b.recipients.len() as i64)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        let mut recipients = b.recipients;
        recipients.sort_by(|x, y| {
            y.care_level
                .cmp(&x.care_level)
                .then_with(|| x.household_id.cmp(&y.household_id))
        });
        for r in &recipients {
            sqlx::query(&format!("INSERT INTO deliveries ({DELIVERY_COLS}) VALUES ($1, $2, $3, $4, $5, '', 'pending', 0, '', '', NULL, $6, 1)"))
                .bind(b.community_id)
                .bind(new_id())
                .bind(&b.id)
                .bind(&r.household_id)
                .bind(i64::from(r.care_level))
                .bind(lines_to_json(&r.lines))
                .execute(&mut *conn)
                .await?;
        }
        let after = json!({ "name": b.name, "depot_id": b.depot_id, "households": recipients.len(), "totals": totals, "source": b.source });
        let change = Change::created(b.community_id, "batch.plan", "batch", &b.id, after);
        let batch = pb::Batch {
            id: b.id,
            community_id: b.community_id.into(),
            depot_id: b.depot_id.into(),
            name: b.name.into(),
            bundle: lines_to_proto(b.bundle),
            created_at: Some(to_timestamp(now)),
            source: b.source.into(),
            households: recipients.len() as i32,
        };
        Ok((batch, change))
    }

    pub async fn plan_batch(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        depot_id: &str,
        name: &str,
        bundle: &Lines,
        households: Vec<(String, i32)>,
    ) -> Result<pb::Batch> {
        idempotency::create(
            &(self, actor, depot_id, name, bundle),
            &self.db,
            actor,
            BATCH_SCOPE,
            idem,
            |&(s, ..), tx, existing| Box::pin(s.load_batch(tx, existing)),
            |&(s, actor, depot_id, name, bundle), tx, id| {
                Box::pin(async move {
                    let depot = s.load_depot(&mut *tx, depot_id).await?;
                    s.check_items(&mut *tx, bundle).await?;
                    let recipients = households
                        .into_iter()
                        .map(|(household_id, care_level)| Recipient {
                            household_id,
                            care_level,
                            lines: bundle.clone(),
                        })
                        .collect();
                    let new = NewBatch {
                        id: id.to_owned(),
                        community_id: &depot.community_id,
                        depot_id,
                        name,
                        bundle,
                        source: "",
                        recipients,
                    };
                    let (batch, change) = s.create_batch(&mut *tx, actor, new).await?;
                    Ok(Made::new(batch, change))
                })
            },
        )
        .await
    }

    pub(crate) async fn load_batch(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Batch> {
        fetch_by_id(conn, "SELECT community_id, id, depot_id, name, bundle_json, source, households, created_at FROM batches WHERE id = $1", id, "batch", batch_from_row).await
    }

    pub async fn batch(&self, id: &str) -> Result<pb::Batch> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_batch(&mut conn, id).await
    }

    pub async fn list_batches(
        &self,
        community_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Batch>, String)> {
        let sql = "SELECT community_id, id, depot_id, name, bundle_json, source, households, created_at FROM batches WHERE community_id = $1 AND id > $2 ORDER BY id LIMIT $3";
        fetch_page(
            &self.db,
            sql,
            vec![community_id.into()],
            page,
            batch_from_row,
            |b| &b.id,
        )
        .await
    }

    pub(crate) async fn load_delivery(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::Delivery> {
        fetch_by_id(
            conn,
            &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = $1"),
            id,
            "delivery",
            delivery_from_row,
        )
        .await
    }

    /// Gives deliveries of a batch to a cadre: the ones named, or the next
    /// `count` unassigned pending ones, closest care first.
    pub async fn assign(
        &self,
        actor: &Actor,
        batch_id: &str,
        cadre_id: &str,
        delivery_ids: &[String],
        count: i64,
    ) -> Result<Vec<pb::Delivery>> {
        let mut tx = self.db.begin_write().await?;
        let batch = self.load_batch(&mut tx, batch_id).await?;
        let ids: Vec<String> = if delivery_ids.is_empty() {
            let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM deliveries WHERE community_id = $1 AND batch_id = $2 AND status = 'pending' AND cadre_id = '' ORDER BY care_level DESC, id LIMIT $3")
                .bind(&batch.community_id)
                .bind(batch_id)
                .bind(count)
                .fetch_all(&mut *tx)
                .await?;
            rows.into_iter().map(|(id,)| id).collect()
        } else {
            delivery_ids.to_vec()
        };
        let mut out = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let d = self.load_delivery(&mut tx, id).await?;
            if d.batch_id != batch_id {
                return Err(Error::invalid(
                    format!("delivery_ids[{i}]"),
                    "is not in this batch",
                ));
            }
            if d.status != DeliveryStatus::Pending.to_proto() {
                return Err(Error::FailedPrecondition(format!(
                    "delivery {id} is no longer pending"
                )));
            }
            sqlx::query("UPDATE deliveries SET cadre_id = $3, version = version + 1 WHERE community_id = $1 AND id = $2")
                .bind(&batch.community_id)
                .bind(id)
                .bind(cadre_id)
                .execute(&mut *tx)
                .await?;
            out.push(self.load_delivery(&mut tx, id).await?);
        }
        let after = json!({ "cadre_id": cadre_id, "deliveries": ids });
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &batch.community_id,
                "batch.assign",
                "batch",
                batch_id,
                after,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Records how a delivery went; refused or failed deliveries return their goods to the depot.
    pub async fn record_outcome(
        &self,
        actor: &Actor,
        id: &str,
        o: OutcomeReport<'_>,
    ) -> Result<pb::Delivery> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_delivery(&mut tx, id).await?;
        let OutcomeReport {
            expected_version,
            outcome,
            confirmed_by,
            note,
            at,
        } = o;
        linli_core::validate::check_version("expected_version", expected_version, before.version)?;
        let status = DeliveryStatus::from_proto(before.status).unwrap_or(DeliveryStatus::Pending);
        let (status, attempts, give_back) =
            domain::apply_outcome(status, before.attempts, outcome)?;
        let delivered_at = (status == DeliveryStatus::Delivered).then_some(at);
        let updated = sqlx::query(
            "UPDATE deliveries SET status = $3, attempts = $4, confirmed_by = $5, note = $6, delivered_at = $7, version = version + 1 \
             WHERE community_id = $1 AND id = $2 AND version = $8",
        )
        .bind(&before.community_id)
        .bind(id)
        .bind(status.as_str())
        .bind(i64::from(attempts))
        .bind(confirmed_by)
        .bind(note)
        .bind(delivered_at)
        .bind(expected_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(
                "the delivery changed since you read it; read it again".into(),
            ));
        }
        if give_back {
            let batch = self.load_batch(&mut tx, &before.batch_id).await?;
            for line in &before.lines {
                let change = StockChange {
                    community_id: &before.community_id,
                    depot_id: &batch.depot_id,
                    item_id: &line.item_id,
                    kind: MovementKind::Return,
                    quantity: line.quantity,
                    reason: status.as_str(),
                    reference: id,
                    at,
                };
                move_stock(&mut tx, actor, change).await?;
            }
        }
        let after = self.load_delivery(&mut tx, id).await?;
        let snapshot = |d: &pb::Delivery| json!({ "status": d.status, "attempts": d.attempts, "cadre_id": d.cadre_id, "confirmed_by": d.confirmed_by, "version": d.version });
        audit::record(
            &mut tx,
            actor,
            Change::updated(
                &after.community_id,
                "delivery.outcome",
                "delivery",
                id,
                snapshot(&before),
                snapshot(&after),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn batch_progress(&self, batch_id: &str) -> Result<pb::GetBatchProgressResponse> {
        let batch = self.batch(batch_id).await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT status, cadre_id FROM deliveries WHERE community_id = $1 AND batch_id = $2",
        )
        .bind(&batch.community_id)
        .bind(batch_id)
        .fetch_all(&self.db.pool)
        .await?;
        let mut p = pb::GetBatchProgressResponse {
            batch: Some(batch),
            ..Default::default()
        };
        for (status, cadre) in rows {
            match DeliveryStatus::parse(&status) {
                Some(DeliveryStatus::Pending) => {
                    p.pending += 1;
                    if cadre.is_empty() {
                        p.unassigned += 1;
                    }
                }
                Some(DeliveryStatus::Delivered) => p.delivered += 1,
                Some(DeliveryStatus::Refused) => p.refused += 1,
                Some(DeliveryStatus::Failed) => p.failed += 1,
                None => {}
            }
        }
        Ok(p)
    }

    pub async fn list_deliveries(
        &self,
        of: &DeliveriesOf,
        status: Option<DeliveryStatus>,
        cadre_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Delivery>, String)> {
        let (community_id, batch_id, household_id) = match of {
            DeliveriesOf::Batch {
                community_id,
                batch_id,
                household_id,
            } => (community_id, batch_id.as_str(), household_id),
            DeliveriesOf::Household {
                community_id,
                household_id,
            } => (community_id, "", household_id),
        };
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR batch_id = $2) AND ($3 = '' OR status = $3) \
             AND ($4 = '' OR cadre_id = $4) AND ($5 = '' OR household_id = $5) AND id > $6 ORDER BY id LIMIT $7"
        );
        let binds = vec![
            community_id.as_str().into(),
            batch_id.into(),
            status.map_or("", DeliveryStatus::as_str).into(),
            cadre_id.into(),
            household_id.as_str().into(),
        ];
        let (mut list, next) =
            fetch_page(&self.db, &sql, binds, page, delivery_from_row, |d| &d.id).await?;
        list.sort_by(|a, b| {
            b.care_level
                .cmp(&a.care_level)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok((list, next))
    }
}
