//! linli's logistics service: supplies and stock, group purchases,
//! distribution batches and deliveries, checkpoints and duty rosters, the
//! checkpoint log and the funds ledger — the work of a community in a crisis.
#![forbid(unsafe_code)]

pub mod api;
mod batches;
mod checkpoint_log;
mod checkpoints;
pub mod cli;
pub mod domain;
mod funds;
pub mod policy;
mod purchases;
mod reports;
mod schedules;
pub mod seed;
mod stock;
pub mod store;

use std::time::Duration;

use linli_core::Db;
use linli_core::auth::Keys;
use linli_core::db::{CORE_MIGRATIONS, Migration};
use linli_core::people::People;
use linli_core::server::{GrpcServer, ServeSettings};
use linli_proto::logistics::v1::logistics_service_server::LogisticsServiceServer;

pub use store::Store;

pub const SERVICE_NAME: &str = "linli.logistics.v1.LogisticsService";

pub fn migrations() -> Vec<Migration> {
    let mut all = CORE_MIGRATIONS.to_vec();
    all.push(Migration {
        id: "logistics/0001_logistics",
        sql: include_str!("../migrations/0001_logistics.sql"),
    });
    all
}

/// Connects to the database at `url` and brings its schema up to date.
pub async fn open_store(
    url: &str,
    fever_threshold: f64,
    max_duty_hours_per_day: i64,
) -> anyhow::Result<Store> {
    let db = Db::connect(url).await?;
    db.migrate(&migrations()).await?;
    Ok(Store::new(db, fever_threshold, max_duty_hours_per_day))
}

pub fn grpc_server(
    store: Store,
    people: People,
    keys: &Keys,
    settings: ServeSettings,
) -> GrpcServer {
    let api = LogisticsServiceServer::with_interceptor(
        api::LogisticsApi::new(store, people, keys.clone()),
        keys.interceptor(),
    );
    GrpcServer::new(SERVICE_NAME, tonic::service::Routes::new(api), settings)
}

/// Plans due recurring deliveries every `interval`; each occurrence is planned once across replicas.
pub fn spawn_schedules(
    store: Store,
    people: People,
    keys: Keys,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match api::LogisticsApi::run_schedules(
                &store,
                &people,
                &keys,
                linli_core::time::now_micros(),
            )
            .await
            {
                Ok(batches) if !batches.is_empty() => {
                    tracing::info!(batches = batches.len(), "planned recurring deliveries")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "recurring deliveries not planned; retrying at the next tick")
                }
            }
        }
    })
}
