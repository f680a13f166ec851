//! The gateway's HTTP side (127.0.0.1:8080 by default), in the same process
//! as its gRPC side and on the same identity and policy: the ops dashboard
//! (server-rendered pages with SVG charts, live over Server-Sent Events), the
//! JSON API the pages' data also comes as, gRPC-Web for browser apps, Open311
//! GeoReport v2 for civic reporting apps, `/metrics` and `/healthz`.
//!
//! Every page and JSON answer is made by calling the views and the services
//! with the signed-in person's own (short, freshly signed) token, so what a
//! person sees here is exactly what their gRPC calls would show them.
mod api;
mod charts;
mod i18n;
pub mod metrics;
pub mod open311;
mod pages;
mod password;
mod render;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tonic::{Code, Status};

use linli_core::Db;
use linli_core::auth::Keys;

use crate::auth::AuthApi;
use crate::backend::Backend;
use crate::views::ViewsApi;

pub use i18n::Lang;
pub use session::SessionSettings;

/// What the HTTP handlers share.
pub struct WebState {
    pub(crate) db: Db,
    pub(crate) keys: Keys,
    pub(crate) auth: Arc<AuthApi>,
    pub(crate) views: Arc<ViewsApi>,
    pub(crate) people: Backend,
    pub(crate) issues: Backend,
    pub(crate) logistics: Backend,
    pub(crate) sessions: SessionSettings,
    /// Form tokens are an HMAC of the session under this key.
    pub(crate) csrf_key: [u8; 32],
    pub(crate) metrics: metrics::Metrics,
    /// Live event streams open, per session and in all.
    pub(crate) streams: Arc<crate::streams::StreamSlots>,
    /// Open311 reports per api_key this minute.
    pub(crate) open311_rate: open311::ReportRate,
    pub(crate) call_timeout: Duration,
    /// Set when the gateway is stopping, so open event streams end.
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
    /// Requests worked on at once (the gRPC side's `--max-concurrent-requests`).
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
    /// How long a request may take (the gRPC side's `--request-timeout-secs`).
    pub(crate) request_timeout: Duration,
    /// Connections open at once and how long a request head may take to
    /// arrive (the gRPC side's `max_connections` and `handshake_timeout`).
    pub(crate) limits: linli_core::server::ServeSettings,
}

pub type State = Arc<WebState>;

/// A request to the views as `actor`, whose identity is already verified:
/// the views read the caller from the request, as their interceptor leaves it.
pub(crate) fn to_views<M>(actor: &linli_core::Actor, msg: M) -> tonic::Request<M> {
    let mut req = actor.request(msg);
    req.extensions_mut().insert(actor.clone());
    req
}

/// How a web request went wrong, as a browser or HTTP client is told.
#[derive(Debug)]
pub enum WebError {
    /// Not signed in: to the login page.
    SignIn,
    NotFound(String),
    Forbidden(String),
    BadRequest(String),
    TooMany(String),
    Unavailable(String),
    Internal,
}

impl From<Status> for WebError {
    fn from(s: Status) -> WebError {
        let m = s.message().to_owned();
        match s.code() {
            Code::Unauthenticated => WebError::SignIn,
            Code::NotFound => WebError::NotFound(m),
            Code::PermissionDenied => WebError::Forbidden(m),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                WebError::BadRequest(m)
            }
            Code::ResourceExhausted => WebError::TooMany(m),
            Code::Unavailable | Code::DeadlineExceeded => WebError::Unavailable(m),
            _ => {
                tracing::warn!(code = ?s.code(), message = %m, "web request failed");
                WebError::Internal
            }
        }
    }
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::SignIn => StatusCode::SEE_OTHER,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            WebError::SignIn => "sign in first",
            WebError::NotFound(m)
            | WebError::Forbidden(m)
            | WebError::BadRequest(m)
            | WebError::TooMany(m)
            | WebError::Unavailable(m) => m,
            WebError::Internal => "something went wrong on our side",
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignIn => Redirect::to("/login").into_response(),
            e => {
                let status = e.status();
                (status, render::error_page(Lang::Zh, status, e.message())).into_response()
            }
        }
    }
}

