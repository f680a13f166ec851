//! The logistics service's storage: one SQL dialect for SQLite and PostgreSQL
//! (see `linli_core::db`). Stock changes go through [`move_stock`], a guarded
//! update of the running level plus a ledger row in one transaction, so the
//! level is always the ledger's sum and never below zero. Code holding a
//! transaction never asks the pool for another connection (SQLite pools have one).
use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use linli_core::audit::{self, Change};
use linli_core::db::{fetch_by_id, text_col};
use linli_core::idempotency::{self, Claim, IdemKey};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{Micros, now_micros, opt_timestamp, to_timestamp};
use linli_core::{Actor, Db, Error, Result, new_id};
use linli_proto::logistics::v1 as pb;

use crate::domain::{
    self, DeliveryOutcome, DeliveryStatus, FundsCategory, FundsDirection, LogEntryKind,
    MovementKind, Span,
};

/// Items and their quantities.
pub type Lines = BTreeMap<String, i64>;

#[derive(Clone)]
pub struct Store {
    pub db: Db,
    /// Temperature (°C) at or above which a checkpoint reading is flagged.
    pub fever_threshold: f64,
    /// Most hours a cadre may be on checkpoint duty in any 24.
    pub max_duty_hours_per_day: i64,
}

fn lines_to_json(lines: &Lines) -> String {
    serde_json::to_string(lines).unwrap_or_else(|_| "{}".into())
}

fn lines_from_json(s: &str) -> Lines {
    serde_json::from_str(s).unwrap_or_default()
}

pub fn lines_to_proto(lines: &Lines) -> Vec<pb::ItemQuantity> {
    lines
        .iter()
        .map(|(item_id, quantity)| pb::ItemQuantity {
            item_id: item_id.clone(),
            quantity: *quantity,
        })
        .collect()
}

fn movement_from_row(row: &AnyRow) -> Result<pb::StockMovement> {
    Ok(pb::StockMovement {
        id: row.try_get("id")?,
        depot_id: row.try_get("depot_id")?,
        item_id: row.try_get("item_id")?,
        kind: text_col(row, "kind", MovementKind::parse)?.to_proto(),
        quantity: row.try_get("quantity")?,
        reason: row.try_get("reason")?,
        reference: row.try_get("reference")?,
        at: Some(to_timestamp(row.try_get("at")?)),
        actor: row.try_get("actor")?,
    })
}

fn depot_from_row(row: &AnyRow) -> Result<pb::Depot> {
    Ok(pb::Depot {
        id: row.try_get("id")?,
        community_id: row.try_get("community_id")?,
        name: row.try_get("name")?,
        address: row.try_get("address")?,
    })
}

fn item_from_row(row: &AnyRow) -> Result<pb::Item> {
    Ok(pb::Item {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        unit_of_measure: row.try_get("unit_of_measure")?,
        perishable: row.try_get::<i64, _>("perishable")? != 0,
    })
}

fn batch_from_row(row: &AnyRow) -> Result<pb::Batch> {
    Ok(pb::Batch {
        id: row.try_get("id")?,
        community_id: row.try_get("community_id")?,
        depot_id: row.try_get("depot_id")?,
        name: row.try_get("name")?,
        bundle: lines_to_proto(&lines_from_json(&row.try_get::<String, _>("bundle_json")?)),
        created_at: Some(to_timestamp(row.try_get("created_at")?)),
        source: row.try_get("source")?,
        households: row.try_get::<i64, _>("households")? as i32,
    })
}

const DELIVERY_COLS: &str = "community_id, id, batch_id, household_id, care_level, cadre_id, status, attempts, confirmed_by, note, delivered_at, lines_json, version";

fn delivery_from_row(row: &AnyRow) -> Result<pb::Delivery> {
    Ok(pb::Delivery {
        id: row.try_get("id")?,
        batch_id: row.try_get("batch_id")?,
        community_id: row.try_get("community_id")?,
        household_id: row.try_get("household_id")?,
        care_level: row.try_get::<i64, _>("care_level")? as i32,
        cadre_id: row.try_get("cadre_id")?,
        status: text_col(row, "status", DeliveryStatus::parse)?.to_proto(),
        attempts: row.try_get::<i64, _>("attempts")? as i32,
        confirmed_by: row.try_get("confirmed_by")?,
        note: row.try_get("note")?,
        delivered_at: opt_timestamp(row.try_get("delivered_at")?),
        lines: lines_to_proto(&lines_from_json(&row.try_get::<String, _>("lines_json")?)),
        version: row.try_get("version")?,
    })
}

const SHIFT_COLS: &str = "community_id, id, checkpoint_id, cadre_id, unit_id, starts_at, ends_at, checked_in_at, checked_out_at, cancelled";

