//! The people client rides out a short outage: a call made while people is
//! not yet listening succeeds once it comes up within the retry window.
use std::time::Duration;

use linli_core::Error;
use linli_core::server::ServeSettings;
use linli_core::testing::{Backend, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_people_starting_late() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = linli_people::open_store(&linli_people::Settings::new(&db.url).unwrap())
        .await
        .unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let people =
        linli_core::people::People::connect_lazy(&format!("http://{addr}"), Duration::from_secs(5))
            .unwrap();

    // Nothing listens yet: the first attempt is refused. People comes up 30 ms later.
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        linli_people::grpc_server(store, linli_core::testing::keys(), ServeSettings::default())
            .serve(listener, std::future::pending())
            .await
    });
    let missing = linli_core::new_id();
    let answer = people
        .cadre(
            &linli_core::testing::keys().service_actor("issues"),
            &missing,
        )
        .await;
    assert!(
        matches!(answer, Err(Error::NotFound { what: "cadre", .. })),
        "people answered after a retry: {answer:?}"
    );

    // With nobody coming, the caller hears UNAVAILABLE after the retries, not a hang.
    server.abort();
    let _ = server.await;
    let down =
        linli_core::people::People::connect_lazy("http://127.0.0.1:9", Duration::from_secs(5))
            .unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        down.cadre(
            &linli_core::testing::keys().service_actor("issues"),
            &missing
        )
        .await,
        Err(Error::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A people service that accepts connections and never answers (a stopped
/// process): a report that asks it gives up after the call timeout, with
/// UNAVAILABLE, instead of holding the caller for the whole request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_people_service_costs_the_call_timeout_not_the_request_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = linli_issues::Settings::new(&db.url, &format!("http://{addr}")).unwrap();
    settings.common.call_timeout = Duration::from_millis(300);
    let app = linli_issues::Application::build(settings, linli_core::testing::keys().clone())
        .await
        .unwrap();
    let server = linli_core::testing::TestServer::spawn(app.grpc_server()).await;
    let mut client = linli_proto::issues::v1::issues_service_client::IssuesServiceClient::new(
        linli_core::testing::authed(server.channel.clone()),
    );
    let started = std::time::Instant::now();
    let status = client
        .report_issue(linli_proto::issues::v1::ReportIssueRequest {
            idempotency_key: linli_core::testing::key(),
            community_id: linli_core::new_id(),
            title: "路灯不亮".into(),
            category: linli_proto::issues::v1::Category::Road as i32,
            source: linli_proto::issues::v1::Source::Inspection as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // Well under the 30 s request timeout: the call timeout plus a little.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    hold.abort();
}
