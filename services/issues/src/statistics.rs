//! The three rates (三率), times to claim and resolve, the fair ranking, and a community's summary.
use std::collections::{BTreeMap, HashMap};

use tonic::{Request, Response};

use linli_core::time::{Micros, now_micros};
use linli_core::validate::{parse_id, parse_opt_id};
use linli_core::{Actor, Error, Result};
use linli_proto::issues::v1 as pb;

use crate::api::*;
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
    let records = api.store.records_in(&community, &unit, from, to).await?;
    let now = now_micros();
    let mut out = statistics(&records, now);
    out.weeks = weekly(&records, now, r.weeks as usize, api.store.utc_offset);
    Ok(Response::new(out))
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
    let community = parse_id("community_id", &req.get_ref().community_id)?;
    actor.check_community_id(&community)?;
    Ok(Response::new(api.store.summary(&community).await?))
}

/// The most weeks statistics break down.
const MAX_WEEKS: i32 = 52;

/// Issues reported and resolved in each of the `weeks` local weeks up to the one holding `as_of`.
pub(crate) fn weekly(
    records: &[IssueRecord],
    as_of: Micros,
    weeks: usize,
    offset: chrono::FixedOffset,
) -> Vec<pb::WeekFigures> {
    const WEEK: Micros = 7 * 86_400_000_000;
    if weeks == 0 {
        return Vec::new();
    }
    let (this_week, _) = linli_core::time::week_bounds(as_of, offset);
    let first = this_week - (weeks as i64 - 1) * WEEK;
    let index = |at: Micros| {
        let i = at.checked_sub(first)?.div_euclid(WEEK);
        usize::try_from(i).ok().filter(|&i| i < weeks)
    };
    let mut out: Vec<pb::WeekFigures> = (0..weeks)
        .map(|i| pb::WeekFigures {
            week_start: Some(linli_core::time::to_timestamp(first + i as i64 * WEEK)),
            ..Default::default()
        })
        .collect();
    for r in records {
        if let Some(i) = index(r.reported_at) {
            out[i].reported += 1;
        }
        if let (Some(at), true) = (r.domain.resolved_at, r.domain.state.is_resolved())
            && let Some(i) = index(at)
        {
            out[i].resolved += 1;
        }
    }
    out
}

/// Statistics over a set of issues, as of `as_of` (see the proto for the definitions).
pub(crate) fn statistics(records: &[IssueRecord], as_of: Micros) -> pb::GetStatisticsResponse {
    let mut by_state: BTreeMap<&str, i32> = BTreeMap::new();
    let mut by_category: BTreeMap<&str, i32> = BTreeMap::new();
    let mut by_three_most: BTreeMap<&str, i32> = BTreeMap::new();
    let mut open_by_three_most: BTreeMap<&str, i32> = BTreeMap::new();
    let (mut resp_num, mut resp_den, mut res_num, mut res_den, mut sat_num, mut sat_den) =
        (0, 0, 0, 0, 0, 0);
    let mut to_claim = Vec::new();
    let mut to_resolve = Vec::new();
    let mut out = pb::GetStatisticsResponse {
        total: records.len() as i32,
        ..Default::default()
    };
    for r in records {
        let d = &r.domain;
        *by_state.entry(d.state.as_str()).or_default() += 1;
        *by_category.entry(r.category.as_str()).or_default() += 1;
        let mark = r.three_most.map_or("none", ThreeMost::as_str);
        *by_three_most.entry(mark).or_default() += 1;
        if d.state.is_open() {
            *open_by_three_most.entry(mark).or_default() += 1;
        }
        match d.state {
            IssueState::Verified => out.verified += 1,
            IssueState::ClosedUnconfirmed => out.closed_unconfirmed += 1,
            _ => {}
        }
        if d.state.is_dismissed() {
            continue;
        }
        if d.responded_at.is_some() || as_of > r.response_due_at {
            resp_den += 1;
            if d.responded_at.is_some_and(|t| t <= r.response_due_at) {
                resp_num += 1;
            }
        }
        res_den += 1;
        if d.state.is_resolved() {
            res_num += 1;
        }
        if let Some(rating) = d.rating {
            sat_den += 1;
            if rating >= 4 {
                sat_num += 1;
            }
        }
        if let Some(t) = d.first_claimed_at {
            to_claim.push((t - r.reported_at) / 1_000_000);
        }
        if let (Some(t), true) = (d.resolved_at, d.state.is_resolved()) {
            to_resolve.push((t - r.reported_at) / 1_000_000);
        }
    }
    let rate = |n: i32, d: i32| pb::Rate {
        numerator: n,
        denominator: d,
        value: if d == 0 {
            0.0
        } else {
            f64::from(n) / f64::from(d)
        },
    };
    let durations = |mut v: Vec<i64>| {
        v.sort_unstable();
        pb::Durations {
            samples: v.len() as i32,
            median_seconds: domain::percentile(&v, 0.5).unwrap_or(0),
            p90_seconds: domain::percentile(&v, 0.9).unwrap_or(0),
        }
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
    out.resolution_rate = Some(rate(res_num, res_den));
    out.satisfaction_rate = Some(rate(sat_num, sat_den));
    out.time_to_claim = Some(durations(to_claim));
    out.time_to_resolve = Some(durations(to_resolve));
    out
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

    pub async fn records_in(
        &self,
        community_id: &str,
        unit_id: &str,
        from: Micros,
        to: Micros,
    ) -> Result<Vec<IssueRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {ISSUE_COLS} FROM issues WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR claim_unit_id = $2) AND reported_at >= $3 AND reported_at < $4"
        ))
        .bind(community_id)
        .bind(unit_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    pub async fn summary(&self, community_id: &str) -> Result<pb::GetCommunitySummaryResponse> {
        let now = now_micros();
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM issues WHERE community_id = $1 GROUP BY state",
        )
        .bind(community_id)
        .fetch_all(&self.db.pool)
        .await?;
        let by: HashMap<String, i64> = counts.into_iter().collect();
        let count = |states: &[IssueState]| {
            states
                .iter()
                .map(|s| by.get(s.as_str()).copied().unwrap_or(0))
                .sum::<i64>() as i32
        };
        let (overdue,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM issues WHERE community_id = $1 AND ((state = 'reported' AND response_due_at < $2) \
             OR (state IN ('reported', 'acknowledged', 'claimed', 'in_progress', 'reopened') AND resolution_due_at < $2))",
        )
        .bind(community_id)
        .bind(now)
        .fetch_one(&self.db.pool)
        .await?;
        use IssueState::*;
        Ok(pb::GetCommunitySummaryResponse {
            community_id: community_id.to_owned(),
            open_issues: count(&[Reported, Acknowledged, Claimed, InProgress, Reopened]),
            overdue_issues: overdue as i32,
            resolved_issues: count(&[Resolved, Verified, ClosedUnconfirmed]),
        })
    }
}
