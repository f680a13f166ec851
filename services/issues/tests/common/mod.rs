//! Test helpers: a people service and an issues service on port 0, each with
//! its own fresh database on the chosen backend, plus places, households and
//! registered cadres to report and claim with.
#![allow(dead_code)]

use linli_core::server::ServeSettings;
use linli_core::testing::{AuthedChannel, Backend, TestDb, TestServer, authed, keys};
use linli_proto::issues::v1 as pb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use linli_proto::people::v1 as ppb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;
use prost_types::Timestamp;

// Not every test file asserts statuses.
#[allow(unused_imports)]
pub use linli_core::testing::{as_role, assert_status, key};

pub type Client = IssuesServiceClient<AuthedChannel>;
pub type PeopleClient = PeopleServiceClient<AuthedChannel>;

pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;

pub struct World {
    pub community: String,
    pub other_community: String,
    pub households: Vec<String>,
    pub other_household: String,
    pub unit: String,
    pub cadres: Vec<String>,
    pub stranger: String,
}

pub struct Harness {
    pub client: Client,
    pub people: PeopleClient,
    pub people_server: Option<TestServer>,
    pub server: TestServer,
    pub store: linli_issues::Store,
    pub issues_db: TestDb,
    pub people_db: TestDb,
    pub world: World,
}

impl Harness {
    pub async fn start(backend: Backend) -> Harness {
        let people_db = TestDb::new(backend).await;
        let people_store =
            linli_people::open_store(&linli_people::Settings::new(&people_db.url).unwrap())
                .await
                .unwrap();
        let people_server = TestServer::spawn(linli_people::grpc_server(
            people_store,
            keys(),
            ServeSettings::default(),
        ))
        .await;
        let mut people = PeopleServiceClient::new(authed(people_server.channel.clone()));
        let world = world(&mut people).await;

        let issues_db = TestDb::new(backend).await;
        let app = application(&issues_db, &people_server).await;
        let store = app.store.clone();
        let server = TestServer::spawn(app.grpc_server()).await;
        let client = IssuesServiceClient::new(authed(server.channel.clone()));
        Harness {
            client,
            people,
            people_server: Some(people_server),
            server,
            store,
            issues_db,
            people_db,
            world,
        }
    }

    /// A second issues replica on the same database.
    pub async fn replica(&self) -> (TestServer, Client) {
        let app = application(&self.issues_db, self.people_server.as_ref().unwrap()).await;
        let server = TestServer::spawn(app.grpc_server()).await;
        let client = IssuesServiceClient::new(authed(server.channel.clone()));
        (server, client)
    }

    pub async fn stop(mut self) {
        self.server.stop().await;
        if let Some(p) = self.people_server.take() {
            p.stop().await;
        }
    }
}

/// The issues service as the binary builds it, on `db`, talking to `people`.
async fn application(db: &TestDb, people: &TestServer) -> linli_issues::Application {
    let settings =
        linli_issues::Settings::new(&db.url, &format!("http://{}", people.addr)).expect("settings");
    linli_issues::Application::build(settings, keys().clone())
        .await
        .expect("build the issues service")
}

