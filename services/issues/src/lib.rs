//! linli's issues service: residents' problems (三最) reported, claimed,
//! fixed, confirmed by the residents, and supervised so that nothing is left
//! to rot.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
mod deadlines;
pub mod domain;
mod intake;
mod lifecycle;
pub mod policy;
pub mod seed;
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
pub use store::Store;

pub const SERVICE_NAME: &str = "linli.issues.v1.IssuesService";

pub fn migrations() -> Vec<Migration> {
    let mut all = CORE_MIGRATIONS.to_vec();
    all.push(Migration {
        id: "issues/0001_issues",
        sql: include_str!("../migrations/0001_issues.sql"),
    });
    all
}

/// Connects to the database at `url` and brings its schema up to date.
pub async fn open_store(url: &str, policy: DeadlinePolicy) -> anyhow::Result<Store> {
    policy.validate()?;
    let db = Db::connect(url).await?;
    db.migrate(&migrations()).await?;
    Ok(Store::new(db, policy))
}

pub fn grpc_server(
    store: Store,
    people: People,
    keys: &Keys,
    settings: ServeSettings,
) -> GrpcServer {
    let api = IssuesServiceServer::with_interceptor(
        api::IssuesApi::new(store, people),
        keys.interceptor(),
    );
    GrpcServer::new(SERVICE_NAME, tonic::service::Routes::new(api), settings)
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
