//! One domain service as the gateway sees it: a set of replicas, each probed
//! for health in the background. A call goes to the next healthy replica in
//! turn; a replica that cannot be reached is marked down and the call moves
//! to the next, so a killed replica costs no failed request. When no replica
//! is healthy the call fails at once with UNAVAILABLE instead of waiting on a
//! dead address, and the probes bring replicas back as soon as they answer.
//!
//! `Backend` is a tower service over HTTP/2 gRPC requests, so the same path
//! serves the generic forwarding of whole APIs and the typed clients of the
//! aggregated views.
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceExt;

/// The largest request body the gateway buffers to pass on (gRPC's usual 4 MiB).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// How long to wait for a TCP connection to a replica.
    pub connect_timeout: Duration,
    /// How often each replica is asked for its health, and how long it has to answer.
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings {
            connect_timeout: Duration::from_secs(1),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
        }
    }
}

/// A domain service's replicas. Cheap to clone.
#[derive(Clone)]
pub struct Backend {
    inner: Arc<Inner>,
}

struct Inner {
    /// The gRPC service name, e.g. `linli.people.v1.PeopleService`.
    service: &'static str,
    replicas: Vec<Replica>,
    next: AtomicUsize,
}

struct Replica {
    addr: String,
    channel: Channel,
    healthy: AtomicBool,
}

impl Backend {
    /// A backend for `service` at each of `addrs` (`http://host:port`). Connections
    /// are made on first use, so the gateway starts while a backend is down.
    pub fn new(
        service: &'static str,
        addrs: &[String],
        settings: &BackendSettings,
    ) -> anyhow::Result<Backend> {
        if addrs.is_empty() {
            anyhow::bail!("{service}: no address given");
        }
        let replicas = addrs
            .iter()
            .map(|addr| {
                let channel = Endpoint::from_shared(addr.clone())
                    .map_err(|e| anyhow::anyhow!("{service} address {addr:?}: {e}"))?
                    .connect_timeout(settings.connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .connect_lazy();
                Ok(Replica {
                    addr: addr.clone(),
                    channel,
                    // Assumed up until a probe or a call says otherwise.
                    healthy: AtomicBool::new(true),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Backend {
            inner: Arc::new(Inner {
                service,
                replicas,
                next: AtomicUsize::new(0),
            }),
        })
    }

    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// Whether any replica is healthy now.
    pub fn is_up(&self) -> bool {
        self.inner
            .replicas
            .iter()
            .any(|r| r.healthy.load(Ordering::Relaxed))
    }

    /// Probes every replica's health every `probe_interval`, until dropped.
    pub fn spawn_probes(&self, settings: &BackendSettings) -> tokio::task::JoinHandle<()> {
        let backend = self.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(settings.probe_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let probes = backend
                    .inner
                    .replicas
                    .iter()
                    .map(|r| backend.probe(r, settings.probe_timeout));
                for (replica, up) in backend
                    .inner
                    .replicas
                    .iter()
                    .zip(futures_util::future::join_all(probes).await)
                {
                    let was = replica.healthy.swap(up, Ordering::Relaxed);
                    if was != up {
                        tracing::info!(
                            service = backend.inner.service,
                            replica = %replica.addr,
                            healthy = up,
                            "backend replica health changed"
                        );
                    }
                }
            }
        })
    }

    async fn probe(&self, replica: &Replica, timeout: Duration) -> bool {
        let mut client = HealthClient::new(replica.channel.clone());
        let check = client.check(HealthCheckRequest {
            service: self.inner.service.to_owned(),
        });
        matches!(
            tokio::time::timeout(timeout, check).await,
            Ok(Ok(resp)) if resp.get_ref().status == ServingStatus::Serving as i32
        )
    }

    /// The replicas to try, in order: the healthy ones from the next in turn.
    fn candidates(&self) -> Vec<&Replica> {
        let all = &self.inner.replicas;
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        (0..all.len())
            .map(|i| &all[(start + i) % all.len()])
            .filter(|r| r.healthy.load(Ordering::Relaxed))
            .collect()
    }

    /// Sends one gRPC request to a healthy replica. Every failure is a gRPC
    /// status response, never a transport error, so callers see a code.
    pub async fn send(&self, req: http::Request<Body>) -> http::Response<Body> {
        let (parts, body) = req.into_parts();
        // Buffered, so the very same request can go to another replica if the
        // first cannot be reached. linli's calls send one message each.
        let bytes = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Status::resource_exhausted(format!(
                    "request larger than {MAX_REQUEST_BYTES} bytes"
                ))
                .into_http();
            }
            Err(e) => {
                return Status::cancelled(format!("reading the request: {e}")).into_http();
            }
        };
        let candidates = self.candidates();
        if candidates.is_empty() {
            return Status::unavailable(format!(
                "{} is unavailable: no replica is healthy",
                self.inner.service
            ))
            .into_http();
        }
        let mut last_error = String::new();
        for replica in candidates {
            let req = http::Request::from_parts(parts.clone(), Body::new(Full::new(bytes.clone())));
            match replica.channel.clone().oneshot(req).await {
                Ok(resp) => return resp,
                Err(e) => {
                    // Not reached (refused, reset, timed out connecting): mark it
                    // down until a probe says otherwise, and try the next.
                    replica.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(service = self.inner.service, replica = %replica.addr, error = %e, "backend replica unreachable");
                    last_error = e.to_string();
                }
            }
        }
        Status::unavailable(format!(
            "{} is unavailable: {last_error}",
            self.inner.service
        ))
        .into_http()
    }
}

impl tower::Service<http::Request<Body>> for Backend {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let backend = self.clone();
        Box::pin(async move { Ok(backend.send(req).await) })
    }
}

/// A backend's whole gRPC API served by the gateway under its own name:
/// every method, present and future, forwarded as it is, with the caller's
/// token, deadline and trace context, to be authorized by the service.
pub struct Forward<N> {
    backend: Backend,
    name: std::marker::PhantomData<fn() -> N>,
}

impl<N> Clone for Forward<N> {
    fn clone(&self) -> Self {
        Forward {
            backend: self.backend.clone(),
            name: std::marker::PhantomData,
        }
    }
}

impl<N> Forward<N> {
    pub fn new(backend: Backend) -> Self {
        Forward {
            backend,
            name: std::marker::PhantomData,
        }
    }
}

impl<N: tonic::server::NamedService> tonic::server::NamedService for Forward<N> {
    const NAME: &'static str = N::NAME;
}

impl<N> tower::Service<http::Request<Body>> for Forward<N> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let backend = self.backend.clone();
        Box::pin(async move { Ok(backend.send(req).await) })
    }
}

pub const PEOPLE: &str = "linli.people.v1.PeopleService";
pub const ISSUES: &str = "linli.issues.v1.IssuesService";
pub const LOGISTICS: &str = "linli.logistics.v1.LogisticsService";

/// The names `Forward` serves under.
macro_rules! api_name {
    ($marker:ident, $name:expr) => {
        pub struct $marker;
        impl tonic::server::NamedService for $marker {
            const NAME: &'static str = $name;
        }
    };
}
api_name!(PeopleApi, PEOPLE);
api_name!(IssuesApi, ISSUES);
api_name!(LogisticsApi, LOGISTICS);
