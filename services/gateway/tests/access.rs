//! The isolation matrix for the gateway's own views: every view × every role ×
//! the caller's own community and another, each answer judged against the
//! gateway's policy table, and every answer searched for the other
//! community's ids (none allowed). The forwarded APIs run the services' own
//! matrices through the gateway (see each service's `tests/access.rs`).
mod common;

use common::{Suite, with_token};
use linli_core::testing::Backend;
use linli_core::testing::matrix::{Side, callers, walk};
use linli_proto::gateway::v1 as pb;
use linli_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use linli_proto::people::v1 as ppb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;

struct Target {
    community: String,
    household: String,
}

#[tokio::test]
async fn every_view_every_role_both_communities() {
    let s = Suite::start(Backend::Sqlite).await;
    let admin = s.login("admin").await.access_token;
    let resident = s.login("chengguilan").await.identity.unwrap();
    let cadre = s.login("ruanxf").await.identity.unwrap();
    let mut people = PeopleServiceClient::new(s.channel());
    // Another community in the same town, with a household of its own.
    let other_place = s.another_community().await;
    let other_household = people
        .create_household(with_token(
            ppb::CreateHouseholdRequest {
                idempotency_key: "matrix-other-household".into(),
                community_id: other_place.id.clone(),
                address: "月亮山1栋101".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap();

    let own = Target {
        community: resident.community_id.clone(),
        household: resident.household_id.clone(),
    };
    let other = Target {
        community: other_place.id.clone(),
        household: other_household.id.clone(),
    };
    let foreign = vec![other.community.clone(), other.household.clone()];
    let callers = callers(&own.community, &cadre.cadre_id, &own.household);
    let mut views = GatewayServiceClient::new(s.channel());
    let tally = walk(
        &linli_gateway::policy::POLICY,
        &callers,
        &foreign,
        async |rpc, side, token| {
            let t = if side == Side::Own { &own } else { &other };
            macro_rules! send {
                ($method:ident, $msg:expr) => {
                    views
                        .$method(with_token($msg, token))
                        .await
                        .map(|r| format!("{:?}", r.into_inner()))
                };
            }
            match rpc {
                "GetCommunityDashboard" => send!(
                    get_community_dashboard,
                    pb::GetCommunityDashboardRequest {
                        community_id: t.community.clone(),
                        ..Default::default()
                    }
                ),
                "GetHouseholdProfile" => send!(
                    get_household_profile,
                    pb::GetHouseholdProfileRequest {
                        household_id: t.household.clone(),
                    }
                ),
                "GetCountyOverview" => send!(get_county_overview, pb::GetCountyOverviewRequest {}),
                "WatchCommunity" => {
                    let mut stream = views
                        .watch_community(with_token(
                            pb::WatchCommunityRequest {
                                community_id: t.community.clone(),
                                after_cursor: String::new(),
                                from_now: false,
                            },
                            token,
                        ))
                        .await?
                        .into_inner();
                    // The first event of the history, if any: it must be the asked community's.
                    let first =
                        tokio::time::timeout(std::time::Duration::from_secs(2), stream.message())
                            .await;
                    Ok(format!("{first:?}"))
                }
                other => panic!("the matrix has no call for {other}: add one"),
            }
        },
    )
    .await;
    tally.assert_clean();
}
