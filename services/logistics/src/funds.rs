//! The funds ledger: money in and out, never edited; a mistake is reversed by an opposite entry.

use serde_json::json;
use sqlx::AnyConnection;
use tonic::{Request, Response};

use linli_core::audit::Change;
use linli_core::db::fetch_by_id;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::{Micros, now_micros, past_or_now};
use linli_core::validate::{parse_id, parse_name, parse_text, required_enum};
use linli_core::{Actor, Error, Result};
use linli_proto::logistics::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

pub(crate) async fn record_funds_entry(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::RecordFundsEntryRequest>,
) -> Resp<pb::RecordFundsEntryResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let community_id = parse_id("community_id", &r.community_id)?;
    actor.check_community_id(&community_id)?;
    let direction = required_enum("direction", r.direction, FundsDirection::from_proto)?;
    let category = required_enum("category", r.category, FundsCategory::from_proto)?;
    domain::check_funds_category(direction, category)?;
    if !(1..=10_000_000_000).contains(&r.amount_fen) {
        return Err(Error::invalid("amount_fen", "must be from 1 fen to 100,000,000 yuan").into());
    }
    let approver = parse_name("approver", &r.approver)?;
    let entry = NewFunds {
        community_id,
        direction,
        category,
        amount_fen: r.amount_fen,
        reference: parse_text("reference", &r.reference, 100)?,
        approver,
        note: parse_text("note", &r.note, 500)?,
        at: past_or_now("at", r.at.as_ref())?,
    };
    api.people.community(actor, &entry.community_id).await?;
    let entry = api.store.record_funds(actor, &idem, entry).await?;
    Ok(Response::new(pb::RecordFundsEntryResponse {
        entry: Some(entry),
    }))
}

pub(crate) async fn reverse_funds_entry(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::ReverseFundsEntryRequest>,
) -> Resp<pb::ReverseFundsEntryResponse> {
    let mut r = req.into_inner();
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let entry = parse_id("entry_id", &r.entry_id)?;
    api.in_reach(actor, Owned::FundsEntry, &entry).await?;
    let reason = parse_name("reason", &r.reason)?;
    let approver = parse_name("approver", &r.approver)?;
    let reversal = api
        .store
        .reverse_funds(actor, &idem, &entry, &reason, &approver)
        .await?;
    Ok(Response::new(pb::ReverseFundsEntryResponse {
        reversal: Some(reversal),
    }))
}

pub(crate) async fn list_funds_entries(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::ListFundsEntriesRequest>,
) -> Resp<pb::ListFundsEntriesResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let community = actor.community_or_own("community_id", &r.community_id)?;
    let (entries, next_page_token) = api.store.list_funds(&community, &page).await?;
    Ok(Response::new(pb::ListFundsEntriesResponse {
        entries,
        next_page_token,
    }))
}

pub(crate) async fn get_funds_balance(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::GetFundsBalanceRequest>,
) -> Resp<pb::GetFundsBalanceResponse> {
    let community = actor.community_or_own("community_id", &req.get_ref().community_id)?;
    let (income_fen, expense_fen) = api
        .store
        .funds_totals(&community, i64::MIN, i64::MAX)
        .await?;
    Ok(Response::new(pb::GetFundsBalanceResponse {
        income_fen,
        expense_fen,
        balance_fen: income_fen - expense_fen,
    }))
}

impl Store {
    pub(crate) async fn load_funds(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::FundsEntry> {
        fetch_by_id(
            conn,
            &format!("SELECT {FUNDS_COLS} FROM funds_entries WHERE id = $1"),
            id,
            "funds entry",
            funds_from_row,
        )
        .await
    }

    pub(crate) async fn insert_funds(
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
        idempotency::create(
            self,
            &self.db,
            actor,
            "logistics.funds",
            idem,
            |s, tx, existing| {
                Box::pin(async move {

                    let f = s.load_funds(&mut *tx, existing).await?;
                    Ok(f)
                })
            },
            |s, tx, id| {
                Box::pin(async move {

                    s.insert_funds(&mut *tx, id, &e, "").await?;
                    let entry = s.load_funds(&mut *tx, id).await?;
                    let after = json!({ "direction": e.direction.as_str(), "category": e.category.as_str(), "amount_fen": e.amount_fen, "reference": e.reference, "approver": e.approver });
                    let change = Change::created(&e.community_id, "funds.record", "funds_entry", id, after);
                    Ok(Made::new(entry, change))
                })
            },
        )
        .await
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
        idempotency::create(
            &(self, entry_id, reason, approver),
            &self.db,
            actor,
            "logistics.funds_reversal",
            idem,
            |&(s, _entry_id, _reason, _approver), tx, existing| {
                Box::pin(async move {

                    let f = s.load_funds(&mut *tx, existing).await?;
                    Ok(f)
                })
            },
            |&(s, entry_id, reason, approver), tx, id| {
                Box::pin(async move {

                    let original = s.load_funds(&mut *tx, entry_id).await?;
                    if !original.reverses.is_empty() {
                        return Err(Error::FailedPrecondition(
                            "a reversal cannot itself be reversed; record a new entry instead".into(),
                        ));
                    }
                    // Claiming the original's reversed_by is the guard against reversing it twice.
                    let claimed = sqlx::query("UPDATE funds_entries SET reversed_by = $3 WHERE community_id = $1 AND id = $2 AND reversed_by = ''")
                        .bind(&original.community_id)
                        .bind(entry_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if claimed == 0 {
                        return Err(Error::FailedPrecondition(
                            "the entry has already been reversed".into(),
                        ));
                    }
                    // A reversal cancels its original within the original's direction: a
                    // reversed expense lowers the expenses, not raises the income.
                    let direction = FundsDirection::from_proto(original.direction).ok_or_else(|| {
                        Error::Internal(anyhow::anyhow!("funds entry {entry_id} has no direction"))
                    })?;
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
                    s.insert_funds(&mut *tx, id, &e, entry_id).await?;
                    let reversal = s.load_funds(&mut *tx, id).await?;
                    let after = json!({ "reverses": entry_id, "amount_fen": e.amount_fen, "direction": direction.as_str(), "reason": reason, "approver": approver });
                    let change = Change::created(&e.community_id, "funds.reverse", "funds_entry", id, after);
                    Ok(Made::new(reversal, change))
                })
            },
        )
        .await
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
            "SELECT CAST(COALESCE(SUM(CASE WHEN direction = 'income' THEN signed ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN direction = 'expense' THEN signed ELSE 0 END), 0) AS BIGINT) \
             FROM (SELECT direction, CASE WHEN category = 'reversal' THEN -amount_fen ELSE amount_fen END AS signed \
             FROM funds_entries WHERE community_id = $1 AND at >= $2 AND at < $3) AS entries",
        )
        .bind(community_id)
        .bind(from)
        .bind(to)
        .fetch_one(&self.db.pool)
        .await?;
        Ok((income, expense))
    }
}
