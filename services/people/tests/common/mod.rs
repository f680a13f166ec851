//! Test helpers: a people service on port 0 with a fresh database, and request builders.
#![allow(dead_code)]

use linli_core::testing::{AuthedChannel, Backend, TestDb, TestServer};
use linli_proto::people::v1 as pb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;

// Not every test file asserts statuses.
#[allow(unused_imports)]
pub use linli_core::testing::{as_role, assert_status, key};

/// A client that acts as a county admin unless a request carries its own token.
pub type Client = PeopleServiceClient<AuthedChannel>;

pub struct Harness {
    pub client: Client,
    pub server: TestServer,
    pub store: linli_people::Store,
    pub db: TestDb,
}

impl Harness {
    pub async fn start(backend: Backend) -> Harness {
        let db = TestDb::new(backend).await;
        let settings = linli_people::Settings::new(&db.url).expect("settings");
        let app = linli_people::Application::build(settings, linli_core::testing::keys().clone())
            .await
            .expect("build the people service");
        let store = app.store.clone();
        let server = TestServer::spawn(app.grpc_server()).await;
        let client = PeopleServiceClient::new(linli_core::testing::authed(server.channel.clone()));
        Harness {
            client,
            server,
            store,
            db,
        }
    }
}

/// A valid 18-character ID number for a birth date and a sequence number.
pub fn id_number(birth: &str, seq: u32) -> String {
    let first17 = format!("421224{}{:03}", birth.replace('-', ""), seq % 1000);
    format!("{first17}{}", linli_people::domain::id_check_char(&first17))
}

/// County → town → community → compound → building, returning (community, compound, building).
/// A place of `kind` named `name` under `parent` (empty for a county).
pub async fn place(c: &mut Client, kind: pb::PlaceKind, parent: &str, name: &str) -> pb::Place {
    c.create_place(pb::CreatePlaceRequest {
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
}

pub async fn places(c: &mut Client) -> (pb::Place, pb::Place, pb::Place) {
    let county = place(c, pb::PlaceKind::County, "", "通山县").await;
    let town = place(c, pb::PlaceKind::Town, &county.id, "通羊镇").await;
    let community = place(c, pb::PlaceKind::Community, &town.id, "双泉社区").await;
    let compound = place(c, pb::PlaceKind::Compound, &community.id, "八角亭小区").await;
    let building = place(c, pb::PlaceKind::Building, &compound.id, "3栋").await;
    (community, compound, building)
}

pub async fn household(c: &mut Client, community: &pb::Place, address: &str) -> pb::Household {
    c.create_household(pb::CreateHouseholdRequest {
        idempotency_key: key(),
        community_id: community.id.clone(),
        address: address.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .household
    .unwrap()
}

pub fn resident(
    household: &pb::Household,
    name: &str,
    birth: &str,
    seq: u32,
    tags: &[pb::VulnerabilityTag],
) -> pb::AddResidentRequest {
    pb::AddResidentRequest {
        idempotency_key: key(),
        household_id: household.id.clone(),
        name: name.into(),
        gender: pb::Gender::Female as i32,
        birth_date: birth.into(),
        phone: format!("138{:08}", seq),
        id_number: id_number(birth, seq),
        relation: pb::Relation::Head as i32,
        tags: tags.iter().map(|t| *t as i32).collect(),
    }
}

/// A unit with one cadre actively registered with `community`; returns (unit, cadre).
pub async fn registered_cadre(
    c: &mut Client,
    community: &pb::Place,
    name: &str,
) -> (pb::Unit, pb::Cadre) {
    let unit = c
        .create_unit(pb::CreateUnitRequest {
            idempotency_key: key(),
            name: format!("{name}的单位"),
        })
        .await
        .unwrap()
        .into_inner()
        .unit
        .unwrap();
    let cadre = c
        .create_cadre(pb::CreateCadreRequest {
            idempotency_key: key(),
            unit_id: unit.id.clone(),
            name: name.into(),
            phone: "13900000000".into(),
            title: "干部".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .cadre
        .unwrap();
    register(c, &cadre, community).await;
    (unit, cadre)
}

pub async fn register(
    c: &mut Client,
    cadre: &pb::Cadre,
    community: &pb::Place,
) -> pb::Registration {
    let reg = c
        .request_registration(pb::RequestRegistrationRequest {
            idempotency_key: key(),
            cadre_id: cadre.id.clone(),
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .registration
        .unwrap();
    // Registered since 60 days ago, so the fixtures' duty in past weeks counts.
    c.approve_registration(pb::ApproveRegistrationRequest {
        registration_id: reg.id,
        expected_version: reg.version,
        active_from: Some(linli_core::time::to_timestamp(
            linli_core::time::now_micros() - 60 * 86_400_000_000,
        )),
    })
    .await
    .unwrap()
    .into_inner()
    .registration
    .unwrap()
}