fn shift_from_row(row: &AnyRow) -> Result<pb::Shift> {
    Ok(pb::Shift {
        id: row.try_get("id")?,
        checkpoint_id: row.try_get("checkpoint_id")?,
        community_id: row.try_get("community_id")?,
        cadre_id: row.try_get("cadre_id")?,
        unit_id: row.try_get("unit_id")?,
        starts_at: Some(to_timestamp(row.try_get("starts_at")?)),
        ends_at: Some(to_timestamp(row.try_get("ends_at")?)),
        checked_in_at: opt_timestamp(row.try_get("checked_in_at")?),
        checked_out_at: opt_timestamp(row.try_get("checked_out_at")?),
        cancelled: row.try_get::<i64, _>("cancelled")? != 0,
    })
}

fn checkpoint_from_row(row: &AnyRow) -> Result<pb::Checkpoint> {
    Ok(pb::Checkpoint {
        id: row.try_get("id")?,
        community_id: row.try_get("community_id")?,
        name: row.try_get("name")?,
        required_staff: row.try_get::<i64, _>("required_staff")? as i32,
    })
}

fn log_from_row(row: &AnyRow) -> Result<pb::CheckpointLogEntry> {
    Ok(pb::CheckpointLogEntry {
        id: row.try_get("id")?,
        checkpoint_id: row.try_get("checkpoint_id")?,
        shift_id: row.try_get("shift_id")?,
        kind: text_col(row, "kind", LogEntryKind::parse)?.to_proto(),
        person: row.try_get("person")?,
        temperature_celsius: row.try_get("temperature")?,
        flagged: row.try_get::<i64, _>("flagged")? != 0,
        at: Some(to_timestamp(row.try_get("at")?)),
        note: row.try_get("note")?,
    })
}

const FUNDS_COLS: &str = "community_id, id, direction, category, amount_fen, reference, approver, note, at, reverses, reversed_by";

fn funds_from_row(row: &AnyRow) -> Result<pb::FundsEntry> {
    Ok(pb::FundsEntry {
        id: row.try_get("id")?,
        community_id: row.try_get("community_id")?,
        direction: text_col(row, "direction", FundsDirection::parse)?.to_proto(),
        category: text_col(row, "category", FundsCategory::parse)?.to_proto(),
        amount_fen: row.try_get("amount_fen")?,
        reference: row.try_get("reference")?,
        approver: row.try_get("approver")?,
        note: row.try_get("note")?,
        at: Some(to_timestamp(row.try_get("at")?)),
        reverses: row.try_get("reverses")?,
        reversed_by: row.try_get("reversed_by")?,
    })
}

/// One stock change, as the ledger records it.
pub struct StockChange<'a> {
    pub community_id: &'a str,
    pub depot_id: &'a str,
    pub item_id: &'a str,
    pub kind: MovementKind,
    /// Signed: positive in, negative out.
    pub quantity: i64,
    pub reason: &'a str,
    pub reference: &'a str,
    pub at: Micros,
}

/// Changes a depot's stock of an item and records the movement, inside the
/// caller's transaction. Taking more than there is fails with
/// FAILED_PRECONDITION and changes nothing.
pub async fn move_stock(
    conn: &mut AnyConnection,
    actor: &Actor,
    c: StockChange<'_>,
) -> Result<(pb::StockMovement, i64)> {
    sqlx::query("INSERT INTO stock_levels (community_id, depot_id, item_id, quantity) VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING")
        .bind(c.community_id)
        .bind(c.depot_id)
        .bind(c.item_id)
        .execute(&mut *conn)
        .await?;
    // The guard and the change are one statement: concurrent takers queue on the row and each sees what the last one left.
    let updated: Option<(i64,)> = sqlx::query_as(
        "UPDATE stock_levels SET quantity = quantity + $4 WHERE community_id = $1 AND depot_id = $2 AND item_id = $3 AND quantity + $4 >= 0 RETURNING quantity",
    )
    .bind(c.community_id)
    .bind(c.depot_id)
    .bind(c.item_id)
    .bind(c.quantity)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((balance,)) = updated else {
        let (have,): (i64,) = sqlx::query_as("SELECT quantity FROM stock_levels WHERE community_id = $1 AND depot_id = $2 AND item_id = $3")
            .bind(c.community_id)
            .bind(c.depot_id)
            .bind(c.item_id)
            .fetch_one(&mut *conn)
            .await?;
        return Err(Error::FailedPrecondition(format!(
            "not enough of item {} at the depot: {have} left, {} needed",
            c.item_id, -c.quantity
        )));
    };
    let movement = pb::StockMovement {
        id: new_id(),
        depot_id: c.depot_id.to_owned(),
        item_id: c.item_id.to_owned(),
        kind: c.kind.to_proto(),
        quantity: c.quantity,
        reason: c.reason.to_owned(),
        reference: c.reference.to_owned(),
        at: Some(to_timestamp(c.at)),
        actor: actor.id.clone(),
    };
    sqlx::query("INSERT INTO stock_movements (community_id, id, depot_id, item_id, kind, quantity, reason, reference, at, actor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
        .bind(c.community_id)
        .bind(&movement.id)
        .bind(c.depot_id)
        .bind(c.item_id)
        .bind(c.kind.as_str())
        .bind(c.quantity)
        .bind(c.reason)
        .bind(c.reference)
        .bind(c.at)
        .bind(&actor.id)
        .execute(&mut *conn)
        .await?;
    Ok((movement, balance))
}

/// A household a batch goes to, with its care level rank and what it gets.
pub struct Recipient {
    pub household_id: String,
    pub care_level: i32,
    pub lines: Lines,
}

pub struct NewBatch<'a> {
    pub id: String,
    pub community_id: &'a str,
    pub depot_id: &'a str,
    pub name: &'a str,
    pub bundle: &'a Lines,
    pub source: &'a str,
    pub recipients: Vec<Recipient>,
}

