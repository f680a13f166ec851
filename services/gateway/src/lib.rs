//! linli's gateway: the one address county systems and dashboards call.
//! It logs people in (`AuthService`), serves the people, issues and
//! logistics APIs by forwarding each call to a healthy replica of its
//! service, and assembles the views people work from (`GatewayService`).
//! It holds no domain data: only refresh tokens and its audit trail.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod cli;
pub mod policy;
mod settings;
pub mod throttle;
pub mod views;

use std::sync::Arc;

use linli_core::Db;
use linli_core::auth::Keys;
use linli_core::db::{CORE_MIGRATIONS, Migration};
use linli_core::server::{GrpcServer, Jobs};
use linli_proto::gateway::v1::auth_service_server::AuthServiceServer;
use linli_proto::gateway::v1::gateway_service_server::GatewayServiceServer;
use tonic::service::Routes;

use backend::{Backend, Forward};
pub use settings::Settings;

/// The fully-qualified gRPC service name of the views, as health and reflection report it.
pub const SERVICE_NAME: &str = "linli.gateway.v1.GatewayService";
pub const AUTH_SERVICE_NAME: &str = "linli.gateway.v1.AuthService";

pub fn migrations() -> Vec<Migration> {
    let mut all = CORE_MIGRATIONS.to_vec();
    all.push(Migration {
        id: "gateway/0001_sessions",
        sql: include_str!("../migrations/0001_sessions.sql"),
    });
    all
}

/// Connects to the configured database and brings its schema up to date.
pub async fn open_db(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect_with(settings.common.database_url.expose(), &settings.common.db).await?;
    db.migrate(&migrations()).await?;
    Ok(db)
}

/// The gateway assembled from its settings. The binary and the tests build it the same way.
pub struct Application {
    pub settings: Settings,
    pub db: Db,
    pub keys: Keys,
    pub people: Backend,
    pub issues: Backend,
    pub logistics: Backend,
    throttle: Arc<throttle::LoginThrottle>,
}

impl Application {
    pub async fn build(settings: Settings, keys: Keys) -> anyhow::Result<Application> {
        let db = open_db(&settings).await?;
        let b = &settings.backends;
        let people = Backend::new(backend::PEOPLE, &settings.people_addrs, b)?;
        let issues = Backend::new(backend::ISSUES, &settings.issues_addrs, b)?;
        let logistics = Backend::new(backend::LOGISTICS, &settings.logistics_addrs, b)?;
        Ok(Application {
            throttle: Arc::new(throttle::LoginThrottle::new(settings.throttle.clone())),
            settings,
            db,
            keys,
            people,
            issues,
            logistics,
        })
    }

    /// A gateway with the defaults on `database_url`, in front of one replica of
    /// each service (`http://host:port`): what tests put in front of a service.
    pub async fn in_front_of(
        database_url: &str,
        people: &str,
        issues: &str,
        logistics: &str,
        keys: Keys,
    ) -> anyhow::Result<Application> {
        Application::build(
            Settings::new(database_url, people, issues, logistics)?,
            keys,
        )
        .await
    }

    /// Health probes of every backend replica, stopped when dropped.
    pub fn spawn_jobs(&self) -> Jobs {
        let b = &self.settings.backends;
        Jobs(vec![
            self.people.spawn_probes(b),
            self.issues.spawn_probes(b),
            self.logistics.spawn_probes(b),
        ])
    }

    /// The gRPC server: login, the views (every call verified with the
    /// application's keys), and the three services' APIs forwarded.
    pub fn grpc_server(&self) -> GrpcServer {
        let auth = AuthServiceServer::new(auth::AuthApi {
            db: self.db.clone(),
            keys: self.keys.clone(),
            people: self.people.clone(),
            throttle: self.throttle.clone(),
            access_ttl: self.settings.access_ttl,
            refresh_ttl: self.settings.refresh_ttl,
            call_timeout: self.settings.common.call_timeout,
        });
        let views = GatewayServiceServer::with_interceptor(
            views::ViewsApi {
                people: self.people.clone(),
                issues: self.issues.clone(),
                logistics: self.logistics.clone(),
                part_timeout: self.settings.part_timeout,
            },
            self.keys.interceptor(),
        );
        let routes = Routes::new(views)
            .add_service(auth)
            .add_service(Forward::<backend::PeopleApi>::new(self.people.clone()))
            .add_service(Forward::<backend::IssuesApi>::new(self.issues.clone()))
            .add_service(Forward::<backend::LogisticsApi>::new(
                self.logistics.clone(),
            ));
        GrpcServer::new(SERVICE_NAME, routes, self.settings.common.serve.clone())
            .also_serving(&[
                AUTH_SERVICE_NAME,
                backend::PEOPLE,
                backend::ISSUES,
                backend::LOGISTICS,
            ])
            .ready_with(self.db.clone())
    }
}
