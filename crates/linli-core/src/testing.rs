//! The test harness: a fresh database per test on either backend, and a
//! service spawned on a port-0 listener with a connected channel.
//!
//! PostgreSQL tests never skip. They use `LINLI_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) to create a database of
//! their own, and fail with a clear message when no server answers.
use std::net::SocketAddr;
use std::sync::Once;

use sqlx::{Connection, Executor};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::server::GrpcServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_admin_url() -> String {
    std::env::var("LINLI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Logs from tests are silent unless `TEST_LOG` is set.
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("info")
                .with_test_writer()
                .try_init();
        }
    });
}

/// A database that exists for one test and is removed after it.
pub struct TestDb {
    pub url: String,
    backend: Backend,
    name: String,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        init_logging();
        // The audit chain is sealed with the process's key, as in a service.
        keys();
        let name = format!("linli_test_{}", crate::new_id().replace('-', ""));
        let url = match backend {
            Backend::Sqlite => format!(
                "sqlite://{}/{name}/db.sqlite",
                std::env::temp_dir().display()
            ),
            Backend::Postgres => {
                let admin = postgres_admin_url();
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL tests need a server at {admin} (set LINLI_TEST_POSTGRES_URL to another); \
                         they never skip. Connecting failed: {e}"
                    )
                });
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let (server, _) = admin.rsplit_once('/').expect("database URL with a path");
                format!("{server}/{name}")
            }
        };
        TestDb { url, backend, name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self.backend {
            Backend::Sqlite => {
                let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&self.name));
            }
            Backend::Postgres => {
                // Drop runs outside async context; a short-lived runtime on its own thread does the cleanup.
                let name = self.name.clone();
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async {
                        let mut conn = sqlx::AnyConnection::connect(&postgres_admin_url())
                            .await
                            .ok()?;
                        conn.execute(
                            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                        )
                        .await
                        .ok()?;
                        conn.close().await.ok()
                    })
                })
                .join();
            }
        }
    }
}

/// A service serving on a random local port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Binds 127.0.0.1:0, serves `server` there and connects a channel to it.
    pub async fn spawn(server: GrpcServer) -> TestServer {
        TestServer::spawn_at(server, "127.0.0.1:0".parse().expect("an address")).await
    }

    /// Serves at `addr`: a restarted service comes back where its clients expect it.
    pub async fn spawn_at(server: GrpcServer, addr: SocketAddr) -> TestServer {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the test address");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        // The listener is already bound, so the connection is accepted as soon as the task runs.
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to test server");
        TestServer {
            addr,
            channel,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

/// A fresh idempotency key.
pub fn key() -> String {
    crate::new_id()
}

/// Asserts a call failed with `code`; for INVALID_ARGUMENT, that both the message
/// and the `BadRequest` detail name `field`, otherwise that the message mentions it.
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    field: &str,
) {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "{status:?}");
    if code == tonic::Code::InvalidArgument {
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "message {:?} should name {field}",
            status.message()
        );
        use tonic_types::StatusExt;
        let details = status.get_error_details();
        let violation = &details
            .bad_request()
            .expect("BadRequest detail")
            .field_violations[0];
        assert_eq!(violation.field, field);
    } else if !field.is_empty() {
        assert!(
            status.message().contains(field),
            "message {:?} should mention {field}",
            status.message()
        );
    }
}

/// Runs each named `async fn(Backend)` once on SQLite and once on PostgreSQL,
/// as two tests: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::testing::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::testing::Backend::Postgres).await
                }
            }
        )*
    };
}

/// The signing keys of this test process: every test server trusts them, and
/// test clients sign with them, as the gateway would.
pub fn keys() -> &'static crate::auth::Keys {
    static KEYS: std::sync::OnceLock<crate::auth::Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = crate::auth::Keys::generate();
        crate::audit::use_key(keys.audit_key());
        keys
    })
}

/// A token for `role`, limited to `community` (county-wide when `None`).
pub fn token(role: crate::Role, community: Option<&str>) -> String {
    let claims = crate::auth::Claims::new(
        format!("test-{role}"),
        role,
        std::time::Duration::from_secs(3600),
    );
    let claims = match community {
        Some(c) => claims.community(c),
        None => claims.county(),
    };
    keys().sign(&claims)
}

/// A token for exactly these claims.
pub fn sign(claims: &crate::auth::Claims) -> String {
    keys().sign(claims)
}

/// A county admin's token: what tests act as unless they say otherwise.
pub fn admin_token() -> String {
    token(crate::Role::Admin, None)
}

