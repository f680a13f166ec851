//! The checkpoint log: entries registered, ID checks and temperatures, fevers flagged.

use serde_json::json;
use tonic::{Request, Response};

use linli_core::audit::Change;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{past_or_now, to_timestamp};
use linli_core::validate::{parse_id, parse_opt_id, parse_text, required_enum};
use linli_core::{Actor, Error, Result};
use linli_proto::logistics::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

pub(crate) async fn log_checkpoint_entry(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::LogCheckpointEntryRequest>,
) -> Resp<pb::LogCheckpointEntryResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let checkpoint = parse_id("checkpoint_id", &r.checkpoint_id)?;
    api.in_reach(actor, Owned::Checkpoint, &checkpoint).await?;
    let shift = parse_opt_id("shift_id", &r.shift_id)?.unwrap_or_default();
    let kind = required_enum("kind", r.kind, LogEntryKind::from_proto)?;
    let person = parse_text("person", &r.person, 64)?;
    let (temperature, flagged) = match kind {
        LogEntryKind::Temperature => (
            r.temperature_celsius,
            domain::check_temperature(r.temperature_celsius, api.store.fever_threshold)?,
        ),
        _ if r.temperature_celsius != 0.0 => {
            return Err(
                Error::invalid("temperature_celsius", "is only for a temperature reading").into(),
            );
        }
        _ => (0.0, false),
    };
    let at = past_or_now("at", r.at.as_ref())?;
    let note = parse_text("note", &r.note, 500)?;
    let entry = api
        .store
        .log_entry(
            actor,
            &idem,
            NewLogEntry {
                checkpoint_id: &checkpoint,
                shift_id: &shift,
                kind,
                person: &person,
                temperature,
                flagged,
                at,
                note: &note,
            },
        )
        .await?;
    Ok(Response::new(pb::LogCheckpointEntryResponse {
        entry: Some(entry),
    }))
}

pub(crate) async fn list_checkpoint_log(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::ListCheckpointLogRequest>,
) -> Resp<pb::ListCheckpointLogResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let checkpoint = parse_id("checkpoint_id", &r.checkpoint_id)?;
    api.in_reach(actor, Owned::Checkpoint, &checkpoint).await?;
    let (entries, next_page_token) = api
        .store
        .list_log(&checkpoint, r.flagged_only, &page)
        .await?;
    Ok(Response::new(pb::ListCheckpointLogResponse {
        entries,
        next_page_token,
    }))
}

impl Store {
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
        idempotency::create(
            &(self, checkpoint_id, shift_id, person, note),
            &self.db,
            actor,
            "logistics.log",
            idem,
            |&(s, checkpoint_id, _shift_id, _person, _note), tx, existing| {
                Box::pin(async move {
                    let checkpoint = s.load_checkpoint(&mut *tx, checkpoint_id).await?;
                    let row = sqlx::query("SELECT community_id, id, checkpoint_id, shift_id, kind, person, temperature, flagged, at, note FROM checkpoint_log WHERE community_id = $1 AND id = $2")
                        .bind(&checkpoint.community_id)
                        .bind(existing)
                        .fetch_one(&mut *tx)
                        .await?;
                    log_from_row(&row)
                })
            },
            |&(s, checkpoint_id, shift_id, person, note), tx, id| {
                Box::pin(async move {
                    let checkpoint = s.load_checkpoint(&mut *tx, checkpoint_id).await?;
                    if !shift_id.is_empty() {
                        let shift = s.load_shift(&mut *tx, shift_id).await?;
                        if shift.checkpoint_id != checkpoint_id {
                            return Err(Error::invalid(
                                "shift_id",
                                "is a shift of another checkpoint",
                            ));
                        }
                    }
                    sqlx::query("INSERT INTO checkpoint_log (community_id, id, checkpoint_id, shift_id, kind, person, temperature, flagged, at, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                        .bind(&checkpoint.community_id)
                        .bind(id)
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
                    let change = Change::created(
                            &checkpoint.community_id,
                            "checkpoint.log",
                            "checkpoint_log",
                            id,
                            after,
                        );
                    Ok(Made::new(pb::CheckpointLogEntry {
            id: id.to_owned(),
            checkpoint_id: checkpoint_id.into(),
            shift_id: shift_id.into(),
            kind: kind.to_proto(),
            person: person.into(),
            temperature_celsius: temperature,
            flagged,
            at: Some(to_timestamp(at)),
            note: note.into(),
        }, change))
                })
            },
        )
        .await
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
}
