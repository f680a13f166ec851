//! Deadlines, by category and 三最 mark, configurable under `[deadlines]`:
//! when an issue must be answered and resolved, and which deadlines it has missed.
use linli_core::time::Micros;
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::domain::*;

pub(crate) const HOUR: i64 = 3_600_000_000;
pub(crate) const DAY: i64 = 24 * HOUR;

/// Deadlines, configurable in the settings file under `[deadlines]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlinePolicy {
    /// Hours to acknowledge or claim an issue.
    pub response_hours: i64,
    /// Hours for an issue marked as one of the 三最.
    pub three_most_response_hours: i64,
    /// Days to resolve, by category.
    pub resolution_days: BTreeMap<Category, i64>,
    /// Resolution days for a 三最 issue, as a percentage of its category's (rounded up, at least 1 day).
    pub three_most_resolution_percent: i64,
    /// Days after resolution before an unconfirmed issue closes by itself.
    pub auto_close_days: i64,
}

impl Default for DeadlinePolicy {
    fn default() -> Self {
        use Category::*;
        DeadlinePolicy {
            response_hours: 24,
            three_most_response_hours: 12,
            resolution_days: [
                (Road, 30),
                (Drainage, 14),
                (Sanitation, 7),
                (PublicSafety, 3),
                (HousingRepair, 30),
                (Epidemic, 2),
                (Livelihood, 14),
                (Other, 30),
            ]
            .into_iter()
            .collect(),
            three_most_resolution_percent: 50,
            auto_close_days: 7,
        }
    }
}

impl DeadlinePolicy {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.response_hours < 1 || self.three_most_response_hours < 1 || self.auto_close_days < 1
        {
            anyhow::bail!(
                "deadlines: response_hours, three_most_response_hours and auto_close_days must be at least 1"
            );
        }
        if !(1..=100).contains(&self.three_most_resolution_percent) {
            anyhow::bail!("deadlines: three_most_resolution_percent must be from 1 to 100");
        }
        if let Some((c, d)) = self.resolution_days.iter().find(|(_, d)| **d < 1) {
            anyhow::bail!(
                "deadlines: resolution_days for {} is {d}; it must be at least 1",
                c.as_str()
            );
        }
        Ok(())
    }

    pub fn response_due(&self, reported_at: Micros, three_most: Option<ThreeMost>) -> Micros {
        let hours = if three_most.is_some() {
            self.three_most_response_hours
        } else {
            self.response_hours
        };
        reported_at + hours * HOUR
    }

    /// When an issue reported (or reopened) at `from` must be resolved.
    pub fn resolution_due(
        &self,
        from: Micros,
        category: Category,
        three_most: Option<ThreeMost>,
    ) -> Micros {
        let days = self.resolution_days.get(&category).copied().unwrap_or(30);
        let days = match three_most {
            Some(_) => ((days * self.three_most_resolution_percent + 99) / 100).max(1),
            None => days,
        };
        from + days * DAY
    }

    pub fn auto_close_after(&self) -> Micros {
        self.auto_close_days * DAY
    }
}

/// The deadlines an open issue has missed as of `as_of`, each with its due time:
/// the response deadline while nobody has answered, the resolution deadline
/// until it is resolved.
pub fn breaches(
    state: IssueState,
    response_due: Micros,
    resolution_due: Micros,
    as_of: Micros,
) -> Vec<(DeadlineKind, Micros)> {
    let mut out = Vec::new();
    if state == IssueState::Reported && as_of > response_due {
        out.push((DeadlineKind::Response, response_due));
    }
    if state.is_open() && as_of > resolution_due {
        out.push((DeadlineKind::Resolution, resolution_due));
    }
    out
}

/// [`breaches`] finds something, in SQL, for an issue known to be open
/// ([`crate::domain::OPEN_SQL`]); `as_of` is the placeholder that holds the time.
pub fn overdue_sql(as_of: &str) -> String {
    format!("((state = 'reported' AND response_due_at < {as_of}) OR resolution_due_at < {as_of})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use IssueState::*;

    /// The SQL rule, asked of a database, agrees with [`breaches`] for every
    /// state and every order of the two deadlines and the time.
    #[tokio::test]
    async fn the_sql_overdue_rule_is_breaches() {
        let scratch = linli_core::testing::TestDb::new(linli_core::testing::Backend::Sqlite).await;
        let db = linli_core::Db::connect(&scratch.url).await.unwrap();
        let sql = format!(
            "SELECT CASE WHEN {} AND {} THEN 1 ELSE 0 END \
             FROM (SELECT $1 AS state, $2 AS response_due_at, $3 AS resolution_due_at) AS issue",
            crate::domain::OPEN_SQL,
            overdue_sql("$4")
        );
        for &state in IssueState::ALL {
            for (response_due, resolution_due) in [(10, 100), (100, 10), (10, 10)] {
                for as_of in [5, 10, 11, 50, 100, 101] {
                    let (sql_says,): (i64,) = sqlx::query_as(&sql)
                        .bind(state.as_str())
                        .bind(response_due)
                        .bind(resolution_due)
                        .bind(as_of)
                        .fetch_one(&db.pool)
                        .await
                        .unwrap();
                    let rust_says =
                        !breaches(state, response_due, resolution_due, as_of).is_empty();
                    assert_eq!(
                        sql_says == 1,
                        rust_says,
                        "{state:?}, due {response_due}/{resolution_due}, as of {as_of}"
                    );
                }
            }
        }
        db.pool.close().await;
    }

    #[test]
    fn deadlines_follow_category_and_three_most() {
        let p = DeadlinePolicy::default();
        assert_eq!(p.response_due(0, None), 24 * HOUR);
        assert_eq!(
            p.response_due(0, Some(ThreeMost::MostDistressing)),
            12 * HOUR
        );
        assert_eq!(p.resolution_due(0, Category::Road, None), 30 * DAY);
        assert_eq!(
            p.resolution_due(0, Category::Drainage, Some(ThreeMost::MostVexing)),
            7 * DAY
        );
        assert_eq!(
            p.resolution_due(0, Category::Epidemic, Some(ThreeMost::MostWorrying)),
            DAY
        );
        let cfg: DeadlinePolicy =
            toml::from_str("response_hours = 48\n[resolution_days]\nroad = 60\n").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.resolution_due(0, Category::Road, None), 60 * DAY);
        let bad: DeadlinePolicy = toml::from_str("[resolution_days]\nroad = 0\n").unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn missed_deadlines() {
        assert_eq!(
            breaches(Reported, 10, 100, 11),
            vec![(DeadlineKind::Response, 10)]
        );
        assert_eq!(breaches(Reported, 10, 100, 10), vec![]);
        assert_eq!(
            breaches(Reported, 10, 100, 101),
            vec![
                (DeadlineKind::Response, 10),
                (DeadlineKind::Resolution, 100)
            ]
        );
        assert_eq!(
            breaches(Claimed, 10, 100, 101),
            vec![(DeadlineKind::Resolution, 100)]
        );
        assert_eq!(breaches(Resolved, 10, 100, 1000), vec![]);
        assert_eq!(breaches(Acknowledged, 10, 100, 50), vec![]);
    }
}
