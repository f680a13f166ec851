//! The logistics service's figures for `/metrics`: deliveries still to make,
//! and each community's checkpoint hours short of staff in the next 24.
use linli_core::metrics::{Gauge, GaugeFuture, Gauges};

use crate::store::Store;

impl Gauges for Store {
    fn gauges(&self) -> GaugeFuture<'_> {
        Box::pin(async move {
            let mut out = Vec::new();
            let pending: Option<i64> =
                sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")
                    .fetch_one(&self.db.pool)
                    .await
                    .ok();
            if let Some(n) = pending {
                out.push(Gauge::new(
                    "linli_deliveries_pending",
                    "Deliveries planned and not yet made.",
                    n as f64,
                ));
            }
            let communities: Vec<String> =
                sqlx::query_scalar("SELECT DISTINCT community_id FROM checkpoints")
                    .fetch_all(&self.db.pool)
                    .await
                    .unwrap_or_default();
            for community in communities {
                if let Ok(summary) = self.summary(&community).await {
                    out.push(
                        Gauge::new(
                            "linli_checkpoint_gap_hours_next_24h",
                            "Hours of the next 24 in which a checkpoint has fewer people on duty than required.",
                            f64::from(summary.checkpoint_gap_hours),
                        )
                        .label("community_id", community),
                    );
                }
            }
            out
        })
    }
}
