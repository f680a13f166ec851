//! Plumbing shared by every linli service, so that each service crate holds
//! only its domain: configuration, telemetry, gRPC serving (health,
//! reflection, layers, graceful shutdown), storage and migrations on SQLite or
//! PostgreSQL, idempotent creates, the audit trail, the caller's identity,
//! pagination, and the one mapping from errors to gRPC status codes.
#![forbid(unsafe_code)]

pub mod actor;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod conn;
pub mod db;
pub mod edge;
pub mod ended;
pub mod error;
pub mod feed;
pub mod idempotency;
pub mod keyring;
pub mod mask;
pub mod metrics;
pub mod page;
pub mod people;
pub mod policy;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod validate;

pub use actor::{Actor, Role, Scope};
pub use db::Db;
pub use error::{Error, Result};

/// A new record id: UUIDv7, so ids sort by creation time and keyset pages are stable.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
