//! The `linli-gateway` binary: its settings are documented and checked.
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_linli-gateway");

#[test]
fn help_documents_every_setting() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "LINLI_LISTEN",
        "DATABASE_URL",
        "LINLI_PEOPLE_ADDR",
        "LINLI_ISSUES_ADDR",
        "LINLI_LOGISTICS_ADDR",
        "LINLI_PART_TIMEOUT_MS",
        "LINLI_ACCESS_TTL_SECS",
        "LINLI_REFRESH_TTL_SECS",
        "LINLI_CALL_TIMEOUT_MS",
        "LINLI_HTTP_LISTEN",
        "LINLI_SECURE_COOKIES",
    ] {
        assert!(help.contains(var), "--help does not mention {var}");
    }
}

#[test]
fn bad_settings_are_refused_before_serving() {
    for (flag, value, says) in [
        ("--access-ttl-secs", "86400", "access_ttl_secs"),
        ("--issues-addr", "localhost:50052", "issues_addr"),
        ("--part-timeout-ms", "0", "part_timeout_ms"),
        ("--http-listen", "not-an-address", "http_listen"),
    ] {
        let out = Command::new(BIN)
            .args([flag, value, "--database-url", "sqlite::memory:", "migrate"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{flag}: {stderr}");
    }
}
