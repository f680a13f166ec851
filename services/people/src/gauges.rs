//! The people service's figures for `/metrics`: households, and those under care.
use linli_core::metrics::{Gauge, GaugeFuture, Gauges};

use crate::store::Store;

impl Gauges for Store {
    fn gauges(&self) -> GaugeFuture<'_> {
        Box::pin(async move {
            let counts: Option<(i64, i64)> = sqlx::query_as(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN care_level >= 2 THEN 1 ELSE 0 END), 0) FROM households",
            )
            .fetch_one(&self.db.pool)
            .await
            .ok();
            let Some((households, vulnerable)) = counts else {
                return Vec::new();
            };
            vec![
                Gauge::new(
                    "linli_people_households",
                    "Households on the rosters.",
                    households as f64,
                ),
                Gauge::new(
                    "linli_people_vulnerable_households",
                    "Households at care level watch or above.",
                    vulnerable as f64,
                ),
            ]
        })
    }
}
