//! The gateway's HTTP side over real sockets, as a browser and a civic app
//! use it: login, sessions and forms; what each person may see; the JSON
//! API; Open311 including bad input; live events; gRPC-Web; metrics.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use prost::Message;

use common::Suite;
use common::http::{self, Events, Reply};
use linli_core::testing::Backend;

/// A browser's cookie jar, reduced to the one cookie that matters.
struct Browser {
    addr: SocketAddr,
    cookie: String,
}

impl Browser {
    async fn login(addr: SocketAddr, username: &str) -> Browser {
        Browser {
            addr,
            cookie: http::login(addr, username).await,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        http::get(self.addr, path, &[("cookie", &self.cookie)]).await
    }

    /// Where `/` sends this person.
    async fn home(&self) -> String {
        let r = self.get("/").await;
        assert_eq!(r.status, 303);
        r.header("location").unwrap().to_owned()
    }
}

/// The value of the first attribute that starts with `prefix` (which ends in `="`).
fn attr(html: &str, prefix: &str) -> String {
    let start = html
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} not in page"))
        + prefix.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The text of the element with `id`.
fn text_of(html: &str, id: &str) -> String {
    let open = format!("id=\"{id}\"");
    let at = html
        .find(&open)
        .unwrap_or_else(|| panic!("#{id} not in page"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    rest[start..].split('<').next().unwrap().to_owned()
}

async fn sessions_forms_and_reach(backend: Backend) {
    let s = Suite::start(backend).await;
    let addr = s.web;

    // Not signed in: every page leads to the login page; the API says 401.
    let r = http::get(addr, "/", &[]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    let r = http::get(addr, "/county", &[]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    let r = http::get(addr, "/api/v1/me", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["status"], 401);

    // A login form posted without the login page's value is refused, as is a wrong password.
    let forged = http::post_form(
        addr,
        "/login",
        &[],
        &[
            ("username", "wujing"),
            ("password", common::PASSWORD),
            ("nonce", "x"),
        ],
    )
    .await;
    assert_eq!(forged.status, 403);
    assert!(forged.set_cookie_line("linli_session").is_none());
    let form = http::get(addr, "/login", &[]).await;
    let nonce = attr(&form.body, "name=\"nonce\" value=\"");
    let wrong = http::post_form(
        addr,
        "/login",
        &[("cookie", &format!("linli_login={nonce}"))],
        &[
            ("username", "wujing"),
            ("password", "not-it"),
            ("nonce", &nonce),
        ],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("用户名或密码错误"));
    assert!(wrong.set_cookie_line("linli_session").is_none());

    // The community worker lands on her community, with the figures the view gives.
    let worker = Browser::login(addr, "wujing").await;
    let home = worker.home().await;
    let community_id = home
        .strip_prefix("/c/")
        .expect("a community page")
        .to_owned();
    let dashboard = s.dashboard_as("wujing", &community_id).await;
    let token = s.login("wujing").await.access_token;
    let page = worker.get(&home).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("双泉社区"));
    let people = dashboard.people.clone().unwrap();
    assert_eq!(
        text_of(&page.body, "fig-households"),
        people.households.to_string()
    );
    assert_eq!(
        text_of(&page.body, "fig-residents"),
        people.residents.to_string()
    );
    assert_eq!(
        text_of(&page.body, "fig-open"),
        dashboard.issues.as_ref().unwrap().open_issues.to_string()
    );
    for chart in [
        "<svg",
        "id=\"overdue\"",
        "id=\"open-issues\"",
        "/static/live.js",
    ] {
        assert!(page.body.contains(chart), "{chart} missing");
    }
    // The live part alone, as the page fetches it on a change.
    let live = worker.get(&format!("{home}/live")).await;
    assert_eq!(live.status, 200);
    assert!(live.body.contains("id=\"fig-households\"") && !live.body.contains("<html"));

    // Another community is not there for her; nor is the county.
    let other = worker.get("/c/0190c0de-0000-7000-8000-000000000000").await;
    assert_eq!(other.status, 404);
    assert_eq!(worker.get("/county").await.status, 403);

    // English on request, remembered.
    let en = worker.get(&format!("{home}?lang=en")).await;
    assert!(en.body.contains("Households") && en.body.contains("lang=\"en\""));
    let lang = en
        .set_cookie_line("linli_lang")
        .expect("the choice is remembered");
    assert!(lang.starts_with("linli_lang=en"));
    let again = http::get(
        addr,
        &home,
        &[("cookie", &format!("{}; linli_lang=en", worker.cookie))],
    )
    .await;
    assert!(again.body.contains("Open issues"));

    // The JSON API: the same view, by cookie or by bearer token.
    let api = format!("/api/v1/communities/{community_id}/dashboard");
    let by_cookie = worker.get(&api).await;
    assert_eq!(by_cookie.status, 200);
    assert_eq!(by_cookie.json()["communityName"], "双泉社区");
    assert_eq!(
        by_cookie.json()["people"]["households"],
        serde_json::json!(people.households)
    );
    let bearer = format!("Bearer {token}");
    let by_token = http::get(addr, &api, &[("authorization", &bearer)]).await;
    assert_eq!(by_token.status, 200);
    let forged = http::get(addr, &api, &[("authorization", "Bearer not.a.token")]).await;
    assert_eq!(forged.status, 401);
    let elsewhere = worker
        .get("/api/v1/communities/0190c0de-0000-7000-8000-000000000000/dashboard")
        .await;
    assert_eq!(elsewhere.status, 404);
    assert_eq!(elsewhere.json()["error"]["status"], 404);

    // A supervisor starts at the county and may sort it.
    let supervisor = Browser::login(addr, "supervisor").await;
    assert_eq!(supervisor.home().await, "/county");
    let county = supervisor.get("/county?sort=open&desc=1").await;
    assert_eq!(county.status, 200);
    assert!(county.body.contains("双泉社区") && county.body.contains("▼"));
    assert_eq!(supervisor.get(&home).await.status, 200);

    // A resident sees her own household and nothing else.
    let resident = Browser::login(addr, "chengguilan").await;
    let own = resident.home().await;
    assert!(own.starts_with("/h/"), "{own}");
    let profile = resident.get(&own).await;
    assert_eq!(profile.status, 200);
    assert!(profile.body.contains("id=\"household-address\""));
    // Her carers, whom she must be able to reach: whole numbers, a tap to call.
    let carers = profile
        .body
        .split("包户联系人")
        .nth(1)
        .and_then(|rest| rest.split("</ul>").next())
        .expect("the carers' list");
    assert!(carers.contains("href=\"tel:1"), "{carers}");
    // One language on the page: the care reason too.
    assert!(profile.body.contains("独居且"), "no care reason in Chinese");
    assert!(
        !profile.body.contains("living alone"),
        "English on the Chinese page"
    );
    assert!(!carers.contains('*'), "{carers}");
    assert_eq!(resident.get(&home).await.status, 403);
    let someone_else = dashboard
        .visit_compliance
        .as_ref()
        .unwrap()
        .entries
        .iter()
        .map(|e| format!("/h/{}", e.household_id))
        .find(|h| *h != own)
        .expect("another household");
    assert_eq!(worker.get(&someone_else).await.status, 200);
    assert_eq!(resident.get(&someone_else).await.status, 404);

    // Logging out needs the page's form token; then the session is gone.
    let csrf = attr(&page.body, "name=\"csrf\" value=\"");
    let cookie = [("cookie", worker.cookie.as_str())];
    let forged = http::post_form(addr, "/logout", &cookie, &[("csrf", "0000")]).await;
    assert_eq!(forged.status, 403);
    assert_eq!(
        worker.get(&home).await.status,
        200,
        "a forged logout changes nothing"
    );
    let other_csrf = attr(&county.body, "name=\"csrf\" value=\"");
    assert_ne!(other_csrf, csrf, "form tokens are per session");
    let out = http::post_form(addr, "/logout", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.header("location")), (303, Some("/login")));
    let after = worker.get(&home).await;
    assert_eq!(
        (after.status, after.header("location")),
        (303, Some("/login"))
    );
    assert_eq!(worker.get(&api).await.status, 401);
}

async fn open311_reports_and_follows(backend: Backend) {
    let s = Suite::start(backend).await;
    let addr = s.web;
    let worker = Browser::login(addr, "wujing").await;
    let community_id = worker.home().await.trim_start_matches("/c/").to_owned();
    let key = linli_gateway::web::open311::add_key(&s.gateway_store, "test-app", &community_id)
        .await
        .unwrap();

    let services = http::get(addr, "/open311/v2/services.json", &[]).await;
    assert_eq!(services.status, 200);
    let codes: Vec<String> = services
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 8);
    assert!(codes.contains(&"road".to_owned()) && codes.contains(&"drainage".to_owned()));

    let list = |status: &'static str| {
        let key = key.clone();
        async move {
            let r = http::get(
                addr,
                &format!("/open311/v2/requests.json?api_key={key}&status={status}"),
                &[],
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json().as_array().unwrap().clone()
        }
    };
    let before = list("").await;
    assert!(!before.is_empty(), "the seeded issues are listed");

    // Bad input: GeoReport's error format, the right status, nothing written.
    let good: Vec<(&str, &str)> = vec![
        ("api_key", key.as_str()),
        ("service_code", "road"),
        ("description", "三号楼前路灯不亮\n晚上很黑"),
        ("lat", "29.6047"),
        ("long", "114.5176"),
        ("address_string", "双泉社区三号楼"),
        ("email", "resident@example.com"),
    ];
    let without = |field: &str| -> Vec<(&str, &str)> {
        good.iter().filter(|(k, _)| *k != field).cloned().collect()
    };
    let with = |field: &'static str, value: &'static str| -> Vec<(&str, &str)> {
        let mut v = without(field);
        v.push((field, value));
        v
    };
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (without("api_key"), 403, "api_key"),
        (with("api_key", "not-a-key"), 403, "api_key"),
        (without("service_code"), 400, "service_code"),
        // GeoReport: an unknown service is not found.
        (with("service_code", "potholes"), 404, "potholes"),
        (without("description"), 400, "description"),
        (with("lat", "91"), 400, "lat"),
        (without("long"), 400, "long"),
        (
            good.iter()
                .filter(|(k, _)| !["lat", "long", "address_string"].contains(k))
                .cloned()
                .collect(),
            400,
            "location",
        ),
        (with("jurisdiction_id", "elsewhere"), 404, "jurisdiction_id"),
    ];
    for (fields, status, names) in &cases {
        let r = http::post_form(addr, "/open311/v2/requests.json", &[], fields).await;
        assert_eq!(r.status, *status, "{names}: {}", r.body);
        let err = r.json();
        assert_eq!(err[0]["code"], serde_json::json!(status), "{names}");
        let description = err[0]["description"].as_str().unwrap();
        assert!(description.contains(names), "{names}: {description}");
    }
    assert_eq!(
        list("").await.len(),
        before.len(),
        "a refused report writes nothing"
    );

    // A good report, watched live by the community's page.
    let mut events = Events::open(
        addr,
        &format!("/c/{community_id}/events"),
        &[("cookie", &worker.cookie)],
    )
    .await;
    assert_eq!(events.status, 200);
    let made = http::post_form(addr, "/open311/v2/requests.json", &[], &good).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.json()[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Only what happens from now on: the first change is this report.
    let change = events.next("change", Duration::from_secs(10)).await;
    assert_eq!(change.as_deref(), Some(format!("issue:{id}").as_str()));
    // The same report sent again is the same request.
    let again = http::post_form(addr, "/open311/v2/requests.json", &[], &good).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.json()[0]["service_request_id"], serde_json::json!(id));
    assert_eq!(list("").await.len(), before.len() + 1);

    let one = http::get(
        addr,
        &format!("/open311/v2/requests/{id}.json?api_key={key}"),
        &[],
    )
    .await;
    assert_eq!(one.status, 200, "{}", one.body);
    let r = &one.json()[0];
    assert_eq!(r["status"], "open");
    assert_eq!(r["service_code"], "road");
    assert_eq!(r["address"], "双泉社区三号楼");
    assert!((r["lat"].as_f64().unwrap() - 29.6047).abs() < 1e-9);
    assert!(r["description"].as_str().unwrap().contains("晚上很黑"));
    assert!(
        r["requested_datetime"]
            .as_str()
            .unwrap()
            .ends_with("+08:00")
    );
    assert!(
        list("open")
            .await
            .iter()
            .any(|r| r["service_request_id"] == id.as_str())
    );
    // A report with a photo's address (Open311 sends no media type).
    let mut with_photo = good.clone();
    with_photo.push(("media_url", "https://photos.example/lamp-3.jpg"));
    with_photo.retain(|(k, _)| *k != "description");
    with_photo.push(("description", "三号楼路灯又坏了，附照片"));
    let photo = http::post_form(addr, "/open311/v2/requests.json", &[], &with_photo).await;
    assert_eq!(photo.status, 201, "{}", photo.body);
    let photo_id = photo.json()[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = http::get(
        addr,
        &format!("/open311/v2/requests/{photo_id}.json?api_key={key}"),
        &[],
    )
    .await;
    assert_eq!(
        read.json()[0]["media_url"],
        "https://photos.example/lamp-3.jpg",
        "{}",
        read.body
    );
    assert!(
        !list("closed")
            .await
            .iter()
            .any(|r| r["service_request_id"] == id.as_str())
    );
    let bad_status = http::get(
        addr,
        &format!("/open311/v2/requests.json?api_key={key}&status=pending"),
        &[],
    )
    .await;
    assert_eq!(bad_status.status, 400);
    let unknown = http::get(
        addr,
        &format!("/open311/v2/requests/0190c0de-0000-7000-8000-000000000000.json?api_key={key}"),
        &[],
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()[0]["code"], 404);

    // Staff see it, reported by the app, on the issue page and the JSON API.
    let issue = worker.get(&format!("/api/v1/issues/{id}")).await;
    assert_eq!(issue.status, 200);
    let issue = issue.json();
    assert_eq!(issue["issue"]["source"], "SOURCE_CIVIC_APP");
    assert_eq!(issue["timeline"][0]["actor"], "open311:test-app");
    let page = worker.get(&format!("/issues/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("三号楼前路灯不亮") && page.body.contains("id=\"timeline\""));
}

linli_core::backend_tests!(sessions_forms_and_reach, open311_reports_and_follows);

/// More requests than one read of the list holds (500): the newest report is
/// still listed first, in the default window, from today and among the open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open311_lists_the_newest_however_many_there_are() {
    use linli_proto::issues::v1 as ipb;
    use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
    let s = Suite::start(Backend::Sqlite).await;
    let addr = s.web;
    let worker = s.login("wujing").await;
    let community_id = worker.identity.clone().unwrap().community_id;
    let key = linli_gateway::web::open311::add_key(&s.gateway_store, "busy-app", &community_id)
        .await
        .unwrap();
    let reports = (0..520).map(|n| {
        let mut issues = IssuesServiceClient::new(s.channel());
        let req = common::with_token(
            ipb::ReportIssueRequest {
                idempotency_key: format!("busy-{n}"),
                community_id: community_id.clone(),
                title: format!("路灯不亮 {n}"),
                category: ipb::Category::Road as i32,
                source: ipb::Source::Hotline as i32,
                ..Default::default()
            },
            &worker.access_token,
        );
        async move { issues.report_issue(req).await.map(|_| ()) }
    });
    use futures_util::StreamExt;
    let results = futures_util::stream::iter(reports)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let made = http::post_form(
        addr,
        "/open311/v2/requests.json",
        &[],
        &[
            ("api_key", key.as_str()),
            ("service_code", "road"),
            ("description", "最新的一条：五号楼路灯不亮"),
            ("address_string", "双泉社区五号楼"),
        ],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.json()[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let today = chrono::Utc::now().format("%Y-%m-%dT00:00:00Z").to_string();
    for query in ["", "&status=open", &format!("&start_date={today}")] {
        let r = http::get(
            addr,
            &format!("/open311/v2/requests.json?api_key={key}{query}"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        let listed = r.json();
        assert_eq!(
            listed[0]["service_request_id"],
            id.as_str(),
            "{query}: the newest is not first"
        );
    }
    // Pages (the common page / page_size extension) and lists of values.
    let page = async |query: &str| {
        let r = http::get(
            addr,
            &format!("/open311/v2/requests.json?api_key={key}{query}"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["service_request_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let first_hundred = page("&page_size=100").await;
    assert_eq!(first_hundred.len(), 100);
    let sixth = page("&page_size=20&page=5").await;
    assert_eq!(sixth, first_hundred[80..]);
    let beyond = page("&page_size=500&page=3").await;
    assert!(beyond.is_empty(), "past the last page: none");
    let both = page("&status=open,closed&page_size=50").await;
    assert_eq!(both, first_hundred[..50]);
    let services = page("&service_code=road,drainage&page_size=5").await;
    assert_eq!(services[0], id);
    let deep = http::get(
        addr,
        &format!("/open311/v2/requests.json?api_key={key}&page=99&page_size=500"),
        &[],
    )
    .await;
    assert_eq!(deep.status, 400, "{}", deep.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_limit_the_http_side_refuses_at_once_but_stays_healthy() {
    let s = Suite::start_with(Backend::Sqlite, |settings| {
        settings.common.serve.max_concurrent_requests = 0;
    })
    .await;
    let busy = http::get(s.web, "/login", &[]).await;
    assert_eq!(busy.status, 503);
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(http::get(s.web, "/healthz", &[]).await.status, 200);
    assert_eq!(http::get(s.web, "/metrics", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_runs_too_long_is_cut() {
    let s = Suite::start_with(Backend::Sqlite, |settings| {
        settings.common.serve.request_timeout = Duration::from_millis(1);
    })
    .await;
    // The gRPC side has the same timeout, so no login: a token signed with the suite's key.
    let admin = linli_core::auth::Claims::new(
        "account:test-admin",
        linli_core::Role::Admin,
        Duration::from_secs(60),
    )
    .county();
    let bearer = format!("Bearer {}", linli_core::testing::keys().sign(&admin));
    let community = "0190c0de-0000-7000-8000-000000000000";
    // The dashboard asks nine parts of three services: never within a millisecond.
    let cut = http::get(
        s.web,
        &format!("/api/v1/communities/{community}/dashboard"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(cut.status, 504, "{}", cut.body);
    assert_eq!(http::get(s.web, "/healthz", &[]).await.status, 200);
}

/// One length-prefixed gRPC(-Web) frame.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_metrics_and_health() {
    let s = Suite::start(Backend::Sqlite).await;
    let addr = s.web;

    // A browser app logs in over gRPC-Web (HTTP/1.1, binary frames).
    let login = linli_proto::gateway::v1::LoginRequest {
        username: "wujing".into(),
        password: common::PASSWORD.into(),
    };
    let body = frame(0, &login.encode_to_vec());
    let r = http::request(
        addr,
        "POST",
        "/linli.gateway.v1.AuthService/Login",
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
        ],
        &body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/grpc-web+proto"));
    let bytes = &r.bytes;
    assert_eq!(bytes[0], 0, "a data frame first");
    let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    let resp = linli_proto::gateway::v1::LoginResponse::decode(&bytes[5..5 + len]).unwrap();
    let session = resp.session.unwrap();
    assert!(!session.access_token.is_empty());
    assert_eq!(session.identity.unwrap().username, "wujing");
    let trailers = String::from_utf8_lossy(&bytes[5 + len..]).to_string();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // Unknown pages are a 404 page, not a gRPC answer.
    let none = http::get(addr, "/no/such/page", &[]).await;
    assert_eq!(none.status, 404);
    assert!(
        none.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );

    let health = http::get(addr, "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    // Scrape and parse: every sample line is `name{labels} number`.
    let metrics = http::get(addr, "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let mut samples = std::collections::HashMap::new();
    for line in metrics
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        samples.insert(series.to_owned(), value);
    }
    assert_eq!(
        samples.get("linli_http_requests_total{route=\"/healthz\",status=\"200\"}"),
        Some(&1.0)
    );
    assert_eq!(
        samples.get("linli_http_requests_total{route=\"unmatched\",status=\"404\"}"),
        Some(&1.0)
    );
    assert!(samples.contains_key("linli_http_request_duration_seconds_count{route=\"/healthz\"}"));
    for service in ["people", "issues", "logistics"] {
        let key = format!(
            "linli_gateway_backend_up{{service=\"linli.{service}.v1.{}Service\"}}",
            service[..1].to_uppercase() + &service[1..]
        );
        assert_eq!(samples.get(&key), Some(&1.0), "{key}");
    }
}

/// `linli-gateway open311-key --community` takes a community as the operator
/// knows it: by id, administrative code or exact name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open311_key_names_its_community_by_id_code_or_name() {
    let s = Suite::start(Backend::Sqlite).await;
    let people_url = format!("http://{}", s.people.addr);
    let settings =
        linli_gateway::Settings::new(&s.dbs[2].url, &people_url, &people_url, &people_url).unwrap();
    let app = linli_gateway::Application::build(settings, linli_core::testing::keys().clone())
        .await
        .unwrap();
    let by_name = app.community_id("双泉社区").await.unwrap();
    assert_eq!(app.community_id("421224100005").await.unwrap(), by_name);
    assert_eq!(app.community_id(&by_name).await.unwrap(), by_name);
    let unknown = app.community_id("没有这个社区").await.unwrap_err();
    assert!(unknown.to_string().contains("code or name"), "{unknown}");
}

/// GeoReport v2 as its clients read it: both formats everywhere, errors in the
/// asked one, definitions and discovery, reads without a key by jurisdiction
/// (id or code), a photo carrying a report alone, `api_key` in the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open311_speaks_both_formats_and_reads_without_a_key() {
    let s = Suite::start(Backend::Sqlite).await;
    let addr = s.web;
    let worker = s.login("wujing").await;
    let community_id = worker.identity.clone().unwrap().community_id;
    let key = linli_gateway::web::open311::add_key(&s.gateway_store, "xml-app", &community_id)
        .await
        .unwrap();
    let get = async |path: &str| http::get(addr, path, &[]).await;

    let services = get("/open311/v2/services.xml").await;
    assert_eq!(services.status, 200);
    assert_eq!(
        services.header("content-type"),
        Some("text/xml; charset=utf-8")
    );
    assert!(
        services.body.starts_with("<?xml") && services.body.contains("<service><description>"),
        "{}",
        services.body
    );
    assert_eq!(services.body.matches("<service>").count(), 8);
    let definition = get("/open311/v2/services/road.json").await;
    assert_eq!(definition.status, 200, "{}", definition.body);
    assert_eq!(definition.json()["service_code"], "road");
    let none = get("/open311/v2/services/bridges.xml").await;
    assert_eq!(none.status, 404);
    assert!(
        none.body.contains("<errors><error><code>404</code>"),
        "{}",
        none.body
    );
    let discovery = get("/open311/v2/discovery.json").await;
    assert_eq!(discovery.status, 200);
    assert!(
        discovery.json()["endpoints"][0]["formats"]
            .as_array()
            .unwrap()
            .len()
            == 2
    );
    let lost = get("/open311/v2/nowhere/at/all").await;
    assert_eq!(lost.status, 404);
    assert_eq!(lost.json()[0]["code"], 404, "{}", lost.body);

    // A report carried by its photo alone, the key in the query string.
    let made = http::post_form(
        addr,
        &format!("/open311/v2/requests.xml?api_key={key}"),
        &[],
        &[
            ("service_code", "road"),
            ("media_url", "https://photos.example/pothole.jpg"),
            ("address_string", "双泉社区七号楼"),
        ],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made
        .body
        .split("<service_request_id>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("an id in XML")
        .to_owned();
    let unknown = http::post_form(
        addr,
        "/open311/v2/requests.json",
        &[],
        &[
            ("api_key", key.as_str()),
            ("service_code", "bridges"),
            ("description", "桥"),
            ("address_string", "x"),
        ],
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    // Read without a key, by the community's code: no contact details anywhere.
    let one = get(&format!(
        "/open311/v2/requests/{id}.xml?jurisdiction_id=421224100005"
    ))
    .await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(
        one.body
            .contains("<media_url>https://photos.example/pothole.jpg</media_url>"),
        "{}",
        one.body
    );
    let list = get(&format!(
        "/open311/v2/requests.json?jurisdiction_id={community_id}&status=open"
    ))
    .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json()[0]["service_request_id"], id.as_str());
    assert!(
        !list.body.contains("@"),
        "no e-mail addresses in public reads"
    );
    let nowhere = get("/open311/v2/requests.json").await;
    assert_eq!(nowhere.status, 400, "{}", nowhere.body);
    assert!(nowhere.body.contains("jurisdiction_id"));
    let elsewhere = get("/open311/v2/requests.json?jurisdiction_id=999999999999").await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.body);
    let backwards = get(&format!(
        "/open311/v2/requests.json?jurisdiction_id={community_id}&start_date=2026-11-20&end_date=2026-11-01"
    ))
    .await;
    assert_eq!(backwards.status, 400, "{}", backwards.body);
}
