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
mod context;
pub mod domain;
mod duty;
mod gauges;
mod households;
pub mod import;
mod pairings;
mod places;
pub mod policy;
mod registrations;
mod residents;
pub mod seed;
mod sessions;
mod settings;
pub mod store;

use chrono::FixedOffset;
use linli_core::Db;
use linli_core::auth::Keys;
use linli_core::db::{CORE_MIGRATIONS, Migration};
use linli_core::server::{GrpcServer, ServeSettings};
use linli_proto::people::v1::people_service_server::PeopleServiceServer;

pub use domain::CarePolicy;
pub use settings::Settings;
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
    all.push(Migration {
        id: "people/0002_account_disabled",
        sql: include_str!("../migrations/0002_account_disabled.sql"),
    });
    all.push(Migration {
        id: "people/0003_sessions",
        sql: include_str!("../migrations/0003_sessions.sql"),
    });
    all
}

/// Connects to the configured database and brings its schema up to date.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    settings.care_policy.validate()?;
    let db = Db::connect_with(settings.common.database_url.expose(), &settings.common.db).await?;
    db.migrate(&migrations()).await?;
    Ok(Store::new(
        db,
        settings.care_policy.clone(),
        settings.utc_offset,
    ))
}

/// The people service assembled from its settings: its store and its keys.
/// The binary and the tests build it the same way.
pub struct Application {
    pub settings: Settings,
    pub store: Store,
    pub keys: Keys,
}

impl Application {
    pub async fn build(settings: Settings, keys: Keys) -> anyhow::Result<Application> {
        let store = open_store(&settings).await?;
        Ok(Application::new(settings, store, keys))
    }

    pub fn new(settings: Settings, store: Store, keys: Keys) -> Application {
        Application {
            settings,
            store,
            keys,
        }
    }

    /// Starts the background jobs; they stop when the returned guard is dropped:
    /// reading what ended, so this replica refuses the tokens of ended logins too.
    pub fn spawn_jobs(&self) -> linli_core::server::Jobs {
        let store = self.store.clone();
        linli_core::server::Jobs(vec![self.keys.ended().follow(move |since| {
            let store = store.clone();
            async move {
                let since = since.as_ref().map(linli_core::time::micros).unwrap_or(0);
                store.ended_sessions(since).await
            }
        })])
    }

    /// The gRPC server: every call verified with the application's keys.
    pub fn grpc_server(&self) -> GrpcServer {
        grpc_server(
            self.store.clone(),
            &self.keys,
            self.settings.common.serve.clone(),
        )
    }
}

/// The people service, ready to serve: every call verified with `keys`.
pub fn grpc_server(store: Store, keys: &Keys, settings: ServeSettings) -> GrpcServer {
    let api = PeopleServiceServer::with_interceptor(
        api::PeopleApi::new(store.clone()),
        keys.interceptor(),
    );
    GrpcServer::new(SERVICE_NAME, tonic::service::Routes::new(api), settings)
        .ready_with(store.db.clone())
        .with_gauges(std::sync::Arc::new(store))
}
