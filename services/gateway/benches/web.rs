//! Server time of the dashboard's pages with the demo data: the community
//! page, its live part, its JSON, the county page; beside, in the same run,
//! what they are built from (the GetCommunityDashboard view over gRPC) and
//! the HTTP side's floor (`/healthz`). `make bench-web` runs it on a release
//! build; under `cargo test` it runs a few rounds only, to stay working.
//!
//! Server time is read from the gateway's own `/metrics` histogram sums (time
//! from request to response head), client time from the loopback round trip.
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Suite;
use common::http;
use linli_core::testing::Backend;

struct Sample {
    name: &'static str,
    times: Vec<Duration>,
}

impl Sample {
    fn pct(&self, q: f64) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t[((q * t.len() as f64).ceil() as usize).clamp(1, t.len()) - 1]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The mean server time of a route from the gateway's metrics, in ms.
fn server_ms(metrics: &str, route: &str) -> Option<f64> {
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{route=\"{route}\"}}")))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    let sum = value("linli_http_request_duration_seconds_sum")?;
    let count = value("linli_http_request_duration_seconds_count")?;
    Some(sum / count * 1000.0)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds: usize = if bench {
        std::env::var("LINLI_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(200)
    } else {
        3
    };
    let backend = match std::env::var("LINLI_BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(backend, rounds));
}

async fn run(backend: Backend, rounds: usize) {
    let s = Suite::start(backend).await;
    let addr = s.web;
    let cookie = http::login(addr, "wujing").await;
    let supervisor = http::login(addr, "supervisor").await;
    let home = http::get(addr, "/", &[("cookie", &cookie)]).await;
    let page = home.header("location").unwrap().to_owned();
    let community_id = page.trim_start_matches("/c/").to_owned();
    let token = s.login("wujing").await.access_token;
    let mut views =
        linli_proto::gateway::v1::gateway_service_client::GatewayServiceClient::new(s.channel());

    let targets: [(&'static str, String, &str); 5] = [
        ("community page", page.clone(), &cookie),
        ("live part", format!("{page}/live"), &cookie),
        (
            "dashboard JSON",
            format!("/api/v1/communities/{community_id}/dashboard"),
            &cookie,
        ),
        ("county page", "/county".into(), &supervisor),
        ("/healthz (floor)", "/healthz".into(), &cookie),
    ];
    let mut samples = Vec::new();
    for (name, path, who) in &targets {
        // Warm up: connections to the services, caches, the session lookup.
        for _ in 0..3 {
            assert_eq!(http::get(addr, path, &[("cookie", who)]).await.status, 200);
        }
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            let r = http::get(addr, path, &[("cookie", who)]).await;
            times.push(started.elapsed());
            assert_eq!(r.status, 200, "{name}");
        }
        samples.push(Sample { name, times });
    }
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds + 3 {
        let started = Instant::now();
        views
            .get_community_dashboard(common::with_token(
                linli_proto::gateway::v1::GetCommunityDashboardRequest {
                    community_id: community_id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap();
        times.push(started.elapsed());
    }
    times.drain(..3);
    samples.push(Sample {
        name: "GetCommunityDashboard over gRPC",
        times,
    });

    let metrics = http::get(addr, "/metrics", &[]).await.body;
    let routes = [
        "/c/{community_id}",
        "/c/{community_id}/live",
        "/api/v1/communities/{community_id}/dashboard",
        "/county",
        "/healthz",
    ];
    println!(
        "\nlinli dashboard pages, {} backend, demo data (双泉社区: 408 households, 1,258 residents), {rounds} sequential requests each",
        match backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>13}",
        "", "p50 ms", "p95 ms", "p99 ms", "max ms", "server ms"
    );
    for (i, s) in samples.iter().enumerate() {
        let server = routes
            .get(i)
            .and_then(|r| server_ms(&metrics, r))
            .map_or("—".to_owned(), |m| format!("{m:.2} mean"));
        println!(
            "{:<34} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>13}",
            s.name,
            ms(s.pct(0.5)),
            ms(s.pct(0.95)),
            ms(s.pct(0.99)),
            ms(s.pct(1.0)),
            server
        );
    }
    let page = &samples[0];
    let view = samples.last().unwrap();
    println!(
        "\ncommunity page p50 / its view's p50 over gRPC: {:.2}× (what rendering, the session and the names lookup add)",
        ms(page.pct(0.5)) / ms(view.pct(0.5))
    );
    let target = 100.0;
    let server = server_ms(&metrics, routes[0]).unwrap_or(f64::NAN);
    println!(
        "community page server time: mean {server:.2} ms, p99 round trip {:.2} ms; target under {target} ms: {}",
        ms(page.pct(0.99)),
        if ms(page.pct(0.99)) < target {
            "met"
        } else {
            "MISSED"
        }
    );
}
