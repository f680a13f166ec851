//! Group purchases (团购): households order until the organiser closes; the goods then go out like a batch.
use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use sqlx::{AnyConnection, Row};
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::time::{from_timestamp, now_micros, to_timestamp};
use linli_core::validate::{parse_id, parse_name};
use linli_core::{Actor, Error, Result, new_id};
use linli_proto::logistics::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::stock::move_stock;
use crate::store::*;

pub(crate) async fn open_group_purchase(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::OpenGroupPurchaseRequest>,
) -> Resp<pb::OpenGroupPurchaseResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let community = parse_id("community_id", &r.community_id)?;
    actor.check_community_id(&community)?;
    let title = parse_name("title", &r.title)?;
    let organiser = parse_name("organiser", &r.organiser)?;
    if r.items.is_empty() {
        return Err(Error::invalid("items", "must offer at least one item").into());
    }
    let mut prices = BTreeMap::new();
    for (i, item) in r.items.iter().enumerate() {
        let id = parse_id(&format!("items[{i}].item_id"), &item.item_id)?;
        if !(0..=100_000_000).contains(&item.unit_price_fen) {
            return Err(Error::invalid(
                format!("items[{i}].unit_price_fen"),
                "must be from 0 to 100,000,000",
            )
            .into());
        }
        if prices.insert(id, item.unit_price_fen).is_some() {
            return Err(Error::invalid(format!("items[{i}].item_id"), "repeats an item").into());
        }
    }
    let closes_at = from_timestamp(
        "closes_at",
        r.closes_at
            .as_ref()
            .ok_or_else(|| Error::required("closes_at"))?,
    )?;
    if closes_at <= now_micros() {
        return Err(Error::invalid("closes_at", "must be in the future").into());
    }
    api.people.community(actor, &community).await?;
    let purchase = api
        .store
        .open_purchase(
            actor,
            &idem,
            NewPurchase {
                community_id: &community,
                title: &title,
                organiser: &organiser,
                prices: &prices,
                closes_at,
            },
        )
        .await?;
    Ok(Response::new(pb::OpenGroupPurchaseResponse {
        purchase: Some(purchase),
    }))
}

pub(crate) async fn place_order(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::PlaceOrderRequest>,
) -> Resp<pb::PlaceOrderResponse> {
    let r = req.into_inner();
    let purchase_id = parse_id("purchase_id", &r.purchase_id)?;
    let household_id = parse_id("household_id", &r.household_id)?;
    let lines = domain::parse_lines(
        "lines",
        r.lines.iter().map(|l| (l.item_id.clone(), l.quantity)),
    )?;
    api.in_reach(actor, Owned::Purchase, &purchase_id).await?;
    actor.check_household(&household_id)?;
    let purchase = api.store.purchase(&purchase_id).await?;
    let household = api.people.household(actor, &household_id).await?;
    if household.community_id != purchase.community_id {
        return Err(Error::invalid("household_id", "is not in the purchase's community").into());
    }
    let order = api
        .store
        .place_order(actor, &purchase_id, &household_id, &lines)
        .await?;
    Ok(Response::new(pb::PlaceOrderResponse { order: Some(order) }))
}

pub(crate) async fn close_group_purchase(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::CloseGroupPurchaseRequest>,
) -> Resp<pb::CloseGroupPurchaseResponse> {
    let r = req.into_inner();
    let purchase_id = parse_id("purchase_id", &r.purchase_id)?;
    let depot = parse_id("depot_id", &r.depot_id)?;
    api.in_reach(actor, Owned::Purchase, &purchase_id).await?;
    let purchase = api.store.purchase(&purchase_id).await?;
    let care: HashMap<String, i32> = api
        .people
        .households(actor, &purchase.community_id, 0)
        .await?
        .into_iter()
        .collect();
    Ok(Response::new(
        api.store
            .close_purchase(actor, &purchase_id, r.expected_version, &depot, &care)
            .await?,
    ))
}

pub(crate) async fn get_group_purchase(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::GetGroupPurchaseRequest>,
) -> Resp<pb::GetGroupPurchaseResponse> {
    let id = parse_id("purchase_id", &req.get_ref().purchase_id)?;
    api.in_reach(actor, Owned::Purchase, &id).await?;
    Ok(Response::new(api.store.get_purchase(&id).await?))
}

