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
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
    /// How often an address given by DNS name is looked up again, so that
    /// replicas added or removed behind the name (a Kubernetes headless
    /// service) are followed.
    pub resolve_interval: Duration,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings {
            connect_timeout: Duration::from_secs(1),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            resolve_interval: Duration::from_secs(10),
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
    /// The addresses as configured; a DNS name stands for every address it resolves to.
    configured: Vec<http::Uri>,
    settings: BackendSettings,
    replicas: RwLock<Vec<Arc<Replica>>>,
    next: AtomicUsize,
    /// When each caller's latest write sent through this gateway was
    /// answered (or failed): a view they ask for after it is not one
    /// assembled before it.
    writers: Callers,
}

/// A moment remembered per caller, by a hash of who they are (a collision
/// only makes a view assembled anew when it need not be). A caller is the
/// subject of their tokens, not a token: the web side signs a token per
/// request.
#[derive(Default)]
pub struct Callers(Mutex<HashMap<u64, Instant>>);

/// Callers remembered at once; past this, those whose moment is older than
/// `CALLERS_KEPT` are forgotten, or all of them if none is.
const MOST_CALLERS: usize = 8192;
const CALLERS_KEPT: Duration = Duration::from_secs(120);

impl Callers {
    fn key(caller: &str) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(caller)
    }

    /// Notes now for `caller` (an actor's id, the subject of their tokens).
    pub fn note(&self, caller: &str) {
        let (key, now) = (Callers::key(caller), Instant::now());
        let mut callers = self.0.lock().expect("the callers' lock");
        if callers.len() >= MOST_CALLERS {
            callers.retain(|_, at| now.duration_since(*at) < CALLERS_KEPT);
            // All recent (a crisis, many writing): start afresh rather than
            // scan them all again on every write.
            if callers.len() >= MOST_CALLERS {
                callers.clear();
            }
        }
        callers.insert(key, now);
    }

    /// The moment last noted for `caller`.
    pub fn noted(&self, caller: &str) -> Option<Instant> {
        let callers = self.0.lock().expect("the callers' lock");
        callers.get(&Callers::key(caller)).copied()
    }
}

/// The subject an `authorization: Bearer <token>` value names, read without
/// checking the signature: the service the request goes to checks it, and a
/// forged one can only make someone's next view assembled anew.
fn subject(authorization: &[u8]) -> Option<String> {
    use base64::Engine;
    #[derive(serde::Deserialize)]
    struct Subject {
        sub: String,
    }
    let token = std::str::from_utf8(authorization).ok()?;
    let payload = token.strip_prefix("Bearer ")?.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Subject>(&json).ok().map(|s| s.sub)
}

struct Replica {
    addr: String,
    channel: Channel,
    healthy: AtomicBool,
    /// Health probes in a row that had no answer in time.
    late: AtomicU32,
}

/// What a health probe found.
enum Probe {
    Up,
    /// Answered not serving, or could not be reached.
    Down,
    /// No answer in time.
    Late,
}

/// How many times a replica marked down is probed per `probe_interval`.
const DOWN_PROBES_PER_INTERVAL: u32 = 5;

/// Late probes in a row that mark a replica down.
const LATE_PROBES_BEFORE_DOWN: u32 = 3;

impl Replica {
    fn new(addr: &str, settings: &BackendSettings) -> anyhow::Result<Replica> {
        let channel = Endpoint::from_shared(addr.to_owned())
            .map_err(|e| anyhow::anyhow!("address {addr:?}: {e}"))?
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .connect_lazy();
        Ok(Replica {
            addr: addr.to_owned(),
            channel,
            // Assumed up until a probe or a call says otherwise.
            healthy: AtomicBool::new(true),
            late: AtomicU32::new(0),
        })
    }
}

