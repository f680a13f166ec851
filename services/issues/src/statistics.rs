//! The three rates (三率), times to claim and resolve, the fair ranking, and a community's summary.
use std::collections::BTreeMap;

use tonic::{Request, Response};

use linli_core::time::{Micros, now_micros};
use linli_core::validate::parse_opt_id;
use linli_core::{Actor, Error, Result};
use linli_proto::issues::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

/// The lower bound of the Wilson score interval (95%) for `k` successes in `n`:
/// the success rate we can be confident of. One success in one try scores
/// about 0.21, not 1.0, so a small sample cannot top a ranking by luck.
pub fn wilson_lower_bound(k: u32, n: u32) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let z = 1.959_963_984_540_054_f64;
    let n = f64::from(n);
    let p = f64::from(k) / n;
    let z2 = z * z;
    (p + z2 / (2.0 * n) - z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt()) / (1.0 + z2 / n)
}

/// The nearest-rank percentile (0 < q ≤ 1) of a sample; `None` when empty.
pub fn percentile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

pub(crate) async fn get_statistics(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::GetStatisticsRequest>,
) -> Resp<pb::GetStatisticsResponse> {
    let r = req.into_inner();
    let unit = parse_opt_id("unit_id", &r.unit_id)?.unwrap_or_default();
    let community = if r.community_id.is_empty() && !unit.is_empty() && actor.is_county() {
        String::new()
    } else {
        actor.community_filter("community_id", &r.community_id)?
    };
    let (from, to) = period(r.from.as_ref(), r.to.as_ref())?;
    if !(0..=MAX_WEEKS).contains(&r.weeks) {
        return Err(Error::invalid("weeks", format!("must be 0 to {MAX_WEEKS}")).into());
    }
    let scope = Scope {
        community: &community,
        unit: &unit,
        from,
        to,
    };
    Ok(Response::new(
        api.store
            .statistics(&scope, now_micros(), r.weeks as usize)
            .await?,
    ))
}

pub(crate) async fn get_ranking(
    api: &IssuesApi,
    req: Request<pb::GetRankingRequest>,
) -> Resp<pb::GetRankingResponse> {
    let r = req.into_inner();
    let by_unit = match pb::RankingScope::try_from(r.scope) {
        Ok(pb::RankingScope::Community) => false,
        Ok(pb::RankingScope::Unit) => true,
        Ok(pb::RankingScope::Unspecified) => return Err(Error::required("scope").into()),
        Err(_) => {
            let n = r.scope;
            return Err(Error::invalid("scope", format!("{n} is not a known value")).into());
        }
    };
    let (from, to) = period(r.from.as_ref(), r.to.as_ref())?;
    let tallies = api.store.on_time_tallies(by_unit, from, to).await?;
    Ok(Response::new(pb::GetRankingResponse {
        entries: ranking(tallies),
    }))
}

pub(crate) async fn get_community_summary(
    api: &IssuesApi,
    actor: &Actor,
    req: Request<pb::GetCommunitySummaryRequest>,
) -> Resp<pb::GetCommunitySummaryResponse> {
    let community = actor.community_or_own("community_id", &req.get_ref().community_id)?;
    Ok(Response::new(api.store.summary(&community).await?))
}

/// The most weeks statistics break down.
const MAX_WEEKS: i32 = 52;

/// Issues reported and resolved in each of the `weeks` local weeks up to the one holding `as_of`.
/// Which issues statistics are over: a community, a unit, or both, reported in [from, to).
pub struct Scope<'a> {
    pub community: &'a str,
    pub unit: &'a str,
    pub from: Micros,
    pub to: Micros,
}

impl Scope<'_> {
    /// The WHERE clause, on parameters $1 to $4 (an empty community or unit
    /// is compared with itself, so every parameter is used and typed).
    fn filter(&self) -> String {
        format!(
            "{} AND {} AND reported_at >= $3 AND reported_at < $4",
            if self.community.is_empty() {
                "$1 = ''"
            } else {
                "community_id = $1"
            },
            if self.unit.is_empty() {
                "$2 = ''"
            } else {
                // The condition of the unit index, word for word (0006).
                "claim_unit_id = $2 AND claim_unit_id <> ''"
            },
        )
    }

    fn bind<'q, O>(
        &self,
        q: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
        q.bind(self.community.to_owned())
            .bind(self.unit.to_owned())
            .bind(self.from)
            .bind(self.to)
    }
}

