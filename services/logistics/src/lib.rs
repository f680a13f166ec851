//! linli's logistics service: supplies and stock, group purchases,
//! distribution batches and deliveries, checkpoints and duty rosters, the
//! checkpoint log and the funds ledger — the work of a community in a crisis.
#![forbid(unsafe_code)]

pub mod api;
mod batches;
mod checkpoint_log;
mod checkpoints;
pub mod cli;
mod context;
pub mod domain;
mod funds;
mod gauges;
pub mod policy;
mod purchases;
mod reports;
mod schedules;
pub mod seed;
mod settings;
mod stock;
pub mod store;
mod watch;

use std::time::Duration;

use linli_core::Db;
use linli_core::auth::Keys;
use linli_core::db::{CORE_MIGRATIONS, Migration};
use linli_core::people::People;
use linli_core::server::{GrpcServer, ServeSettings};
use linli_proto::logistics::v1::logistics_service_server::LogisticsServiceServer;

pub use linli_core::server::Jobs;
pub use settings::Settings;
pub use store::Store;

pub const SERVICE_NAME: &str = "linli.logistics.v1.LogisticsService";

pub fn migrations() -> Vec<Migration> {
    let mut all = CORE_MIGRATIONS.to_vec();
    all.push(Migration {
        id: "logistics/0001_logistics",
        sql: include_str!("../migrations/0001_logistics.sql"),
    });
    all.push(Migration {
        id: "logistics/0002_deliveries_by_household",
        sql: include_str!("../migrations/0002_deliveries_by_household.sql"),
    });
    all.push(Migration {
        id: "logistics/0003_movement_balance",
        sql: include_str!("../migrations/0003_movement_balance.sql"),
    });
    all.push(Migration {
        id: "logistics/0004_reversals_in_original_direction",
        sql: include_str!("../migrations/0004_reversals_in_original_direction.sql"),
    });
    all
}

/// Connects to the database at `url` and brings its schema up to date.
/// Connects to the configured database and brings its schema up to date.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let db = Db::connect_with(settings.common.database_url.expose(), &settings.common.db).await?;
    db.migrate(&migrations()).await?;
    Ok(Store::new(
        db,
        settings.fever_threshold,
        settings.max_duty_hours_per_day,
    )
    .with_utc_offset(settings.common.utc_offset))
}

/// The logistics service assembled from its settings: its store, its client of
/// the people service and its keys; it serves gRPC and runs the scheduler.
/// The binary and the tests build it the same way.
pub struct Application {
    pub settings: Settings,
    pub store: Store,
    pub people: People,
    pub keys: Keys,
}

impl Application {
    pub async fn build(settings: Settings, keys: Keys) -> anyhow::Result<Application> {
        let store = open_store(&settings).await?;
        let people = People::connect_lazy(&settings.people_addr, settings.common.call_timeout)?;
        Ok(Application {
            settings,
            store,
            people,
            keys,
        })
    }

    /// The gRPC server: every call verified with the application's keys.
    pub fn grpc_server(&self) -> GrpcServer {
        grpc_server(
            self.store.clone(),
            self.people.clone(),
            &self.keys,
            self.settings.common.serve.clone(),
        )
    }

    /// Starts the background jobs; they stop when the returned guard is dropped.
    pub fn spawn_jobs(&self) -> Jobs {
        Jobs(vec![
            spawn_schedules(
                self.store.clone(),
                self.people.clone(),
                self.keys.clone(),
                self.settings.schedule_interval,
            ),
            self.people.follow_ended(&self.keys, "logistics"),
        ])
    }
}

pub fn grpc_server(
    store: Store,
    people: People,
    keys: &Keys,
    settings: ServeSettings,
) -> GrpcServer {
    let api = LogisticsServiceServer::with_interceptor(
        api::LogisticsApi::new(store.clone(), people, keys.clone()),
        keys.interceptor(),
    );
    GrpcServer::new(SERVICE_NAME, tonic::service::Routes::new(api), settings)
        .ready_with(store.db.clone())
        .with_gauges(std::sync::Arc::new(store))
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