/// Whether a configured address names its host by DNS rather than by IP.
fn is_dns_name(uri: &http::Uri) -> bool {
    uri.host().is_some_and(|h| {
        h.trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_err()
    })
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
        let configured = addrs
            .iter()
            .map(|a| {
                a.parse::<http::Uri>()
                    .map_err(|e| anyhow::anyhow!("{service} address {a:?}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Until the first lookup, a DNS name is one replica, resolved at connect time.
        let replicas = addrs
            .iter()
            .map(|a| Replica::new(a, settings).map(Arc::new))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| anyhow::anyhow!("{service}: {e}"))?;
        Ok(Backend {
            inner: Arc::new(Inner {
                service,
                configured,
                settings: settings.clone(),
                replicas: RwLock::new(replicas),
                next: AtomicUsize::new(0),
                writers: Callers::default(),
            }),
        })
    }

    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    fn replicas(&self) -> Vec<Arc<Replica>> {
        self.inner.replicas.read().expect("replicas lock").clone()
    }

    /// The addresses of the replicas calls may go to now.
    pub fn replica_addrs(&self) -> Vec<String> {
        self.replicas().iter().map(|r| r.addr.clone()).collect()
    }

    /// Whether any replica is healthy now.
    pub fn is_up(&self) -> bool {
        self.replicas()
            .iter()
            .any(|r| r.healthy.load(Ordering::Relaxed))
    }

    /// Looks DNS names up again and follows the replicas behind them; replicas
    /// that stay keep their connections and health.
    pub async fn resolve(&self) {
        if !self.inner.configured.iter().any(is_dns_name) {
            return;
        }
        let mut addrs: Vec<String> = Vec::new();
        for uri in &self.inner.configured {
            if !is_dns_name(uri) {
                addrs.push(uri.to_string().trim_end_matches('/').to_owned());
                continue;
            }
            let scheme = uri.scheme_str().unwrap_or("http");
            let port = uri
                .port_u16()
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            let host = uri.host().unwrap_or_default();
            match tokio::net::lookup_host((host, port)).await {
                Ok(found) => addrs.extend(found.map(|a| format!("{scheme}://{a}"))),
                Err(e) => {
                    // Keep what we had: a DNS hiccup must not empty the backend.
                    tracing::warn!(service = self.inner.service, %host, error = %e, "cannot resolve backend address");
                    return;
                }
            }
        }
        addrs.sort();
        addrs.dedup();
        let current = self.replicas();
        let mut next = Vec::with_capacity(addrs.len());
        for addr in &addrs {
            match current.iter().find(|r| &r.addr == addr) {
                Some(r) => next.push(r.clone()),
                None => match Replica::new(addr, &self.inner.settings) {
                    Ok(r) => next.push(Arc::new(r)),
                    Err(e) => {
                        tracing::warn!(service = self.inner.service, error = %e, "bad resolved address")
                    }
                },
            }
        }
        if next.is_empty() {
            return;
        }
        let before: Vec<&str> = current.iter().map(|r| r.addr.as_str()).collect();
        if before != addrs.iter().map(String::as_str).collect::<Vec<_>>() {
            tracing::info!(service = self.inner.service, replicas = ?addrs, "backend replicas changed");
        }
        *self.inner.replicas.write().expect("replicas lock") = next;
    }

    /// Probes every replica's health every `probe_interval`, and a replica
    /// marked down five times as often, so one that is back (or was marked
    /// down by a dropped connection while alive) takes calls again soon.
    /// Looks DNS names up again every `resolve_interval`. Until dropped.
    pub fn spawn_probes(&self, settings: &BackendSettings) -> tokio::task::JoinHandle<()> {
        let backend = self.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(settings.probe_interval / DOWN_PROBES_PER_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut resolved_at: Option<tokio::time::Instant> = None;
            for round in 0u64.. {
                tick.tick().await;
                if resolved_at.is_none_or(|at| at.elapsed() >= settings.resolve_interval) {
                    backend.resolve().await;
                    resolved_at = Some(tokio::time::Instant::now());
                }
                let every = round % u64::from(DOWN_PROBES_PER_INTERVAL) == 0;
                let replicas: Vec<_> = backend
                    .replicas()
                    .into_iter()
                    .filter(|r| every || !r.healthy.load(Ordering::Relaxed))
                    .collect();
                let probes = replicas
                    .iter()
                    .map(|r| backend.probe(r, settings.probe_timeout));
                for (replica, probe) in replicas
                    .iter()
                    .zip(futures_util::future::join_all(probes).await)
                {
                    // A replica busy answering the load may be slow to answer a
                    // probe too: it is marked down only after a few late answers
                    // in a row (one it cannot be reached at all is marked down
                    // at once, here or by the call that found it so).
                    let late = match probe {
                        Probe::Late => replica.late.fetch_add(1, Ordering::Relaxed) + 1,
                        _ => {
                            replica.late.store(0, Ordering::Relaxed);
                            0
                        }
                    };
                    let up = match probe {
                        Probe::Up => true,
                        Probe::Down => false,
                        Probe::Late => {
                            late < LATE_PROBES_BEFORE_DOWN
                                && replica.healthy.load(Ordering::Relaxed)
                        }
                    };
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

    async fn probe(&self, replica: &Replica, timeout: Duration) -> Probe {
        let mut client = HealthClient::new(replica.channel.clone());
        let check = client.check(HealthCheckRequest {
            service: self.inner.service.to_owned(),
        });
        match tokio::time::timeout(timeout, check).await {
            Ok(Ok(resp)) if resp.get_ref().status == ServingStatus::Serving as i32 => Probe::Up,
            Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => Probe::Late,
            Ok(_) => Probe::Down,
            Err(_) => Probe::Late,
        }
    }

    /// The replicas to try, in order: the healthy ones from the next in turn.
    fn candidates(&self) -> Vec<Arc<Replica>> {
        let all = self.replicas();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        (0..all.len())
            .map(|i| all[(start + i) % all.len()].clone())
            .filter(|r| r.healthy.load(Ordering::Relaxed))
            .collect()
    }

    /// When `caller` (an actor's id) last had a write to this service
    /// answered through this gateway.
    pub fn wrote_at(&self, caller: &str) -> Option<Instant> {
        self.inner.writers.noted(caller)
    }

    /// Sends one gRPC request to a healthy replica. Every failure is a gRPC
    /// status response, never a transport error, so callers see a code.
    pub async fn send(&self, req: http::Request<Body>) -> http::Response<Body> {
        let read = is_read(req.uri().path());
        let writer = (!read)
            .then(|| req.headers().get(http::header::AUTHORIZATION))
            .flatten()
            .and_then(|v| subject(v.as_bytes()));
        let resp = self.send_once(req, read).await;
        if let Some(writer) = writer {
            // Noted once answered, so a view asked after the answer is assembled after it.
            self.inner.writers.note(&writer);
        }
        resp
    }

    async fn send_once(&self, req: http::Request<Body>, read: bool) -> http::Response<Body> {
        let (mut parts, body) = req.into_parts();
        linli_core::telemetry::inject_headers(&mut parts.headers);
        // Buffered, so the very same request can go to another replica if the
        // first cannot take it. linli's calls send one message each.
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
        for (attempt, replica) in candidates.iter().enumerate() {
            if attempt > 0 && read {
                // Back off a little between replicas, so a shedding one is not hammered.
                tokio::time::sleep(RETRY_BACKOFF * attempt as u32).await;
            }
            let req = http::Request::from_parts(parts.clone(), Body::new(Full::new(bytes.clone())));
            match replica.channel.clone().oneshot(req).await {
                // A read a replica answered UNAVAILABLE (shutting down, shedding) can go to
                // the next replica: it changes nothing. Writes are answered as they came.
                Ok(resp) if read && grpc_status(&resp) == Some(b"14") => {
                    last_error = "answered UNAVAILABLE".into();
                }
                Ok(resp) => return resp,
                // The caller's deadline ran out: the replica is slow, not gone.
                // Marking it down would fail every other call at once (under
                // load, a cascade); late health probes decide that instead.
                Err(e) if timed_out(&e) => {
                    return Status::deadline_exceeded(format!(
                        "{} did not answer within the deadline",
                        self.inner.service
                    ))
                    .into_http();
                }
                Err(e) => {
                    // Not reached (refused, reset, timed out connecting): mark it
                    // down until a probe says otherwise, and try the next.
                    replica.healthy.store(false, Ordering::Relaxed);
                    let e = with_causes(&e);
                    tracing::warn!(service = self.inner.service, replica = %replica.addr, error = %e, "backend replica unreachable");
                    last_error = e;
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

/// An error and what caused it, outermost first.
fn causes<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |c| c.source())
}

/// Whether the call's own deadline (`grpc-timeout`) ended it.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|c| c.is::<tonic::TimeoutExpired>())
}

/// An error with its causes ("transport error" alone tells little).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    causes(e)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Waits before retrying a read on the next replica (times the attempt).
const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether an RPC only reads, so that repeating it on another replica is
/// harmless: linli names reads `Get…`, `List…` and `Watch…`, plus the few checks below.
fn is_read(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    ["Get", "List", "Watch"]
        .iter()
        .any(|p| method.starts_with(p))
        || ["CheckRegistration", "VerifyAuditTrail", "VerifyPassword"].contains(&method)
}

/// The status of a trailers-only answer (an error before any message).
fn grpc_status<B>(resp: &http::Response<B>) -> Option<&[u8]> {
    resp.headers().get("grpc-status").map(|v| v.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn callers_past_the_limit_start_afresh() {
        let callers = super::Callers::default();
        for i in 0..super::MOST_CALLERS {
            callers.note(&format!("account:{i}"));
        }
        assert!(callers.noted("account:0").is_some());
        assert!(callers.noted("account:else").is_none());
        // All of them recent: the next one starts the memory afresh.
        callers.note("account:next");
        assert!(callers.noted("account:next").is_some());
        assert!(callers.noted("account:0").is_none());
    }

    #[tokio::test]
    async fn a_dns_name_stands_for_every_address_it_resolves_to() {
        let backend = super::Backend::new(
            super::PEOPLE,
            &[
                "http://localhost:50999".to_owned(),
                "http://10.0.0.7:50053".to_owned(),
            ],
            &super::BackendSettings::default(),
        )
        .unwrap();
        assert_eq!(backend.replica_addrs().len(), 2);
        backend.resolve().await;
        let addrs = backend.replica_addrs();
        assert!(
            addrs.contains(&"http://127.0.0.1:50999".to_owned()),
            "{addrs:?}"
        );
        assert!(
            addrs.contains(&"http://10.0.0.7:50053".to_owned()),
            "{addrs:?}"
        );
        assert!(!addrs.iter().any(|a| a.contains("localhost")), "{addrs:?}");
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_leaves_the_replica_healthy() {
        // A replica that takes connections and never answers (a busy one, as far
        // as a deadline can tell).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let backend = super::Backend::new(
            super::PEOPLE,
            &[format!("http://{addr}")],
            &super::BackendSettings::default(),
        )
        .unwrap();
        let req = http::Request::builder()
            .uri("/linli.people.v1.PeopleService/GetHousehold")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "100m")
            .body(tonic::body::Body::empty())
            .unwrap();
        let began = std::time::Instant::now();
        let resp = backend.send(req).await;
        assert_eq!(
            super::grpc_status(&resp),
            Some(&b"4"[..]),
            "DEADLINE_EXCEEDED"
        );
        assert!(began.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(backend.candidates().len(), 1, "still taken as healthy");
    }

    #[test]
    fn reads_are_told_by_name() {
        use super::is_read;
        assert!(is_read("/linli.issues.v1.IssuesService/ListIssues"));
        assert!(is_read("/linli.people.v1.PeopleService/GetHousehold"));
        assert!(is_read("/linli.people.v1.PeopleService/CheckRegistration"));
        assert!(!is_read("/linli.issues.v1.IssuesService/ReportIssue"));
        assert!(!is_read(
            "/linli.logistics.v1.LogisticsService/CheckInShift"
        ));
        assert!(!is_read("/linli.people.v1.PeopleService/CheckIn"));
        assert!(is_read("/linli.people.v1.PeopleService/VerifyPassword"));
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
