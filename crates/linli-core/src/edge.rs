//! The first layer every request meets, for two things gRPC leaves to the server:
//!
//! - **Load shedding.** At most `max_concurrent_requests` are worked on at once,
//!   across all connections; one more is refused at once with
//!   `RESOURCE_EXHAUSTED` rather than queued, so a burst cannot build a queue
//!   that makes every caller late. Health checks are not counted and never
//!   refused: a busy server is still alive and must not look dead to its
//!   orchestrator.
//! - **Bad bodies named as such.** tonic answers a body that is not the
//!   request's protobuf with `INTERNAL`, and one over the size limit with
//!   `OUT_OF_RANGE`. Both are the caller's doing: they are answered
//!   `INVALID_ARGUMENT` and `RESOURCE_EXHAUSTED` (what gRPC clients expect of
//!   an oversized message), with tonic's own description kept.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Instant;

use http::HeaderValue;
use tokio::sync::Semaphore;
use tonic::Status;
use tracing::Instrument;

use crate::metrics::{Requests, code_name};

/// The largest request message a service decodes: tonic's default, 4 MiB.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct EdgeLayer {
    permits: Arc<Semaphore>,
    requests: Arc<Requests>,
}

impl EdgeLayer {
    pub fn new(max_concurrent_requests: usize) -> EdgeLayer {
        EdgeLayer::counting(
            max_concurrent_requests,
            Arc::new(Requests::new("linli_grpc_server", "rpc", "code")),
        )
    }

    /// Also counts every request, by RPC and code, into `requests`.
    pub fn counting(max_concurrent_requests: usize, requests: Arc<Requests>) -> EdgeLayer {
        EdgeLayer {
            permits: Arc::new(Semaphore::new(max_concurrent_requests)),
            requests,
        }
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;
    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            permits: self.permits.clone(),
            requests: self.requests.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    permits: Arc<Semaphore>,
    requests: Arc<Requests>,
}

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
/// Calls every process makes on a timer (see `crate::ended`).
const ROUTINE: [&str; 1] = ["/linli.people.v1.PeopleService/ListEndedSessions"];

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Edge<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        // The service polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        // Only RPCs some service declares are named: any caller can send any path.
        let rpc = crate::metrics::rpc_label(req.uri().path()).to_owned();
        let health = rpc.starts_with(HEALTH_PREFIX);
        let caller_trace = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split('-').nth(1))
            .map(str::to_owned);
        let requests = self.requests.clone();
        let permit = if health {
            None
        } else {
            match self.permits.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let status = Status::resource_exhausted(
                        "the server is at its limit of requests in flight; retry with backoff",
                    );
                    observe(
                        &requests,
                        &rpc,
                        status.code(),
                        started,
                        caller_trace,
                        health,
                    );
                    return Box::pin(async { Ok(status.into_http()) });
                }
            }
        };
        Box::pin(async move {
            // The handler runs on its own task, to the end, even if the caller
            // goes (a deadline passed, a reset): dropped in the middle of a
            // query, it would take its database connection with it, and under
            // load the pool would spend its time opening new ones. It holds
            // its permit to the end, so abandoned work still counts.
            let work = async move {
                let resp = inner.call(req).await;
                drop(permit);
                resp
            };
            let mut resp = match tokio::spawn(work.in_current_span()).await {
                Ok(resp) => resp?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Status::unavailable("the server is shutting down").into_http(),
            };
            rename_decode_errors(&mut resp);
            // Errors come trailers-only, their code in the head; a head without one is OK
            // (a stream's own end is not waited for).
            let code = resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from_i32);
            observe(&requests, &rpc, code, started, caller_trace, health);
            Ok(resp)
        })
    }
}