impl Store {
    pub(crate) async fn load_purchase(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::GroupPurchase> {
        let row = sqlx::query("SELECT community_id, id, title, organiser, items_json, closes_at, closed, batch_id, version FROM group_purchases WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        let row = row.ok_or_else(|| Error::not_found("group purchase", id))?;
        let prices: BTreeMap<String, i64> =
            serde_json::from_str(&row.try_get::<String, _>("items_json")?).unwrap_or_default();
        Ok(pb::GroupPurchase {
            id: row.try_get("id")?,
            community_id: row.try_get("community_id")?,
            title: row.try_get("title")?,
            organiser: row.try_get("organiser")?,
            items: prices
                .into_iter()
                .map(|(item_id, unit_price_fen)| pb::GroupPurchaseItem {
                    item_id,
                    unit_price_fen,
                })
                .collect(),
            closes_at: Some(to_timestamp(row.try_get("closes_at")?)),
            closed: row.try_get::<i64, _>("closed")? != 0,
            batch_id: row.try_get("batch_id")?,
            version: row.try_get("version")?,
        })
    }

    pub async fn open_purchase(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewPurchase<'_>,
    ) -> Result<pb::GroupPurchase> {
        let NewPurchase {
            community_id,
            title,
            organiser,
            prices,
            closes_at,
        } = new;
        idempotency::create(
            &(self, community_id, title, organiser, prices),
            &self.db,
            actor,
            "logistics.purchase",
            idem,
            |&(s, _community_id, _title, _organiser, _prices), tx, existing| {
                Box::pin(async move {

                    let p = s.load_purchase(&mut *tx, existing).await?;
                    Ok(p)
                })
            },
            |&(s, community_id, title, organiser, prices), tx, id| {
                Box::pin(async move {

                    s.check_items(&mut *tx, prices).await?;
                    sqlx::query("INSERT INTO group_purchases (community_id, id, title, organiser, items_json, closes_at, closed, batch_id, version) VALUES ($1, $2, $3, $4, $5, $6, 0, '', 1)")
                        .bind(community_id)
                        .bind(id)
                        .bind(title)
                        .bind(organiser)
                        .bind(serde_json::to_string(prices).unwrap_or_default())
                        .bind(closes_at)
                        .execute(&mut *tx)
                        .await?;
                    let p = s.load_purchase(&mut *tx, id).await?;
                    let change = Change::created(community_id, "purchase.open", "group_purchase", id, json!({ "title": title, "organiser": organiser, "prices": prices, "closes_at": closes_at }));
                    Ok(Made::new(p, change))
                })
            },
        )
        .await
    }

    /// Places or replaces a household's order; empty `lines` withdraws it.
    pub async fn place_order(
        &self,
        actor: &Actor,
        purchase_id: &str,
        household_id: &str,
        lines: &Lines,
    ) -> Result<pb::Order> {
        let mut tx = self.db.begin_write().await?;
        let p = self.load_purchase(&mut tx, purchase_id).await?;
        // The purchase row's lock orders orders against closing.
        let open = sqlx::query("UPDATE group_purchases SET version = version WHERE community_id = $1 AND id = $2 AND closed = 0")
            .bind(&p.community_id)
            .bind(purchase_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let now = now_micros();
        if open == 0
            || p.closes_at
                .as_ref()
                .is_some_and(|c| c.seconds * 1_000_000 <= now)
        {
            return Err(Error::FailedPrecondition(
                "the group purchase has closed".into(),
            ));
        }
        let prices: HashMap<&str, i64> = p
            .items
            .iter()
            .map(|i| (i.item_id.as_str(), i.unit_price_fen))
            .collect();
        let mut total = 0;
        for (i, (item, qty)) in lines.iter().enumerate() {
            let price = prices.get(item.as_str()).ok_or_else(|| {
                Error::invalid(
                    format!("lines[{i}].item_id"),
                    "is not offered in this purchase",
                )
            })?;
            total += price * qty;
        }
        let before: Option<(String,)> = sqlx::query_as("SELECT lines_json FROM orders WHERE community_id = $1 AND purchase_id = $2 AND household_id = $3")
            .bind(&p.community_id)
            .bind(purchase_id)
            .bind(household_id)
            .fetch_optional(&mut *tx)
            .await?;
        if lines.is_empty() {
            sqlx::query("DELETE FROM orders WHERE community_id = $1 AND purchase_id = $2 AND household_id = $3").bind(&p.community_id).bind(purchase_id).bind(household_id).execute(&mut *tx).await?;
        } else {
            sqlx::query(
                "INSERT INTO orders (community_id, purchase_id, household_id, lines_json, total_fen, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (community_id, purchase_id, household_id) DO UPDATE SET lines_json = excluded.lines_json, total_fen = excluded.total_fen, updated_at = excluded.updated_at",
            )
            .bind(&p.community_id)
            .bind(purchase_id)
            .bind(household_id)
            .bind(lines_to_json(lines))
            .bind(total)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let after = json!({ "household_id": household_id, "lines": lines, "total_fen": total });
        let before = before
            .map(|(l,)| json!({ "household_id": household_id, "lines": lines_from_json(&l) }));
        audit::record(
            &mut tx,
            actor,
            Change {
                before,
                ..Change::created(
                    &p.community_id,
                    "purchase.order",
                    "group_purchase",
                    purchase_id,
                    after,
                )
            },
        )
        .await?;
        tx.commit().await?;
        Ok(pb::Order {
            household_id: household_id.into(),
            lines: lines_to_proto(lines),
            total_fen: total,
            updated_at: Some(to_timestamp(now)),
        })
    }

    pub(crate) async fn orders(
        &self,
        conn: &mut AnyConnection,
        community_id: &str,
        purchase_id: &str,
    ) -> Result<Vec<(String, Lines, i64, i64)>> {
        let rows = sqlx::query("SELECT household_id, lines_json, total_fen, updated_at FROM orders WHERE community_id = $1 AND purchase_id = $2 ORDER BY household_id")
            .bind(community_id)
            .bind(purchase_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("household_id")?,
                    lines_from_json(&r.try_get::<String, _>("lines_json")?),
                    r.try_get("total_fen")?,
                    r.try_get("updated_at")?,
                ))
            })
            .collect()
    }

    /// The purchase alone, without its orders.
    pub async fn purchase(&self, id: &str) -> Result<pb::GroupPurchase> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_purchase(&mut conn, id).await
    }

