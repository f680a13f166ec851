//! Serving a service over gRPC: the service's routes plus `grpc.health.v1`
//! and server reflection, one tower stack, request spans, and graceful
//! shutdown that drains requests in flight for a bounded time.
use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;

#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// How long health reports NOT_SERVING while requests are still served, after
    /// SIGTERM and before the listener closes: balancers see it and move traffic away.
    pub shutdown_grace: Duration,
    pub drain_timeout: Duration,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// How long a new connection may stay silent (no HTTP/2 preface) before it is closed.
    pub handshake_timeout: Duration,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            shutdown_grace: Duration::ZERO,
            drain_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 512,
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A service ready to serve: its routes and its fully-qualified gRPC name
/// (e.g. `linli.people.v1.PeopleService`), which health reports by.
pub struct GrpcServer {
    pub name: &'static str,
    /// Further services in `routes` (the gateway forwards the domain services'
    /// APIs), reported by health and listed by reflection like `name`.
    pub also: Vec<&'static str>,
    pub routes: Routes,
    pub settings: ServeSettings,
    /// The database readiness follows: while it does not answer, the services
    /// report NOT_SERVING (the server itself, `""`, stays SERVING: it is alive).
    pub readiness: Option<crate::Db>,
    /// What `GET /metrics` shows.
    pub metrics: crate::metrics::ServerMetrics,
}

impl GrpcServer {
    pub fn new(name: &'static str, routes: Routes, settings: ServeSettings) -> Self {
        GrpcServer {
            name,
            also: Vec::new(),
            routes,
            settings,
            readiness: None,
            metrics: crate::metrics::ServerMetrics::default(),
        }
    }

    /// Ready only while `db` answers; its pool's use is in the metrics.
    pub fn ready_with(mut self, db: crate::Db) -> Self {
        self.metrics.db = Some(db.clone());
        self.readiness = Some(db);
        self
    }

    /// The service's own figures, shown by `/metrics`.
    pub fn with_gauges(mut self, gauges: std::sync::Arc<dyn crate::metrics::Gauges>) -> Self {
        self.metrics.gauges = Some(gauges);
        self
    }

    /// Also serves (and reports, and lists) these services, found in `routes`.
    pub fn also_serving(mut self, names: &[&'static str]) -> Self {
        self.also.extend_from_slice(names);
        self
    }

    fn names(&self) -> Vec<&'static str> {
        std::iter::once(self.name)
            .chain(self.also.iter().copied())
            .collect()
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting,
    /// reports NOT_SERVING and lets requests in flight finish for up to the
    /// drain timeout.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let names = self.names();
        let (reporter, health) = tonic_health::server::health_reporter();
        for name in names.iter().chain(&[""]) {
            reporter
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        let reflection = || {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(linli_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name("grpc.health.v1.Health")
                .with_service_name("grpc.reflection.v1.ServerReflection")
                .with_service_name("grpc.reflection.v1alpha.ServerReflection");
            // Advertise only what this server serves, not every service in linli's descriptor set.
            for name in &names {
                builder = builder.with_service_name(*name);
            }
            builder
        };
        // v1alpha too: Python's grpcio-reflection and older tools still speak only it.
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let reflection = reflection().build_v1()?;
        let routes = self
            .routes
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_v1alpha);
        // Prometheus scrapes `GET /metrics` over HTTP/1.1 on the same port.
        let metrics = self.metrics.clone();
        let routes = tonic::service::Routes::from(routes.into_axum_router().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.render().await,
                    )
                }
            }),
        ));

        // Shed load past the limit at once (health exempt), and name bad bodies as such.
        let layers = ServiceBuilder::new()
            .layer(crate::edge::EdgeLayer::counting(
                self.settings.max_concurrent_requests,
                self.metrics.requests.clone(),
            ))
            .into_inner();

        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _readiness = self.readiness.clone().map(|db| {
            Jobs(vec![watch_readiness(
                db,
                reporter.clone(),
                names.clone(),
                stopping.clone(),
            )])
        });
        let grace = self.settings.shutdown_grace;
        let signal = async move {
            shutdown.await;
            stopping.store(true, std::sync::atomic::Ordering::SeqCst);
            // Say so first, keep serving for the grace period, then stop accepting.
            for name in names.iter().chain(&[""]) {
                reporter
                    .set_service_status(*name, ServingStatus::NotServing)
                    .await;
            }
            if !grace.is_zero() {
                tracing::info!(
                    ?grace,
                    "shutting down: NOT_SERVING, still serving for the grace period"
                );
                tokio::time::sleep(grace).await;
            }
            tracing::info!("shutting down: draining requests in flight");
            let _ = drain_tx.send(());
        };
        let server = Server::builder()
            // For `GET /metrics`; gRPC itself stays on HTTP/2.
            .accept_http1(true)
            // Cancel requests that run too long rather than let them hold resources forever.
            .timeout(self.settings.request_timeout)
            // Detect dead peers on idle connections.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .trace_fn(crate::telemetry::request_span)
            .layer(layers)
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                crate::conn::guarded(
                    listener,
                    self.settings.max_connections,
                    self.settings.handshake_timeout,
                ),
                signal,
            );
        tokio::pin!(server);
        tokio::select! {
            biased;
            result = &mut server => result?,
            _ = drain_rx => match tokio::time::timeout(self.settings.drain_timeout, &mut server).await {
                Ok(result) => result?,
                Err(_) => tracing::warn!(timeout = ?self.settings.drain_timeout, "drain timed out; closing remaining requests"),
            },
        }
        Ok(())
    }
}

/// How often readiness asks the database (more often while it does not
/// answer, so a database that is back is served at once), and how long it
/// waits for an answer.
const READINESS_EVERY: Duration = Duration::from_secs(1);
const READINESS_EVERY_WHILE_DOWN: Duration = Duration::from_millis(200);
const READINESS_TIMEOUT: Duration = Duration::from_millis(800);

/// Keeps the services' health at SERVING while `db` answers and NOT_SERVING
/// while it does not, so balancers send no traffic to a replica that can only
/// fail it. The overall status (`""`) is left SERVING: liveness, not readiness.
fn watch_readiness(
    db: crate::Db,
    reporter: tonic_health::server::HealthReporter,
    names: Vec<&'static str>,
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ready = true;
        loop {
            tokio::time::sleep(if ready {
                READINESS_EVERY
            } else {
                READINESS_EVERY_WHILE_DOWN
            })
            .await;
            // Busy under load is not down: readiness stays as it was, or a
            // replica answering slowly would be taken out of every balancer
            // and its load would fail instead of queue.
            let now = match db.reach(READINESS_TIMEOUT).await {
                crate::db::Reach::Answered => true,
                crate::db::Reach::Busy => ready,
                crate::db::Reach::Unreachable => false,
            };
            if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if now != ready {
                ready = now;
                let status = if ready {
                    tracing::info!("database reachable again: SERVING");
                    ServingStatus::Serving
                } else {
                    tracing::warn!("database unreachable: NOT_SERVING until it answers");
                    ServingStatus::NotServing
                };
                for name in &names {
                    reporter.set_service_status(*name, status).await;
                }
            }
        }
    })
}

/// A service's background jobs (sweeps, schedulers), stopped when dropped.
pub struct Jobs(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for Jobs {
    fn drop(&mut self) {
        for job in &self.0 {
            job.abort();
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what container runtimes send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
