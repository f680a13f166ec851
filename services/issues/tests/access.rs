//! Who may do what, over the wire: every RPC × every role × an issue of the
//! caller's own community and one of another, judged against `policy.rs`; no
//! id of the other community in any answer; and forged identities refused.
mod common;

use common::*;
use linli_core::testing::matrix::{Side, callers, forgeries, walk};
use linli_core::testing::{Backend, TestDb, TestServer, with_token};
use linli_proto::issues::v1 as pb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use tonic::Code;

/// The records of one community the calls aim at.
struct Target {
    community: String,
    household: String,
    issue: String,
    second: String,
    cadre: String,
}

impl Target {
    fn ids(&self) -> Vec<String> {
        vec![
            self.community.clone(),
            self.household.clone(),
            self.issue.clone(),
            self.second.clone(),
        ]
    }
}

async fn reported(c: &mut Client, community: &str, household: &str, title: &str) -> String {
    c.report_issue(pb::ReportIssueRequest {
        idempotency_key: key(),
        community_id: community.into(),
        household_id: household.into(),
        title: title.into(),
        category: pb::Category::Drainage as i32,
        source: pb::Source::ResidentReport as i32,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .issue
    .unwrap()
    .id
}

/// A transition with a stale version: authorization is exercised, nothing moves.
fn stale(issue: &str) -> Option<pb::Transition> {
    Some(pb::Transition {
        issue_id: issue.into(),
        expected_version: 999,
        note: "理由".into(),
        at: None,
    })
}

async fn call(c: &mut Client, rpc: &str, t: &Target, token: &str) -> Result<String, tonic::Status> {
    macro_rules! send {
        ($method:ident, $msg:expr) => {
            c.$method(with_token($msg, token))
                .await
                .map(|r| format!("{:?}", r.into_inner()))
        };
    }
    let community = || t.community.clone();
    match rpc {
        "ReportIssue" => send!(
            report_issue,
            pb::ReportIssueRequest {
                idempotency_key: key(),
                community_id: community(),
                household_id: t.household.clone(),
                title: "路灯不亮".into(),
                category: pb::Category::PublicSafety as i32,
                source: pb::Source::ResidentReport as i32,
                ..Default::default()
            }
        ),
        "GetIssue" => send!(
            get_issue,
            pb::GetIssueRequest {
                issue_id: t.issue.clone()
            }
        ),
        "ListIssues" => send!(
            list_issues,
            pb::ListIssuesRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "AcknowledgeIssue" => send!(
            acknowledge_issue,
            pb::AcknowledgeIssueRequest {
                transition: stale(&t.issue),
            }
        ),
        "ClaimIssue" => send!(
            claim_issue,
            pb::ClaimIssueRequest {
                transition: stale(&t.issue),
                cadre_id: t.cadre.clone(),
                ..Default::default()
            }
        ),
        "UnclaimIssue" => send!(
            unclaim_issue,
            pb::UnclaimIssueRequest {
                transition: stale(&t.issue),
            }
        ),
        "ReassignIssue" => send!(
            reassign_issue,
            pb::ReassignIssueRequest {
                transition: stale(&t.issue),
                cadre_id: t.cadre.clone(),
                ..Default::default()
            }
        ),
        "StartWork" => send!(
            start_work,
            pb::StartWorkRequest {
                transition: stale(&t.issue)
            }
        ),
        "ResolveIssue" => send!(
            resolve_issue,
            pb::ResolveIssueRequest {
                transition: stale(&t.issue),
                ..Default::default()
            }
        ),
        "ConfirmResolution" => send!(
            confirm_resolution,
            pb::ConfirmResolutionRequest {
                transition: stale(&t.issue),
                household_id: t.household.clone(),
                rating: 5,
                comment: String::new(),
            }
        ),
        "ReopenIssue" => send!(
            reopen_issue,
            pb::ReopenIssueRequest {
                transition: stale(&t.issue),
                household_id: t.household.clone(),
            }
        ),
        "RejectIssue" => send!(
            reject_issue,
            pb::RejectIssueRequest {
                transition: stale(&t.issue)
            }
        ),
        "MarkDuplicate" => send!(
            mark_duplicate,
            pb::MarkDuplicateRequest {
                transition: stale(&t.issue),
                original_issue_id: t.second.clone(),
            }
        ),
        "AddSupervisionNote" => send!(
            add_supervision_note,
            pb::AddSupervisionNoteRequest {
                idempotency_key: key(),
                issue_id: t.issue.clone(),
                note: "请三日内处理".into(),
            }
        ),
        "ListOverdueIssues" => send!(
            list_overdue_issues,
            pb::ListOverdueIssuesRequest {
                community_id: community(),
                as_of: None,
                limit: 0,
            }
        ),
        "RunSupervision" => send!(run_supervision, pb::RunSupervisionRequest { as_of: None }),
        "GetTimeline" => send!(
            get_timeline,
            pb::GetTimelineRequest {
                issue_id: t.issue.clone()
            }
        ),
        "GetStatistics" => send!(
            get_statistics,
            pb::GetStatisticsRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "GetRanking" => send!(
            get_ranking,
            pb::GetRankingRequest {
                scope: 1,
                ..Default::default()
            }
        ),
        "WatchIssues" => c
            .watch_issues(with_token(
                pb::WatchIssuesRequest {
                    community_id: community(),
                    after_seq: 0,
                    from_now: false,
                },
                token,
            ))
            .await
            .map(|_| "stream opened".to_owned()),
        "GetCommunitySummary" => send!(
            get_community_summary,
            pb::GetCommunitySummaryRequest {
                community_id: community(),
            }
        ),
        "ListAuditEvents" => send!(
            list_audit_events,
            pb::ListAuditEventsRequest {
                community_id: community(),
                ..Default::default()
            }
        ),
        "VerifyAuditTrail" => send!(
            verify_audit_trail,
            pb::VerifyAuditTrailRequest {
                community_id: community(),
            }
        ),
        other => panic!("the matrix has no call for {other}: add one"),
    }
}

async fn every_rpc_every_role_both_communities(backend: Backend) {
    matrix(backend, false).await;
}

/// The same matrix through the gateway: it forwards the caller's token, and
/// the service's answers reach the caller unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_every_role_through_the_gateway() {
    matrix(Backend::Sqlite, true).await;
}

async fn matrix(backend: Backend, via_gateway: bool) {
    let mut h = Harness::start(backend).await;
    let w = &h.world;
    let c = &mut h.client;
    let own = Target {
        community: w.community.clone(),
        household: w.households[0].clone(),
        issue: reported(c, &w.community, &w.households[0], "下水道堵塞").await,
        second: reported(c, &w.community, &w.households[0], "下水道又堵了").await,
        cadre: w.cadres[0].clone(),
    };
    let other = Target {
        community: w.other_community.clone(),
        household: w.other_household.clone(),
        issue: reported(c, &w.other_community, &w.other_household, "月亮山路面破损").await,
        second: reported(c, &w.other_community, &w.other_household, "月亮山积水").await,
        cadre: w.cadres[0].clone(),
    };
    let foreign = other.ids();
    let callers = callers(&own.community, &own.cadre, &own.household);
    let gateway_db = TestDb::new(Backend::Sqlite).await;
    let gateway = match via_gateway {
        true => Some(
            TestServer::spawn(
                linli_gateway::Application::in_front_of(
                    &gateway_db.url,
                    &format!("http://{}", h.people_server.as_ref().unwrap().addr),
                    &format!("http://{}", h.server.addr),
                    "http://127.0.0.1:9",
                    linli_core::testing::keys().clone(),
                )
                .await
                .unwrap()
                .grpc_server(),
            )
            .await,
        ),
        false => None,
    };
    let mut through = gateway
        .as_ref()
        .map(|g| IssuesServiceClient::new(linli_core::testing::authed(g.channel.clone())));
    let tally = walk(
        &linli_issues::policy::POLICY,
        &callers,
        &foreign,
        async |rpc, side, token| {
            let target = if side == Side::Own { &own } else { &other };
            call(through.as_mut().unwrap_or(c), rpc, target, token).await
        },
    )
    .await;
    tally.assert_clean();
    h.stop().await;
}

/// Forged identities, over the wire: each is UNAUTHENTICATED; a genuine token passes.
async fn forged_identities_are_refused(backend: Backend) {
    let h = Harness::start(backend).await;
    let mut bare = IssuesServiceClient::new(h.server.channel.clone());
    for (what, req) in forgeries(pb::ListIssuesRequest::default()) {
        let status = bare.list_issues(req).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }
    bare.list_issues(with_token(
        pb::ListIssuesRequest::default(),
        &linli_core::testing::admin_token(),
    ))
    .await
    .expect("a genuine token passes");
    h.stop().await;
}

linli_core::backend_tests!(
    every_rpc_every_role_both_communities,
    forged_identities_are_refused
);
