//! `/metrics` of the HTTP side in the Prometheus text format: requests by
//! route and status with their latency (linli_core::metrics), and whether each
//! backend has a healthy replica. Counted in memory, per gateway process.
use axum::extract::{MatchedPath, Request, State as Extract};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use linli_core::metrics::{Gauge, Requests, render_gauges};

use super::State;

pub struct Metrics {
    requests: Requests,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Requests::new("linli_http", "route", "status"),
        }
    }
}

impl Metrics {
    pub fn observe(&self, route: &str, status: u16, seconds: f64) {
        self.requests.observe(route, &status.to_string(), seconds);
    }

    pub fn render(&self, backends: &[(&str, bool)]) -> String {
        let mut out = String::new();
        self.requests.render(&mut out);
        let up: Vec<Gauge> = backends
            .iter()
            .map(|(service, up)| {
                Gauge::new(
                    "linli_gateway_backend_up",
                    "Whether a service has a healthy replica (1) or none (0).",
                    f64::from(u8::from(*up)),
                )
                .label("service", *service)
            })
            .collect();
        render_gauges(&up, &mut out);
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
    let started = std::time::Instant::now();
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
    fn routes_and_backends_are_shown() {
        let m = Metrics::default();
        m.observe("/c/{community_id}", 200, 0.02);
        m.observe("/c/{community_id}", 404, 3.0);
        let text = m.render(&[("linli.issues.v1.IssuesService", false)]);
        assert!(
            text.contains(
                "linli_http_requests_total{route=\"/c/{community_id}\",status=\"200\"} 1"
            )
        );
        assert!(
            text.contains(
                "linli_http_requests_total{route=\"/c/{community_id}\",status=\"404\"} 1"
            )
        );
        assert!(text.contains(
            "linli_http_request_duration_seconds_bucket{route=\"/c/{community_id}\",le=\"+Inf\"} 2"
        ));
        assert!(
            text.contains("linli_gateway_backend_up{service=\"linli.issues.v1.IssuesService\"} 0")
        );
    }
}
