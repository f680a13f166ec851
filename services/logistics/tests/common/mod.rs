//! Test helpers: a people service and a logistics service on port 0, each
//! with its own fresh database on the chosen backend, and a community with
//! households (two of them vulnerable), a unit and registered cadres.
#![allow(dead_code)]

use linli_core::server::ServeSettings;
use linli_core::testing::{AuthedChannel, Backend, TestDb, TestServer, authed, keys};
use linli_proto::logistics::v1 as pb;
use linli_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use linli_proto::people::v1 as ppb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;
use prost_types::Timestamp;

// Not every test file asserts statuses.
#[allow(unused_imports)]
pub use linli_core::testing::{as_role, assert_status, key};

pub type Client = LogisticsServiceClient<AuthedChannel>;
pub type PeopleClient = PeopleServiceClient<AuthedChannel>;

pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;

pub struct World {
    pub community: String,
    pub other_community: String,
    /// The first two are vulnerable: 0 intensive care (90, living alone), 1 watch.
    pub households: Vec<String>,
    pub unit: String,
    pub cadres: Vec<String>,
    pub stranger: String,
}

pub struct Harness {
    pub client: Client,
    pub people: PeopleClient,
    pub people_server: Option<TestServer>,
    pub server: TestServer,
    pub store: linli_logistics::Store,
    pub db: TestDb,
    pub people_db: TestDb,
    pub world: World,
}

impl Harness {
    pub async fn start(backend: Backend) -> Harness {
        Self::with_households(backend, 5).await
    }

    pub async fn with_households(backend: Backend, households: usize) -> Harness {
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
        let world = world(&mut people, households).await;
        let db = TestDb::new(backend).await;
        let app = application(&db, &people_server).await;
        let store = app.store.clone();
        let server = TestServer::spawn(app.grpc_server()).await;
        let client = LogisticsServiceClient::new(authed(server.channel.clone()));
        Harness {
            client,
            people,
            people_server: Some(people_server),
            server,
            store,
            db,
            people_db,
            world,
        }
    }

    /// A second logistics replica on the same database.
    pub async fn replica(&self) -> (TestServer, Client) {
        let app = application(&self.db, self.people_server.as_ref().unwrap()).await;
        let server = TestServer::spawn(app.grpc_server()).await;
        let client = LogisticsServiceClient::new(authed(server.channel.clone()));
        (server, client)
    }

    pub async fn stop(mut self) {
        self.server.stop().await;
        if let Some(p) = self.people_server.take() {
            p.stop().await;
        }
    }

    pub async fn item(&mut self, name: &str, unit: &str) -> String {
        self.client
            .create_item(pb::CreateItemRequest {
                idempotency_key: key(),
                name: name.into(),
                unit_of_measure: unit.into(),
                perishable: true,
            })
            .await
            .unwrap()
            .into_inner()
            .item
            .unwrap()
            .id
    }

    pub async fn depot(&mut self) -> String {
        let req = pb::CreateDepotRequest {
            idempotency_key: key(),
            community_id: self.world.community.clone(),
            name: "社区物资点".into(),
            address: "双泉社区居委会".into(),
        };
        self.client
            .create_depot(req)
            .await
            .unwrap()
            .into_inner()
            .depot
            .unwrap()
            .id
    }

    pub async fn stock_in(&mut self, depot: &str, item: &str, quantity: i64) -> i64 {
        let req = pb::RecordStockMovementRequest {
            idempotency_key: key(),
            depot_id: depot.into(),
            item_id: item.into(),
            kind: pb::MovementKind::DonationIn as i32,
            quantity,
            ..Default::default()
        };
        self.client
            .record_stock_movement(req)
            .await
            .unwrap()
            .into_inner()
            .balance
    }

    pub async fn level(&mut self, depot: &str, item: &str) -> i64 {
        let levels = self
            .client
            .get_stock(pb::GetStockRequest {
                depot_id: depot.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .levels;
        levels
            .iter()
            .find(|l| l.item_id == item)
            .map_or(0, |l| l.quantity)
    }
}

/// The logistics service as the binary builds it, on `db`, talking to `people`.
async fn application(db: &TestDb, people: &TestServer) -> linli_logistics::Application {
    let settings = linli_logistics::Settings::new(&db.url, &format!("http://{}", people.addr))
        .expect("settings");
    linli_logistics::Application::build(settings, keys().clone())
        .await
        .expect("build the logistics service")
}

async fn world(c: &mut PeopleClient, households: usize) -> World {
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
    let mut ids = Vec::new();
    for i in 0..households {
        let h = c
            .create_household(ppb::CreateHouseholdRequest {
                idempotency_key: key(),
                community_id: community.clone(),
                address: format!("八角亭小区{}号", i + 1),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .household
            .unwrap()
            .id;
        if i < 2 {
            let (birth, tags) = if i == 0 {
                (
                    "1936-03-08",
                    vec![ppb::VulnerabilityTag::LivingAlone as i32],
                )
            } else {
                ("1960-01-01", vec![ppb::VulnerabilityTag::LowIncome as i32])
            };
            c.add_resident(ppb::AddResidentRequest {
                idempotency_key: key(),
                household_id: h.clone(),
                name: "住户".into(),
                gender: ppb::Gender::Female as i32,
                birth_date: birth.into(),
                relation: ppb::Relation::Head as i32,
                tags,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        ids.push(h);
    }
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
    for name in ["刘海元", "阮晓峰", "宋成琳", "孟军", "乐志华", "夏雨"] {
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
        households: ids,
        unit,
        cadres,
        stranger,
    }
}

pub fn at(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

/// The start of the current hour minus `hours`, in seconds.
pub fn hours_ago(hours: i64) -> i64 {
    let now = linli_core::time::now_micros() / 1_000_000;
    now - now.rem_euclid(HOUR) - hours * HOUR
}
