//! The database goes away under a running service: calls fail fast with
//! UNAVAILABLE, readiness turns NOT_SERVING while liveness stays SERVING, and
//! all comes back by itself when the database returns.
mod common;

use std::time::{Duration, Instant};

use linli_core::testing::{Backend, FaultyLink, TestDb, TestServer, authed, key, keys};
use linli_proto::people::v1 as pb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

async fn health(channel: &tonic::transport::Channel, service: &str) -> i32 {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Waits, for at most 10 s, until `service` reports `status`.
async fn until(channel: &tonic::transport::Channel, service: &str, status: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(channel, service).await != status {
        assert!(
            Instant::now() < deadline,
            "{service:?} never became {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn place(name: &str) -> pb::CreatePlaceRequest {
    pb::CreatePlaceRequest {
        idempotency_key: key(),
        kind: pb::PlaceKind::County as i32,
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gone_fails_fast_reports_not_ready_and_recovers() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut link = FaultyLink::to("127.0.0.1:5432".parse().unwrap()).await;
    let settings = linli_people::Settings::new(&link.route(&db.url)).unwrap();
    let app = linli_people::Application::build(settings, keys().clone())
        .await
        .unwrap();
    let server = TestServer::spawn(app.grpc_server()).await;
    let mut client = PeopleServiceClient::new(authed(server.channel.clone()));
    let name = linli_people::SERVICE_NAME;
    client.create_place(place("通山县")).await.unwrap();
    assert_eq!(health(&server.channel, name).await, 1);

    link.cut().await;
    // Writes and reads fail at once with UNAVAILABLE, and lose nothing (nothing was said done).
    for _ in 0..3 {
        let started = Instant::now();
        let status = client.create_place(place("崇阳县")).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(took < Duration::from_millis(1500), "failed after {took:?}");
    }
    let read = client
        .list_places(pb::ListPlacesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::Unavailable);
    // Readiness says so; liveness does not, so the process is not restarted for it.
    until(&server.channel, name, 2).await;
    assert_eq!(health(&server.channel, "").await, 1);

    link.restore().await;
    until(&server.channel, name, 1).await;
    let places = client
        .list_places(pb::ListPlacesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .places;
    assert_eq!(
        places.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["通山县"],
        "the one acknowledged write is there, the refused ones are not"
    );
    server.stop().await;
}
