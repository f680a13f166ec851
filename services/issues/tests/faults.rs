//! PostgreSQL goes away under eight writers and comes back: every failure is
//! answered fast with a retryable code, no acknowledged report is lost, and a
//! retry with the same key after the outage gives each report exactly once.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use linli_core::testing::{Backend, FaultyLink, TestDb, TestServer, authed, keys};
use linli_proto::issues::v1 as pb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use tonic::Code;

fn reported(community: &str, key: &str) -> pb::ReportIssueRequest {
    pb::ReportIssueRequest {
        idempotency_key: key.into(),
        community_id: community.into(),
        title: format!("井盖松动 {key}"),
        category: pb::Category::Road as i32,
        source: pb::Source::Inspection as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_gone_under_load_loses_no_acknowledged_write() {
    let h = Harness::start(Backend::Postgres).await;
    let community = h.world.community.clone();
    let db = TestDb::new(Backend::Postgres).await;
    let mut link = FaultyLink::to("127.0.0.1:5432".parse().unwrap()).await;
    let people = format!("http://{}", h.people_server.as_ref().unwrap().addr);
    let settings = linli_issues::Settings::new(&link.route(&db.url), &people).unwrap();
    let app = linli_issues::Application::build(settings, keys().clone())
        .await
        .unwrap();
    let server = TestServer::spawn(app.grpc_server()).await;
    let client = IssuesServiceClient::new(authed(server.channel.clone()));

    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let tried: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let slowest_failure: Arc<Mutex<Duration>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_millis(3500);
    let mut writers = Vec::new();
    for w in 0..8 {
        let (mut client, community) = (client.clone(), community.clone());
        let (acked, tried, slowest) = (acked.clone(), tried.clone(), slowest_failure.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop_at {
                let key = format!("w{w}-{n}");
                n += 1;
                tried.lock().unwrap().insert(key.clone());
                let started = Instant::now();
                match client.report_issue(reported(&community, &key)).await {
                    Ok(r) => {
                        acked
                            .lock()
                            .unwrap()
                            .insert(key, r.into_inner().issue.unwrap().id);
                    }
                    Err(s) => {
                        assert!(
                            matches!(s.code(), Code::Unavailable | Code::Aborted),
                            "{key}: {s:?}"
                        );
                        let took = started.elapsed();
                        {
                            let mut worst = slowest.lock().unwrap();
                            *worst = (*worst).max(took);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before_cut = acked.lock().unwrap().len();
    link.cut().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    link.restore().await;
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let tried = tried.lock().unwrap().clone();
    let slowest = *slowest_failure.lock().unwrap();
    assert!(before_cut > 0, "writes went through before the cut");
    assert!(
        acked.len() > before_cut,
        "writes went through after the restore"
    );
    assert!(tried.len() > acked.len(), "some writes met the outage");
    assert!(
        slowest < Duration::from_millis(1500),
        "a failure took {slowest:?}"
    );

    // Every key again, as a client retrying would: an acknowledged one returns its
    // report, one that failed makes its report now (or returns it, if it committed).
    let mut client = client.clone();
    let mut ids = BTreeSet::new();
    for key in &tried {
        let id = client
            .report_issue(reported(&community, key))
            .await
            .unwrap()
            .into_inner()
            .issue
            .unwrap()
            .id;
        if let Some(first) = acked.get(key) {
            assert_eq!(&id, first, "{key}: an acknowledged report changed");
        }
        ids.insert(id);
    }
    assert_eq!(ids.len(), tried.len(), "one report per key");
    let mut listed = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_issues(pb::ListIssuesRequest {
                community_id: community.clone(),
                title_contains: "井盖松动".into(),
                page_size: 500,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        listed += page.issues.len();
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(listed, tried.len(), "no report twice, none lost");
    println!(
        "fault: {} keys, {} acknowledged ({before_cut} before the cut), slowest failure {slowest:?}",
        tried.len(),
        acked.len()
    );
    server.stop().await;
}
