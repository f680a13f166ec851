//! The logistics service's storage: one SQL dialect for SQLite and PostgreSQL
//! (see `linli_core::db`). Stock changes go through [`move_stock`], a guarded
//! update of the running level plus a ledger row in one transaction, so the
//! level is always the ledger's sum and never below zero. Code holding a
//! transaction never asks the pool for another connection (SQLite pools have one).
use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use linli_core::db::text_col;
use linli_core::feed::Heads;
use linli_core::time::{Micros, opt_timestamp, to_timestamp};
use linli_core::{Db, Error, Result};
use linli_proto::logistics::v1 as pb;

use crate::domain::{
    DeliveryOutcome, DeliveryStatus, FundsCategory, FundsDirection, LogEntryKind, MovementKind,
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
    /// The local time zone, for the times written into messages.
    pub utc_offset: chrono::FixedOffset,
    /// Where each community's audit chain stands, for the watchers (polled).
    pub heads: Heads,
}

pub(crate) fn lines_to_json(lines: &Lines) -> String {
    serde_json::to_string(lines).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn lines_from_json(s: &str) -> Lines {
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

pub(crate) fn movement_from_row(row: &AnyRow) -> Result<pb::StockMovement> {
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

pub(crate) fn depot_from_row(row: &AnyRow) -> Result<pb::Depot> {
    Ok(pb::Depot {
        id: row.try_get("id")?,
        community_id: row.try_get("community_id")?,
        name: row.try_get("name")?,
        address: row.try_get("address")?,
    })
}

pub(crate) fn item_from_row(row: &AnyRow) -> Result<pb::Item> {
    Ok(pb::Item {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        unit_of_measure: row.try_get("unit_of_measure")?,
        perishable: row.try_get::<i64, _>("perishable")? != 0,
    })
}

pub(crate) fn batch_from_row(row: &AnyRow) -> Result<pb::Batch> {
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

pub(crate) const DELIVERY_COLS: &str = "community_id, id, batch_id, household_id, care_level, cadre_id, status, attempts, confirmed_by, note, delivered_at, lines_json, version";

pub(crate) fn delivery_from_row(row: &AnyRow) -> Result<pb::Delivery> {
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

pub(crate) const SHIFT_COLS: &str = "community_id, id, checkpoint_id, cadre_id, unit_id, starts_at, ends_at, checked_in_at, checked_out_at, cancelled";

pub(crate) fn shift_from_row(row: &AnyRow) -> Result<pb::Shift> {
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

pub(crate) fn checkpoint_from_row(row: &AnyRow) -> Result<pb::Checkpoint> {
    Ok(pb::Checkpoint {
        id: row.try_get("id")?,
        community_id: row.try_get("community_id")?,
        name: row.try_get("name")?,
        required_staff: row.try_get::<i64, _>("required_staff")? as i32,
    })
}

pub(crate) fn log_from_row(row: &AnyRow) -> Result<pb::CheckpointLogEntry> {
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

pub(crate) const FUNDS_COLS: &str = "community_id, id, direction, category, amount_fen, reference, approver, note, at, reverses, reversed_by";

pub(crate) fn funds_from_row(row: &AnyRow) -> Result<pb::FundsEntry> {
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
#[derive(Clone, Copy)]
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
            heads: Heads::in_table(&db, "audit_heads"),
            db,
            fever_threshold,
            max_duty_hours_per_day,
            utc_offset: linli_core::time::china_standard_time(),
        }
    }

    /// Times in the service's messages are written in this zone.
    pub fn with_utc_offset(mut self, offset: chrono::FixedOffset) -> Store {
        self.utc_offset = offset;
        self
    }

    // ---- catalogue, depots, stock ----

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

    // ---- batches and deliveries ----

    // ---- group purchases ----

    // ---- recurring deliveries ----

    // ---- checkpoints and rosters ----

    // ---- funds ----

    // ---- reports ----
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
