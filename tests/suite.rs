//! The suite as it is deployed: people, issues, logistics and the gateway as
//! separate processes from the built binaries, each with its own SQLite database,
//! seeded with the demo data the way `make run` does, talking only over gRPC.
//!
//! `make test` builds the binaries first (`cargo test --all-targets` builds
//! every bin target); run `cargo build --bins` before `cargo test -p linli-e2e` alone.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use linli_proto::gateway::v1 as gpb;
use linli_proto::issues::v1 as ipb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use linli_proto::logistics::v1 as lpb;
use linli_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
use linli_proto::people::v1 as ppb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn bin(name: &str) -> PathBuf {
    // target/<profile>/deps/suite-… → target/<profile>/<name>
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --bins` (make test does)",
        path.display()
    );
    path
}

/// The keys folder of this test process's suites: every part's key, each
/// process given the folder as a deployment gives it its own key and the public
/// ones. No test's clean-up removes it (the tests here may run at the same time).
static KEYS_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The issuer's key, which the test signs people's tokens with as the gateway would.
fn suite_keys() -> linli_core::auth::Keys {
    static KEYS: std::sync::OnceLock<linli_core::auth::Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = KEYS_DIR.get_or_init(|| {
            std::env::temp_dir().join(format!("linli-e2e-keys-{}", std::process::id()))
        });
        linli_core::keyring::init_dir(dir).unwrap();
        linli_core::auth::Keys::load(
            &linli_core::auth::AuthSettings::in_dir(dir, false),
            &[linli_core::auth::ISSUER],
        )
        .unwrap()
    })
    .clone()
}

/// A linli program, configured with the test's keys folder.
fn linli(name: &str) -> Command {
    let mut cmd = Command::new(bin(name));
    cmd.env(
        "LINLI_KEYS_DIR",
        KEYS_DIR.get().expect("keys folder chosen"),
    );
    cmd
}

fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Logs a demo account in at the gateway.
async fn demo_login(gateway: &Channel, username: &str) -> gpb::Session {
    gpb::auth_service_client::AuthServiceClient::new(gateway.clone())
        .login(gpb::LoginRequest {
            username: username.into(),
            password: "linli-demo-2021".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
}

/// A plain HTTP/1.1 GET; the whole answer as text.
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A service process that is stopped with SIGTERM when dropped. What it
/// logs (JSON lines) is read as it comes, so a busy service never blocks on a full pipe.
struct Service {
    child: Option<Child>,
    addr: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

/// How a service ended, and what it logged.
struct Stopped {
    status: std::process::ExitStatus,
    log: String,
}

impl Service {
    fn start(name: &str, db: &Path, extra: &[&str]) -> Service {
        Service::start_at(name, db, extra, free_addr())
    }

    fn start_at(name: &str, db: &Path, extra: &[&str], addr: String) -> Service {
        let url = format!("sqlite://{}", db.display());
        let mut child = linli(name)
            .args([
                "--database-url",
                &url,
                "--listen",
                &addr,
                "--log-format",
                "json",
            ])
            .args(extra)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Service {
            child: Some(child),
            addr,
            log,
        }
    }

    /// Waits, for at most 20 seconds, until the service reports SERVING.
    async fn channel(&mut self, service: &str) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
                .unwrap()
                .connect()
                .await
            {
                let status = HealthClient::new(ch.clone())
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                    .map(|r| r.into_inner().status);
                if matches!(status, Ok(1)) {
                    return ch;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{service} did not become SERVING"
            );
            assert!(
                self.child.as_mut().unwrap().try_wait().unwrap().is_none(),
                "{service} exited early"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then the exit status and what it logged.
    fn stop(&mut self) -> Stopped {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        // The reader ends with the pipe; give it a moment to take the last lines.
        let deadline = Instant::now() + Duration::from_secs(2);
        while std::sync::Arc::strong_count(&self.log) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned();
        Stopped { status, log }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_runs_as_separate_processes() {
    let dir = std::env::temp_dir().join(format!("linli-e2e-{}", linli_core::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (people_db, issues_db, logistics_db) = (
        dir.join("people.db"),
        dir.join("issues.db"),
        dir.join("logistics.db"),
    );
    let sqlite = |p: &Path| format!("sqlite://{}", p.display());
    let keys = suite_keys();
    // The test calls as a county admin, with a token signed by the suite's own key.
    let admin = linli_core::auth::Claims::new(
        "e2e-admin",
        linli_core::Role::Admin,
        Duration::from_secs(3600),
    )
    .county();
    let authed = |ch: Channel| {
        tonic::service::interceptor::InterceptedService::new(
            ch,
            linli_core::testing::WithToken(keys.sign(&admin)),
        )
    };

    run(linli("linli-people").args([
        "--database-url",
        &sqlite(&people_db),
        "seed",
        "--keep-demo-passwords",
    ]));
    let mut people = Service::start("linli-people", &people_db, &[]);
    let people_channel = people.channel("linli.people.v1.PeopleService").await;
    let people_url = format!("http://{}", people.addr);

    let seeded = run(linli("linli-issues").args([
        "--database-url",
        &sqlite(&issues_db),
        "--people-addr",
        &people_url,
        "seed",
    ]));
    assert!(String::from_utf8_lossy(&seeded.stdout).contains("demo issues"));
    run(linli("linli-logistics").args([
        "--database-url",
        &sqlite(&logistics_db),
        "--people-addr",
        &people_url,
        "seed",
    ]));
    let mut issues = Service::start("linli-issues", &issues_db, &["--people-addr", &people_url]);
    let mut logistics = Service::start(
        "linli-logistics",
        &logistics_db,
        &["--people-addr", &people_url],
    );
    let issues_channel = issues.channel("linli.issues.v1.IssuesService").await;
    let logistics_channel = logistics
        .channel("linli.logistics.v1.LogisticsService")
        .await;

    let mut p = PeopleServiceClient::new(authed(people_channel));
    let mut i = IssuesServiceClient::new(authed(issues_channel));
    let mut l = LogisticsServiceClient::new(authed(logistics_channel));
    let community = p
        .list_places(ppb::ListPlacesRequest {
            kind: ppb::PlaceKind::Community as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .places
        .remove(0);
    let summary = p
        .get_community_summary(ppb::GetCommunitySummaryRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.residents, 1258);
    let open = i
        .get_community_summary(ipb::GetCommunitySummaryRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(open.open_issues > 0 && open.resolved_issues > 0, "{open:?}");
    let supplies = l
        .get_community_summary(lpb::GetCommunitySummaryRequest {
            community_id: community.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        supplies.deliveries_made > 0 && supplies.funds_balance_fen.is_some_and(|b| b > 0),
        "{supplies:?}"
    );

    // A resident reports a problem: the issues process asks the people process about the household.
    let household = p
        .list_households(ppb::ListHouseholdsRequest {
            community_id: community.id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .households
        .remove(0);
    let report = ipb::ReportIssueRequest {
        idempotency_key: "e2e-1".into(),
        community_id: community.id.clone(),
        household_id: household.id.clone(),
        title: "楼道灯坏了".into(),
        category: ipb::Category::PublicSafety as i32,
        source: ipb::Source::ResidentReport as i32,
        ..Default::default()
    };
    let issue = i
        .report_issue(report.clone())
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let issue = i
        .acknowledge_issue(ipb::AcknowledgeIssueRequest {
            transition: Some(ipb::Transition {
                issue_id: issue.id.clone(),
                expected_version: issue.version,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    let cadre = p
        .list_cadres(ppb::ListCadresRequest {
            community_id: community.id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cadres
        .remove(0);

    // People goes down: a claim cannot be checked, so it fails UNAVAILABLE and changes nothing.
    let stopped = people.stop();
    assert!(stopped.status.success(), "people stops cleanly on SIGTERM");
    let claim = ipb::ClaimIssueRequest {
        transition: Some(ipb::Transition {
            issue_id: issue.id.clone(),
            expected_version: issue.version,
            ..Default::default()
        }),
        cadre_id: cadre.id.clone(),
        ..Default::default()
    };
    let err = i.claim_issue(claim.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert_eq!(
        i.get_issue(ipb::GetIssueRequest {
            issue_id: issue.id.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap()
        .version,
        issue.version
    );

    // People comes back on the same address and database.
    let mut people = Service::start_at("linli-people", &people_db, &[], people.addr.clone());
    people.channel("linli.people.v1.PeopleService").await;
    let claimed = i
        .claim_issue(claim)
        .await
        .unwrap()
        .into_inner()
        .issue
        .unwrap();
    assert_eq!(
        claimed.claim.unwrap().cadre_id,
        cadre.id,
        "the issues service reconnects by itself"
    );

    // The gateway in front: a login and the dashboard, through one address.
    let gateway_db = dir.join("gateway.db");
    let http_addr = free_addr();
    let mut gateway = Service::start(
        "linli-gateway",
        &gateway_db,
        &[
            "--http-listen",
            &http_addr,
            "--people-addr",
            &format!("http://{}", people.addr),
            "--issues-addr",
            &format!("http://{}", issues.addr),
            "--logistics-addr",
            &format!("http://{}", logistics.addr),
        ],
    );
    let gateway_channel = gateway.channel("linli.gateway.v1.GatewayService").await;
    let session = demo_login(&gateway_channel, "wujing").await;
    let mut req = tonic::Request::new(gpb::GetCommunityDashboardRequest::default());
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", session.access_token).parse().unwrap(),
    );
    let dashboard = gpb::gateway_service_client::GatewayServiceClient::new(gateway_channel.clone())
        .get_community_dashboard(req)
        .await
        .unwrap()
        .into_inner();
    assert!(dashboard.missing.is_empty(), "{:?}", dashboard.missing);
    assert_eq!(dashboard.people.unwrap().residents, 1258);
    // Personal data sent with a request never reaches a log line, even when refused.
    let refused = p
        .add_resident(ppb::AddResidentRequest {
            idempotency_key: "e2e-pii".into(),
            household_id: household.id.clone(),
            name: "测试".into(),
            birth_date: "1950-01-01".into(),
            phone: "1390715999x".into(),
            id_number: "42122419500101999Q".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    views_matrix(&gateway_channel, &keys, &community.id).await;
    // Logging out at the gateway ends that login's access token in every other
    // process within a minute: people records the ending, each service reads it.
    let out = demo_login(&gateway_channel, "wujing").await;
    let issues_plain = issues.channel("linli.issues.v1.IssuesService").await;
    let logistics_plain = logistics
        .channel("linli.logistics.v1.LogisticsService")
        .await;
    let still = async || {
        let i = IssuesServiceClient::new(issues_plain.clone())
            .list_issues(linli_core::testing::with_token(
                ipb::ListIssuesRequest::default(),
                &out.access_token,
            ))
            .await;
        let l = LogisticsServiceClient::new(logistics_plain.clone())
            .list_depots(linli_core::testing::with_token(
                lpb::ListDepotsRequest::default(),
                &out.access_token,
            ))
            .await;
        (i.map(|_| ()), l.map(|_| ()))
    };
    let (i, l) = still().await;
    assert!(i.is_ok() && l.is_ok(), "{i:?} {l:?}");
    gpb::auth_service_client::AuthServiceClient::new(gateway_channel.clone())
        .logout(gpb::LogoutRequest {
            refresh_token: out.refresh_token.clone(),
        })
        .await
        .unwrap();
    let logged_out = Instant::now();
    loop {
        let (i, l) = still().await;
        let ended = |r: &Result<(), tonic::Status>| {
            r.as_ref()
                .err()
                .is_some_and(|s| s.code() == tonic::Code::Unauthenticated)
        };
        if ended(&i) && ended(&l) {
            break;
        }
        assert!(
            logged_out.elapsed() < Duration::from_secs(60),
            "a logged-out token still works after a minute: {i:?} {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "after logout, issues and logistics refused the access token within {:?}",
        logged_out.elapsed()
    );
    // The containers' health check: the binary asks its own server.
    let healthy = run(linli("linli-issues").args(["--listen", &issues.addr, "health"]));
    assert!(String::from_utf8_lossy(&healthy.stdout).contains("SERVING"));
    let nobody = linli("linli-issues")
        .args(["--listen", &free_addr(), "health"])
        .output()
        .unwrap();
    assert!(!nobody.status.success(), "nothing listening is unhealthy");
    // Every process's /metrics, on its gRPC port over HTTP/1.1: requests by RPC and
    // code with latency, the pool, and its own figures.
    let scrape = |addr: String| async move {
        let text = http_get(&addr, "/metrics").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        samples(text.split("\r\n\r\n").nth(1).unwrap())
    };
    let m = scrape(people.addr.clone()).await;
    assert!(
        m["linli_grpc_server_requests_total{rpc=\"/linli.people.v1.PeopleService/ListPlaces\",code=\"OK\"}"]
            >= 1.0
    );
    assert_eq!(
        m["linli_grpc_server_requests_total{rpc=\"/linli.people.v1.PeopleService/AddResident\",code=\"INVALID_ARGUMENT\"}"],
        1.0
    );
    assert!(
        m["linli_grpc_server_request_duration_seconds_count{rpc=\"/linli.people.v1.PeopleService/ListPlaces\"}"]
            >= 1.0
    );
    assert!(m["linli_db_pool_max_connections"] >= 1.0);
    assert!(
        m["linli_people_households"] >= 408.0,
        "the demo's 408 and any made here"
    );
    assert!(m["linli_people_vulnerable_households"] >= 170.0);
    let m = scrape(issues.addr.clone()).await;
    assert!(
        m["linli_grpc_server_requests_total{rpc=\"/linli.issues.v1.IssuesService/ReportIssue\",code=\"OK\"}"]
            >= 1.0
    );
    assert!(m.keys().any(|k| k.starts_with("linli_issues_open{state=")));
    assert!(
        m["linli_issues_overdue"] >= 1.0,
        "the demo has overdue issues"
    );
    assert!(m.contains_key("linli_issues_escalations"));
    let m = scrape(logistics.addr.clone()).await;
    assert!(m["linli_deliveries_pending"] >= 1.0);
    assert_eq!(
        m[&format!(
            "linli_checkpoint_gap_hours_next_24h{{community_id=\"{}\"}}",
            community.id
        )],
        f64::from(supplies.checkpoint_gap_hours)
    );
    let m = scrape(gateway.addr.clone()).await;
    assert!(
        m["linli_grpc_server_requests_total{rpc=\"/linli.gateway.v1.AuthService/Login\",code=\"OK\"}"]
            >= 1.0
    );
    // The HTTP side of the same process: healthy, every backend up, a browser sent to log in.
    let health = http_get(&http_addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(!health.contains("\"down\""), "{health}");
    let home = http_get(&http_addr, "/").await;
    assert!(
        home.starts_with("HTTP/1.1 303") && home.contains("location: /login"),
        "{home}"
    );
    // Open311 as a city would check its vendor: the conformance checks written
    // from the spec (tests/open311/check.py), with a key made by the operators' command.
    let made = run(linli("linli-gateway").args([
        "--database-url",
        &format!("sqlite://{}", gateway_db.display()),
        "--people-addr",
        &format!("http://{}", people.addr),
        "open311-key",
        "--name",
        "conformance",
        "--community",
        "双泉社区",
    ]));
    let api_key = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    // Then as a published client reads it (georeport, from PyPI; .ci/run installs it).
    for (script, done) in [
        ("open311/check.py", "every check passed"),
        (
            "open311/clients.py",
            "georeport reads linli in JSON and XML",
        ),
    ] {
        let ran = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
            .args([
                &format!("http://{http_addr}/open311/v2"),
                "--api-key",
                &api_key,
                "--jurisdiction",
                "421224100005",
            ])
            .output()
            .expect("python3 runs the Open311 scripts");
        let said = String::from_utf8_lossy(&ran.stdout);
        assert!(
            ran.status.success() && said.contains(done),
            "{script}: {said}{}",
            String::from_utf8_lossy(&ran.stderr)
        );
    }

    for (name, service) in [
        ("gateway", &mut gateway),
        ("issues", &mut issues),
        ("logistics", &mut logistics),
        ("people", &mut people),
    ] {
        let out = service.stop();
        assert!(out.status.success(), "{name} exit: {:?}", out.status);
        // JSON lines; one per request with its RPC, code, duration and trace id.
        let mut requests = 0;
        for line in out.log.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
            if v["target"] == "linli::request" {
                requests += 1;
                for field in ["rpc", "code", "duration_ms", "trace_id"] {
                    assert!(!v[field].is_null(), "{name}: no {field} in {line}");
                }
            }
            for personal in ["1390715999", "42122419500101999"] {
                assert!(
                    !line.contains(personal),
                    "{name} logged personal data: {line}"
                );
            }
        }
        assert!(requests > 0, "{name} logged no requests");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Prometheus text as series → value; every sample line must parse.
fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            (
                series.to_owned(),
                value.parse().unwrap_or_else(|_| panic!("{l}")),
            )
        })
        .collect()
}

/// The gateway's views, through the gateway process, as the demo accounts
/// logged in (and a supervisor of the one community, minted with the suite's
/// key): each view × each role × the community and another one made for it.
/// Every answer is judged against the gateway's policy and searched for the
/// other community's ids (none allowed).
async fn views_matrix(gateway: &Channel, keys: &linli_core::auth::Keys, community: &str) {
    use linli_core::testing::matrix::{Caller, Side, walk};
    let login = async |username: &str| demo_login(gateway, username).await;
    let admin = login("admin").await.access_token;
    let resident = login("chengguilan").await;
    let own_household = resident.identity.clone().unwrap().household_id;
    let supervisor = keys.sign(
        &linli_core::auth::Claims::new(
            "e2e-supervisor",
            linli_core::Role::Supervisor,
            Duration::from_secs(3600),
        )
        .community(community),
    );
    let callers = vec![
        Caller {
            role: linli_core::Role::Admin,
            token: admin.clone(),
        },
        Caller {
            role: linli_core::Role::Supervisor,
            token: supervisor,
        },
        Caller {
            role: linli_core::Role::CommunityWorker,
            token: login("wujing").await.access_token,
        },
        Caller {
            role: linli_core::Role::Cadre,
            token: login("ruanxf").await.access_token,
        },
        Caller {
            role: linli_core::Role::Resident,
            token: resident.access_token,
        },
    ];
    // Another community, with a household, made through the gateway.
    let mut people = PeopleServiceClient::new(gateway.clone());
    let town = people
        .get_place(linli_core::testing::with_token(
            ppb::GetPlaceRequest {
                place_id: community.into(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .place
        .unwrap()
        .parent_id;
    let other = people
        .create_place(linli_core::testing::with_token(
            ppb::CreatePlaceRequest {
                idempotency_key: "e2e-other".into(),
                kind: ppb::PlaceKind::Community as i32,
                parent_id: town,
                name: "月亮山社区".into(),
                code: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .place
        .unwrap()
        .id;
    let other_household = people
        .create_household(linli_core::testing::with_token(
            ppb::CreateHouseholdRequest {
                idempotency_key: "e2e-other-household".into(),
                community_id: other.clone(),
                address: "月亮山1栋101".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .household
        .unwrap()
        .id;
    let foreign = vec![other.clone(), other_household.clone()];
    let mut views = gpb::gateway_service_client::GatewayServiceClient::new(gateway.clone());
    let tally = walk(
        &linli_gateway::policy::POLICY,
        &callers,
        &foreign,
        async |rpc, side, token| {
            let (c, h) = match side {
                Side::Own => (community.to_owned(), own_household.clone()),
                Side::Other => (other.clone(), other_household.clone()),
            };
            match rpc {
                "GetCommunityDashboard" => views
                    .get_community_dashboard(linli_core::testing::with_token(
                        gpb::GetCommunityDashboardRequest {
                            community_id: c,
                            ..Default::default()
                        },
                        token,
                    ))
                    .await
                    .map(|r| format!("{:?}", r.into_inner())),
                "GetHouseholdProfile" => views
                    .get_household_profile(linli_core::testing::with_token(
                        gpb::GetHouseholdProfileRequest { household_id: h },
                        token,
                    ))
                    .await
                    .map(|r| format!("{:?}", r.into_inner())),
                "GetCountyOverview" => views
                    .get_county_overview(linli_core::testing::with_token(
                        gpb::GetCountyOverviewRequest {},
                        token,
                    ))
                    .await
                    .map(|r| format!("{:?}", r.into_inner())),
                "WatchCommunity" => {
                    let mut stream = views
                        .watch_community(linli_core::testing::with_token(
                            gpb::WatchCommunityRequest {
                                community_id: c,
                                after_cursor: String::new(),
                                from_now: false,
                            },
                            token,
                        ))
                        .await?
                        .into_inner();
                    let first =
                        tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
                    Ok(format!("{first:?}"))
                }
                other => panic!("no call for {other}"),
            }
        },
    )
    .await;
    tally.assert_clean();
}

/// The issues process is killed (SIGKILL) under six writers and started again
/// on its database: failures come fast and retryable, no acknowledged report is
/// lost, and a retry of every key after the restart gives one report per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_loses_no_acknowledged_write() {
    use linli_core::testing::writers::Writers;

    let dir = std::env::temp_dir().join(format!("linli-e2e-{}", linli_core::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (people_db, issues_db) = (dir.join("people.db"), dir.join("issues.db"));
    let keys = suite_keys();
    let admin = keys.sign(
        &linli_core::auth::Claims::new(
            "e2e-admin",
            linli_core::Role::Admin,
            Duration::from_secs(3600),
        )
        .county(),
    );
    run(linli("linli-people").args([
        "--database-url",
        &format!("sqlite://{}", people_db.display()),
        "seed",
        "--keep-demo-passwords",
    ]));
    let mut people = Service::start("linli-people", &people_db, &[]);
    let people_channel = people.channel("linli.people.v1.PeopleService").await;
    let people_url = format!("http://{}", people.addr);
    let mut issues = Service::start("linli-issues", &issues_db, &["--people-addr", &people_url]);
    issues.channel("linli.issues.v1.IssuesService").await;
    let community = PeopleServiceClient::new(people_channel)
        .list_places(linli_core::testing::with_token(
            ppb::ListPlacesRequest {
                kind: ppb::PlaceKind::Community as i32,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .places
        .remove(0)
        .id;
    // A channel that reconnects by itself, as a county system's would.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", issues.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    let (community_for, admin_for) = (community.clone(), admin.clone());
    let report = move |key: &str| {
        let (community, admin) = (&community_for, &admin_for);
        linli_core::testing::with_token(
            ipb::ReportIssueRequest {
                idempotency_key: key.into(),
                community_id: community.clone(),
                title: format!("路灯不亮 {key}"),
                category: ipb::Category::PublicSafety as i32,
                source: ipb::Source::Inspection as i32,
                ..Default::default()
            },
            admin,
        )
    };
    let create = {
        let (channel, report) = (channel.clone(), report.clone());
        move |key: String| {
            let (mut client, report) = (IssuesServiceClient::new(channel.clone()), report.clone());
            async move {
                client
                    .report_issue(report(&key))
                    .await
                    .map(|r| r.into_inner().issue.unwrap_or_default().id)
            }
        }
    };
    let retryable = &[
        tonic::Code::Unavailable,
        tonic::Code::Unknown,
        tonic::Code::Cancelled,
    ];
    let writers = Writers::start(
        6,
        Instant::now() + Duration::from_secs(6),
        retryable,
        create.clone(),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = writers.acknowledged();
    let child = issues.child.take().unwrap();
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let killed = child.wait_with_output().unwrap();
    assert!(!killed.status.success(), "killed, not stopped");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = linli("linli-issues")
        .args([
            "--database-url",
            &format!("sqlite://{}", issues_db.display()),
            "--people-addr",
            &people_url,
            "--listen",
            &issues.addr,
            "serve",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    issues.child = Some(restarted);
    issues.channel("linli.issues.v1.IssuesService").await;
    let seen = writers.finish().await;
    assert!(
        before_kill > 0 && seen.acked.len() > before_kill,
        "writes before and after the kill"
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
    let mut client = IssuesServiceClient::new(channel.clone());
    let mut listed = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_issues(linli_core::testing::with_token(
                ipb::ListIssuesRequest {
                    community_id: community.clone(),
                    title_contains: "路灯不亮 w".into(),
                    page_size: 500,
                    page_token,
                    ..Default::default()
                },
                &admin,
            ))
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
        "kill -9: {} keys, {} acknowledged ({before_kill} before the kill), slowest failure {:?}",
        seen.tried.len(),
        seen.acked.len(),
        seen.slowest_failure
    );
    drop(people.stop());
    let _ = std::fs::remove_dir_all(dir);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One dashboard call through the gateway is one trace: the gateway's span
/// is the caller's child, and the people, issues and logistics spans it
/// caused are the gateway's children, each exported by its own process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_call_is_one_trace_across_the_four_processes() {
    let collector = linli_core::testing::otlp::Collector::spawn().await;
    let endpoint = collector.endpoint.clone();

    let dir = std::env::temp_dir().join(format!("linli-e2e-{}", linli_core::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = |name: &str| dir.join(format!("{name}.db"));
    let url = |name: &str| format!("sqlite://{}", db(name).display());
    let _ = suite_keys();
    let otlp = ["--otlp-endpoint", endpoint.as_str()];
    run(linli("linli-people").args([
        "--database-url",
        &url("people"),
        "seed",
        "--keep-demo-passwords",
    ]));
    let mut people = Service::start("linli-people", &db("people"), &otlp);
    people.channel("linli.people.v1.PeopleService").await;
    let people_url = format!("http://{}", people.addr);
    for service in ["linli-issues", "linli-logistics"] {
        let name = service.trim_start_matches("linli-");
        run(linli(service).args([
            "--database-url",
            &url(name),
            "--people-addr",
            &people_url,
            "seed",
        ]));
    }
    let with_people = |extra: &[&'static str]| {
        let mut v = vec!["--people-addr".to_owned(), people_url.clone()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = with_people(&[]);
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(otlp);
    let mut issues = Service::start("linli-issues", &db("issues"), &all);
    let mut logistics = Service::start("linli-logistics", &db("logistics"), &all);
    issues.channel("linli.issues.v1.IssuesService").await;
    logistics
        .channel("linli.logistics.v1.LogisticsService")
        .await;
    let (i, l) = (
        format!("http://{}", issues.addr),
        format!("http://{}", logistics.addr),
    );
    let http = free_addr();
    let mut gateway = Service::start(
        "linli-gateway",
        &db("gateway"),
        &[
            "--people-addr",
            &people_url,
            "--issues-addr",
            &i,
            "--logistics-addr",
            &l,
            "--http-listen",
            &http,
            "--otlp-endpoint",
            &endpoint,
        ],
    );
    let channel = gateway.channel("linli.gateway.v1.GatewayService").await;

    let session = demo_login(&channel, "wujing").await;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "10f067aa0ba902b7";
    let mut req = tonic::Request::new(gpb::GetCommunityDashboardRequest::default());
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", session.access_token).parse().unwrap(),
    );
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    let dashboard = gpb::gateway_service_client::GatewayServiceClient::new(channel)
        .get_community_dashboard(req)
        .await
        .unwrap()
        .into_inner();
    assert!(dashboard.missing.is_empty(), "{:?}", dashboard.missing);

    // Stopping flushes what each process buffered.
    for (name, service) in [
        ("gateway", &mut gateway),
        ("issues", &mut issues),
        ("logistics", &mut logistics),
        ("people", &mut people),
    ] {
        assert!(service.stop().status.success(), "{name} stops cleanly");
    }
    let exported = collector.resource_spans();
    // (process, span name, span id, parent span id) of the spans in our trace.
    let mut ours = Vec::new();
    // The SQL each span ran, from its events.
    let mut statements: std::collections::HashMap<String, Vec<String>> = Default::default();
    for rs in &exported {
        let process = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .and_then(|a| a.value.as_ref())
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            if hex(&span.trace_id) == trace_id {
                ours.push((
                    process.clone(),
                    span.name.clone(),
                    hex(&span.span_id),
                    hex(&span.parent_span_id),
                ));
                for event in &span.events {
                    for a in event.attributes.iter().filter(|a| a.key == "db.statement") {
                        statements
                            .entry(span.name.clone())
                            .or_default()
                            .push(format!("{:?}", a.value));
                    }
                }
            }
        }
    }
    let in_process = |p: &str| ours.iter().filter(|s| s.0.contains(p)).collect::<Vec<_>>();
    let gateway_spans = in_process("linli-gateway");
    let root = gateway_spans
        .iter()
        .find(|s| s.1 == "linli.gateway.v1.GatewayService/GetCommunityDashboard")
        .unwrap_or_else(|| panic!("no gateway span in {ours:?}"));
    assert_eq!(
        root.3, caller_span,
        "the gateway's span is the caller's child"
    );
    for (process, rpc) in [
        (
            "linli-people",
            "linli.people.v1.PeopleService/GetCommunitySummary",
        ),
        (
            "linli-issues",
            "linli.issues.v1.IssuesService/GetStatistics",
        ),
        (
            "linli-logistics",
            "linli.logistics.v1.LogisticsService/GetCommunityReport",
        ),
    ] {
        let spans = in_process(process);
        let span = spans
            .iter()
            .find(|s| s.1 == rpc)
            .unwrap_or_else(|| panic!("no {rpc} span from {process} in {ours:?}"));
        assert_eq!(span.3, root.2, "{rpc} is a child of the gateway's span");
    }
    // And the database work under them: the statements, without their values.
    let sql = statements
        .get("linli.issues.v1.IssuesService/GetStatistics")
        .unwrap_or_else(|| panic!("no statements under GetStatistics: {statements:?}"));
    assert!(sql.iter().any(|s| s.contains("FROM issues")), "{sql:?}");
    let _ = std::fs::remove_dir_all(dir);
}
