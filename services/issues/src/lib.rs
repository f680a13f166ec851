//! linli's issues service: residents' problems (三最) reported, claimed,
//! fixed, confirmed by the residents, and supervised so that nothing is left
//! to rot.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
mod context;
mod deadlines;
pub mod domain;
mod gauges;
mod intake;
mod lifecycle;
pub mod policy;
pub mod seed;
mod settings;
mod statistics;
pub mod store;
mod supervision;
mod watch;

use std::time::Duration;

use linli_core::Db;
use linli_core::auth::Keys;
use linli_core::db::{CORE_MIGRATIONS, Migration};
use linli_core::server::{GrpcServer, ServeSettings};
use linli_proto::issues::v1::issues_service_server::IssuesServiceServer;

pub use domain::DeadlinePolicy;
pub use linli_core::people::People;
pub use linli_core::server::Jobs;
pub use settings::Settings;
pub use store::Store;

pub const SERVICE_NAME: &str = "linli.issues.v1.IssuesService";

pub fn migrations() -> Vec<Migration> {
    let mut all = CORE_MIGRATIONS.to_vec();
    all.push(Migration {
        id: "issues/0001_issues",
        sql: include_str!("../migrations/0001_issues.sql"),
    });
    all.push(Migration {
        id: "issues/0002_original_deadline",
        sql: include_str!("../migrations/0002_original_deadline.sql"),
    });
    all.push(Migration {
        id: "issues/0003_statistics_index",
        sql: include_str!("../migrations/0003_statistics_index.sql"),
    });
    all.push(Migration {
        id: "issues/0004_open_index",
        sql: include_str!("../migrations/0004_open_index.sql"),
    });
    all.push(Migration {
        id: "issues/0005_counts",
        sql: include_str!("../migrations/0005_counts.sql"),
    });
    all.push(Migration {
        id: "issues/0006_lighter_reports",
        sql: include_str!("../migrations/0006_lighter_reports.sql"),
    });
    all.push(Migration {
        id: "issues/0007_reporter_contact",
        sql: include_str!("../migrations/0007_reporter_contact.sql"),
    });
    all
}

/// Connects to the database at `url` and brings its schema up to date.
/// Connects to the configured database and brings its schema up to date.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let db = Db::connect_with(settings.common.database_url.expose(), &settings.common.db).await?;
    db.migrate(&migrations()).await?;
    Ok(Store::new(db, settings.deadlines.clone())
        .with_utc_offset(settings.common.utc_offset)
        .with_report_batch(settings.report_batch))
}

/// The issues service assembled from its settings: its store, its client of the
/// people service and its keys; it serves gRPC and sweeps for missed deadlines.
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
            spawn_supervision(self.store.clone(), self.settings.supervision_interval),
            self.people.follow_ended(&self.keys, "issues"),
        ])
    }
}

pub fn grpc_server(
    store: Store,
    people: People,
    keys: &Keys,
    settings: ServeSettings,
) -> GrpcServer {
    let api = IssuesServiceServer::with_interceptor(
        api::IssuesApi::new(store.clone(), people),
        keys.interceptor(),
    );
    GrpcServer::new(SERVICE_NAME, tonic::service::Routes::new(api), settings)
        .ready_with(store.db.clone())
        .with_gauges(std::sync::Arc::new(store))
}

/// Runs a supervision sweep every `interval` until the task is dropped. Each
/// replica runs one; the database makes sure each breach escalates once.
pub fn spawn_supervision(store: Store, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.run_supervision(linli_core::time::now_micros()).await {
                Ok(s) if s.escalated > 0 || s.auto_closed > 0 => {
                    tracing::info!(
                        escalated = s.escalated,
                        auto_closed = s.auto_closed,
                        "supervision sweep"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "supervision sweep failed; retrying at the next tick")
                }
            }
        }
    })
}