/// A request that carries `token`.
pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    crate::auth::set_bearer(req.metadata_mut(), token);
    req
}

/// Adds a token to every call that does not carry one already.
#[derive(Clone)]
pub struct WithToken(pub String);

impl tonic::service::Interceptor for WithToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if !req.metadata().contains_key(crate::auth::AUTHORIZATION) {
            crate::auth::set_bearer(req.metadata_mut(), &self.0);
        }
        Ok(req)
    }
}

/// A channel whose calls act as a county admin unless they carry a token of their own.
pub type AuthedChannel = tonic::service::interceptor::InterceptedService<Channel, WithToken>;

pub fn authed(channel: Channel) -> AuthedChannel {
    tonic::service::interceptor::InterceptedService::new(channel, WithToken(admin_token()))
}

/// A request carrying a county-wide token for `role`, as the gateway would sign it; a
/// name that is no role still gets a validly signed token, which services refuse.
pub fn as_role<T>(msg: T, role: &str) -> tonic::Request<T> {
    let token = match role.parse::<crate::Role>() {
        Ok(role) => token(role, None),
        Err(_) => keys().sign_payload(
            crate::auth::ISSUER,
            &serde_json::json!({
                "sub": "test", "role": role, "county": true, "iat": 0, "exp": i64::MAX / 2,
                "iss": crate::auth::ISSUER, "aud": crate::auth::AUDIENCE,
            }),
        ),
    };
    with_token(msg, &token)
}

/// The isolation matrix: every RPC of a service called by every role, on a record
/// of the caller's own community and on one of another community, each answer
/// judged against the service's policy table, and every answer searched for the
/// other community's ids.
/// An OTLP trace receiver on port 0: what a service (or a process started
/// with `--otlp-endpoint`) exports, kept for the test to read.
pub mod otlp {
    use std::sync::{Arc, Mutex};

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

    #[derive(Clone, Default)]
    struct Received(Arc<Mutex<Vec<ResourceSpans>>>);

    #[tonic::async_trait]
    impl TraceService for Received {
        async fn export(
            &self,
            req: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            self.0
                .lock()
                .unwrap()
                .extend(req.into_inner().resource_spans);
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        }
    }

    pub struct Collector {
        /// `http://127.0.0.1:<port>`, for `--otlp-endpoint`.
        pub endpoint: String,
        received: Received,
        server: tokio::task::JoinHandle<()>,
    }

    impl Collector {
        pub async fn spawn() -> Collector {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            let received = Received::default();
            let service = TraceServiceServer::new(received.clone());
            let server = tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await;
            });
            Collector {
                endpoint,
                received,
                server,
            }
        }

        /// Everything exported so far.
        pub fn resource_spans(&self) -> Vec<ResourceSpans> {
            self.received.0.lock().unwrap().clone()
        }
    }

    impl Drop for Collector {
        fn drop(&mut self) {
            self.server.abort();
        }
    }
}

pub mod matrix {
    use crate::Role;
    use crate::auth::Claims;
    use crate::policy::{Reach, Rule};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Side {
        Own,
        Other,
    }

    /// A signed-in caller of community `own`.
    #[derive(Debug, Clone)]
    pub struct Caller {
        pub role: Role,
        pub token: String,
    }

    /// One caller per role: a county admin, and the others limited to `own`; the
    /// cadre is `cadre`, the resident lives in `household`.
    pub fn callers(own: &str, cadre: &str, household: &str) -> Vec<Caller> {
        let hour = std::time::Duration::from_secs(3600);
        Role::ALL
            .into_iter()
            .map(|role| {
                let claims = Claims::new(format!("matrix-{role}"), role, hour);
                let claims = match role {
                    Role::Admin => claims.county(),
                    Role::Cadre => claims.community(own).cadre(cadre),
                    Role::Resident => claims.community(own).household(household),
                    _ => claims.community(own),
                };
                Caller {
                    role,
                    token: super::sign(&claims),
                }
            })
            .collect()
    }

