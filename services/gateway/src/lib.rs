//! linli's gateway: the one address county systems and dashboards call.
//! It logs people in (`AuthService`), serves the people, issues and
//! logistics APIs by forwarding each call to a healthy replica of its
//! service, and assembles the views people work from (`GatewayService`).
//! It holds no domain data: only refresh tokens and its audit trail.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod cache;
mod changes;
pub mod cli;
pub mod client;
pub mod policy;
mod settings;
pub mod streams;
pub mod throttle;
pub mod views;
pub mod web;

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
    all.push(Migration {
        id: "gateway/0002_web",
        sql: include_str!("../migrations/0002_web.sql"),
    });
    all.push(Migration {
        id: "gateway/0003_session_epoch",
        sql: include_str!("../migrations/0003_session_epoch.sql"),
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
    auth: Arc<auth::AuthApi>,
    views: Arc<views::ViewsApi>,
    web: web::State,
}

impl Application {
    pub async fn build(settings: Settings, keys: Keys) -> anyhow::Result<Application> {
        let db = open_db(&settings).await?;
        let b = &settings.backends;
        let people = Backend::new(backend::PEOPLE, &settings.people_addrs, b)?;
        let issues = Backend::new(backend::ISSUES, &settings.issues_addrs, b)?;
        let logistics = Backend::new(backend::LOGISTICS, &settings.logistics_addrs, b)?;
        let auth = Arc::new(auth::AuthApi {
            db: db.clone(),
            keys: keys.clone(),
            people: people.clone(),
            throttle: Arc::new(throttle::LoginThrottle::new(settings.throttle.clone())),
            proxies: Arc::new(settings.trusted_proxies.clone()),
            access_ttl: settings.access_ttl,
            refresh_ttl: settings.refresh_ttl,
            call_timeout: settings.common.call_timeout,
        });
        let streams = Arc::new(streams::StreamSlots::default());
        let views = Arc::new(views::ViewsApi {
            streams: streams.clone(),
            people: people.clone(),
            issues: issues.clone(),
            logistics: logistics.clone(),
            part_timeout: settings.part_timeout,
            dashboards: Arc::new(cache::ViewCache::new(settings.views)),
            statistics: Arc::new(cache::ViewCache::new(views::statistics_hold(
                settings.views,
            ))),
            overviews: Arc::new(cache::ViewCache::new(settings.views)),
            told: Arc::default(),
            changes: Arc::new(changes::Changes::new(
                issues.clone(),
                logistics.clone(),
                keys.clone(),
            )),
        });
        let web = Arc::new(web::WebState {
            db: db.clone(),
            keys: keys.clone(),
            auth: auth.clone(),
            views: views.clone(),
            people: people.clone(),
            issues: issues.clone(),
            logistics: logistics.clone(),
            sessions: web::SessionSettings {
                ttl: settings.refresh_ttl,
                // A disabled account or a resident who moved out loses the
                // pages within a minute.
                recheck: settings.session_recheck,
                secure_cookies: settings.secure_cookies,
            },
            // Bound to the signing key, so every replica accepts every other's forms.
            csrf_key: linli_core::audit::hmac_sha256(&keys.audit_key(), b"linli web csrf"),
            metrics: web::metrics::Metrics::default(),
            open311_rate: web::open311::ReportRate::default(),
            streams,
            call_timeout: settings.common.call_timeout,
            stop: tokio::sync::watch::channel(false).0,
            permits: Arc::new(tokio::sync::Semaphore::new(
                settings.common.serve.max_concurrent_requests,
            )),
            request_timeout: settings.common.serve.request_timeout,
            limits: settings.common.serve.clone(),
        });
        Ok(Application {
            auth,
            views,
            web,
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

    /// A community named by its id, its administrative code or its exact name, as people has it.
    pub async fn community_id(&self, given: &str) -> anyhow::Result<String> {
        let all = communities(&self.people, &self.keys, self.settings.common.call_timeout)
            .await
            .map_err(|s| anyhow::anyhow!("cannot ask people for communities: {}", s.message()))?;
        if let Some(p) = find_community(&all, given) {
            return Ok(p.id.clone());
        }
        // By exact name, as `linli-people token` takes it, when one community has it.
        let named: Vec<_> = all.iter().filter(|p| p.name == given).collect();
        match named.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => anyhow::bail!("people knows no community with id, code or name {given:?}"),
            many => anyhow::bail!(
                "{} communities are named {given:?}; give the code: {}",
                many.len(),
                many.iter()
                    .map(|p| format!("{} ({})", p.code, p.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Health probes of every backend replica, stopped when dropped.
    pub fn spawn_jobs(&self) -> Jobs {
        let b = &self.settings.backends;
        Jobs(vec![
            self.people.spawn_probes(b),
            self.issues.spawn_probes(b),
            self.logistics.spawn_probes(b),
            self.auth.follow_ended(),
        ])
    }

    /// Login, the views (every call verified with the application's keys),
    /// and the three services' APIs forwarded.
    fn grpc_routes(&self) -> Routes {
        let auth = AuthServiceServer::from_arc(self.auth.clone());
        let views = GatewayServiceServer::from_arc(self.views.clone());
        let views =
            tonic::service::interceptor::InterceptedService::new(views, self.keys.interceptor());
        Routes::new(views)
            .add_service(auth)
            .add_service(Forward::<backend::PeopleApi>::new(self.people.clone()))
            .add_service(Forward::<backend::IssuesApi>::new(self.issues.clone()))
            .add_service(Forward::<backend::LogisticsApi>::new(
                self.logistics.clone(),
            ))
    }

    /// The gRPC server on the gRPC port.
    pub fn grpc_server(&self) -> GrpcServer {
        GrpcServer::new(
            SERVICE_NAME,
            self.grpc_routes(),
            self.settings.common.serve.clone(),
        )
        .also_serving(&[
            AUTH_SERVICE_NAME,
            backend::PEOPLE,
            backend::ISSUES,
            backend::LOGISTICS,
        ])
        .ready_with(self.db.clone())
    }

    /// The HTTP side: the dashboard, its JSON API, gRPC-Web, Open311, metrics.
    pub fn web_router(&self) -> axum::Router {
        web::router(self.web.clone(), self.grpc_routes().into_axum_router())
    }

    /// Serves the HTTP side on `listener` until `shutdown` completes.
    pub fn serve_web(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
        web::serve(listener, self.web_router(), self.web.clone(), shutdown)
    }
}

/// Every community people knows, read page by page as the gateway itself.
pub(crate) async fn communities(
    people: &Backend,
    keys: &Keys,
    timeout: std::time::Duration,
) -> Result<Vec<linli_proto::people::v1::Place>, tonic::Status> {
    use linli_proto::people::v1 as ppb;
    let mut client = ppb::people_service_client::PeopleServiceClient::new(people.clone());
    let actor = keys.service_actor("gateway");
    let (mut all, mut page_token) = (Vec::new(), String::new());
    loop {
        let mut req = actor.request(ppb::ListPlacesRequest {
            kind: ppb::PlaceKind::Community as i32,
            page_size: 500,
            page_token,
            ..Default::default()
        });
        req.set_timeout(timeout);
        let page = client.list_places(req).await?.into_inner();
        all.extend(page.places);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

/// The community `given` names by its id or its administrative code.
pub(crate) fn find_community<'a>(
    all: &'a [linli_proto::people::v1::Place],
    given: &str,
) -> Option<&'a linli_proto::people::v1::Place> {
    all.iter()
        .find(|p| p.id == given || (!p.code.is_empty() && p.code == given))
}
