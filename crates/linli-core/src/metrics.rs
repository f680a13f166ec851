//! Metrics in the Prometheus text format, counted in memory per process:
//! requests by method and outcome with a latency histogram, and gauges read
//! when scraped (database pool use, each service's domain figures). Every
//! server answers `GET /metrics` over HTTP/1.1 on its gRPC port; the gateway
//! also on its HTTP side.
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use prost::Message;

use crate::Db;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Series {
    by_outcome: BTreeMap<String, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Requests counted by what was asked (`rpc` or `route`) and how it ended
/// (`code` or `status`), with how long each took.
pub struct Requests {
    /// e.g. `linli_grpc_server`, giving `linli_grpc_server_requests_total`.
    prefix: &'static str,
    what: &'static str,
    outcome: &'static str,
    series: Mutex<BTreeMap<String, Series>>,
}

impl Requests {
    pub fn new(prefix: &'static str, what: &'static str, outcome: &'static str) -> Requests {
        Requests {
            prefix,
            what,
            outcome,
            series: Mutex::default(),
        }
    }

    pub fn observe(&self, what: &str, outcome: &str, seconds: f64) {
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        // Callers name `what` from a fixed set, but a bug or a new route must
        // not grow the scrape without end.
        let what = if all.contains_key(what) || all.len() < MOST_SERIES {
            what
        } else {
            OTHER
        };
        let s = all.entry(what.to_owned()).or_default();
        *s.by_outcome.entry(outcome.to_owned()).or_default() += 1;
        s.count += 1;
        s.sum += seconds;
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                s.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self, out: &mut String) {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let (p, w, o) = (self.prefix, self.what, self.outcome);
        let _ = writeln!(
            out,
            "# HELP {p}_requests_total Requests answered, by {w} and {o}."
        );
        let _ = writeln!(out, "# TYPE {p}_requests_total counter");
        for (what, s) in all.iter() {
            let what = escape(what);
            for (outcome, n) in &s.by_outcome {
                let outcome = escape(outcome);
                let _ = writeln!(
                    out,
                    "{p}_requests_total{{{w}=\"{what}\",{o}=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP {p}_request_duration_seconds Time to answer (to the response head of a stream)."
        );
        let _ = writeln!(out, "# TYPE {p}_request_duration_seconds histogram");
        for (what, s) in all.iter() {
            let what = escape(what);
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{p}_request_duration_seconds_bucket{{{w}=\"{what}\",le=\"{le}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "{p}_request_duration_seconds_bucket{{{w}=\"{what}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "{p}_request_duration_seconds_sum{{{w}=\"{what}\"}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "{p}_request_duration_seconds_count{{{w}=\"{what}\"}} {}",
                s.count
            );
        }
    }
}

/// Series kept at most per family; past it, new ones are counted as [`OTHER`].
const MOST_SERIES: usize = 1000;
/// What a series past [`MOST_SERIES`] is counted as.
pub const OTHER: &str = "other";
/// What a request for a path no service serves is counted as.
pub const UNKNOWN_RPC: &str = "unknown";

/// A label value in the text format: backslash, quote and newline escaped.
pub fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// The label a gRPC request's path is counted under: the path itself when it
/// names an RPC some linli service declares (or health, or reflection), else
/// [`UNKNOWN_RPC`]. Anyone can send any path, and a label per path would let
/// them grow every scrape without logging in.
pub fn rpc_label(path: &str) -> &str {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let set = prost_types::FileDescriptorSet::decode(linli_proto::FILE_DESCRIPTOR_SET)
            .expect("linli's descriptor set decodes");
        let mut known: HashSet<String> = set
            .file
            .iter()
            .flat_map(|f| {
                f.service.iter().flat_map(move |s| {
                    s.method
                        .iter()
                        .map(move |m| format!("/{}.{}/{}", f.package(), s.name(), m.name()))
                })
            })
            .collect();
        known.extend(
            [
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/Watch",
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            ]
            .map(str::to_owned),
        );
        known
    });
    if known.contains(path) {
        path
    } else {
        UNKNOWN_RPC
    }
}

/// A gRPC code as its canonical name, e.g. `DEADLINE_EXCEEDED`.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// One gauge sample.
#[derive(Debug, Clone)]
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Gauge {
    pub fn new(name: &'static str, help: &'static str, value: f64) -> Gauge {
        Gauge {
            name,
            help,
            labels: Vec::new(),
            value,
        }
    }

    pub fn label(mut self, key: &'static str, value: impl Into<String>) -> Gauge {
        self.labels.push((key, value.into()));
        self
    }
}

/// Writes gauges grouped by name, each name's HELP and TYPE once.
pub fn render_gauges(gauges: &[Gauge], out: &mut String) {
    let mut by_name: BTreeMap<&str, Vec<&Gauge>> = BTreeMap::new();
    for g in gauges {
        by_name.entry(g.name).or_default().push(g);
    }
    for (name, samples) in by_name {
        let _ = writeln!(out, "# HELP {name} {}", samples[0].help);
        let _ = writeln!(out, "# TYPE {name} gauge");
        for g in samples {
            let labels: Vec<String> = g
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {}", g.value);
            } else {
                let _ = writeln!(out, "{name}{{{}}} {}", labels.join(","), g.value);
            }
        }
    }
}

/// A service's own figures, read when scraped.
pub type GaugeFuture<'a> = Pin<Box<dyn Future<Output = Vec<Gauge>> + Send + 'a>>;

pub trait Gauges: Send + Sync {
    fn gauges(&self) -> GaugeFuture<'_>;
}

/// The database pool's use.
pub fn pool_gauges(db: &Db) -> Vec<Gauge> {
    let size = f64::from(db.pool.size());
    let idle = db.pool.num_idle() as f64;
    vec![
        Gauge::new(
            "linli_db_pool_connections",
            "Database connections open, by state.",
            idle,
        )
        .label("state", "idle"),
        Gauge::new(
            "linli_db_pool_connections",
            "Database connections open, by state.",
            size - idle,
        )
        .label("state", "in_use"),
        Gauge::new(
            "linli_db_pool_max_connections",
            "The most database connections the pool opens.",
            f64::from(db.pool.options().get_max_connections()),
        ),
    ]
}

/// What a server's `/metrics` shows: its requests, its pool, its figures.
#[derive(Clone)]
pub struct ServerMetrics {
    pub requests: Arc<Requests>,
    pub db: Option<Db>,
    pub gauges: Option<Arc<dyn Gauges>>,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics {
            requests: Arc::new(Requests::new("linli_grpc_server", "rpc", "code")),
            db: None,
            gauges: None,
        }
    }
}

impl ServerMetrics {
    pub async fn render(&self) -> String {
        let mut out = String::new();
        self.requests.render(&mut out);
        let mut gauges = Vec::new();
        if let Some(db) = &self.db {
            gauges.extend(pool_gauges(db));
        }
        if let Some(g) = &self.gauges {
            gauges.extend(g.gauges().await);
        }
        render_gauges(&gauges, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_and_bucket() {
        let r = Requests::new("linli_grpc_server", "rpc", "code");
        r.observe("/p.S/Get", "OK", 0.004);
        r.observe("/p.S/Get", "NOT_FOUND", 0.02);
        r.observe("/p.S/Get", "OK", 7.0);
        let mut out = String::new();
        r.render(&mut out);
        assert!(out.contains("linli_grpc_server_requests_total{rpc=\"/p.S/Get\",code=\"OK\"} 2"));
        assert!(
            out.contains("linli_grpc_server_requests_total{rpc=\"/p.S/Get\",code=\"NOT_FOUND\"} 1")
        );
        assert!(out.contains(
            "linli_grpc_server_request_duration_seconds_bucket{rpc=\"/p.S/Get\",le=\"0.005\"} 1"
        ));
        assert!(out.contains(
            "linli_grpc_server_request_duration_seconds_bucket{rpc=\"/p.S/Get\",le=\"0.025\"} 2"
        ));
        assert!(out.contains(
            "linli_grpc_server_request_duration_seconds_bucket{rpc=\"/p.S/Get\",le=\"+Inf\"} 3"
        ));
    }

    #[test]
    fn only_declared_rpcs_are_labels_and_every_label_is_escaped() {
        assert_eq!(
            rpc_label("/linli.people.v1.PeopleService/ListPlaces"),
            "/linli.people.v1.PeopleService/ListPlaces"
        );
        assert_eq!(
            rpc_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(rpc_label("/x\"}y{z=\"1"), UNKNOWN_RPC);
        assert_eq!(
            rpc_label("/linli.people.v1.PeopleService/Nope"),
            UNKNOWN_RPC
        );

        let r = Requests::new("p", "what", "code");
        r.observe("a\"}b{c=\"1\nd\\", "OK", 0.1);
        let mut out = String::new();
        r.render(&mut out);
        assert!(
            out.contains("p_requests_total{what=\"a\\\"}b{c=\\\"1\\nd\\\\\",code=\"OK\"} 1"),
            "{out}"
        );
        // One sample per line: the newline did not break a line.
        assert!(
            out.lines()
                .all(|l| l.starts_with('#') || l.starts_with("p_"))
        );
    }

    #[test]
    fn series_are_bounded() {
        let r = Requests::new("p", "what", "code");
        for i in 0..MOST_SERIES + 50 {
            r.observe(&format!("/r{i}"), "OK", 0.1);
        }
        // Those already counted go on being counted under their own name.
        r.observe("/r0", "OK", 0.1);
        let mut out = String::new();
        r.render(&mut out);
        assert_eq!(out.matches("p_requests_total{").count(), MOST_SERIES + 1);
        assert!(out.contains("p_requests_total{what=\"other\",code=\"OK\"} 50"));
        assert!(out.contains("p_requests_total{what=\"/r0\",code=\"OK\"} 2"));
    }

    #[test]
    fn gauges_group_by_name_and_escape_labels() {
        let mut out = String::new();
        render_gauges(
            &[
                Gauge::new("a", "the a", 1.0).label("k", "x\"y"),
                Gauge::new("b", "the b", 2.5),
                Gauge::new("a", "the a", 3.0).label("k", "z"),
            ],
            &mut out,
        );
        assert_eq!(out.matches("# TYPE a gauge").count(), 1);
        assert!(out.contains("a{k=\"x\\\"y\"} 1"));
        assert!(out.contains("a{k=\"z\"} 3"));
        assert!(out.contains("b 2.5"));
    }
}
