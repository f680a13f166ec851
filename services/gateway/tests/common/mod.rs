//! The whole suite in one test process: people, issues and logistics on
//! port 0, each on its own fresh database and seeded with the demo data the
//! way `make run` seeds it, and the gateway in front of them.
#![allow(dead_code)]

pub mod http;

use std::net::SocketAddr;

use linli_core::server::ServeSettings;
use linli_core::testing::{Backend, TestDb, TestServer, keys};
use linli_proto::gateway::v1 as pb;
use linli_proto::gateway::v1::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;

#[allow(unused_imports)]
pub use linli_core::testing::with_token;

pub const PASSWORD: &str = "linli-demo-2021";

pub struct Suite {
    pub people: TestServer,
    pub issues: Option<TestServer>,
    pub logistics: TestServer,
    pub gateway: TestServer,
    pub issues_addr: SocketAddr,
    pub issues_db: TestDb,
    pub dbs: Vec<TestDb>,
    pub jobs: linli_core::server::Jobs,
    /// The gateway's HTTP side.
    pub web: SocketAddr,
    /// The gateway's own database (sessions, Open311 keys).
    pub gateway_store: linli_core::Db,
}

impl Suite {
    pub async fn start(backend: Backend) -> Suite {
        Suite::start_with(backend, |_| {}).await
    }

    /// The suite, with the gateway's settings adjusted by `tune`.
    pub async fn start_with(
        backend: Backend,
        tune: impl FnOnce(&mut linli_gateway::Settings),
    ) -> Suite {
        let people_db = TestDb::new(backend).await;
        let people_store =
            linli_people::open_store(&linli_people::Settings::new(&people_db.url).unwrap())
                .await
                .unwrap();
        linli_people::seed::run(&people_store, linli_people::seed::DemoPasswords::Keep)
            .await
            .unwrap();
        let people = TestServer::spawn(linli_people::grpc_server(
            people_store,
            keys(),
            ServeSettings::default(),
        ))
        .await;
        let people_url = format!("http://{}", people.addr);

        let issues_db = TestDb::new(backend).await;
        let issues_app = issues_app(&issues_db, &people_url).await;
        linli_issues::seed::run(
            &issues_app.store,
            &issues_app.people,
            &keys().service_actor("issues"),
        )
        .await
        .unwrap();
        let issues = TestServer::spawn(issues_app.grpc_server()).await;

        let logistics_db = TestDb::new(backend).await;
        let settings = linli_logistics::Settings::new(&logistics_db.url, &people_url).unwrap();
        let logistics_app = linli_logistics::Application::build(settings, keys().clone())
            .await
            .unwrap();
        linli_logistics::seed::run(
            &logistics_app.store,
            &logistics_app.people,
            &keys().service_actor("logistics"),
        )
        .await
        .unwrap();
        let logistics = TestServer::spawn(logistics_app.grpc_server()).await;

        let gateway_db = TestDb::new(backend).await;
        let mut settings = linli_gateway::Settings::new(
            &gateway_db.url,
            &people_url,
            &format!("http://{}", issues.addr),
            &format!("http://{}", logistics.addr),
        )
        .unwrap();
        settings.backends.probe_interval = std::time::Duration::from_millis(100);
        tune(&mut settings);
        let app = linli_gateway::Application::build(settings, keys().clone())
            .await
            .unwrap();
        let mut jobs = app.spawn_jobs();
        let gateway = TestServer::spawn(app.grpc_server()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let web = listener.local_addr().unwrap();
        let serving = app.serve_web(listener, std::future::pending());
        jobs.0.push(tokio::spawn(async move {
            serving.await.expect("the HTTP side serves");
        }));
        Suite {
            people,
            issues_addr: issues.addr,
            issues: Some(issues),
            logistics,
            gateway,
            issues_db,
            dbs: vec![people_db, logistics_db, gateway_db],
            jobs,
            web,
            gateway_store: app.db.clone(),
        }
    }

    pub fn channel(&self) -> Channel {
        self.gateway.channel.clone()
    }

    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel())
    }

    pub async fn login(&self, username: &str) -> pb::Session {
        self.auth()
            .login(pb::LoginRequest {
                username: username.into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("login {username}: {s:?}"))
            .into_inner()
            .session
            .expect("a session")
    }

    /// A second community, 月亮山社区, in the demo community's town (made by the admin).
    pub async fn another_community(&self) -> linli_proto::people::v1::Place {
        use linli_proto::people::v1 as ppb;
        let admin = self.login("admin").await.access_token;
        let mut people = linli_proto::people::v1::people_service_client::PeopleServiceClient::new(
            self.channel(),
        );
        let town = people
            .list_places(with_token(
                ppb::ListPlacesRequest {
                    kind: ppb::PlaceKind::Community as i32,
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner()
            .places
            .remove(0)
            .parent_id;
        people
            .create_place(with_token(
                ppb::CreatePlaceRequest {
                    idempotency_key: "another-community".into(),
                    kind: ppb::PlaceKind::Community as i32,
                    parent_id: town,
                    name: "月亮山社区".into(),
                    code: String::new(),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner()
            .place
            .unwrap()
    }

    /// A community's dashboard over gRPC, as `username` sees it.
    pub async fn dashboard_as(
        &self,
        username: &str,
        community_id: &str,
    ) -> pb::GetCommunityDashboardResponse {
        let token = self.login(username).await.access_token;
        linli_proto::gateway::v1::gateway_service_client::GatewayServiceClient::new(self.channel())
            .get_community_dashboard(with_token(
                pb::GetCommunityDashboardRequest {
                    community_id: community_id.to_owned(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// Stops the issues service (as a crash would, to the gateway).
    pub async fn stop_issues(&mut self) {
        if let Some(s) = self.issues.take() {
            s.stop().await;
        }
    }

    /// Starts issues again where it was, on the same database.
    pub async fn restart_issues(&mut self) {
        let people_url = format!("http://{}", self.people.addr);
        let app = issues_app(&self.issues_db, &people_url).await;
        self.issues = Some(TestServer::spawn_at(app.grpc_server(), self.issues_addr).await);
    }
}

pub async fn issues_app(db: &TestDb, people_url: &str) -> linli_issues::Application {
    let settings = linli_issues::Settings::new(&db.url, people_url).unwrap();
    linli_issues::Application::build(settings, keys().clone())
        .await
        .unwrap()
}
