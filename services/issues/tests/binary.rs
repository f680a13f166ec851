//! The `linli-issues` program as an operator runs it: its settings, starting
//! while the people service is still down, and a clean stop on SIGTERM.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use linli_proto::issues::v1 as pb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_linli-issues");

#[test]
fn help_documents_every_setting() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "LINLI_LISTEN",
        "DATABASE_URL",
        "LINLI_PEOPLE_ADDR",
        "LINLI_SUPERVISION_INTERVAL_SECS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "LINLI_CONFIG",
    ] {
        assert!(help.contains(var), "--help does not mention {var}");
    }
    let bad = Command::new(BIN)
        .args(["--supervision-interval-secs", "0", "migrate"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("supervision_interval_secs"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn starts_without_people_and_answers_unavailable() {
    let dir = std::env::temp_dir().join(format!("linli-issues-bin-{}", linli_core::new_id()));
    let url = format!("sqlite://{}/issues.db", dir.display());
    let addr = format!("127.0.0.1:{}", free_port());
    // Nothing listens on the people address.
    let people = format!("http://127.0.0.1:{}", free_port());
    // The issuer (the gateway) holds its key; the service is given only the public half.
    let issuer = linli_core::auth::Keys::generate_parts(&[linli_core::auth::ISSUER]);
    issuer.write_public(&dir.join("keys")).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--database-url",
            &url,
            "--listen",
            &addr,
            "--people-addr",
            &people,
            "serve",
        ])
        .env("LINLI_KEYS_DIR", dir.join("keys"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "the service did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "linli.issues.v1.IssuesService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let report = pb::ReportIssueRequest {
        idempotency_key: "k1".into(),
        community_id: linli_core::new_id(),
        title: "路灯不亮".into(),
        category: pb::Category::PublicSafety as i32,
        source: pb::Source::Hotline as i32,
        ..Default::default()
    };
    // The service made its own key on first start, and no other part's.
    assert!(dir.join("keys/issues.key.pem").exists());
    assert!(dir.join("keys/issues.pub.pem").exists());
    assert!(!dir.join("keys/issuer.key.pem").exists());
    let admin = issuer.sign(
        &linli_core::auth::Claims::new("test", linli_core::Role::Admin, Duration::from_secs(60))
            .county(),
    );
    let err = IssuesServiceClient::new(channel.clone())
        .report_issue(linli_core::testing::with_token(report, &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let listed = IssuesServiceClient::new(channel)
        .list_issues(linli_core::testing::with_token(
            pb::ListIssuesRequest::default(),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.issues.is_empty());

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert!(String::from_utf8_lossy(&out.stderr).contains("issues service stopped"));
    let _ = std::fs::remove_dir_all(dir);
}
