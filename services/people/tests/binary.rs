//! The `linli-people` program as an operator runs it: help, bad settings,
//! seed and import, serving health and reflection, and a clean stop on SIGTERM.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use linli_proto::people::v1 as pb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const BIN: &str = env!("CARGO_BIN_EXE_linli-people");

fn temp_db() -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("linli-bin-{}", linli_core::new_id()));
    let url = format!("sqlite://{}/people.db", dir.display());
    (dir, url)
}

#[test]
fn help_documents_every_setting() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "LINLI_CONFIG",
        "LINLI_LISTEN",
        "DATABASE_URL",
        "LINLI_LOG_FORMAT",
        "LINLI_DRAIN_TIMEOUT_SECS",
        "LINLI_REQUEST_TIMEOUT_SECS",
        "LINLI_MAX_CONCURRENT_REQUESTS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "LINLI_UTC_OFFSET",
    ] {
        assert!(help.contains(var), "--help does not mention {var}:\n{help}");
    }
    for command in ["serve", "migrate", "import", "seed"] {
        assert!(help.contains(command), "--help does not mention {command}");
    }
}

#[test]
fn bad_settings_stop_with_a_clear_message() {
    let out = Command::new(BIN)
        .args(["--database-url", "mysql://localhost/people", "migrate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must start with sqlite:// or postgres://"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("linli-cfg-{}", linli_core::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("people.toml");
    std::fs::write(&config, "listne = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listne"), "{err}");
    std::fs::write(
        &config,
        "[[care_policy.rules]]\nname = \"x\"\nlevel = \"watch\"\nevery_days = 0\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("every_days"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn seed_then_import_the_example_changes_nothing() {
    let (dir, url) = temp_db();
    let out = Command::new(BIN)
        .args(["--database-url", &url, "seed"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("1258 residents"), "{said}");

    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/bajiaoting-roster.csv"
    );
    let out = Command::new(BIN)
        .args([
            "--database-url",
            &url,
            "import",
            "--community",
            "双泉社区",
            example,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("1258 rows: 0 households (0 residents) imported, 408 households (1258 residents) already there"), "{said}");

    let out = Command::new(BIN)
        .args([
            "--database-url",
            &url,
            "import",
            "--community",
            "no such place",
            example,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn serves_health_and_reflection_and_stops_on_sigterm() {
    let (dir, url) = temp_db();
    // The program takes its address from its settings; borrow a free port for it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args([
            "--database-url",
            &url,
            "--listen",
            &addr,
            "--log-format",
            "json",
            "serve",
        ])
        .env("LINLI_KEYS_DIR", dir.join("keys"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait for health to say SERVING, for at most 20 seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    let channel = loop {
        if let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            break ch;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not start listening"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the service exited early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: "linli.people.v1.PeopleService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let overall = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(overall, ServingStatus::Serving as i32);

    // The API itself wants a token: none, or one signed by another key, is refused;
    // one from the operator's `token` command is accepted.
    let mut people = PeopleServiceClient::new(channel.clone());
    let list = || pb::ListPlacesRequest::default();
    let anonymous = people.list_places(list()).await.unwrap_err();
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "{anonymous:?}"
    );
    let foreign = linli_core::testing::token(linli_core::Role::Admin, None);
    let forged = people
        .list_places(linli_core::testing::with_token(list(), &foreign))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), tonic::Code::Unauthenticated, "{forged:?}");
    // The service holds its own key only: an operator's token needs the issuer's,
    // and without it the command says so and makes nothing.
    let token_cmd = || {
        let mut cmd = Command::new(BIN);
        cmd.args(["token", "--role", "admin"])
            .env("LINLI_KEYS_DIR", dir.join("keys"))
            .env_remove("LINLI_DATABASE_URL");
        cmd
    };
    let out = token_cmd().output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("no issuer key at"),
        "{said}"
    );
    // Run from another folder with no settings: no key, no database made there.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = Command::new(BIN)
        .args(["token", "--role", "admin"])
        .current_dir(&elsewhere)
        .env_remove("LINLI_KEYS_DIR")
        .env_remove("LINLI_DATABASE_URL")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("LINLI_KEYS_DIR"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "it made files"
    );
    // Its help lists its own flags, not the server's.
    let help = Command::new(BIN)
        .args(["token", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--role") && help.contains("--keys-dir"),
        "{help}"
    );
    assert!(
        !help.contains("--listen") && !help.contains("--max-connections"),
        "{help}"
    );

    linli_core::keyring::init_dir(&dir.join("keys")).unwrap();
    let out = token_cmd().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    people
        .list_places(linli_core::testing::with_token(list(), token.trim()))
        .await
        .expect("a token from `linli-people token` is accepted");

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected {response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "linli.people.v1.PeopleService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.starts_with("linli.issues")),
        "only what this server serves is advertised: {names:?}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // For the shutdown grace (2 s by default) the server still answers, and health
    // says NOT_SERVING, so balancers move traffic away before the listener closes.
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = loop {
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("still serving during the grace period")
            .into_inner()
            .status;
        if status == ServingStatus::NotServing as i32 || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, ServingStatus::NotServing as i32);
    // The listener is still open: a new connection is accepted and told the same.
    let fresh = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("the listener stays open during the grace period");
    let status = HealthClient::new(fresh)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::NotServing as i32);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("draining requests in flight") && log.contains("people service stopped"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
