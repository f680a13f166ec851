//! The issues service's figures for `/metrics`: open issues by state, those
//! past a deadline, and escalations, county-wide (a dashboard has them per community).
use linli_core::metrics::{Gauge, GaugeFuture, Gauges};
use linli_core::time::now_micros;

use crate::deadlines::overdue_sql;
use crate::domain::OPEN_SQL;
use crate::store::Store;

impl Gauges for Store {
    fn gauges(&self) -> GaugeFuture<'_> {
        Box::pin(async move {
            let pool = &self.db.pool;
            let mut out = Vec::new();
            let open: Vec<(String, i64)> = sqlx::query_as(&format!(
                "SELECT state, COUNT(*) FROM issues WHERE {OPEN_SQL} GROUP BY state"
            ))
            .fetch_all(pool)
            .await
            .unwrap_or_default();
            for (state, n) in open {
                out.push(
                    Gauge::new(
                        "linli_issues_open",
                        "Issues waiting for someone to act, by state.",
                        n as f64,
                    )
                    .label("state", state),
                );
            }
            let now = now_micros();
            let overdue: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM issues WHERE {OPEN_SQL} AND {}",
                overdue_sql("$1")
            ))
            .bind(now)
            .fetch_one(pool)
            .await
            .ok();
            if let Some(n) = overdue {
                out.push(Gauge::new(
                    "linli_issues_overdue",
                    "Open issues past a deadline.",
                    n as f64,
                ));
            }
            let escalated: Option<i64> = sqlx::query_scalar("SELECT COUNT(*) FROM escalations")
                .fetch_one(pool)
                .await
                .ok();
            if let Some(n) = escalated {
                out.push(Gauge::new(
                    "linli_issues_escalations",
                    "Deadlines breached and escalated to supervisors, ever (only rises).",
                    n as f64,
                ));
            }
            let (batches, reports) = self.reports.written_together();
            out.push(Gauge::new(
                "linli_issues_report_batches",
                "Transactions that wrote several reports together, since start (only rises).",
                batches as f64,
            ));
            out.push(Gauge::new(
                "linli_issues_reports_batched",
                "Reports written together with others, since start (only rises).",
                reports as f64,
            ));
            out
        })
    }
}