/// Counts a request and writes its one log line: the RPC, its code, how long
/// it took, and its trace id. Never its message: that is where personal data is.
fn observe(
    requests: &Requests,
    rpc: &str,
    code: tonic::Code,
    started: Instant,
    caller_trace: Option<String>,
    health: bool,
) {
    let elapsed = started.elapsed();
    let name = code_name(code);
    requests.observe(rpc, name, elapsed.as_secs_f64());
    if health || (code == tonic::Code::Ok && ROUTINE.contains(&rpc)) {
        // Probes come every second from every balancer, and every process reads
        // what ended every ten seconds: counted, and logged only when they fail.
        return;
    }
    let trace_id = crate::telemetry::current_trace_id()
        .or(caller_trace)
        .unwrap_or_default();
    tracing::info!(
        target: "linli::request",
        rpc,
        code = name,
        duration_ms = (elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
        trace_id = %trace_id,
        "request"
    );
}

/// Rewrites tonic's codes for undecodable and oversized request messages.
/// Both come back before any handler runs, as trailers-only responses, so
/// their status is in the response headers.
fn rename_decode_errors<B>(resp: &mut http::Response<B>) {
    let headers = resp.headers();
    let (Some(status), Some(message)) = (headers.get("grpc-status"), headers.get("grpc-message"))
    else {
        return;
    };
    let message = message.as_bytes();
    let code = match status.as_bytes() {
        b"13" if message.starts_with(b"failed%20to%20decode%20Protobuf%20message") => "3",
        b"11" if message.starts_with(b"Error,%20decoded%20message%20length%20too%20large") => "8",
        _ => return,
    };
    resp.headers_mut()
        .insert("grpc-status", HeaderValue::from_static(code));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: &str, message: &str) -> http::Response<()> {
        let mut resp = http::Response::new(());
        resp.headers_mut()
            .insert("grpc-status", HeaderValue::from_str(status).unwrap());
        resp.headers_mut()
            .insert("grpc-message", HeaderValue::from_str(message).unwrap());
        resp
    }

    #[test]
    fn decode_errors_become_the_callers_fault() {
        let mut r = response("13", "failed%20to%20decode%20Protobuf%20message:%20x");
        rename_decode_errors(&mut r);
        assert_eq!(r.headers()["grpc-status"], "3");
        let mut r = response(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found",
        );
        rename_decode_errors(&mut r);
        assert_eq!(r.headers()["grpc-status"], "8");
        // Anything else is left alone.
        let mut r = response("13", "database%20is%20on%20fire");
        rename_decode_errors(&mut r);
        assert_eq!(r.headers()["grpc-status"], "13");
    }

    #[tokio::test]
    async fn past_the_limit_requests_are_shed_at_once_but_health_is_not() {
        use tower::{Layer, Service, ServiceExt};
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let release = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
        // Holds the first request until released; answers the rest at once.
        let inner = tower::service_fn(move |req: http::Request<()>| {
            let release = release.clone();
            async move {
                let held = match req.uri().path() {
                    "/slow" => release.lock().await.take(),
                    _ => None,
                };
                if let Some(rx) = held {
                    let _ = rx.await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(String::from("done")))
            }
        });
        let mut edge = EdgeLayer::new(1).layer(inner);
        let get = |path: &str| http::Request::get(path).body(()).unwrap();
        let first = tokio::spawn(edge.clone().oneshot(get("/slow")));
        // Let the first take the only permit.
        tokio::task::yield_now().await;
        while edge.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let shed = edge
            .ready()
            .await
            .unwrap()
            .call(get("/linli.people.v1.PeopleService/ListPlaces"))
            .await
            .unwrap();
        assert_eq!(shed.headers()["grpc-status"], "8");
        let health = edge
            .ready()
            .await
            .unwrap()
            .call(get("/grpc.health.v1.Health/Check"))
            .await
            .unwrap();
        assert_eq!(health.body(), "done");
        release_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap().body(), "done");
        // The permit is back.
        let after = edge.ready().await.unwrap().call(get("/x")).await.unwrap();
        assert_eq!(after.body(), "done");
    }
}
