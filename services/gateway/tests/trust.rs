//! The holes an outside attacker found, each shut: logins sent together,
//! gRPC-Web logins sharing one address, a citizen's contact details in the
//! open, two apps of one name, a poisoned `/metrics`, and a resident who
//! moved out but kept her access.
mod common;

use std::net::IpAddr;
use std::time::Duration;

use prost::Message;
use tonic::Code;

use common::{PASSWORD, Suite, http, with_token};
use linli_core::testing::Backend;
use linli_proto::gateway::v1 as pb;
use linli_proto::issues::v1 as ipb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use linli_proto::people::v1 as ppb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;

/// Throttle delays of a millisecond, so a test can fail many logins quickly;
/// the counts and locks are the real ones.
fn quick_throttle(settings: &mut linli_gateway::Settings) {
    settings.throttle.step = Duration::from_millis(1);
    settings.throttle.max_delay = Duration::from_millis(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_sent_together_are_checked_no_more_than_the_limit() {
    let s = Suite::start_with(Backend::Sqlite, quick_throttle).await;
    // 40 wrong passwords and then the right one, all at once.
    let attempts = (0..41).map(|i| {
        let mut auth = s.auth();
        let password = if i == 40 {
            PASSWORD.to_owned()
        } else {
            format!("guess-{i}")
        };
        async move {
            auth.login(pb::LoginRequest {
                username: "admin".into(),
                password,
            })
            .await
            .map(|_| ())
            .map_err(|s| s.code())
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let refused = answers
        .iter()
        .filter(|a| **a == Err(Code::ResourceExhausted))
        .count();
    let checked = answers.len() - refused;
    assert!(
        checked <= 10,
        "{checked} of 41 passwords were checked (the limit is 10): {answers:?}"
    );
    assert!(answers.iter().all(|a| matches!(
        a,
        Ok(()) | Err(Code::ResourceExhausted | Code::Unauthenticated)
    )));
}

/// A gRPC-Web login from `from`; its grpc-status.
async fn grpc_web_login(
    s: &Suite,
    from: &str,
    forwarded_for: Option<&str>,
    username: &str,
    password: &str,
) -> String {
    let login = pb::LoginRequest {
        username: username.into(),
        password: password.into(),
    };
    let payload = login.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&payload);
    let mut headers = vec![
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
    ];
    if let Some(f) = forwarded_for {
        headers.push(("x-forwarded-for", f));
    }
    let r = http::request_from(
        Some(from.parse::<IpAddr>().unwrap()),
        s.web,
        "POST",
        "/linli.gateway.v1.AuthService/Login",
        &headers,
        &body,
    )
    .await;
    if let Some(status) = r.header("grpc-status") {
        return status.to_owned();
    }
    let text = String::from_utf8_lossy(&r.bytes).to_string();
    text.split("grpc-status:")
        .nth(1)
        .and_then(|t| t.split(['\r', '\n']).next())
        .unwrap_or_else(|| panic!("no grpc-status in {text:?}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_logins_are_counted_per_client_address() {
    let s = Suite::start_with(Backend::Sqlite, |settings| {
        quick_throttle(settings);
        settings.trusted_proxies = linli_gateway::client::Proxies::parse("127.0.0.4").unwrap();
    })
    .await;
    // A stranger at 127.0.0.2 tries 55 usernames (an address may fail 50 times).
    for i in 0..55 {
        let status = grpc_web_login(&s, "127.0.0.2", None, &format!("guess{i}"), "x").await;
        assert!(status == "16" || status == "8", "{status}");
    }
    assert_eq!(
        grpc_web_login(&s, "127.0.0.2", None, "supervisor", PASSWORD).await,
        "8",
        "the guessing address is locked"
    );
    // The supervisor at another address logs in; a header the stranger writes
    // itself does not move it into another address's count.
    assert_eq!(
        grpc_web_login(&s, "127.0.0.3", None, "supervisor", PASSWORD).await,
        "0"
    );
    assert_eq!(
        grpc_web_login(
            &s,
            "127.0.0.2",
            Some("198.51.100.1"),
            "supervisor",
            PASSWORD
        )
        .await,
        "8"
    );
    // Behind a trusted proxy, the client is the address it forwards.
    for i in 0..55 {
        grpc_web_login(&s, "127.0.0.4", Some("203.0.113.7"), &format!("g{i}"), "x").await;
    }
    assert_eq!(
        grpc_web_login(&s, "127.0.0.4", Some("203.0.113.7"), "supervisor", PASSWORD).await,
        "8"
    );
    assert_eq!(
        grpc_web_login(&s, "127.0.0.4", Some("203.0.113.8"), "supervisor", PASSWORD).await,
        "0"
    );
}

async fn worker_community(s: &Suite) -> String {
    s.login("wujing")
        .await
        .identity
        .expect("an identity")
        .community_id
}

async fn issue_as(s: &Suite, username: &str, id: &str) -> ipb::Issue {
    let token = s.login(username).await.access_token;
    IssuesServiceClient::new(s.channel())
        .get_issue(with_token(
            ipb::GetIssueRequest {
                issue_id: id.to_owned(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap()
}

async fn open311_contact_is_kept_apart_and_keys_are_scoped(backend: Backend) {
    let s = Suite::start(backend).await;
    let community_id = worker_community(&s).await;
    let key = linli_gateway::web::open311::add_key(&s.gateway_store, "随手拍", &community_id)
        .await
        .unwrap();
    let report = [
        ("api_key", key.as_str()),
        ("service_code", "road"),
        // As an HTML form sends line breaks.
        ("description", "路灯不亮\r\n三号楼前"),
        ("address_string", "八角亭小区3栋"),
        ("first_name", "张"),
        ("last_name", "伟"),
        ("phone", "13912341001"),
        ("email", "zhangwei@example.cn"),
    ];
    let made = http::post_form(s.web, "/open311/v2/requests.json", &[], &report).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.json()[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Nobody reads the contact in the description.
    let read = http::get(
        s.web,
        &format!("/open311/v2/requests/{id}.json?api_key={key}"),
        &[],
    )
    .await;
    assert!(!read.body.contains("13912341001") && !read.body.contains("zhangwei"));
    let cadre = issue_as(&s, "ruanxf", &id).await;
    assert_eq!(cadre.description, "路灯不亮\n三号楼前");
    let masked = cadre.reporter_contact.expect("the contact, masked");
    assert_eq!(masked.phone, "139****1001");
    assert_eq!(masked.email, "z***@example.cn");
    assert!(!masked.name.contains('伟'), "{masked:?}");
    // The worker who calls back sees it whole.
    let worker = issue_as(&s, "wujing", &id).await;
    let whole = worker.reporter_contact.expect("the contact");
    assert_eq!(
        (
            whole.name.as_str(),
            whole.phone.as_str(),
            whole.email.as_str()
        ),
        ("张 伟", "13912341001", "zhangwei@example.cn")
    );

    // An app of the same name in another community, sending the same form.
    let other = s.another_community().await;
    let other_key = linli_gateway::web::open311::add_key(&s.gateway_store, "随手拍", &other.id)
        .await
        .unwrap();
    let mut same_form = report;
    same_form[0].1 = other_key.as_str();
    let theirs = http::post_form(s.web, "/open311/v2/requests.json", &[], &same_form).await;
    assert_eq!(theirs.status, 201, "{}", theirs.body);
    assert_ne!(theirs.json()[0]["service_request_id"], id.as_str());

    // A key sends a minute's worth of reports, then is told to wait.
    let mut last = made;
    for _ in 0..linli_gateway::web::open311::REPORTS_PER_MINUTE {
        last = http::post_form(s.web, "/open311/v2/requests.json", &[], &report).await;
        if last.status == 429 {
            break;
        }
        assert_eq!(last.status, 201, "{}", last.body);
    }
    assert_eq!(last.status, 429, "{}", last.body);
    assert!(last.header("retry-after").is_some());
    assert!(
        last.json()[0]["description"]
            .as_str()
            .unwrap()
            .contains("minute")
    );
}

linli_core::backend_tests!(open311_contact_is_kept_apart_and_keys_are_scoped);

/// Whether every line of a scrape is a comment or `name{labels} value`, its
/// label values properly quoted and escaped; the label values it holds.
fn parse_scrape(text: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut chars = line.chars().peekable();
        let name: String =
            std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_'))
                .collect();
        assert!(!name.is_empty(), "no name: {line}");
        if chars.next_if_eq(&'{').is_some() {
            loop {
                let key: String = std::iter::from_fn(|| {
                    chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_')
                })
                .collect();
                assert!(!key.is_empty(), "no label name: {line}");
                assert_eq!(chars.next(), Some('='), "{line}");
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().unwrap_or_else(|| panic!("unclosed: {line}")) {
                        '\\' => match chars.next() {
                            Some(c @ ('\\' | '"')) => value.push(c),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?}: {line}"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                values.push(value);
                match chars.next() {
                    Some(',') => continue,
                    Some('}') => break,
                    other => panic!("{other:?} after a label: {line}"),
                }
            }
        }
        assert_eq!(chars.next(), Some(' '), "{line}");
        let number: String = chars.collect();
        assert!(number.parse::<f64>().is_ok(), "not a number: {line}");
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cannot_be_poisoned_without_logging_in() {
    let s = Suite::start(Backend::Sqlite).await;
    for port in [s.gateway.addr, s.people.addr] {
        for i in 0..30 {
            http::get(port, &format!("/probe-{i}-{}", linli_core::new_id()), &[]).await;
        }
        http::get(port, "/x\"}y{z=\"1", &[]).await;
        let scrape = http::get(port, "/metrics", &[]).await;
        assert_eq!(scrape.status, 200);
        let values = parse_scrape(&scrape.body);
        assert!(
            !values
                .iter()
                .any(|v| v.starts_with("/probe-") || v.contains('"')),
            "{port}: unknown paths became labels"
        );
    }
    // The HTTP side too.
    http::get(s.web, "/x\"}y{z=\"1", &[]).await;
    let scrape = http::get(s.web, "/metrics", &[]).await;
    parse_scrape(&scrape.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resident_who_moved_out_loses_her_access() {
    let s = Suite::start_with(Backend::Sqlite, |settings| {
        settings.session_recheck = Duration::ZERO;
    })
    .await;
    let session = s.login("chengguilan").await;
    let cookie = http::login(s.web, "chengguilan").await;
    let home = http::get(s.web, "/", &[("cookie", &cookie)]).await;
    let household_page = home.header("location").unwrap().to_owned();
    assert!(household_page.starts_with("/h/"), "{household_page}");
    assert_eq!(
        http::get(s.web, &household_page, &[("cookie", &cookie)])
            .await
            .status,
        200
    );

    // The worker records that 程大娘 moved out.
    let worker = s.login("wujing").await.access_token;
    let admin = s.login("admin").await.access_token;
    let mut people = PeopleServiceClient::new(s.channel());
    let account = people
        .get_account(with_token(
            ppb::GetAccountRequest {
                account_id: session.identity.as_ref().unwrap().account_id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    let resident = people
        .get_resident(with_token(
            ppb::GetResidentRequest {
                resident_id: account.resident_id.clone(),
                view: 0,
            },
            &worker,
        ))
        .await
        .unwrap()
        .into_inner()
        .resident
        .unwrap();
    people
        .remove_resident(with_token(
            ppb::RemoveResidentRequest {
                resident_id: resident.id.clone(),
                expected_version: resident.version,
                reason: "moved in with her son".into(),
            },
            &worker,
        ))
        .await
        .unwrap();
    // The access token in her hand stops too, everywhere.
    let moved_out = std::time::Instant::now();
    let took = refused_within(&s, &session.access_token, moved_out).await;
    eprintln!("her access token was refused after {took:?}");

    let refreshed = s
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refreshed.code(), Code::Unauthenticated, "{refreshed:?}");
    let again = s
        .auth()
        .login(pb::LoginRequest {
            username: "chengguilan".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::Unauthenticated, "{again:?}");
    let page = http::get(s.web, &household_page, &[("cookie", &cookie)]).await;
    assert_eq!(
        (page.status, page.header("location")),
        (303, Some("/login")),
        "the household page after she moved out"
    );
    // The disabling is in the audit trail.
    let audit = people
        .list_audit_events(with_token(
            ppb::ListAuditEventsRequest {
                // Accounts are on the county-wide chain.
                community_id: String::new(),
                page_size: 500,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        format!("{audit:?}").contains("account.disable"),
        "no audit record of the disabling"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_say_how_a_browser_may_use_them() {
    let s = Suite::start(Backend::Sqlite).await;
    let cookie = http::login(s.web, "wujing").await;
    let home = http::get(s.web, "/", &[("cookie", &cookie)]).await;
    let page = http::get(
        s.web,
        home.header("location").unwrap(),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(page.status, 200);
    let login = http::get(s.web, "/login", &[]).await;
    let css = http::get(s.web, "/static/linli.css", &[]).await;
    for r in [&page, &login, &css] {
        let csp = r.header("content-security-policy").expect("a CSP");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    }
    // Pages with personal data are never stored; the stylesheet may be.
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_ne!(css.header("cache-control"), Some("no-store"));
    // No inline script on the pages the CSP would then break.
    for body in [&page.body, &login.body] {
        assert!(!body.contains("<script>"), "inline script");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_without_a_community_are_the_callers_own() {
    use linli_proto::logistics::v1 as lpb;
    use linli_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
    let s = Suite::start(Backend::Sqlite).await;
    let own = worker_community(&s).await;
    let worker = s.login("wujing").await.access_token;
    let mut people = PeopleServiceClient::new(s.channel());
    let households = people
        .list_households(with_token(ppb::ListHouseholdsRequest::default(), &worker))
        .await
        .unwrap()
        .into_inner()
        .households;
    assert!(!households.is_empty());
    assert!(households.iter().all(|h| h.community_id == own));
    let residents = people
        .list_residents(with_token(ppb::ListResidentsRequest::default(), &worker))
        .await
        .unwrap()
        .into_inner()
        .residents;
    assert!(!residents.is_empty());
    assert!(residents.iter().all(|r| r.community_id == own));
    let depots = LogisticsServiceClient::new(s.channel())
        .list_depots(with_token(lpb::ListDepotsRequest::default(), &worker))
        .await
        .unwrap()
        .into_inner()
        .depots;
    assert!(!depots.is_empty());
    assert!(depots.iter().all(|d| d.community_id == own));
    // A county-wide caller names the community, and is told which field.
    let admin = s.login("admin").await.access_token;
    let err = people
        .list_households(with_token(ppb::ListHouseholdsRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("community_id:"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_is_one_rule_on_the_dashboard_too() {
    let s = Suite::start(Backend::Sqlite).await;
    let own = worker_community(&s).await;
    let worker = s.dashboard_as("wujing", &own).await;
    assert!(worker.logistics.unwrap().funds_balance_fen.is_some());
    // A cadre may not read the funds ledger, so the dashboard has no balance for him.
    let cadre = s.dashboard_as("ruanxf", &own).await;
    let logistics = cadre.logistics.expect("the logistics part");
    assert_eq!(logistics.funds_balance_fen, None);
    let cookie = http::login(s.web, "ruanxf").await;
    let page = http::get(s.web, &format!("/c/{own}"), &[("cookie", &cookie)]).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("fig-funds"));
}

/// Reads from `stream` until the server closes it (or `wait` passes); whether it closed.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_side_closes_half_sent_heads() {
    use tokio::io::AsyncWriteExt;
    let s = Suite::start_with(Backend::Sqlite, |settings| {
        settings.common.serve.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(s.web).await.unwrap();
    slow.write_all(b"GET /login HTTP/1.1\r\nHost: linli\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)).await,
        "a half-sent head kept its connection open"
    );
    // Whole requests are served as before.
    assert_eq!(http::get(s.web, "/healthz", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_side_caps_its_connections_and_live_views() {
    let s = Suite::start_with(Backend::Sqlite, |settings| {
        settings.common.serve.max_connections = 3;
    })
    .await;
    let held: Vec<_> =
        futures_util::future::join_all((0..3).map(|_| tokio::net::TcpStream::connect(s.web)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    // Connections are taken in the order they arrive: the fourth is the one past the cap.
    let mut fourth = tokio::net::TcpStream::connect(s.web).await.unwrap();
    assert!(
        closed_within(&mut fourth, Duration::from_secs(5)).await,
        "a connection past the cap was kept"
    );
    drop(held);
    // Until the server has seen them close, a new connection is still one too many.
    let served = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let mut c = tokio::net::TcpStream::connect(s.web).await.unwrap();
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: linli\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            let _ = c.read_to_end(&mut answer).await;
            if answer.starts_with(b"HTTP/1.1 200") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("served again once connections closed");

    // Live views: a few per session.
    let s = Suite::start(Backend::Sqlite).await;
    let own = worker_community(&s).await;
    let cookie = http::login(s.web, "wujing").await;
    let path = format!("/c/{own}/events");
    let mut open = Vec::new();
    for _ in 0..linli_gateway::streams::PER_SESSION {
        let e = http::Events::open(s.web, &path, &[("cookie", &cookie)]).await;
        assert_eq!(e.status, 200);
        open.push(e);
    }
    let refused = http::Events::open(s.web, &path, &[("cookie", &cookie)]).await;
    assert_eq!(refused.status, 429, "one live view too many for a session");
    // Another person's session is not affected.
    let other = http::login(s.web, "supervisor").await;
    let theirs = http::Events::open(s.web, &path, &[("cookie", &other)]).await;
    assert_eq!(theirs.status, 200);

    // gRPC WatchCommunity: a few per caller too; the pages' count apart.
    let token = s.login("wujing").await.access_token;
    let watch = || {
        let mut views = pb::gateway_service_client::GatewayServiceClient::new(s.channel());
        let req = with_token(
            pb::WatchCommunityRequest {
                community_id: own.clone(),
                after_cursor: String::new(),
                from_now: true,
            },
            &token,
        );
        async move { views.watch_community(req).await.map(|r| r.into_inner()) }
    };
    let mut streams = Vec::new();
    for _ in 0..linli_gateway::streams::PER_CALLER {
        streams.push(watch().await.expect("a stream within the cap"));
    }
    let over = watch().await.expect_err("one stream too many for a caller");
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
    // Ending one gives its place back.
    drop(streams.pop());
    let again = async {
        loop {
            match watch().await {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    let _again = tokio::time::timeout(Duration::from_secs(5), again)
        .await
        .expect("a place given back when a stream ends");
}

/// How long `token` kept working after `since`: people and issues (through the
/// gateway) are asked until both refuse it; past `limit` the test fails.
async fn refused_within(s: &Suite, token: &str, since: std::time::Instant) -> Duration {
    const LIMIT: Duration = Duration::from_secs(60);
    loop {
        let people = PeopleServiceClient::new(s.channel())
            .list_places(with_token(ppb::ListPlacesRequest::default(), token))
            .await;
        let issues = IssuesServiceClient::new(s.channel())
            .list_issues(with_token(ipb::ListIssuesRequest::default(), token))
            .await;
        let refused = |r: Result<(), tonic::Status>| {
            r.err()
                .is_some_and(|e| e.code() == Code::Unauthenticated && e.message().contains("ended"))
        };
        if refused(people.map(|_| ())) && refused(issues.map(|_| ())) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < LIMIT,
            "the token still works after {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn works(s: &Suite, token: &str) -> bool {
    PeopleServiceClient::new(s.channel())
        .list_places(with_token(ppb::ListPlacesRequest::default(), token))
        .await
        .is_ok()
}

/// Logging out, changing a password, a worker's reset and disabling an account
/// each end access tokens already handed out, everywhere, within a minute
/// (measured); the refresh tokens of the ended logins stop at once; a reset
/// password must be changed before the next login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_login_ends_its_access_tokens_within_a_minute() {
    let s = Suite::start_with(Backend::Sqlite, quick_throttle).await;
    let mut taken = Vec::new();

    // Logout ends that login only.
    let first = s.login("wujing").await;
    let second = s.login("wujing").await;
    assert!(works(&s, &first.access_token).await);
    s.auth()
        .logout(pb::LogoutRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .unwrap();
    let at = std::time::Instant::now();
    taken.push(("logout", refused_within(&s, &first.access_token, at).await));
    assert!(
        works(&s, &second.access_token).await,
        "the other login ended too"
    );

    // Changing the password ends every other login, and logs in anew.
    let change = |current: &str, new: &str| pb::ChangePasswordRequest {
        username: "wujing".into(),
        current_password: current.into(),
        new_password: new.into(),
    };
    let wrong = s
        .auth()
        .change_password(change("guess-guess", "wujing-own-2026"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    let changed = s
        .auth()
        .change_password(change(PASSWORD, "wujing-own-2026"))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let at = std::time::Instant::now();
    taken.push((
        "password change",
        refused_within(&s, &second.access_token, at).await,
    ));
    assert!(works(&s, &changed.access_token).await);
    let stale = s
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: second.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Unauthenticated, "{stale:?}");
    let old = s
        .auth()
        .login(pb::LoginRequest {
            username: "wujing".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated, "{old:?}");

    // The worker resets 程大娘's password: her login ends, and she must change it.
    let worker = changed.access_token.clone();
    let cheng = s.login("chengguilan").await;
    let account_id = cheng.identity.clone().unwrap().account_id;
    let mut people = PeopleServiceClient::new(s.channel());
    people
        .reset_password(with_token(
            ppb::ResetPasswordRequest {
                account_id: account_id.clone(),
                new_password: "cheng-temp-01".into(),
            },
            &worker,
        ))
        .await
        .unwrap();
    let at = std::time::Instant::now();
    taken.push(("reset", refused_within(&s, &cheng.access_token, at).await));
    let must = s
        .auth()
        .login(pb::LoginRequest {
            username: "chengguilan".into(),
            password: "cheng-temp-01".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(must.code(), Code::FailedPrecondition, "{must:?}");
    let cheng = s
        .auth()
        .change_password(pb::ChangePasswordRequest {
            username: "chengguilan".into(),
            current_password: "cheng-temp-01".into(),
            new_password: "cheng-own-2026".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert!(works(&s, &cheng.access_token).await);

    // Disabled: her token, her refresh and her login all stop.
    people
        .disable_account(with_token(
            ppb::DisableAccountRequest {
                account_id: account_id.clone(),
                reason: "手机丢失".into(),
            },
            &worker,
        ))
        .await
        .unwrap();
    let at = std::time::Instant::now();
    taken.push(("disable", refused_within(&s, &cheng.access_token, at).await));
    let refresh = s
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: cheng.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refresh.code(), Code::Unauthenticated, "{refresh:?}");
    eprintln!("access tokens refused after: {taken:?}");
}

/// After a worker's reset, the login page asks for a new password before
/// anything else; a mismatch or the same password is refused on the page;
/// then the person is signed in with the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_password_is_changed_on_the_login_page() {
    let s = Suite::start(Backend::Sqlite).await;
    let worker = s.login("wujing").await.access_token;
    let cheng = s.login("chengguilan").await;
    PeopleServiceClient::new(s.channel())
        .reset_password(with_token(
            ppb::ResetPasswordRequest {
                account_id: cheng.identity.unwrap().account_id,
                new_password: "cheng-temp-01".into(),
            },
            &worker,
        ))
        .await
        .unwrap();
    let nonce = "n0nce-for-the-test";
    let cookie = format!("linli_login={nonce}");
    let login = http::post_form(
        s.web,
        "/login",
        &[("cookie", &cookie)],
        &[
            ("username", "chengguilan"),
            ("password", "cheng-temp-01"),
            ("nonce", nonce),
        ],
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(
        login.body.contains("action=\"/password\""),
        "{}",
        login.body
    );
    assert!(login.set_cookie_line("linli_session").is_none());
    let change = async |new: &str, repeat: &str| {
        http::post_form(
            s.web,
            "/password",
            &[("cookie", &cookie)],
            &[
                ("nonce", nonce),
                ("username", "chengguilan"),
                ("current", "cheng-temp-01"),
                ("new", new),
                ("repeat", repeat),
            ],
        )
        .await
    };
    let mismatch = change("cheng-own-2026", "cheng-own-2027").await;
    assert_eq!(mismatch.status, 400);
    assert!(
        mismatch.body.contains("role=\"alert\""),
        "{}",
        mismatch.body
    );
    let same = change("cheng-temp-01", "cheng-temp-01").await;
    assert_eq!(same.status, 400);
    let done = change("cheng-own-2026", "cheng-own-2026").await;
    assert_eq!(done.status, 303, "{}", done.body);
    let session = done
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("linli_session="))
        .expect("signed in");
    let home = http::get(s.web, "/", &[("cookie", &session)]).await;
    assert!(
        home.header("location")
            .is_some_and(|l| l.starts_with("/h/")),
        "{:?}",
        home.header("location")
    );
}
