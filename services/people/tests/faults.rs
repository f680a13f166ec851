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

/// Reads until the server closes the connection, for at most `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_connections_are_capped() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = linli_people::Settings::new(&db.url).unwrap();
    settings.common.serve.handshake_timeout = Duration::from_millis(300);
    settings.common.serve.max_connections = 3;
    let app = linli_people::Application::build(settings, keys().clone())
        .await
        .unwrap();
    let server = TestServer::spawn(app.grpc_server()).await;
    let mut client = PeopleServiceClient::new(authed(server.channel.clone()));
    client.create_place(place("通山县")).await.unwrap();

    // A client that never sends the HTTP/2 preface is closed after the handshake timeout.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)).await,
        "a silent connection stays open"
    );

    // Two more talking connections fill the cap (with the test's own channel, three);
    // a fourth is closed at once, and the connections already open keep working.
    let talking = async || {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        use tokio::io::AsyncWriteExt;
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        s
    };
    let _a = talking().await;
    let _b = talking().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_within(&mut over, Duration::from_millis(250)).await,
        "a connection past the cap stays open"
    );
    client
        .list_places(pb::ListPlacesRequest::default())
        .await
        .expect("open connections keep working at the cap");
    server.stop().await;
}
