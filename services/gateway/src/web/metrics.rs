//! `/metrics` in the Prometheus text format: the HTTP side's requests by
//! route and status, their latency as a histogram, and whether each backend
//! has a healthy replica. Counted in memory, per gateway process.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State as Extract};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::State;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Route>>,
}

impl Metrics {
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let r = routes.entry(route.to_owned()).or_default();
        *r.by_status.entry(status).or_default() += 1;
        r.count += 1;
        r.sum += seconds;
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                r.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self, backends: &[(&str, bool)]) -> String {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str(
            "# HELP linli_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE linli_http_requests_total counter\n");
        for (route, r) in routes.iter() {
            for (status, n) in &r.by_status {
                let _ = writeln!(
                    out,
                    "linli_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP linli_http_request_duration_seconds Time to answer an HTTP request (to the first byte of a stream).\n");
        out.push_str("# TYPE linli_http_request_duration_seconds histogram\n");
        for (route, r) in routes.iter() {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "linli_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {}",
                    r.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "linli_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                r.count
            );
            let _ = writeln!(
                out,
                "linli_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                r.sum
            );
            let _ = writeln!(
                out,
                "linli_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                r.count
            );
        }
        out.push_str("# HELP linli_gateway_backend_up Whether a service has a healthy replica (1) or none (0).\n");
        out.push_str("# TYPE linli_gateway_backend_up gauge\n");
        for (service, up) in backends {
            let _ = writeln!(
                out,
                "linli_gateway_backend_up{{service=\"{service}\"}} {}",
                u8::from(*up)
            );
        }
        out
    }
}

/// Counts every request by its route pattern (not its path: ids would make
/// a series per record).
pub async fn track(Extract(state): Extract<State>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let resp = next.run(req).await;
    state.metrics.observe(
        &route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

pub async fn scrape(Extract(state): Extract<State>) -> Response {
    let backends = [
        (state.people.service(), state.people.is_up()),
        (state.issues.service(), state.issues.is_up()),
        (state.logistics.service(), state.logistics.is_up()),
    ];
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&backends),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_add_up() {
        let m = Metrics::default();
        m.observe("/c/{community_id}", 200, 0.02);
        m.observe("/c/{community_id}", 200, 0.2);
        m.observe("/c/{community_id}", 404, 3.0);
        let text = m.render(&[("linli.issues.v1.IssuesService", false)]);
        assert!(
            text.contains(
                "linli_http_requests_total{route=\"/c/{community_id}\",status=\"200\"} 2"
            )
        );
        assert!(
            text.contains(
                "linli_http_requests_total{route=\"/c/{community_id}\",status=\"404\"} 1"
            )
        );
        assert!(text.contains(
            "linli_http_request_duration_seconds_bucket{route=\"/c/{community_id}\",le=\"0.025\"} 1"
        ));
        assert!(text.contains(
            "linli_http_request_duration_seconds_bucket{route=\"/c/{community_id}\",le=\"0.25\"} 2"
        ));
        assert!(text.contains(
            "linli_http_request_duration_seconds_bucket{route=\"/c/{community_id}\",le=\"+Inf\"} 3"
        ));
        assert!(
            text.contains("linli_gateway_backend_up{service=\"linli.issues.v1.IssuesService\"} 0")
        );
    }
}