/// A stock movement to record.
pub struct NewMovement<'a> {
    pub depot_id: &'a str,
    pub item_id: &'a str,
    pub kind: MovementKind,
    pub quantity: i64,
    pub reason: &'a str,
    pub reference: &'a str,
    pub at: Micros,
}

/// A group purchase to open: prices per item in fen.
pub struct NewPurchase<'a> {
    pub community_id: &'a str,
    pub title: &'a str,
    pub organiser: &'a str,
    pub prices: &'a BTreeMap<String, i64>,
    pub closes_at: Micros,
}

/// A recurring delivery to schedule.
pub struct NewSchedule<'a> {
    pub depot_id: &'a str,
    pub name: &'a str,
    pub bundle: &'a Lines,
    pub recipients_json: &'a str,
    pub every_days: i64,
    pub first_at: Micros,
}

/// A checkpoint log entry to record.
pub struct NewLogEntry<'a> {
    pub checkpoint_id: &'a str,
    pub shift_id: &'a str,
    pub kind: LogEntryKind,
    pub person: &'a str,
    pub temperature: f64,
    pub flagged: bool,
    pub at: Micros,
    pub note: &'a str,
}

/// A funds entry as requested.
pub struct NewFunds {
    pub community_id: String,
    pub direction: FundsDirection,
    pub category: FundsCategory,
    pub amount_fen: i64,
    pub reference: String,
    pub approver: String,
    pub note: String,
    pub at: Micros,
}

/// Records whose owner [`Store::owner_of`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    Depot,
    Batch,
    Delivery,
    Purchase,
    Checkpoint,
    Shift,
    FundsEntry,
}

impl Owned {
    pub fn name(self) -> &'static str {
        match self {
            Owned::Depot => "depot",
            Owned::Batch => "batch",
            Owned::Delivery => "delivery",
            Owned::Purchase => "group purchase",
            Owned::Checkpoint => "checkpoint",
            Owned::Shift => "shift",
            Owned::FundsEntry => "funds entry",
        }
    }
}

impl Store {
    pub fn new(db: Db, fever_threshold: f64, max_duty_hours_per_day: i64) -> Store {
        Store {
            db,
            fever_threshold,
            max_duty_hours_per_day,
        }
    }

    // ---- catalogue, depots, stock ----