async fn world(c: &mut PeopleClient) -> World {
    let mut place = async |kind: ppb::PlaceKind, parent: &str, name: &str| {
        c.create_place(ppb::CreatePlaceRequest {
            idempotency_key: key(),
            kind: kind as i32,
            parent_id: parent.into(),
            name: name.into(),
            code: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .place
        .unwrap()
        .id
    };
    let county = place(ppb::PlaceKind::County, "", "通山县").await;
    let town = place(ppb::PlaceKind::Town, &county, "通羊镇").await;
    let community = place(ppb::PlaceKind::Community, &town, "双泉社区").await;
    let other_community = place(ppb::PlaceKind::Community, &town, "月亮山社区").await;
    let mut household = async |community: &str, address: &str| {
        c.create_household(ppb::CreateHouseholdRequest {
            idempotency_key: key(),
            community_id: community.into(),
            address: address.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap()
        .id
    };
    let mut households = Vec::new();
    for i in 0..3 {
        households.push(household(&community, &format!("八角亭小区1栋{i}01")).await);
    }
    let other_household = household(&other_community, "月亮山1号").await;
    let unit = c
        .create_unit(ppb::CreateUnitRequest {
            idempotency_key: key(),
            name: "通山县纪委监委".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap()
        .id;
    let mut cadre = async |name: &str| {
        c.create_cadre(ppb::CreateCadreRequest {
            idempotency_key: key(),
            unit_id: unit.clone(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cadre
        .unwrap()
        .id
    };
    let mut cadres = Vec::new();
    for name in ["刘海元", "阮晓峰", "宋成琳", "孟军", "乐志华"] {
        cadres.push(cadre(name).await);
    }
    let stranger = cadre("外人").await;
    for cadre in &cadres {
        let reg = c
            .request_registration(ppb::RequestRegistrationRequest {
                idempotency_key: key(),
                cadre_id: cadre.clone(),
                community_id: community.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .registration
            .unwrap();
        c.approve_registration(ppb::ApproveRegistrationRequest {
            registration_id: reg.id,
            expected_version: reg.version,
            active_from: None,
        })
        .await
        .unwrap();
    }
    World {
        community,
        other_community,
        households,
        other_household,
        unit,
        cadres,
        stranger,
    }
}

/// `seconds` before now, to the microsecond.
pub fn ago(seconds: i64) -> Timestamp {
    before(linli_core::time::now_micros(), seconds)
}

/// `seconds` before a fixed `base` (microseconds), so a fixture's durations do not drift while it is built.
pub fn before(base: i64, seconds: i64) -> Timestamp {
    linli_core::time::to_timestamp(base - seconds * 1_000_000)
}

pub fn report(world: &World, title: &str) -> pb::ReportIssueRequest {
    pb::ReportIssueRequest {
        idempotency_key: key(),
        community_id: world.community.clone(),
        household_id: world.households[0].clone(),
        title: title.into(),
        description: "下水道堵塞，臭气冲天".into(),
        category: pb::Category::Drainage as i32,
        source: pb::Source::ResidentReport as i32,
        ..Default::default()
    }
}

pub fn mv(issue: &pb::Issue) -> Option<pb::Transition> {
    Some(pb::Transition {
        issue_id: issue.id.clone(),
        expected_version: issue.version,
        note: String::new(),
        at: None,
    })
}

pub fn mv_at(issue: &pb::Issue, at: Timestamp) -> Option<pb::Transition> {
    Some(pb::Transition {
        issue_id: issue.id.clone(),
        expected_version: issue.version,
        note: String::new(),
        at: Some(at),
    })
}

/// Drives an issue along the happy path with the given times (seconds ago), returning it at the end.
pub struct Walk<'a> {
    pub c: &'a mut Client,
}

impl Walk<'_> {
    pub async fn ack(&mut self, i: pb::Issue, at: Timestamp) -> pb::Issue {
        self.c
            .acknowledge_issue(pb::AcknowledgeIssueRequest {
                transition: mv_at(&i, at),
            })
            .await
            .unwrap()
            .into_inner()
            .issue
            .unwrap()
    }
    pub async fn claim(&mut self, i: pb::Issue, cadre: &str, at: Timestamp) -> pb::Issue {
        self.c
            .claim_issue(pb::ClaimIssueRequest {
                transition: mv_at(&i, at),
                cadre_id: cadre.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .issue
            .unwrap()
    }
    pub async fn start(&mut self, i: pb::Issue, at: Timestamp) -> pb::Issue {
        self.c
            .start_work(pb::StartWorkRequest {
                transition: mv_at(&i, at),
            })
            .await
            .unwrap()
            .into_inner()
            .issue
            .unwrap()
    }
    pub async fn resolve(&mut self, i: pb::Issue, at: Timestamp) -> pb::Issue {
        self.c
            .resolve_issue(pb::ResolveIssueRequest {
                transition: mv_at(&i, at),
                attachments: vec![],
            })
            .await
            .unwrap()
            .into_inner()
            .issue
            .unwrap()
    }
    pub async fn confirm(
        &mut self,
        i: pb::Issue,
        household: &str,
        rating: i32,
        at: Timestamp,
    ) -> pb::Issue {
        self.c
            .confirm_resolution(pb::ConfirmResolutionRequest {
                transition: mv_at(&i, at),
                household_id: household.into(),
                rating,
                comment: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .issue
            .unwrap()
    }
}