    /// Calls every RPC of `policy` as each of `callers`: on the other community's
    /// records first (a refused call must change nothing the own side reads), then
    /// on the caller's own; `call` makes the call and renders the answer as text.
    pub async fn walk(
        policy: &crate::policy::Policy,
        callers: &[Caller],
        foreign_ids: &[String],
        mut call: impl AsyncFnMut(&'static str, Side, &str) -> Result<String, tonic::Status>,
    ) -> Tally {
        let mut tally = Tally::default();
        for caller in callers {
            for rule in policy.rules {
                for side in [Side::Other, Side::Own] {
                    let outcome = call(rule.rpc, side, &caller.token).await;
                    tally.check(rule, caller, side, outcome, foreign_ids);
                }
            }
        }
        assert_eq!(tally.calls, policy.rules.len() * callers.len() * 2);
        tally
    }

    /// `msg` with each forged identity a service must refuse as UNAUTHENTICATED:
    /// none, bare `x-linli-*` headers, another key's signature, expired, a resident's
    /// claims under an admin's signature, not a JWT, and an unsigned token.
    pub fn forgeries<M: Clone>(msg: M) -> Vec<(&'static str, tonic::Request<M>)> {
        let hour = std::time::Duration::from_secs(3600);
        let admin = Claims::new("forger", Role::Admin, hour).county();
        let signed = super::sign(&admin);
        let (head, _) = signed.rsplit_once('.').expect("a JWT");
        let mut expired = admin.clone();
        (expired.iat, expired.exp) = (expired.iat - 7200, expired.exp - 7200);
        let resident = super::token(Role::Resident, Some("c"));
        let mut parts: Vec<&str> = signed.split('.').collect();
        parts[1] = resident.split('.').nth(1).expect("a JWT");
        let tampered = parts.join(".");
        let mut bare = tonic::Request::new(msg.clone());
        bare.metadata_mut()
            .insert("x-linli-role", "admin".parse().expect("ascii"));
        bare.metadata_mut()
            .insert("x-linli-actor", "mallory".parse().expect("ascii"));
        let stranger = crate::auth::Keys::generate();
        vec![
            ("no token", tonic::Request::new(msg.clone())),
            ("bare x-linli headers", bare),
            (
                "another key",
                super::with_token(msg.clone(), &stranger.sign(&admin)),
            ),
            (
                "expired",
                super::with_token(msg.clone(), &super::sign(&expired)),
            ),
            ("tampered", super::with_token(msg.clone(), &tampered)),
            ("not a JWT", super::with_token(msg.clone(), "hello")),
            ("unsigned", super::with_token(msg, &format!("{head}."))),
        ]
    }

    /// What the matrix saw.
    #[derive(Debug, Default)]
    pub struct Tally {
        pub calls: usize,
        /// Ids of the other community found in answers to callers who may not see it.
        pub leaks: usize,
        pub failures: Vec<String>,
    }

    impl Tally {
        /// Judges one answer: a role the table leaves out is PERMISSION_DENIED; a
        /// record of another community is NOT_FOUND to a caller limited to their own
        /// (county reference data excepted); otherwise authorization lets the call
        /// through, whatever the domain then says.
        pub fn check(
            &mut self,
            rule: &Rule,
            caller: &Caller,
            side: Side,
            outcome: Result<String, tonic::Status>,
            foreign_ids: &[String],
        ) {
            use tonic::Code;
            self.calls += 1;
            let expected = if !rule.roles.contains(&caller.role)
                || (rule.reach == Reach::CountyWide && caller.role != Role::Admin)
            {
                Some(Code::PermissionDenied)
            } else if side == Side::Other
                && rule.reach != Reach::County
                && caller.role != Role::Admin
            {
                Some(Code::NotFound)
            } else {
                None
            };
            let seen = outcome.as_ref().map_err(|s| s.code());
            let what = format!("{} as {} on {:?}", rule.rpc, caller.role, side);
            match (expected, &seen) {
                (Some(code), Err(got)) if *got == code => {}
                (Some(code), _) => self
                    .failures
                    .push(format!("{what}: expected {code:?}, got {seen:?}")),
                (
                    None,
                    Err(
                        Code::PermissionDenied
                        | Code::NotFound
                        | Code::Unauthenticated
                        | Code::Internal
                        | Code::Unknown,
                    ),
                ) => self.failures.push(format!(
                    "{what}: expected to pass authorization, got {:?}",
                    outcome.as_ref().unwrap_err()
                )),
                (None, _) => {}
            }
            if let Ok(answer) = &outcome
                && caller.role != Role::Admin
                && rule.reach != Reach::County
            {
                let leaked = foreign_ids
                    .iter()
                    .filter(|id| answer.contains(id.as_str()))
                    .count();
                if leaked > 0 {
                    self.failures.push(format!(
                        "{what}: {leaked} ids of another community in the answer"
                    ));
                }
                self.leaks += leaked;
            }
        }

        pub fn assert_clean(&self) {
            assert!(
                self.failures.is_empty(),
                "{} of {} calls wrong:\n{}",
                self.failures.len(),
                self.calls,
                self.failures.join("\n")
            );
            assert_eq!(self.leaks, 0, "records of another community in answers");
        }
    }
}

/// A TCP link between a service and something it depends on (its database),
/// which a test can cut and restore: cut, it drops every connection and
/// refuses new ones, as a database that went away does.
pub struct FaultyLink {
    pub addr: SocketAddr,
    target: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl FaultyLink {
    /// A link on a free local port to `target`, up.
    pub async fn to(target: SocketAddr) -> FaultyLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
        let addr = listener.local_addr().expect("local addr");
        let mut link = FaultyLink {
            addr,
            target,
            task: None,
        };
        link.task = Some(Self::serve(listener, target));
        link
    }

