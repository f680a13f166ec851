//! A community's logistics at a glance and over a period, and its audit trail.
use std::collections::{HashMap, HashSet};

use sqlx::Row;
use tonic::{Request, Response};

use linli_core::time::{Micros, now_micros};
use linli_core::{Actor, Result};
use linli_proto::logistics::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::policy::FUNDS_READERS;
use crate::store::*;

pub(crate) async fn get_community_report(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::GetCommunityReportRequest>,
) -> Resp<pb::GetCommunityReportResponse> {
    let r = req.into_inner();
    let community = actor.community_or_own("community_id", &r.community_id)?;
    let (from, to) = domain::report_period(
        linli_core::time::optional("from", r.from.as_ref())?,
        linli_core::time::optional("to", r.to.as_ref())?,
        now_micros(),
    )?;
    let mut report = api.store.community_report(&community, from, to).await?;
    if !actor.is(FUNDS_READERS) {
        (report.funds_in_fen, report.funds_out_fen) = (None, None);
    }
    Ok(Response::new(report))
}

pub(crate) async fn get_community_summary(
    api: &LogisticsApi,
    actor: &Actor,
    req: Request<pb::GetCommunitySummaryRequest>,
) -> Resp<pb::GetCommunitySummaryResponse> {
    let community = actor.community_or_own("community_id", &req.get_ref().community_id)?;
    let mut summary = api.store.summary(&community).await?;
    if !actor.is(FUNDS_READERS) {
        summary.funds_balance_fen = None;
    }
    Ok(Response::new(summary))
}

linli_core::audit_handlers!(LogisticsApi);

impl Store {
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
        report.funds_in_fen = Some(income);
        report.funds_out_fen = Some(expense);
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
        // Hours of the next 24 in which any checkpoint is short, each hour once however
        // many checkpoints are short in it (the roster report has them per checkpoint).
        let gaps: Vec<(i64, i64)> = roster
            .gaps
            .iter()
            .map(|g| {
                let at = |t: &Option<prost_types::Timestamp>| {
                    t.as_ref().map_or(0, linli_core::time::micros)
                };
                (at(&g.starts_at), at(&g.ends_at))
            })
            .collect();
        let gap_hours = domain::hours_with_gaps(from, from + domain::DAY, &gaps);
        let (income, expense) = self.funds_totals(community_id, i64::MIN, i64::MAX).await?;
        Ok(pb::GetCommunitySummaryResponse {
            community_id: community_id.into(),
            deliveries_pending: count(DeliveryStatus::Pending),
            deliveries_made: count(DeliveryStatus::Delivered),
            checkpoint_gap_hours: gap_hours,
            funds_balance_fen: Some(income - expense),
        })
    }
}