/// The HTTP side's routes. `grpc` is the gateway's gRPC router, served here
/// to gRPC-Web clients (and HTTP/2 gRPC clients) under the services' paths.
pub fn router(state: State, grpc: Router) -> Router {
    // gRPC-Web requests become gRPC before the services see them.
    let grpc = grpc.layer(tonic_web::GrpcWebLayer::new());
    let mut app = Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/password", post(password::change))
        .route("/logout", post(pages::logout))
        .route("/county", get(pages::county))
        .route("/c/{community_id}", get(pages::community))
        .route("/c/{community_id}/live", get(pages::community_live))
        .route("/c/{community_id}/events", get(pages::community_events))
        .route("/issues/{issue_id}", get(pages::issue))
        .route("/h/{household_id}", get(pages::household))
        .route("/static/{file}", get(pages::static_file))
        .route("/api/v1/me", get(api::me))
        .route(
            "/api/v1/communities/{community_id}/dashboard",
            get(api::dashboard),
        )
        .route("/api/v1/county", get(api::county))
        .route("/api/v1/households/{household_id}", get(api::household))
        .route("/api/v1/issues/{issue_id}", get(api::issue))
        .route(
            "/open311/v2/{file}",
            get(open311::get_top).post(open311::post_top),
        )
        .route("/open311/v2/services/{file}", get(open311::get_definition))
        .route("/open311/v2/requests/{file}", get(open311::get_one))
        .route("/open311/{*rest}", axum::routing::any(open311::unknown))
        .route("/metrics", get(metrics::scrape))
        .route("/healthz", get(healthz));
    for service in [
        crate::SERVICE_NAME,
        crate::AUTH_SERVICE_NAME,
        crate::backend::PEOPLE,
        crate::backend::ISSUES,
        crate::backend::LOGISTICS,
    ] {
        app = app.route_service(&format!("/{service}/{{*method}}"), grpc.clone());
    }
    app.fallback(|| async { WebError::NotFound("there is no page at this address".into()) })
        // Refuse past the limit and cut what runs too long (inside the metrics, so both are counted).
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        // Every answer says how a browser may use it.
        .layer(axum::middleware::from_fn(security_headers))
        // Who the client is, once, for the login throttle and Open311's limits.
        .layer(axum::middleware::from_fn_with_state(
            state.auth.proxies.clone(),
            crate::client::remember,
        ))
        .with_state(state)
}

/// The HTTP side's share of the gRPC side's protections: past the limit of
/// requests in flight a request is refused at once (503, `Retry-After: 1`)
/// rather than queued, and one that takes longer than the request timeout
/// is cut (504). Health and metrics are never refused (a busy gateway is
/// alive), and event streams, which last as long as a page is open, are
/// neither counted nor cut.
async fn guard(
    axum::extract::State(state): axum::extract::State<State>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/metrics") || path.ends_with("/events") {
        return next.run(req).await;
    }
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        let mut resp = WebError::Unavailable(
            "the gateway is at its limit of requests in flight; retry in a moment".into(),
        )
        .into_response();
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return resp;
    };
    match tokio::time::timeout(state.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            let status = StatusCode::GATEWAY_TIMEOUT;
            let message = format!("no answer within {} ms", state.request_timeout.as_millis());
            (status, render::error_page(Lang::Zh, status, &message)).into_response()
        }
    }
}

/// Script and styles only from our own files (no inline script, so an
/// injected one does not run), never framed, no sniffing of types, no full
/// addresses (which hold record ids) sent to other sites.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Adds the browser protections to every answer; an answer that says nothing
/// of caching is not cached anywhere (pages hold personal data).
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::HeaderValue;
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    ] {
        h.insert(name, value);
    }
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// Liveness and readiness for load balancers: 200 while the gateway's own
/// database answers, with each backend's state; 503 otherwise.
async fn healthz(axum::extract::State(state): axum::extract::State<State>) -> Response {
    let db = state.db.is_reachable(Duration::from_millis(800)).await;
    let backends: serde_json::Map<String, serde_json::Value> =
        [&state.people, &state.issues, &state.logistics]
            .iter()
            .map(|b| {
                (
                    b.service().to_owned(),
                    (if b.is_up() { "up" } else { "down" }).into(),
                )
            })
            .collect();
    let body = serde_json::json!({
        "status": if db { "ok" } else { "unavailable" },
        "database": if db { "up" } else { "down" },
        "backends": backends,
    });
    let status = if db {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Serves `router` on `listener` until `shutdown` completes, then ends the
/// open event streams and lets other requests in flight finish.
///
/// The HTTP side has the gRPC side's protections against slow and idle
/// clients: at most `max_connections` connections are open at once (one
/// more is closed as soon as it is accepted), and a request head that is not
/// whole within `handshake_timeout` closes its connection (a client that
/// sends half a head and waits would otherwise hold it for ever).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    state: State,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let places = Arc::new(tokio::sync::Semaphore::new(state.limits.max_connections));
    // Each connection holds a receiver: when all are gone, every connection is done.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.limits.handshake_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: say so, wait a moment, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            tracing::warn!(
                max_connections = state.limits.max_connections,
                "HTTP connection refused: at the connection limit"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(client));
                req.map(axum::body::Body::new)
            },
        );
        let (builder, mut stop) = (builder.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop((place, stop));
        });
    }
    let _ = state.stop.send(true);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
    Ok(())
}