    pub async fn get_purchase(&self, id: &str) -> Result<pb::GetGroupPurchaseResponse> {
        let mut conn = self.db.pool.acquire().await?;
        let p = self.load_purchase(&mut conn, id).await?;
        let orders = self.orders(&mut conn, &p.community_id, id).await?;
        let mut totals: Lines = BTreeMap::new();
        let mut total_fen = 0;
        for (_, lines, fen, _) in &orders {
            total_fen += fen;
            for (item, qty) in lines {
                *totals.entry(item.clone()).or_default() += qty;
            }
        }
        Ok(pb::GetGroupPurchaseResponse {
            purchase: Some(p),
            orders: orders
                .into_iter()
                .map(|(h, l, fen, at)| pb::Order {
                    household_id: h,
                    lines: lines_to_proto(&l),
                    total_fen: fen,
                    updated_at: Some(to_timestamp(at)),
                })
                .collect(),
            totals: lines_to_proto(&totals),
            total_fen,
        })
    }

    /// Closes a purchase: the goods come in to the depot and go out as a batch, one delivery per order.
    pub async fn close_purchase(
        &self,
        actor: &Actor,
        id: &str,
        expected_version: i64,
        depot_id: &str,
        care: &HashMap<String, i32>,
    ) -> Result<pb::CloseGroupPurchaseResponse> {
        let mut tx = self.db.begin_write().await?;
        let p = self.load_purchase(&mut tx, id).await?;
        linli_core::validate::check_version("expected_version", expected_version, p.version)?;
        if p.closed {
            return Err(Error::FailedPrecondition(
                "the group purchase is already closed".into(),
            ));
        }
        let depot = self.load_depot(&mut tx, depot_id).await?;
        if depot.community_id != p.community_id {
            return Err(Error::invalid("depot_id", "is in another community"));
        }
        let closed = sqlx::query("UPDATE group_purchases SET closed = 1, version = version + 1 WHERE community_id = $1 AND id = $2 AND version = $3 AND closed = 0")
            .bind(&p.community_id)
            .bind(id)
            .bind(expected_version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if closed == 0 {
            return Err(Error::Aborted(
                "the group purchase changed since you read it; read it again".into(),
            ));
        }
        let orders = self.orders(&mut tx, &p.community_id, id).await?;
        let mut totals: Lines = BTreeMap::new();
        let mut total_fen = 0;
        for (_, lines, fen, _) in &orders {
            total_fen += fen;
            for (item, qty) in lines {
                *totals.entry(item.clone()).or_default() += qty;
            }
        }
        let now = now_micros();
        for (item, qty) in &totals {
            let change = StockChange {
                community_id: &p.community_id,
                depot_id,
                item_id: item,
                kind: MovementKind::PurchaseIn,
                quantity: *qty,
                reason: "group purchase",
                reference: id,
                at: now,
            };
            move_stock(&mut tx, actor, change).await?;
        }
        let batch = if orders.is_empty() {
            None
        } else {
            let recipients = orders
                .into_iter()
                .map(|(h, lines, _, _)| Recipient {
                    care_level: care.get(&h).copied().unwrap_or(1),
                    household_id: h,
                    lines,
                })
                .collect();
            let source = format!("group_purchase:{id}");
            let (batch, change) = self
                .create_batch(
                    &mut tx,
                    actor,
                    NewBatch {
                        id: new_id(),
                        community_id: &p.community_id,
                        depot_id,
                        name: &p.title,
                        bundle: &BTreeMap::new(),
                        source: &source,
                        recipients,
                    },
                )
                .await?;
            audit::record(&mut tx, actor, change).await?;
            sqlx::query(
                "UPDATE group_purchases SET batch_id = $3 WHERE community_id = $1 AND id = $2",
            )
            .bind(&p.community_id)
            .bind(id)
            .bind(&batch.id)
            .execute(&mut *tx)
            .await?;
            Some(batch)
        };
        let purchase = self.load_purchase(&mut tx, id).await?;
        let after = json!({ "closed": true, "totals": totals, "total_fen": total_fen, "batch_id": purchase.batch_id });
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &p.community_id,
                "purchase.close",
                "group_purchase",
                id,
                after,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::CloseGroupPurchaseResponse {
            purchase: Some(purchase),
            totals: lines_to_proto(&totals),
            total_fen,
            batch,
        })
    }
}
