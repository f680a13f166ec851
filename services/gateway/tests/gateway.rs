//! The gateway in front of the three services: login, the whole API through
//! one address, the aggregated views when a service is up, down and back,
//! replicas, and the live event stream.
mod common;

use std::time::{Duration, Instant};

use common::{PASSWORD, Suite, with_token};
use linli_core::testing::Backend;
use linli_proto::gateway::v1 as pb;
use linli_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use linli_proto::issues::v1 as ipb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use linli_proto::logistics::v1 as lpb;
use linli_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use linli_proto::people::v1 as ppb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;
use pb::watch_community_response::Event;
use tonic::Code;
use tonic::transport::Channel;

fn views(s: &Suite) -> GatewayServiceClient<Channel> {
    GatewayServiceClient::new(s.channel())
}

async fn dashboard(
    s: &Suite,
    token: &str,
) -> Result<pb::GetCommunityDashboardResponse, tonic::Status> {
    views(s)
        .get_community_dashboard(with_token(
            pb::GetCommunityDashboardRequest::default(),
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// An inspection report of a road problem, as `token`, through `channel`.
async fn report(
    channel: Channel,
    token: &str,
    key: &str,
    community_id: &str,
    title: &str,
) -> tonic::Response<ipb::ReportIssueResponse> {
    IssuesServiceClient::new(channel)
        .report_issue(with_token(
            ipb::ReportIssueRequest {
                idempotency_key: key.into(),
                community_id: community_id.into(),
                title: title.into(),
                category: ipb::Category::Road as i32,
                source: ipb::Source::Inspection as i32,
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
}

async fn login_err(s: &Suite, username: &str, password: &str) -> tonic::Status {
    s.auth()
        .login(pb::LoginRequest {
            username: username.into(),
            password: password.into(),
        })
        .await
        .expect_err("login should fail")
}

#[tokio::test]
async fn login_gives_tokens_the_services_accept_and_refresh_rotates() {
    let s = Suite::start(Backend::Sqlite).await;
    let worker = s.login("wujing").await;
    let id = worker.identity.clone().unwrap();
    assert_eq!(id.role, ppb::AccountRole::CommunityWorker as i32);
    assert!(!id.community_id.is_empty());
    assert!(worker.expires_in_seconds > 0 && worker.expires_in_seconds <= 3600);

    // The access token is what each service verifies, reached through the gateway.
    let mut people = PeopleServiceClient::new(s.channel());
    let households = people
        .list_households(with_token(
            ppb::ListHouseholdsRequest {
                community_id: id.community_id.clone(),
                ..Default::default()
            },
            &worker.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .households;
    assert!(!households.is_empty());
    assert!(households.iter().all(|h| h.community_id == id.community_id));

    // A resident's token carries their household.
    let resident = s.login("chengguilan").await.identity.unwrap();
    assert!(!resident.household_id.is_empty());

    // Refresh: a new pair; the old refresh token is spent.
    let refreshed = s
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: worker.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_ne!(refreshed.refresh_token, worker.refresh_token);
    assert_eq!(refreshed.identity.unwrap().account_id, id.account_id);

    // Reusing the spent token is refused, and revokes the whole login: the new one too.
    let reuse = s
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: worker.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reuse.code(), Code::Unauthenticated, "{reuse:?}");
    let after_reuse = s
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: refreshed.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(after_reuse.code(), Code::Unauthenticated);

    // Logout revokes: the refresh token no longer works; logging out again is fine.
    let fresh = s.login("wujing").await;
    s.auth()
        .logout(pb::LogoutRequest {
            refresh_token: fresh.refresh_token.clone(),
        })
        .await
        .unwrap();
    let after_logout = s
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: fresh.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(after_logout.code(), Code::Unauthenticated);
    s.auth()
        .logout(pb::LogoutRequest {
            refresh_token: fresh.refresh_token,
        })
        .await
        .unwrap();
    let garbage = s
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: "not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn wrong_user_and_wrong_password_answer_alike_then_slow_then_lock() {
    let s = Suite::start_with(Backend::Sqlite, |settings| {
        settings.throttle.slow_after = 2;
        settings.throttle.step = Duration::from_millis(300);
        settings.throttle.lock_after = 4;
        settings.throttle.address_factor = 10;
    })
    .await;
    let wrong_password = login_err(&s, "wujing", "not-the-password").await;
    let no_such_user = login_err(&s, "nobody-here", PASSWORD).await;
    assert_eq!(wrong_password.code(), Code::Unauthenticated);
    assert_eq!(no_such_user.code(), Code::Unauthenticated);
    assert_eq!(wrong_password.message(), no_such_user.message());

    // The second failure for wujing; the third attempt waits first.
    login_err(&s, "wujing", "still-wrong").await;
    let started = Instant::now();
    login_err(&s, "wujing", "still-wrong").await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the attempt after two failures is delayed"
    );
    login_err(&s, "wujing", "still-wrong").await;
    // Four failures: even the right password is refused for a while, saying so.
    let locked = login_err(&s, "wujing", PASSWORD).await;
    assert_eq!(locked.code(), Code::ResourceExhausted, "{locked:?}");
    assert!(locked.message().contains("try again"), "{locked:?}");
    // Other users are not locked out by it.
    s.login("ruanxf").await;
    // Bad input is a clear error, not a failed login.
    let empty = login_err(&s, "", PASSWORD).await;
    assert_eq!(empty.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn every_service_through_one_address() {
    let s = Suite::start(Backend::Sqlite).await;
    let admin = s.login("admin").await.access_token;
    let places = PeopleServiceClient::new(s.channel())
        .list_places(with_token(ppb::ListPlacesRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner()
        .places;
    assert!(places.iter().any(|p| p.name == "双泉社区"));
    let issues = IssuesServiceClient::new(s.channel())
        .list_issues(with_token(ipb::ListIssuesRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner()
        .issues;
    assert!(!issues.is_empty());
    let items = LogisticsServiceClient::new(s.channel())
        .list_items(with_token(lpb::ListItemsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(!items.is_empty());

    // The services still decide: no token is UNAUTHENTICATED, through the gateway too.
    let bare = IssuesServiceClient::new(s.channel())
        .list_issues(ipb::ListIssuesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bare.code(), Code::Unauthenticated);
    let bare = views(&s)
        .get_community_dashboard(pb::GetCommunityDashboardRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bare.code(), Code::Unauthenticated);

    // Health reports every service the gateway serves.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel());
    for name in [
        "linli.gateway.v1.GatewayService",
        "linli.gateway.v1.AuthService",
        "linli.people.v1.PeopleService",
        "linli.issues.v1.IssuesService",
        "linli.logistics.v1.LogisticsService",
    ] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: name.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, 1, "{name} is SERVING");
    }
}

#[tokio::test]
async fn reflection_lists_every_service_served() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let s = Suite::start(Backend::Sqlite).await;
    let mut client = ServerReflectionClient::new(s.channel());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("not a list: {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in [
        "linli.gateway.v1.GatewayService",
        "linli.gateway.v1.AuthService",
        "linli.people.v1.PeopleService",
        "linli.issues.v1.IssuesService",
        "linli.logistics.v1.LogisticsService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
}

async fn views_are_whole_for_a_worker_and_kept_to_their_reach(backend: Backend) {
    let s = Suite::start(backend).await;
    let worker = s.login("wujing").await;
    let d = dashboard(&s, &worker.access_token).await.unwrap();
    assert!(d.missing.is_empty(), "{:?}", d.missing);
    assert_eq!(d.community_name, "双泉社区");
    let people = d.people.unwrap();
    assert!(people.households > 0 && people.residents > 0);
    assert!(d.issues.as_ref().unwrap().open_issues > 0);
    assert!(d.issue_statistics.as_ref().unwrap().total > 0);
    assert!(d.logistics.is_some() && d.logistics_report.is_some());
    assert!(d.visit_compliance.is_some() && d.attendance.is_some());
    assert!(!d.stock.is_empty());
    let stats = d.issue_statistics.as_ref().unwrap();
    assert_eq!(stats.weeks.len(), 8, "eight weeks reported and resolved");
    assert!(stats.weeks.iter().map(|w| w.reported).sum::<i32>() > 0);
    let open = d.issues.as_ref().unwrap().open_issues;
    assert_eq!(d.open_issues.len() as i32, open.min(100));
    // Asked again at once: the same answer, held, read at the same moment.
    let again = dashboard(&s, &worker.access_token).await.unwrap();
    assert_eq!(again.as_of, d.as_of);
    // A write sent through the gateway is seen by the next dashboard at once.
    report(
        s.channel(),
        &worker.access_token,
        "gateway-dashboard-fresh",
        &d.community_id,
        "楼道灯不亮",
    )
    .await;
    let after = dashboard(&s, &worker.access_token).await.unwrap();
    assert_eq!(after.issues.as_ref().unwrap().open_issues, open + 1);
    let at = |t: &Option<prost_types::Timestamp>| t.map(|t| (t.seconds, t.nanos));
    assert!(at(&after.as_of) > at(&d.as_of));
    // The roster's next 24 hours at every checkpoint, names alongside.
    assert!(!d.checkpoints.is_empty());
    let roster = d.roster_next_24h.as_ref().unwrap();
    assert_eq!(roster.coverage.len(), d.checkpoints.len());
    assert!(roster.coverage.iter().all(|c| c.hours == 24));

    // Another community's dashboard is NOT_FOUND to a worker; a county supervisor sees it.
    let other = views(&s)
        .get_community_dashboard(with_token(
            pb::GetCommunityDashboardRequest {
                community_id: "0190c0de-0000-7000-8000-000000000000".into(),
                ..Default::default()
            },
            &worker.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    let supervisor = s.login("supervisor").await.access_token;
    let asked = views(&s)
        .get_community_dashboard(with_token(
            pb::GetCommunityDashboardRequest {
                community_id: d.community_id.clone(),
                ..Default::default()
            },
            &supervisor,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(asked.community_name, "双泉社区");

    // The county overview is for county roles.
    let overview = views(&s)
        .get_county_overview(with_token(pb::GetCountyOverviewRequest {}, &supervisor))
        .await
        .unwrap()
        .into_inner();
    assert!(overview.missing.is_empty(), "{:?}", overview.missing);
    let shuangquan = overview
        .communities
        .iter()
        .find(|c| c.name == "双泉社区")
        .expect("the demo community");
    assert!(
        shuangquan.people.is_some()
            && shuangquan.issues.is_some()
            && shuangquan.logistics.is_some()
    );
    assert!(!overview.ranking.is_empty());
    let denied = views(&s)
        .get_county_overview(with_token(
            pb::GetCountyOverviewRequest {},
            &worker.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // A resident's profile is their own household; another household is NOT_FOUND.
    let resident = s.login("chengguilan").await;
    let own = resident.identity.unwrap().household_id;
    let profile = views(&s)
        .get_household_profile(with_token(
            pb::GetHouseholdProfileRequest::default(),
            &resident.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let household = profile.household.unwrap();
    assert_eq!(household.household.unwrap().id, own);
    assert!(!household.residents.is_empty());
    assert!(
        profile
            .issues
            .iter()
            .all(|i| i.household_id == own || i.household_id.is_empty())
    );
    let someone_else = d
        .visit_compliance
        .iter()
        .flat_map(|c| c.entries.iter())
        .map(|e| e.household_id.clone())
        .find(|h| *h != own);
    if let Some(h) = someone_else {
        let refused = views(&s)
            .get_household_profile(with_token(
                pb::GetHouseholdProfileRequest { household_id: h },
                &resident.access_token,
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::NotFound);
    }
    // A worker sees the same household whole, with visits and deliveries parts.
    let seen = views(&s)
        .get_household_profile(with_token(
            pb::GetHouseholdProfileRequest {
                household_id: own.clone(),
            },
            &worker.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(seen.missing.is_empty(), "{:?}", seen.missing);
}

#[tokio::test]
async fn views_on_sqlite() {
    views_are_whole_for_a_worker_and_kept_to_their_reach(Backend::Sqlite).await;
}

#[tokio::test]
async fn views_on_postgres() {
    views_are_whole_for_a_worker_and_kept_to_their_reach(Backend::Postgres).await;
}

/// A held dashboard stays current past its age while the community's feeds
/// are quiet, and a change made past the gateway (straight to a service)
/// reaches it through the feeds.
async fn a_held_dashboard_follows_the_feeds(backend: Backend) {
    let s = Suite::start_with(backend, |settings| {
        settings.views.max_age = Duration::from_millis(200);
        settings.views.quiet_for = Duration::from_secs(60);
    })
    .await;
    let worker = s.login("wujing").await;
    let first = dashboard(&s, &worker.access_token).await.unwrap();
    assert!(first.missing.is_empty(), "{:?}", first.missing);
    let open = first.issues.as_ref().unwrap().open_issues;
    // The statistics are held longer than the rest while quiet (a minute
    // here), and must still move with every change.
    let reported = |d: &linli_proto::gateway::v1::GetCommunityDashboardResponse| {
        d.issue_statistics.as_ref().unwrap().total
    };
    let total = reported(&first);
    // Once both feeds are followed, two reads further apart than the age
    // limit get the very same answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = first.as_of;
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let d = dashboard(&s, &worker.access_token).await.unwrap();
        if d.as_of == last && d.missing.is_empty() {
            break;
        }
        last = d.as_of;
        assert!(Instant::now() < deadline, "never held past its age");
    }
    // Someone else writes through the gateway: the worker is still answered
    // from memory.
    let cadre = s.login("ruanxf").await;
    report(
        s.channel(),
        &cadre.access_token,
        "by-someone-else",
        &first.community_id,
        "楼道堆放杂物",
    )
    .await;
    let written = linli_core::time::now_micros();
    let theirs = dashboard(&s, &worker.access_token).await.unwrap();
    let micros = |t: Option<prost_types::Timestamp>| {
        t.map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
    };
    assert!(
        micros(theirs.as_of).unwrap() < written,
        "assembled anew for a caller who did not write"
    );
    // The worker writes in another session (another token, as the web side
    // signs one per request), and reads the change back at once in this one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let other = s.login("wujing").await;
    assert_ne!(other.access_token, worker.access_token);
    report(
        s.channel(),
        &other.access_token,
        "by-the-worker",
        &first.community_id,
        "单元门口积水",
    )
    .await;
    let own = dashboard(&s, &worker.access_token).await.unwrap();
    assert_eq!(own.issues.as_ref().unwrap().open_issues, open + 2);
    assert_eq!(reported(&own), total + 2, "statistics read after the write");

    // Reported straight to the issues service, not through the gateway.
    let issues = s.issues.as_ref().unwrap().channel.clone();
    report(
        issues,
        &worker.access_token,
        "past-the-gateway",
        &first.community_id,
        "单元门禁坏了",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = dashboard(&s, &worker.access_token).await.unwrap();
        if d.issues.as_ref().unwrap().open_issues == open + 3 {
            assert_eq!(
                reported(&d),
                total + 3,
                "statistics read again with the change"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change never reached the dashboard"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn held_dashboards_follow_the_feeds_on_sqlite() {
    a_held_dashboard_follows_the_feeds(Backend::Sqlite).await;
}

#[tokio::test]
async fn held_dashboards_follow_the_feeds_on_postgres() {
    a_held_dashboard_follows_the_feeds(Backend::Postgres).await;
}

#[tokio::test]
async fn a_service_down_leaves_the_dashboard_partial_in_time_and_whole_when_back() {
    let part_timeout = Duration::from_millis(800);
    let mut s = Suite::start_with(Backend::Sqlite, |settings| {
        settings.part_timeout = part_timeout;
    })
    .await;
    let token = s.login("wujing").await.access_token;
    assert!(dashboard(&s, &token).await.unwrap().missing.is_empty());

    s.stop_issues().await;
    let stopped = linli_core::time::now_micros();
    // A dashboard read before the stop may be served for a moment (the views'
    // hold); every answer comes in time, and the next fresh one is partial.
    let views = linli_gateway::cache::CacheSettings::default();
    let deadline = Instant::now() + views.stale_for + part_timeout + Duration::from_secs(1);
    let partial = loop {
        let started = Instant::now();
        let d = dashboard(&s, &token).await.unwrap();
        let took = started.elapsed();
        assert!(
            took < part_timeout + Duration::from_millis(500),
            "answered in {took:?}"
        );
        if !d.missing.is_empty() {
            break d;
        }
        let as_of = d.as_of.unwrap();
        let as_of = as_of.seconds * 1_000_000 + i64::from(as_of.nanos) / 1_000;
        assert!(as_of < stopped, "a whole dashboard read after the stop");
        assert!(Instant::now() < deadline, "still whole after the stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let parts: Vec<&str> = partial.missing.iter().map(|m| m.part.as_str()).collect();
    assert_eq!(
        parts,
        [
            "issues.summary",
            "issues.statistics",
            "issues.overdue",
            "issues.open"
        ],
        "{:?}",
        partial.missing
    );
    assert!(partial.missing.iter().all(|m| m.code == "UNAVAILABLE"));
    assert!(partial.people.is_some() && partial.logistics.is_some());

    // Back on the same address: whole again, with no gateway restart.
    s.restart_issues().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = dashboard(&s, &token).await.unwrap();
        if d.missing.is_empty() {
            assert!(d.issues.is_some());
            break;
        }
        assert!(Instant::now() < deadline, "still partial: {:?}", d.missing);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn reads_keep_succeeding_when_one_of_two_replicas_dies() {
    let s = Suite::start(Backend::Sqlite).await;
    let people_url = format!("http://{}", s.people.addr);
    let second = linli_core::testing::TestServer::spawn(
        common::issues_app(&s.issues_db, &people_url)
            .await
            .grpc_server(),
    )
    .await;
    // A gateway in front of both replicas.
    let db = linli_core::testing::TestDb::new(Backend::Sqlite).await;
    let settings = linli_gateway::Settings::new(
        &db.url,
        &people_url,
        &format!("http://{},http://{}", s.issues_addr, second.addr),
        &format!("http://{}", s.logistics.addr),
    )
    .unwrap();
    let app = linli_gateway::Application::build(settings, linli_core::testing::keys().clone())
        .await
        .unwrap();
    let _jobs = app.spawn_jobs();
    let gateway = linli_core::testing::TestServer::spawn(app.grpc_server()).await;
    let token = s.login("wujing").await.access_token;
    let mut issues = IssuesServiceClient::new(gateway.channel.clone());
    let list = async |issues: &mut IssuesServiceClient<Channel>| {
        issues
            .list_issues(with_token(ipb::ListIssuesRequest::default(), &token))
            .await
    };
    for _ in 0..4 {
        list(&mut issues).await.unwrap();
    }
    second.stop().await;
    let mut failures = 0;
    for _ in 0..20 {
        if list(&mut issues).await.is_err() {
            failures += 1;
        }
    }
    assert_eq!(failures, 0, "reads failed after one replica died");
}

#[tokio::test]
async fn watch_community_resumes_after_a_reconnect_without_gaps_or_repeats() {
    let s = Suite::start(Backend::Sqlite).await;
    let worker = s.login("wujing").await;
    let community = worker.identity.clone().unwrap().community_id;
    let token = worker.access_token;
    let watch = async |after: &str| {
        views(&s)
            .watch_community(with_token(
                pb::WatchCommunityRequest {
                    community_id: String::new(),
                    after_cursor: after.into(),
                    from_now: false,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
    };
    // The history so far, until events of both sources have come, then a disconnect.
    let mut stream = watch("").await;
    let (mut last_issue, mut last_logistics) = (0, 0);
    let mut cursor = String::new();
    let mut read = 0;
    while last_issue == 0 || last_logistics == 0 {
        let e = stream.message().await.unwrap().unwrap();
        match e.event.unwrap() {
            Event::Issue(i) => {
                assert_eq!(i.seq, last_issue + 1, "issue events in order, none missed");
                last_issue = i.seq;
            }
            Event::Logistics(l) => {
                assert!(l.seq > last_logistics);
                assert_eq!(l.community_id, community);
                assert!(["batch", "delivery", "stock_movement"].contains(&l.entity.as_str()));
                last_logistics = l.seq;
            }
        }
        cursor = e.cursor;
        read += 1;
        assert!(read < 5000, "both sources within the history");
    }
    drop(stream);
    assert_eq!(
        cursor,
        format!("issues:{last_issue},logistics:{last_logistics}")
    );

    // A new issue reported through the gateway while disconnected.
    let reported = report(
        s.channel(),
        &token,
        "gateway-watch-test",
        &community,
        "路灯不亮",
    )
    .await
    .into_inner()
    .issue
    .unwrap();

    // Resumed: each source continues just after the cursor, and the new issue comes.
    let mut stream = watch(&cursor).await;
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = stream.message().await.unwrap().unwrap();
            match e.event.unwrap() {
                Event::Issue(i) => {
                    assert_eq!(i.seq, last_issue + 1, "no gap, no repeat");
                    assert_eq!(i.community_id, community);
                    last_issue = i.seq;
                    if i.issue_id == reported.id {
                        return;
                    }
                }
                Event::Logistics(l) => {
                    assert!(l.seq > last_logistics, "no repeat");
                    last_logistics = l.seq;
                }
            }
        }
    })
    .await;
    assert!(found.is_ok(), "the new issue's event did not arrive");

    // A cursor that is not one is refused.
    let bad = views(&s)
        .watch_community(with_token(
            pb::WatchCommunityRequest {
                community_id: String::new(),
                after_cursor: "yesterday".into(),
                from_now: false,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

/// An issues replica that is up (health says SERVING) but answers every call
/// UNAVAILABLE, as one shedding load or shutting down does.
#[derive(Clone)]
struct Refusing;

impl tonic::server::NamedService for Refusing {
    const NAME: &'static str = "linli.issues.v1.IssuesService";
}

impl tower::Service<http::Request<tonic::body::Body>> for Refusing {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        std::future::ready(Ok(tonic::Status::unavailable("shedding load").into_http()))
    }
}

#[tokio::test]
async fn reads_go_to_another_replica_when_one_refuses_and_writes_do_not() {
    let s = Suite::start(Backend::Sqlite).await;
    let refusing = linli_core::testing::TestServer::spawn(linli_core::server::GrpcServer::new(
        "linli.issues.v1.IssuesService",
        tonic::service::Routes::new(Refusing),
        Default::default(),
    ))
    .await;
    let db = linli_core::testing::TestDb::new(Backend::Sqlite).await;
    let app = linli_gateway::Application::in_front_of(
        &db.url,
        &format!("http://{}", s.people.addr),
        &format!("http://{},http://{}", refusing.addr, s.issues_addr),
        &format!("http://{}", s.logistics.addr),
        linli_core::testing::keys().clone(),
    )
    .await
    .unwrap();
    let gateway = linli_core::testing::TestServer::spawn(app.grpc_server()).await;
    let session = s.login("wujing").await;
    let community = session.identity.unwrap().community_id;
    let token = session.access_token;
    let mut issues = IssuesServiceClient::new(gateway.channel.clone());
    for _ in 0..10 {
        issues
            .list_issues(with_token(ipb::ListIssuesRequest::default(), &token))
            .await
            .expect("a read reaches the replica that answers");
    }
    // A write is not repeated on another replica: half of them meet the refusing one.
    let mut refused = 0;
    for i in 0..10 {
        let report = ipb::ReportIssueRequest {
            idempotency_key: format!("retry-test-{i}"),
            community_id: community.clone(),
            title: "井盖松动".into(),
            category: ipb::Category::Road as i32,
            source: ipb::Source::Inspection as i32,
            ..Default::default()
        };
        if let Err(status) = issues.report_issue(with_token(report, &token)).await {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            refused += 1;
        }
    }
    assert!(refused > 0, "every write went to the answering replica");
}
