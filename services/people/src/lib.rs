//! linli's people service: places, households and residents with their
//! vulnerability and care, cadres and units, dual registration, pairings,
//! on-site duty, visits and accounts.
#![forbid(unsafe_code)]

mod accounts;
pub mod api;
mod cadres;
mod care;
pub mod cli;
mod community;
pub mod domain;
mod duty;
mod households;
pub mod import;
mod pairings;
mod places;
pub mod policy;
mod registrations;
mod residents;
pub mod seed;
pub mod store;

use chrono::FixedOffset;
use linli_core::Db;
use linli_core::auth::Keys;
use linli_core::db::{CORE_MIGRATIONS, Migration};
use linli_core::server::{GrpcServer, ServeSettings};
use linli_proto::people::v1::people_service_server::PeopleServiceServer;

pub use domain::CarePolicy;
pub use store::Store;

/// The fully-qualified gRPC service name, as health checks and reflection report it.
pub const SERVICE_NAME: &str = "linli.people.v1.PeopleService";

/// China Standard Time, in which duty weeks and ages are reckoned by default.
pub fn default_utc_offset() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

pub fn migrations() -> Vec<Migration> {
    let mut all = CORE_MIGRATIONS.to_vec();
    all.push(Migration {
        id: "people/0001_people",
        sql: include_str!("../migrations/0001_people.sql"),
    });
    all
}

/// Connects to the database at `url` and brings its schema up to date.
pub async fn open_store(
    url: &str,
    policy: CarePolicy,
    utc_offset: FixedOffset,
) -> anyhow::Result<Store> {
    policy.validate()?;
    let db = Db::connect(url).await?;
    db.migrate(&migrations()).await?;
    Ok(Store::new(db, policy, utc_offset))
}

/// The people service, ready to serve: every call verified with `keys`.
pub fn grpc_server(store: Store, keys: &Keys, settings: ServeSettings) -> GrpcServer {
    let api = PeopleServiceServer::with_interceptor(api::PeopleApi::new(store), keys.interceptor());
    GrpcServer::new(SERVICE_NAME, tonic::service::Routes::new(api), settings)
}