    /// `url` (a database URL) with its host and port replaced by this link's.
    pub fn route(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (userinfo, hostpath) = match rest.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), rest),
        };
        let path = hostpath.find('/').map_or("", |i| &hostpath[i..]);
        format!("{scheme}://{userinfo}{}{path}", self.addr)
    }

    fn serve(listener: TcpListener, target: SocketAddr) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                pipes.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            // Dropping the set aborts every pipe.
        })
    }

    /// Drops every connection through the link and refuses new ones.
    pub async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Accepts connections again, on the same port.
    pub async fn restore(&mut self) {
        if self.task.is_none() {
            let listener = TcpListener::bind(self.addr).await.expect("rebind the link");
            self.task = Some(Self::serve(listener, self.target));
        }
    }
}

impl Drop for FaultyLink {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Writers creating records with idempotency keys while a test injects a
/// fault, and the check after it: no acknowledged record lost, none doubled.
pub mod writers {
    use std::collections::{BTreeMap, BTreeSet};
    use std::future::Future;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use tonic::{Code, Status};

    /// What the writers saw.
    #[derive(Debug, Default, Clone)]
    pub struct Outcome {
        /// Every key a writer sent.
        pub tried: BTreeSet<String>,
        /// The keys answered OK, with the id each got.
        pub acked: BTreeMap<String, String>,
        /// The longest a refused call took to be refused.
        pub slowest_failure: Duration,
    }

    pub struct Writers {
        log: Arc<Mutex<Outcome>>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Writers {
        /// `count` writers, each sending keys `w<i>-<n>` through `create` (which answers
        /// the new record's id) until `until`. A refusal must carry one of `retryable`.
        pub fn start<F, Fut>(
            count: usize,
            until: Instant,
            retryable: &'static [Code],
            create: F,
        ) -> Writers
        where
            F: Fn(String) -> Fut + Clone + Send + 'static,
            Fut: Future<Output = Result<String, Status>> + Send,
        {
            let log: Arc<Mutex<Outcome>> = Arc::default();
            let tasks = (0..count)
                .map(|w| {
                    let (log, create) = (log.clone(), create.clone());
                    tokio::spawn(async move {
                        let mut n = 0;
                        while Instant::now() < until {
                            let key = format!("w{w}-{n}");
                            n += 1;
                            log.lock().unwrap().tried.insert(key.clone());
                            let started = Instant::now();
                            match create(key.clone()).await {
                                Ok(id) => {
                                    log.lock().unwrap().acked.insert(key, id);
                                }
                                Err(s) => {
                                    assert!(retryable.contains(&s.code()), "{key}: {s:?}");
                                    {
                                        let mut l = log.lock().unwrap();
                                        l.slowest_failure =
                                            l.slowest_failure.max(started.elapsed());
                                    }
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                            }
                        }
                    })
                })
                .collect();
            Writers { log, tasks }
        }

        /// How many writes were acknowledged so far.
        pub fn acknowledged(&self) -> usize {
            self.log.lock().unwrap().acked.len()
        }

        /// Waits for the writers to stop, and what they saw.
        pub async fn finish(self) -> Outcome {
            for t in self.tasks {
                t.await.expect("a writer");
            }
            self.log.lock().unwrap().clone()
        }
    }

    impl Outcome {
        /// Sends every key once more, as a client retrying would: an acknowledged key
        /// answers with its first id, one that failed makes its record now (or answers
        /// with it, if it was committed), and every key has a record of its own.
        pub async fn assert_each_key_once<F, Fut>(&self, create: F)
        where
            F: Fn(String) -> Fut,
            Fut: Future<Output = Result<String, Status>>,
        {
            let mut ids = BTreeSet::new();
            for key in &self.tried {
                let id = create(key.clone()).await.expect("a retry after the fault");
                if let Some(first) = self.acked.get(key) {
                    assert_eq!(&id, first, "{key}: an acknowledged record changed");
                }
                ids.insert(id);
            }
            assert_eq!(ids.len(), self.tried.len(), "one record per key");
        }
    }
}
