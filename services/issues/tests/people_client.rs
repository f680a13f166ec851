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
