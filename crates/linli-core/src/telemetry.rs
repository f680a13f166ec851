//! Logs and traces. Logs go to stderr, human-readable or JSON. When an OTLP
//! endpoint is configured, spans are also exported over OTLP/gRPC, and W3C
//! trace context is read from incoming and written to outgoing metadata, so a
//! request keeps one trace across every service it touches.
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::prelude::*;

use crate::config::LogFormat;

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes what is buffered.
#[must_use = "dropping the guard loses buffered spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// Spans from the transport stack say nothing a linli operator can act on and
/// would swamp the trace viewer; they are kept out of the export. Each SQL
/// statement (its text, never its values) goes in as an event of the RPC's
/// span, with how long it took.
fn export_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("sqlx", LevelFilter::OFF)
        .with_target("sqlx::query", LevelFilter::DEBUG)
}

/// Builds the exporter pipeline for `endpoint`, or nothing when there is none.
pub fn tracer_provider(
    service: &str,
    endpoint: Option<&str>,
) -> anyhow::Result<Option<SdkTracerProvider>> {
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(format!("linli-{service}"))
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build(),
    ))
}

/// Installs the global subscriber: logs filtered by `RUST_LOG` (default `info`), plus OTLP export when configured.
pub fn init(
    service: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let env_filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let provider = tracer_provider(service, otlp_endpoint)?;
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(format!("linli-{service}")))
            .with_filter(export_filter())
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(env_filter))
        .with(otel)
        .try_init()?;
    Ok(Telemetry { provider })
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// The span for one incoming request, named by its RPC and parented on the
/// caller's trace when the request carries W3C `traceparent`.
pub fn request_span(req: &http::Request<()>) -> tracing::Span {
    let rpc = req.uri().path();
    let span = tracing::info_span!("rpc", otel.name = %rpc.trim_start_matches('/'), otel.kind = "server", rpc = %rpc);
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
    // Only fails when no OpenTelemetry layer is installed, which leaves nothing to parent.
    let _ = span.set_parent(parent);
    span
}

/// Writes the current span's trace context into the headers of a request passed
/// on as it is (the gateway's forwarding), replacing the caller's: the next hop's
/// span is then a child of this one, which is itself the caller's child.
pub fn inject_headers(headers: &mut http::HeaderMap) {
    let mut metadata = tonic::metadata::MetadataMap::from_headers(std::mem::take(headers));
    inject_context(&mut metadata);
    *headers = metadata.into_headers();
}

/// The trace id of the current span, when traces are being recorded.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Writes the current span's trace context into outgoing metadata (`traceparent`).
pub fn inject_context(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}