    pub async fn create_item(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        name: &str,
        unit: &str,
        perishable: bool,
    ) -> Result<pb::Item> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) =
            idempotency::claim(&mut tx, "logistics.item", &idem.key, &idem.fingerprint, &id).await?
        {
            let row = sqlx::query(
                "SELECT id, name, unit_of_measure, perishable FROM items WHERE id = $1",
            )
            .bind(&existing)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return item_from_row(&row);
        }
        let taken: Option<(String,)> = sqlx::query_as("SELECT id FROM items WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(Error::AlreadyExists(format!(
                "an item named {name} exists already"
            )));
        }
        sqlx::query("INSERT INTO items (id, name, unit_of_measure, perishable, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(name)
            .bind(unit)
            .bind(i64::from(perishable))
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        let item = pb::Item {
            id: id.clone(),
            name: name.into(),
            unit_of_measure: unit.into(),
            perishable,
        };
        audit::record(
            &mut tx,
            actor,
            Change::created(
                "",
                "item.create",
                "item",
                &id,
                json!({ "name": name, "unit": unit, "perishable": perishable }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(item)
    }

    pub async fn list_items(&self, page: &PageRequest) -> Result<(Vec<pb::Item>, String)> {
        fetch_page(&self.db, "SELECT id, name, unit_of_measure, perishable FROM items WHERE id > $1 ORDER BY id LIMIT $2", vec![], page, item_from_row, |i| &i.id).await
    }

    async fn load_item(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Item> {
        let row =
            sqlx::query("SELECT id, name, unit_of_measure, perishable FROM items WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        row.as_ref()
            .map(item_from_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("item", id))
    }

    async fn check_items(&self, conn: &mut AnyConnection, lines: &Lines) -> Result<()> {
        for item in lines.keys() {
            self.load_item(conn, item).await?;
        }
        Ok(())
    }

    pub async fn create_depot(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        community_id: &str,
        name: &str,
        address: &str,
    ) -> Result<pb::Depot> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "logistics.depot",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let d = self.load_depot(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(d);
        }
        sqlx::query("INSERT INTO depots (community_id, id, name, address, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(community_id)
            .bind(&id)
            .bind(name)
            .bind(address)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            actor,
            Change::created(
                community_id,
                "depot.create",
                "depot",
                &id,
                json!({ "name": name, "address": address }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::Depot {
            id,
            community_id: community_id.into(),
            name: name.into(),
            address: address.into(),
        })
    }

    pub async fn load_depot(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Depot> {
        fetch_by_id(
            conn,
            "SELECT community_id, id, name, address FROM depots WHERE id = $1",
            id,
            "depot",
            depot_from_row,
        )
        .await
    }

    /// Whose a record is: its community, and for deliveries and shifts the cadre
    /// doing them. NOT_FOUND when there is no such record.
    pub async fn owner_of(&self, kind: Owned, id: &str) -> Result<(String, String)> {
        let (table, cadre) = match kind {
            Owned::Depot => ("depots", "''"),
            Owned::Batch => ("batches", "''"),
            Owned::Delivery => ("deliveries", "cadre_id"),
            Owned::Purchase => ("group_purchases", "''"),
            Owned::Checkpoint => ("checkpoints", "''"),
            Owned::Shift => ("shifts", "cadre_id"),
            Owned::FundsEntry => ("funds_entries", "''"),
        };
        let row: Option<(String, String)> = sqlx::query_as(&format!(
            "SELECT community_id, {cadre} FROM {table} WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?;
        row.ok_or_else(|| Error::not_found(kind.name(), id))
    }

    pub async fn depot(&self, id: &str) -> Result<pb::Depot> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_depot(&mut conn, id).await
    }

    pub async fn list_depots(
        &self,
        community_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Depot>, String)> {
        let sql = "SELECT community_id, id, name, address FROM depots WHERE community_id = $1 AND id > $2 ORDER BY id LIMIT $3";
        fetch_page(
            &self.db,
            sql,
            vec![community_id.into()],
            page,
            depot_from_row,
            |d| &d.id,
        )
        .await
    }

    /// A stock movement with an idempotency key: in, out, or adjusted.
    pub async fn record_movement(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewMovement<'_>,
    ) -> Result<(pb::StockMovement, i64)> {
        let NewMovement {
            depot_id,
            item_id,
            kind,
            quantity,
            reason,
            reference,
            at,
        } = new;
        let mut tx = self.db.begin_write().await?;
        let depot = self.load_depot(&mut tx, depot_id).await?;
        let scope = format!("logistics.movement.{}", depot.community_id);
        let placeholder = new_id();
        if let Claim::Replay(existing) =
            idempotency::claim(&mut tx, &scope, &idem.key, &idem.fingerprint, &placeholder).await?
        {
            let row = sqlx::query("SELECT community_id, id, depot_id, item_id, kind, quantity, reason, reference, at, actor FROM stock_movements WHERE community_id = $1 AND id = $2")
                .bind(&depot.community_id)
                .bind(&existing)
                .fetch_one(&mut *tx)
                .await?;
            let movement = movement_from_row(&row)?;
            let (balance,): (i64,) = sqlx::query_as("SELECT quantity FROM stock_levels WHERE community_id = $1 AND depot_id = $2 AND item_id = $3")
                .bind(&depot.community_id)
                .bind(depot_id)
                .bind(&movement.item_id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok((movement, balance));
        }
        self.load_item(&mut tx, item_id).await?;
        let change = StockChange {
            community_id: &depot.community_id,
            depot_id,
            item_id,
            kind,
            quantity,
            reason,
            reference,
            at,
        };
        let (movement, balance) = move_stock(&mut tx, actor, change).await?;
        idempotency::made(&mut tx, &scope, &idem.key, &movement.id).await?;
        let after = json!({ "depot_id": depot_id, "item_id": item_id, "kind": kind.as_str(), "quantity": quantity, "balance": balance, "reason": reason, "reference": reference });
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &depot.community_id,
                "stock.move",
                "stock_movement",
                &movement.id,
                after,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((movement, balance))
    }

    pub async fn stock(&self, depot_id: &str) -> Result<Vec<pb::StockLevel>> {
        let mut conn = self.db.pool.acquire().await?;
        let depot = self.load_depot(&mut conn, depot_id).await?;
        let rows = sqlx::query("SELECT l.item_id, i.name, l.quantity FROM stock_levels l JOIN items i ON i.id = l.item_id WHERE l.community_id = $1 AND l.depot_id = $2 ORDER BY i.name")
            .bind(&depot.community_id)
            .bind(depot_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(pb::StockLevel {
                    item_id: r.try_get("item_id")?,
                    item_name: r.try_get("name")?,
                    quantity: r.try_get("quantity")?,
                })
            })
            .collect()
    }

    pub async fn list_movements(
        &self,
        depot_id: &str,
        item_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::StockMovement>, String)> {
        let depot = self.depot(depot_id).await?;
        let sql = "SELECT community_id, id, depot_id, item_id, kind, quantity, reason, reference, at, actor FROM stock_movements \
                   WHERE community_id = $1 AND depot_id = $2 AND ($3 = '' OR item_id = $3) AND id > $4 ORDER BY id LIMIT $5";
        fetch_page(
            &self.db,
            sql,
            vec![
                depot.community_id.as_str().into(),
                depot_id.into(),
                item_id.into(),
            ],
            page,
            movement_from_row,
            |m| &m.id,
        )
        .await
    }

    /// The sum of a depot's ledger for an item (what its level must equal).
    pub async fn ledger_sum(&self, depot_id: &str, item_id: &str) -> Result<i64> {
        let (sum,): (i64,) = sqlx::query_as("SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM stock_movements WHERE depot_id = $1 AND item_id = $2")
            .bind(depot_id)
            .bind(item_id)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(sum)
    }

    // ---- batches and deliveries ----

    /// Makes a batch inside the caller's transaction: reserves its stock (all
    /// or nothing) and plans one delivery per recipient, closest care first.
    async fn create_batch(
        &self,
        conn: &mut AnyConnection,
        actor: &Actor,
        b: NewBatch<'_>,
    ) -> Result<pb::Batch> {
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
        audit::record(
            conn,
            actor,
            Change::created(b.community_id, "batch.plan", "batch", &b.id, after),
        )
        .await?;
        Ok(pb::Batch {
            id: b.id,
            community_id: b.community_id.into(),
            depot_id: b.depot_id.into(),
            name: b.name.into(),
            bundle: lines_to_proto(b.bundle),
            created_at: Some(to_timestamp(now)),
            source: b.source.into(),
            households: recipients.len() as i32,
        })
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
        let mut tx = self.db.begin_write().await?;
        let depot = self.load_depot(&mut tx, depot_id).await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "logistics.batch",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let b = self.load_batch(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(b);
        }
        self.check_items(&mut tx, bundle).await?;
        let recipients = households
            .into_iter()
            .map(|(household_id, care_level)| Recipient {
                household_id,
                care_level,
                lines: bundle.clone(),
            })
            .collect();
        let batch = self
            .create_batch(
                &mut tx,
                actor,
                NewBatch {
                    id,
                    community_id: &depot.community_id,
                    depot_id,
                    name,
                    bundle,
                    source: "",
                    recipients,
                },
            )
            .await?;
        tx.commit().await?;
        Ok(batch)
    }

    async fn load_batch(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Batch> {
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

    async fn load_delivery(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Delivery> {
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
        batch_id: &str,
        status: Option<DeliveryStatus>,
        cadre_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Delivery>, String)> {
        let batch = self.batch(batch_id).await?;
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE community_id = $1 AND batch_id = $2 AND ($3 = '' OR status = $3) AND ($4 = '' OR cadre_id = $4) \
             AND id > $5 ORDER BY id LIMIT $6"
        );
        let binds = vec![
            batch.community_id.as_str().into(),
            batch_id.into(),
            status.map_or("", DeliveryStatus::as_str).into(),
            cadre_id.into(),
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

    // ---- group purchases ----

    async fn load_purchase(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::GroupPurchase> {
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
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "logistics.purchase",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let p = self.load_purchase(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(p);
        }
        self.check_items(&mut tx, prices).await?;
        sqlx::query("INSERT INTO group_purchases (community_id, id, title, organiser, items_json, closes_at, closed, batch_id, version) VALUES ($1, $2, $3, $4, $5, $6, 0, '', 1)")
            .bind(community_id)
            .bind(&id)
            .bind(title)
            .bind(organiser)
            .bind(serde_json::to_string(prices).unwrap_or_default())
            .bind(closes_at)
            .execute(&mut *tx)
            .await?;
        let p = self.load_purchase(&mut tx, &id).await?;
        audit::record(&mut tx, actor, Change::created(community_id, "purchase.open", "group_purchase", &id, json!({ "title": title, "organiser": organiser, "prices": prices, "closes_at": closes_at }))).await?;
        tx.commit().await?;
        Ok(p)
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

    async fn orders(
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
            let batch = self
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

    // ---- recurring deliveries ----

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
        let mut tx = self.db.begin_write().await?;
        let depot = self.load_depot(&mut tx, depot_id).await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "logistics.schedule",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            tx.commit().await?;
            return Ok(existing);
        }
        self.check_items(&mut tx, bundle).await?;
        sqlx::query("INSERT INTO schedules (community_id, id, depot_id, name, bundle_json, recipients_json, every_days, next_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&depot.community_id)
            .bind(&id)
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
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &depot.community_id,
                "schedule.create",
                "schedule",
                &id,
                after,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
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
        let batch = self
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
        tx.commit().await?;
        Ok(Some(batch))
    }

    // ---- checkpoints and rosters ----

    pub async fn create_checkpoint(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        community_id: &str,
        name: &str,
        required_staff: i32,
    ) -> Result<pb::Checkpoint> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "logistics.checkpoint",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let c = self.load_checkpoint(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(c);
        }
        sqlx::query("INSERT INTO checkpoints (community_id, id, name, required_staff, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(community_id)
            .bind(&id)
            .bind(name)
            .bind(i64::from(required_staff))
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            actor,
            Change::created(
                community_id,
                "checkpoint.create",
                "checkpoint",
                &id,
                json!({ "name": name, "required_staff": required_staff }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::Checkpoint {
            id,
            community_id: community_id.into(),
            name: name.into(),
            required_staff,
        })
    }

    async fn load_checkpoint(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Checkpoint> {
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
        let mut tx = self.db.begin_write().await?;
        let checkpoint = self.load_checkpoint(&mut tx, checkpoint_id).await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "logistics.shift",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let s = self.load_shift(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(s);
        }
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
        domain::check_shift(span, &others, self.max_duty_hours_per_day)?;
        sqlx::query(&format!(
            "INSERT INTO shifts ({SHIFT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, 0)"
        ))
        .bind(&checkpoint.community_id)
        .bind(&id)
        .bind(checkpoint_id)
        .bind(cadre_id)
        .bind(unit_id)
        .bind(span.start)
        .bind(span.end)
        .execute(&mut *tx)
        .await?;
        let shift = self.load_shift(&mut tx, &id).await?;
        let after = json!({ "checkpoint_id": checkpoint_id, "cadre_id": cadre_id, "starts_at": span.start, "ends_at": span.end });
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &checkpoint.community_id,
                "shift.assign",
                "shift",
                &id,
                after,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(shift)
    }

    async fn load_shift(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::Shift> {
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
                    .is_some_and(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1000) > at)
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

    pub async fn log_entry(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewLogEntry<'_>,
    ) -> Result<pb::CheckpointLogEntry> {
        let NewLogEntry {
            checkpoint_id,
            shift_id,
            kind,
            person,
            temperature,
            flagged,
            at,
            note,
        } = new;
        let mut tx = self.db.begin_write().await?;
        let checkpoint = self.load_checkpoint(&mut tx, checkpoint_id).await?;
        let id = new_id();
        if let Claim::Replay(existing) =
            idempotency::claim(&mut tx, "logistics.log", &idem.key, &idem.fingerprint, &id).await?
        {
            let row = sqlx::query("SELECT community_id, id, checkpoint_id, shift_id, kind, person, temperature, flagged, at, note FROM checkpoint_log WHERE community_id = $1 AND id = $2")
                .bind(&checkpoint.community_id)
                .bind(&existing)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            return log_from_row(&row);
        }
        if !shift_id.is_empty() {
            let shift = self.load_shift(&mut tx, shift_id).await?;
            if shift.checkpoint_id != checkpoint_id {
                return Err(Error::invalid(
                    "shift_id",
                    "is a shift of another checkpoint",
                ));
            }
        }
        sqlx::query("INSERT INTO checkpoint_log (community_id, id, checkpoint_id, shift_id, kind, person, temperature, flagged, at, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(&checkpoint.community_id)
            .bind(&id)
            .bind(checkpoint_id)
            .bind(shift_id)
            .bind(kind.as_str())
            .bind(person)
            .bind(temperature)
            .bind(i64::from(flagged))
            .bind(at)
            .bind(note)
            .execute(&mut *tx)
            .await?;
        let after =
            json!({ "checkpoint_id": checkpoint_id, "kind": kind.as_str(), "flagged": flagged });
        audit::record(
            &mut tx,
            actor,
            Change::created(
                &checkpoint.community_id,
                "checkpoint.log",
                "checkpoint_log",
                &id,
                after,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::CheckpointLogEntry {
            id,
            checkpoint_id: checkpoint_id.into(),
            shift_id: shift_id.into(),
            kind: kind.to_proto(),
            person: person.into(),
            temperature_celsius: temperature,
            flagged,
            at: Some(to_timestamp(at)),
            note: note.into(),
        })
    }

    pub async fn list_log(
        &self,
        checkpoint_id: &str,
        flagged_only: bool,
        page: &PageRequest,
    ) -> Result<(Vec<pb::CheckpointLogEntry>, String)> {
        let checkpoint = self.checkpoint(checkpoint_id).await?;
        let sql = "SELECT community_id, id, checkpoint_id, shift_id, kind, person, temperature, flagged, at, note FROM checkpoint_log \
                   WHERE community_id = $1 AND checkpoint_id = $2 AND ($3 = 0 OR flagged = 1) AND id > $4 ORDER BY id LIMIT $5";
        fetch_page(
            &self.db,
            sql,
            vec![
                checkpoint.community_id.as_str().into(),
                checkpoint_id.into(),
                i64::from(flagged_only).into(),
            ],
            page,
            log_from_row,
            |e| &e.id,
        )
        .await
    }

    // ---- funds ----

    async fn load_funds(&self, conn: &mut AnyConnection, id: &str) -> Result<pb::FundsEntry> {
        fetch_by_id(
            conn,
            &format!("SELECT {FUNDS_COLS} FROM funds_entries WHERE id = $1"),
            id,
            "funds entry",
            funds_from_row,
        )
        .await
    }

    async fn insert_funds(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        e: &NewFunds,
        reverses: &str,
    ) -> Result<()> {
        sqlx::query(&format!("INSERT INTO funds_entries ({FUNDS_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '')"))
            .bind(&e.community_id)
            .bind(id)
            .bind(e.direction.as_str())
            .bind(e.category.as_str())
            .bind(e.amount_fen)
            .bind(&e.reference)
            .bind(&e.approver)
            .bind(&e.note)
            .bind(e.at)
            .bind(reverses)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub async fn record_funds(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        e: NewFunds,
    ) -> Result<pb::FundsEntry> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "logistics.funds",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let f = self.load_funds(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(f);
        }
        self.insert_funds(&mut tx, &id, &e, "").await?;
        let entry = self.load_funds(&mut tx, &id).await?;
        let after = json!({ "direction": e.direction.as_str(), "category": e.category.as_str(), "amount_fen": e.amount_fen, "reference": e.reference, "approver": e.approver });
        audit::record(
            &mut tx,
            actor,
            Change::created(&e.community_id, "funds.record", "funds_entry", &id, after),
        )
        .await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Corrects an entry with an equal and opposite one; an entry is reversed at most once.
    pub async fn reverse_funds(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        entry_id: &str,
        reason: &str,
        approver: &str,
    ) -> Result<pb::FundsEntry> {
        let mut tx = self.db.begin_write().await?;
        let id = new_id();
        if let Claim::Replay(existing) = idempotency::claim(
            &mut tx,
            "logistics.funds_reversal",
            &idem.key,
            &idem.fingerprint,
            &id,
        )
        .await?
        {
            let f = self.load_funds(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok(f);
        }
        let original = self.load_funds(&mut tx, entry_id).await?;
        if !original.reverses.is_empty() {
            return Err(Error::FailedPrecondition(
                "a reversal cannot itself be reversed; record a new entry instead".into(),
            ));
        }
        // Claiming the original's reversed_by is the guard against reversing it twice.
        let claimed = sqlx::query("UPDATE funds_entries SET reversed_by = $3 WHERE community_id = $1 AND id = $2 AND reversed_by = ''")
            .bind(&original.community_id)
            .bind(entry_id)
            .bind(&id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            return Err(Error::FailedPrecondition(
                "the entry has already been reversed".into(),
            ));
        }
        let direction = match FundsDirection::from_proto(original.direction) {
            Some(FundsDirection::Income) => FundsDirection::Expense,
            _ => FundsDirection::Income,
        };
        let e = NewFunds {
            community_id: original.community_id.clone(),
            direction,
            category: FundsCategory::Reversal,
            amount_fen: original.amount_fen,
            reference: original.reference.clone(),
            approver: approver.into(),
            note: reason.into(),
            at: now_micros(),
        };
        self.insert_funds(&mut tx, &id, &e, entry_id).await?;
        let reversal = self.load_funds(&mut tx, &id).await?;
        let after = json!({ "reverses": entry_id, "amount_fen": e.amount_fen, "direction": direction.as_str(), "reason": reason, "approver": approver });
        audit::record(
            &mut tx,
            actor,
            Change::created(&e.community_id, "funds.reverse", "funds_entry", &id, after),
        )
        .await?;
        tx.commit().await?;
        Ok(reversal)
    }

    pub async fn list_funds(
        &self,
        community_id: &str,
        page: &PageRequest,
    ) -> Result<(Vec<pb::FundsEntry>, String)> {
        let sql = format!(
            "SELECT {FUNDS_COLS} FROM funds_entries WHERE community_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        fetch_page(
            &self.db,
            &sql,
            vec![community_id.into()],
            page,
            funds_from_row,
            |e| &e.id,
        )
        .await
    }

    /// Money in and out over [from, to).
    pub async fn funds_totals(
        &self,
        community_id: &str,
        from: Micros,
        to: Micros,
    ) -> Result<(i64, i64)> {
        let (income, expense): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(CASE WHEN direction = 'income' THEN amount_fen ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN direction = 'expense' THEN amount_fen ELSE 0 END), 0) AS BIGINT) \
             FROM funds_entries WHERE community_id = $1 AND at >= $2 AND at < $3",
        )
        .bind(community_id)
        .bind(from)
        .bind(to)
        .fetch_one(&self.db.pool)
        .await?;
        Ok((income, expense))
    }

    // ---- reports ----

    pub async fn community_report(
        &self,
        community_id: &str,
        from: Micros,
        to: Micros,
    ) -> Result<pb::GetCommunityReportResponse> {
        let batches = sqlx::query("SELECT id, name FROM batches WHERE community_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY id")
            .bind(community_id)
            .bind(from)
            .bind(to)
            .fetch_all(&self.db.pool)
            .await?;
        let statuses: Vec<(String, String, String, Option<i64>)> = sqlx::query_as("SELECT batch_id, household_id, status, delivered_at FROM deliveries WHERE community_id = $1")
            .bind(community_id)
            .fetch_all(&self.db.pool)
            .await?;
        let mut per_batch: HashMap<&str, (i32, i32)> = HashMap::new();
        let mut reached: HashSet<&str> = HashSet::new();
        for (batch, household, status, delivered_at) in &statuses {
            let e = per_batch.entry(batch.as_str()).or_default();
            match DeliveryStatus::parse(status) {
                Some(DeliveryStatus::Delivered) => {
                    e.0 += 1;
                    if delivered_at.is_some_and(|at| (from..to).contains(&at)) {
                        reached.insert(household.as_str());
                    }
                }
                Some(DeliveryStatus::Pending) => e.1 += 1,
                _ => {}
            }
        }
        let mut report = pb::GetCommunityReportResponse::default();
        for row in &batches {
            let id: String = row.try_get("id")?;
            let (delivered, pending) = per_batch.get(id.as_str()).copied().unwrap_or_default();
            report.batches.push(pb::BatchProgress {
                batch_id: id,
                name: row.try_get("name")?,
                delivered,
                pending,
            });
        }
        report.households_reached = reached.len() as i32;
        let roster = self.roster_report(community_id, from, to).await?;
        report.person_shifts = roster.person_shifts;
        report.coverage = roster.coverage;
        let (income, expense) = self.funds_totals(community_id, from, to).await?;
        report.funds_in_fen = income;
        report.funds_out_fen = expense;
        Ok(report)
    }

    pub async fn summary(&self, community_id: &str) -> Result<pb::GetCommunitySummaryResponse> {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM deliveries WHERE community_id = $1 GROUP BY status",
        )
        .bind(community_id)
        .fetch_all(&self.db.pool)
        .await?;
        let count = |s: DeliveryStatus| {
            counts
                .iter()
                .find(|(k, _)| k == s.as_str())
                .map_or(0, |(_, n)| *n as i32)
        };
        let now = now_micros();
        let from = domain::floor_hour(now);
        let roster = self
            .roster_report(community_id, from, from + domain::DAY)
            .await?;
        let gap_hours = roster
            .coverage
            .iter()
            .map(|c| c.hours - c.covered_hours)
            .sum();
        let (income, expense) = self.funds_totals(community_id, i64::MIN, i64::MAX).await?;
        Ok(pb::GetCommunitySummaryResponse {
            community_id: community_id.into(),
            deliveries_pending: count(DeliveryStatus::Pending),
            deliveries_made: count(DeliveryStatus::Delivered),
            checkpoint_gap_hours: gap_hours,
            funds_balance_fen: income - expense,
        })
    }
}

/// How a delivery went, as a cadre reports it.
pub struct OutcomeReport<'a> {
    pub expected_version: i64,
    pub outcome: DeliveryOutcome,
    pub confirmed_by: &'a str,
    pub note: &'a str,
    pub at: Micros,
}

/// A recurring delivery that is due.
#[derive(Debug, Clone)]
pub struct DueSchedule {
    pub id: String,
    pub community_id: String,
    pub depot_id: String,
    pub name: String,
    pub bundle: Lines,
    pub recipients_json: String,
    pub every_days: i64,
    pub next_at: Micros,
}

#[derive(Debug, Clone, Copy)]
pub enum ShiftAction {
    Cancel,
    CheckIn,
    CheckOut,
}
