//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, from Debian's `chromium-driver`). A community worker logs
//! in and sees her community's figures; an issue reported through Open311
//! appears on the open page without a reload; a supervisor reads the county;
//! a resident sees only her household; another community's page is a 404.
//! Screenshots of each page go to `target/screenshots/` (`make screenshots`
//! copies them into docs/).
//!
//! Needs `chromium` and `chromedriver` on the PATH (or LINLI_CHROMEDRIVER /
//! LINLI_CHROMIUM): without them this test fails, it never skips.
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use common::Suite;
use common::http;
use linli_core::testing::Backend;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(15);

/// A WebDriver session in headless Chromium.
struct Browser {
    driver: SocketAddr,
    session: String,
    child: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The browsers chromedriver started carry this session's profile directory
        // on their command line: end exactly those, also when the test failed half-way.
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self.profile.display().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    async fn start() -> Browser {
        let chromedriver =
            std::env::var("LINLI_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let chromium =
            std::env::var("LINLI_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {chromedriver} ({e}): install Debian's chromium and chromium-driver (the browser test never skips)"
                )
            });
        let driver: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if tokio::net::TcpStream::connect(driver).await.is_ok()
                && http::get(driver, "/status", &[]).await.json()["value"]["ready"] == true
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!("linli-chromium-{}", linli_core::new_id()));
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-quic", "--window-size=1280,1800", "--lang=zh-CN",
                    // Nothing but the suite on loopback: no name is looked up, no
                    // background service phones home, no crash report is sent.
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                    "--no-pings", "--disable-breakpad", "--disable-domain-reliability",
                    "--disable-client-side-phishing-detection", "--disable-default-apps",
                    "--disable-extensions", "--metrics-recording-only",
                    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let r = post(driver, "/session", &caps).await;
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Browser {
            driver,
            session,
            child,
            profile,
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let bytes = serde_json::to_vec(&body).unwrap();
        let r = http::request(
            self.driver,
            method,
            &path,
            &[("content-type", "application/json")],
            if method == "GET" { b"" } else { &bytes },
        )
        .await;
        let v = r.json();
        assert_eq!(r.status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    async fn url(&self) -> String {
        self.cmd("GET", "/url", json!({}))
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.cmd("GET", &format!("/element/{id}/text"), json!({}))
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn script(&self, js: &str) -> Value {
        self.cmd("POST", "/execute/sync", json!({ "script": js, "args": [] }))
            .await
    }

    /// Waits (polling the page) until `js` returns true.
    async fn until(&self, what: &str, js: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.script(js).await != Value::Bool(true) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {WAIT:?} for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({ "width": width, "height": height }),
        )
        .await;
    }

    /// Ends the session, closing the browser.
    async fn quit(&self) {
        let path = format!("/session/{}", self.session);
        http::request(self.driver, "DELETE", &path, &[], b"").await;
    }

    async fn screenshot(&self, name: &str) {
        use base64::Engine;
        let png = self.cmd("GET", "/screenshot", json!({})).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    async fn login(&self, web: SocketAddr, username: &str) {
        self.go(&format!("http://{web}/login")).await;
        self.type_into("#username", username).await;
        self.type_into("#password", common::PASSWORD).await;
        self.click("#login").await;
        self.until(
            "the login to land",
            "return !location.pathname.startsWith('/login')",
        )
        .await;
    }

    async fn logout(&self) {
        self.click("form.inline button").await;
        self.until("the logout", "return location.pathname === '/login'")
            .await;
    }
}

async fn post(addr: SocketAddr, path: &str, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).unwrap();
    http::request(
        addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        &bytes,
    )
    .await
    .json()
}

fn screenshots_dir() -> PathBuf {
    std::env::var_os("LINLI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let s = Suite::start(Backend::Sqlite).await;
    let web = s.web;
    let b = Browser::start().await;

    // The community worker logs in and lands on her community with its figures.
    b.login(web, "wujing").await;
    let path = b.script("return location.pathname").await;
    let community_id = path
        .as_str()
        .and_then(|p| p.strip_prefix("/c/"))
        .unwrap_or_else(|| panic!("landed on {path}"))
        .to_owned();
    let dashboard = s.dashboard_as("wujing", &community_id).await;
    assert!(b.text("h1").await.contains("双泉社区"));
    let people = dashboard.people.clone().unwrap();
    assert_eq!(
        b.text("#fig-households").await,
        people.households.to_string()
    );
    assert_eq!(b.text("#fig-residents").await, people.residents.to_string());
    assert_eq!(
        b.text("#fig-open").await,
        dashboard.issues.as_ref().unwrap().open_issues.to_string()
    );
    b.screenshot("community").await;

    // Live: the page is listening; a report through Open311 shows up without a reload.
    b.until(
        "the live stream to connect",
        "return document.getElementById('live-status').className === 'live on'",
    )
    .await;
    b.script("window.linliMarker = 42; return true").await;
    let key = linli_gateway::web::open311::add_key(&s.gateway_store, "browser-test", &community_id)
        .await
        .unwrap();
    let made = http::post_form(
        web,
        "/open311/v2/requests.json",
        &[],
        &[
            ("api_key", key.as_str()),
            ("service_code", "drainage"),
            ("description", "二号楼单元门口积水"),
            ("address_string", "双泉社区二号楼"),
        ],
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.json()[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.until(
        "the reported issue on the open list",
        "return document.getElementById('open-issues').textContent.includes('二号楼单元门口积水')",
    )
    .await;
    assert_eq!(
        b.script("return window.linliMarker").await,
        json!(42),
        "the page was updated in place, not reloaded"
    );
    let open_after = dashboard.issues.as_ref().unwrap().open_issues + 1;
    assert_eq!(b.text("#fig-open").await, open_after.to_string());
    b.screenshot("community-live").await;

    // A phone-sized window, and English.
    b.size(390, 2400).await;
    b.go(&format!("http://{web}/c/{community_id}?lang=en"))
        .await;
    assert!(b.text("body").await.contains("Households"));
    b.screenshot("community-phone-en").await;
    b.go(&format!("http://{web}/c/{community_id}?lang=zh"))
        .await;
    b.size(1280, 1800).await;

    // The issue's page, with its timeline.
    b.go(&format!("http://{web}/issues/{id}")).await;
    assert!(b.text("h1").await.contains("二号楼单元门口积水"));
    assert!(b.text("#timeline").await.contains("上报"));
    // For the pictures, an issue further along: the first overdue one someone claimed.
    let worked = dashboard
        .overdue_issues
        .iter()
        .filter_map(|o| o.issue.as_ref())
        .find(|i| i.claim.is_some())
        .expect("a claimed overdue issue in the demo data");
    b.go(&format!("http://{web}/issues/{}", worked.id)).await;
    assert!(b.text("#timeline").await.contains("认领"));
    b.screenshot("issue").await;

    // Another community's page is not there.
    b.go(&format!(
        "http://{web}/c/0190c0de-0000-7000-8000-000000000000"
    ))
    .await;
    assert!(b.text("h1").await.starts_with("404"));

    // A household the worker looks after.
    let household = &dashboard.visit_compliance.as_ref().unwrap().entries[0];
    b.go(&format!("http://{web}/h/{}", household.household_id))
        .await;
    assert_eq!(b.text("#household-address").await, household.address);
    b.screenshot("household").await;
    b.logout().await;

    // The supervisor reads the county.
    b.login(web, "supervisor").await;
    assert_eq!(b.url().await, format!("http://{web}/county"));
    assert!(b.text("#county").await.contains("双泉社区"));
    b.screenshot("county").await;
    b.logout().await;

    // A resident sees only her household.
    b.login(web, "chengguilan").await;
    let own = b.script("return location.pathname").await;
    let own = own.as_str().unwrap().to_owned();
    assert!(own.starts_with("/h/"), "{own}");
    assert!(!b.text("body").await.contains("全县"));
    b.screenshot("resident").await;
    b.go(&format!("http://{web}/c/{community_id}")).await;
    assert!(b.text("h1").await.starts_with("403"));
    b.go(&format!("http://{web}/h/{}", household.household_id))
        .await;
    if format!("/h/{}", household.household_id) != own {
        assert!(b.text("h1").await.starts_with("404"));
    }
    b.quit().await;
}