/// Communities or units, best first by the Wilson lower bound of their
/// on-time resolution rate, from `(id, issues, resolved on time)` tallies.
pub(crate) fn ranking(tally: Vec<(String, u32, u32)>) -> Vec<pb::RankingEntry> {
    let mut entries: Vec<pb::RankingEntry> = tally
        .into_iter()
        .filter(|(_, n, _)| *n > 0)
        .map(|(id, n, k)| pb::RankingEntry {
            id,
            issues: n as i32,
            resolved_on_time: k as i32,
            raw_rate: f64::from(k) / f64::from(n),
            score: domain::wilson_lower_bound(k, n),
        })
        .collect();
    entries.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.issues.cmp(&a.issues))
            .then(a.id.cmp(&b.id))
    });
    entries
}

/// Issues that are not real ones to be worked on, and those resolved.
const DISMISSED: &str = "state NOT IN ('rejected', 'duplicate')";

impl Store {
    /// Issues reported in [from, to), in a community, claimed by a unit, or county-wide.
    /// Per community (or per claiming unit), the issues reported in the period
    /// that count (not rejected or duplicate) and how many of them were resolved
    /// by the resolution deadline first given (a reopen does not buy time).
    /// Counted by the database: a county's year is not loaded into memory.
    pub async fn on_time_tallies(
        &self,
        by_unit: bool,
        from: Micros,
        to: Micros,
    ) -> Result<Vec<(String, u32, u32)>> {
        let key = if by_unit {
            "claim_unit_id"
        } else {
            "community_id"
        };
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT {key}, COUNT(*), \
             SUM(CASE WHEN state IN ('resolved', 'verified', 'closed_unconfirmed') AND resolved_at IS NOT NULL \
                 AND resolved_at <= COALESCE(first_resolution_due_at, resolution_due_at) THEN 1 ELSE 0 END) \
             FROM issues WHERE state NOT IN ('rejected', 'duplicate') AND reported_at >= $1 AND reported_at < $2 \
             AND ($3 = 0 OR claim_unit_id <> '') GROUP BY {key}"
        ))
        .bind(from)
        .bind(to)
        .bind(i64::from(by_unit))
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, n, k)| (id, n as u32, k as u32))
            .collect())
    }

    /// Statistics over the issues in `scope`, as of `as_of` (see the proto
    /// for the definitions), with `weeks` weeks of reported and resolved
    /// counts. Counted and ranked by the database in at most four queries,
    /// each one pass over the scope's issues: a community's whole history is
    /// never loaded into memory.
    pub async fn statistics(
        &self,
        scope: &Scope<'_>,
        as_of: Micros,
        weeks: usize,
    ) -> Result<pb::GetStatisticsResponse> {
        let f = scope.filter();
        // Per (state, category, mark): how many, and the rates' and the
        // durations' parts among them (the caller adds the parts of the
        // groups that count).
        type Group = (String, String, String, i64, i64, i64, i64, i64, i64, i64);
        let groups: Vec<Group> = scope
            .bind(sqlx::query_as(&format!(
                "SELECT state, category, three_most, COUNT(*), \
                 CAST(SUM(CASE WHEN responded_at IS NOT NULL OR response_due_at < $5 THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN responded_at IS NOT NULL AND responded_at <= response_due_at THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN rating IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN rating >= 4 THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN first_claimed_at IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN resolved_at IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM issues WHERE {f} GROUP BY state, category, three_most"
            )))
            .bind(as_of)
            .fetch_all(&self.db.pool)
            .await?;
        let mut by_state: BTreeMap<&str, i32> = BTreeMap::new();
        let mut by_category: BTreeMap<&str, i32> = BTreeMap::new();
        let mut by_three_most: BTreeMap<&str, i32> = BTreeMap::new();
        let mut open_by_three_most: BTreeMap<&str, i32> = BTreeMap::new();
        let mut out = pb::GetStatisticsResponse::default();
        let (mut res_num, mut res_den) = (0, 0);
        let (mut resp_den, mut resp_num, mut sat_den, mut sat_num) = (0, 0, 0, 0);
        let (mut claimed, mut resolved) = (0, 0);
        for (state, category, three_most, n, rd, rn, sd, sn, cl, rs) in &groups {
            let n = *n as i32;
            let state = IssueState::parse(state).ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "an issue in the database has the unknown state {state:?}"
                ))
            })?;
            out.total += n;
            *by_state.entry(state.as_str()).or_default() += n;
            *by_category.entry(category.as_str()).or_default() += n;
            let mark = if three_most.is_empty() {
                "none"
            } else {
                three_most.as_str()
            };
            *by_three_most.entry(mark).or_default() += n;
            if state.is_open() {
                *open_by_three_most.entry(mark).or_default() += n;
            }
            match state {
                IssueState::Verified => out.verified += n,
                IssueState::ClosedUnconfirmed => out.closed_unconfirmed += n,
                _ => {}
            }
            if state.is_resolved() {
                resolved += rs;
            }
            if !state.is_dismissed() {
                res_den += n;
                if state.is_resolved() {
                    res_num += n;
                }
                (resp_den, resp_num, sat_den, sat_num) =
                    (resp_den + rd, resp_num + rn, sat_den + sd, sat_num + sn);
                claimed += cl;
            }
        }
        let rate = |n: i64, d: i64| pb::Rate {
            numerator: n as i32,
            denominator: d as i32,
            value: if d == 0 { 0.0 } else { n as f64 / d as f64 },
        };
        let counts = |m: BTreeMap<&str, i32>| {
            m.into_iter()
                .map(|(k, count)| pb::Count {
                    key: k.to_owned(),
                    count,
                })
                .collect()
        };
        out.by_state = counts(by_state);
        out.by_category = counts(by_category);
        out.by_three_most = counts(by_three_most);
        out.open_by_three_most = counts(open_by_three_most);
        out.response_rate = Some(rate(resp_num, resp_den));
        out.resolution_rate = Some(rate(res_num.into(), res_den.into()));
        out.satisfaction_rate = Some(rate(sat_num, sat_den));
        out.time_to_claim = Some(
            self.durations(
                scope,
                "first_claimed_at",
                &format!("{DISMISSED} AND first_claimed_at IS NOT NULL"),
                claimed,
            )
            .await?,
        );
        out.time_to_resolve = Some(
            self.durations(
                scope,
                "resolved_at",
                &format!("{RESOLVED_SQL} AND resolved_at IS NOT NULL"),
                resolved,
            )
            .await?,
        );
        out.weeks = self.weekly(scope, as_of, weeks).await?;
        Ok(out)
    }

    /// Seconds from report to `column` for the `n` issues where `condition`
    /// holds: the nearest-rank median and 90th percentile, both picked by the
    /// database in one sort.
    async fn durations(
        &self,
        scope: &Scope<'_>,
        column: &str,
        condition: &str,
        n: i64,
    ) -> Result<pb::Durations> {
        let rank = |q: f64| ((q * n as f64).ceil() as i64).clamp(1, n.max(1));
        let (median_rank, p90_rank) = (rank(0.5), rank(0.9));
        let (mut median, mut p90) = (0, 0);
        if n > 0 {
            let f = scope.filter();
            let picked: Vec<(i64, i64)> = scope
                .bind(sqlx::query_as(&format!(
                    "SELECT rn, s FROM (SELECT ({column} - reported_at) / 1000000 AS s, \
                     ROW_NUMBER() OVER (ORDER BY ({column} - reported_at) / 1000000) AS rn \
                     FROM issues WHERE {f} AND {condition}) ranked WHERE rn = $5 OR rn = $6"
                )))
                .bind(median_rank)
                .bind(p90_rank)
                .fetch_all(&self.db.pool)
                .await?;
            for (rn, s) in picked {
                if rn == median_rank {
                    median = s;
                }
                if rn == p90_rank {
                    p90 = s;
                }
            }
        }
        Ok(pb::Durations {
            samples: n as i32,
            median_seconds: median,
            p90_seconds: p90,
        })
    }

    /// Reported and resolved counts for the last `weeks` weeks (local weeks,
    /// from Monday), oldest first, of the issues in `scope`.
    async fn weekly(
        &self,
        scope: &Scope<'_>,
        as_of: Micros,
        weeks: usize,
    ) -> Result<Vec<pb::WeekFigures>> {
        const WEEK: Micros = 7 * 86_400_000_000;
        if weeks == 0 {
            return Ok(Vec::new());
        }
        let (this_week, _) = linli_core::time::week_bounds(as_of, self.utc_offset);
        let first = this_week - (weeks as i64 - 1) * WEEK;
        let mut out: Vec<pb::WeekFigures> = (0..weeks)
            .map(|i| pb::WeekFigures {
                week_start: Some(linli_core::time::to_timestamp(first + i as i64 * WEEK)),
                ..Default::default()
            })
            .collect();
        // One pass: each issue's week of report and, if resolved in the
        // weeks shown, of resolution (-1 when outside them).
        let f = scope.filter();
        let rows: Vec<(i64, i64, i64)> = scope
            .bind(sqlx::query_as(&format!(
                "SELECT CASE WHEN reported_at >= $5 THEN (reported_at - $5) / $6 ELSE -1 END AS rw, \
                 CASE WHEN {RESOLVED_SQL} AND resolved_at >= $5 THEN (resolved_at - $5) / $6 ELSE -1 END AS sw, \
                 COUNT(*) FROM issues WHERE {f} AND (reported_at >= $5 OR ({RESOLVED_SQL} AND resolved_at >= $5)) \
                 GROUP BY rw, sw"
            )))
            .bind(first)
            .bind(WEEK)
            .fetch_all(&self.db.pool)
            .await?;
        for (reported, resolved, n) in rows {
            let n = n as i32;
            if let Some(week) = usize::try_from(reported).ok().and_then(|w| out.get_mut(w)) {
                week.reported += n;
            }
            if let Some(week) = usize::try_from(resolved).ok().and_then(|w| out.get_mut(w)) {
                week.resolved += n;
            }
        }
        Ok(out)
    }

    /// A community's open and overdue issues, counted from the open issues'
    /// own index, and its resolved ones from their running count: the cost
    /// follows what is open now, not the years of history.
    pub async fn summary(&self, community_id: &str) -> Result<pb::GetCommunitySummaryResponse> {
        let (open, overdue, resolved): (i64, i64, i64) = sqlx::query_as(&format!(
            "SELECT COUNT(*), \
             CAST(COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE((SELECT resolved FROM issue_counts WHERE community_id = $1), 0) AS BIGINT) \
             FROM issues WHERE community_id = $1 AND {OPEN_SQL}",
            crate::deadlines::overdue_sql("$2")
        ))
        .bind(community_id)
        .bind(now_micros())
        .fetch_one(&self.db.pool)
        .await?;
        Ok(pb::GetCommunitySummaryResponse {
            community_id: community_id.to_owned(),
            open_issues: open as i32,
            overdue_issues: overdue as i32,
            resolved_issues: resolved as i32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read by unit names the unit index's condition, so the database may
    /// use that index (it holds claimed issues only), and does.
    #[tokio::test]
    async fn a_read_by_unit_uses_the_unit_index() {
        let scratch = linli_core::testing::TestDb::new(linli_core::testing::Backend::Sqlite).await;
        let db = linli_core::Db::connect(&scratch.url).await.unwrap();
        db.migrate(&crate::migrations()).await.unwrap();
        let index = include_str!("../migrations/0006_lighter_reports.sql");
        assert!(index.contains("WHERE claim_unit_id <> '';"));
        let scope = Scope {
            community: "",
            unit: "unit-1",
            from: 0,
            to: 1,
        };
        let plan: Vec<(i64, i64, i64, String)> = scope
            .bind(sqlx::query_as(&format!(
                "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM issues WHERE {}",
                scope.filter()
            )))
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert!(
            plan.iter()
                .any(|(.., detail)| detail.contains("issues_unit")),
            "{plan:?}"
        );
        db.pool.close().await;
    }
}
