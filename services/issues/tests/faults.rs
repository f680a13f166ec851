//! PostgreSQL goes away under eight writers and comes back: every failure is
//! answered fast with a retryable code, no acknowledged report is lost, and a
//! retry with the same key after the outage gives each report exactly once.
mod common;

use std::time::{Duration, Instant};

use common::*;
use linli_core::testing::writers::Writers;
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

    let create = {
        let (client, community) = (client.clone(), community.clone());
        move |key: String| {
            let (mut client, community) = (client.clone(), community.clone());
            async move {
                client
                    .report_issue(reported(&community, &key))
                    .await
                    .map(|r| r.into_inner().issue.unwrap_or_default().id)
            }
        }
    };
    let stop_at = Instant::now() + Duration::from_millis(3500);
    let writers = Writers::start(
        8,
        stop_at,
        &[Code::Unavailable, Code::Aborted],
        create.clone(),
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before_cut = writers.acknowledged();
    link.cut().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    link.restore().await;
    let seen = writers.finish().await;
    assert!(before_cut > 0, "writes went through before the cut");
    assert!(
        seen.acked.len() > before_cut,
        "writes went through after the restore"
    );
    assert!(
        seen.tried.len() > seen.acked.len(),
        "some writes met the outage"
    );
    assert!(
        seen.slowest_failure < Duration::from_millis(1500),
        "a failure took {:?}",
        seen.slowest_failure
    );
    seen.assert_each_key_once(create).await;
    let mut client = client.clone();
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
    assert_eq!(listed, seen.tried.len(), "no report twice, none lost");
    println!(
        "fault: {} keys, {} acknowledged ({before_cut} before the cut), slowest failure {:?}",
        seen.tried.len(),
        seen.acked.len(),
        seen.slowest_failure
    );
    server.stop().await;
}
