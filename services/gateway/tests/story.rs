//! The story through the gateway alone, as a county system would tell it:
//! people log in with their own accounts; 程大娘 reports a problem at her
//! door, 吴晶 acknowledges it, 小阮 claims, fixes and resolves it, 程大娘
//! confirms and rates it; a batch of supplies is planned for her household
//! and 小阮 delivers it; her household profile then shows both.
mod common;

use common::{Suite, with_token};
use linli_core::testing::Backend;
use linli_proto::gateway::v1 as pb;
use linli_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use linli_proto::issues::v1 as ipb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use linli_proto::logistics::v1 as lpb;
use linli_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use tonic::transport::Channel;

fn moved(issue: &ipb::Issue) -> Option<ipb::Transition> {
    Some(ipb::Transition {
        issue_id: issue.id.clone(),
        expected_version: issue.version,
        ..Default::default()
    })
}

async fn story(backend: Backend) {
    let s = Suite::start(backend).await;
    let resident = s.login("chengguilan").await;
    let worker = s.login("wujing").await;
    let cadre = s.login("ruanxf").await;
    let me = resident.identity.clone().unwrap();
    let ruan = cadre.identity.clone().unwrap().cadre_id;
    let mut issues = IssuesServiceClient::new(s.channel());
    let mut logistics = LogisticsServiceClient::new(s.channel());
    let mut views: GatewayServiceClient<Channel> = GatewayServiceClient::new(s.channel());

    // Found, acknowledged, claimed, fixed, confirmed.
    let issue = issues
        .report_issue(with_token(
            ipb::ReportIssueRequest {
                idempotency_key: "story-door-light".into(),
                community_id: me.community_id.clone(),
                household_id: me.household_id.clone(),
                title: "楼道灯坏了，晚上看不见台阶".into(),
                category: ipb::Category::PublicSafety as i32,
                source: ipb::Source::ResidentReport as i32,
                ..Default::default()
            },
            &resident.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let issue = issues
        .acknowledge_issue(with_token(
            ipb::AcknowledgeIssueRequest {
                transition: moved(&issue),
            },
            &worker.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let issue = issues
        .claim_issue(with_token(
            ipb::ClaimIssueRequest {
                transition: moved(&issue),
                cadre_id: ruan.clone(),
                ..Default::default()
            },
            &cadre.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let issue = issues
        .start_work(with_token(
            ipb::StartWorkRequest {
                transition: moved(&issue),
            },
            &cadre.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let issue = issues
        .resolve_issue(with_token(
            ipb::ResolveIssueRequest {
                transition: moved(&issue),
                ..Default::default()
            },
            &cadre.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let issue = issues
        .confirm_resolution(with_token(
            ipb::ConfirmResolutionRequest {
                transition: moved(&issue),
                household_id: me.household_id.clone(),
                rating: 5,
                comment: "小阮修得又快又好".into(),
            },
            &resident.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(issue.state, ipb::IssueState::Verified as i32);

    // Supplies for her household, delivered by 小阮.
    let depot = logistics
        .list_depots(with_token(
            lpb::ListDepotsRequest {
                community_id: me.community_id.clone(),
                ..Default::default()
            },
            &worker.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .depots
        .remove(0);
    let stock = logistics
        .get_stock(with_token(
            lpb::GetStockRequest {
                depot_id: depot.id.clone(),
            },
            &worker.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .levels;
    let item = stock
        .iter()
        .find(|l| l.quantity > 0)
        .expect("stock to give");
    let batch = logistics
        .plan_batch(with_token(
            lpb::PlanBatchRequest {
                idempotency_key: "story-batch".into(),
                community_id: me.community_id.clone(),
                depot_id: depot.id.clone(),
                name: "程大娘的爱心包".into(),
                bundle: vec![lpb::ItemQuantity {
                    item_id: item.item_id.clone(),
                    quantity: 1,
                }],
                recipients: Some(lpb::Recipients {
                    household_ids: vec![me.household_id.clone()],
                    ..Default::default()
                }),
            },
            &worker.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .batch
        .unwrap();
    let assigned = logistics
        .assign_deliveries(with_token(
            lpb::AssignDeliveriesRequest {
                batch_id: batch.id.clone(),
                cadre_id: ruan.clone(),
                count: 1,
                ..Default::default()
            },
            &worker.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    let delivery = assigned.into_iter().next().expect("one delivery");
    logistics
        .record_delivery_outcome(with_token(
            lpb::RecordDeliveryOutcomeRequest {
                delivery_id: delivery.id.clone(),
                expected_version: delivery.version,
                outcome: lpb::DeliveryOutcome::Delivered as i32,
                confirmed_by: "程桂兰".into(),
                ..Default::default()
            },
            &cadre.access_token,
        ))
        .await
        .unwrap();

    // Her household as the worker sees it: the issue and the delivery are there.
    let profile = views
        .get_household_profile(with_token(
            pb::GetHouseholdProfileRequest {
                household_id: me.household_id.clone(),
            },
            &worker.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(profile.missing.is_empty(), "{:?}", profile.missing);
    assert!(profile.issues.iter().any(|i| i.id == issue.id));
    let delivered = profile
        .deliveries
        .iter()
        .find(|d| d.id == delivery.id)
        .expect("the delivery");
    assert_eq!(delivered.status, lpb::DeliveryStatus::Delivered as i32);
    // And as she sees it herself: her issue; deliveries are staff records (named as missing).
    let own = views
        .get_household_profile(with_token(
            pb::GetHouseholdProfileRequest::default(),
            &resident.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(own.issues.iter().any(|i| i.id == issue.id));
    assert!(
        own.missing.iter().all(|m| m.code == "PERMISSION_DENIED"),
        "{:?}",
        own.missing
    );
}

#[tokio::test]
async fn the_story_through_the_gateway_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_story_through_the_gateway_on_postgres() {
    story(Backend::Postgres).await;
}
