//! What a run measured: per operation, a latency histogram (HdrHistogram, in
//! microseconds) and the errors by gRPC code; per scenario, how long it ran.
use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// One operation's calls.
#[derive(Clone)]
pub struct OpStats {
    pub latency: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    /// The first message seen with each code, to tell why.
    pub messages: BTreeMap<String, String>,
    /// The slowest failed call (µs): failing fast is part of the contract.
    pub slowest_failure_us: u64,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            // 1 µs to 10 min, three significant figures.
            latency: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            errors: BTreeMap::new(),
            messages: BTreeMap::new(),
            slowest_failure_us: 0,
        }
    }
}

/// A worker's (or a whole scenario's) calls by operation.
#[derive(Clone, Default)]
pub struct Recorder {
    pub ops: BTreeMap<&'static str, OpStats>,
}

impl Recorder {
    pub fn record(&mut self, op: &'static str, took: Duration, outcome: Result<(), tonic::Code>) {
        let stats = self.ops.entry(op).or_default();
        match outcome {
            Ok(()) => {
                stats.latency.saturating_record(took.as_micros() as u64);
            }
            Err(code) => {
                *stats.errors.entry(code_name(code)).or_default() += 1;
                stats.slowest_failure_us = stats.slowest_failure_us.max(took.as_micros() as u64);
            }
        }
    }

    /// Notes why a call failed: the first message with each code is kept.
    pub fn failed(&mut self, op: &'static str, status: &tonic::Status) {
        let stats = self.ops.entry(op).or_default();
        stats
            .messages
            .entry(code_name(status.code()))
            .or_insert_with(|| status.message().to_owned());
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (op, s) in &other.ops {
            let mine = self.ops.entry(op).or_default();
            mine.latency.add(&s.latency).expect("same bounds");
            mine.slowest_failure_us = mine.slowest_failure_us.max(s.slowest_failure_us);
            for (code, n) in &s.errors {
                *mine.errors.entry(code.clone()).or_default() += n;
            }
            for (code, m) in &s.messages {
                mine.messages
                    .entry(code.clone())
                    .or_insert_with(|| m.clone());
            }
        }
    }
}

pub fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let upper = c.to_ascii_uppercase();
            if i > 0 && c.is_ascii_uppercase() {
                vec!['_', upper]
            } else {
                vec![upper]
            }
        })
        .collect()
}

/// One operation's figures, as printed and written to the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct OpFigures {
    pub op: String,
    pub ok: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: BTreeMap<String, u64>,
    /// A message seen with each code.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub messages: BTreeMap<String, String>,
    pub slowest_failure_ms: f64,
}

/// One scenario: what ran, for how long, with how many in flight.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioFigures {
    pub scenario: String,
    pub in_flight: usize,
    pub seconds: f64,
    pub ops: Vec<OpFigures>,
    /// Where the servers spent the time, from their own metrics.
    pub server_time: Vec<ServerTime>,
    /// CPU time per answered call, by process (`postgres`: all its processes;
    /// `loadgen`: this generator).
    pub cpu_ms_per_call: std::collections::BTreeMap<String, f64>,
    /// Cores the processes above kept busy in all.
    pub cores_busy: f64,
    /// Cores the whole machine kept busy (`/proc/stat`): what the processes
    /// above do not show is the kernel's work for them, processes that ended
    /// during the run, and anything else on the machine.
    pub machine_cores_busy: f64,
}

/// One RPC of one service during a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ServerTime {
    pub what: String,
    pub calls: f64,
    pub mean_ms: f64,
    /// Of all the backends' server time (0 for the gateway, whose time includes theirs).
    pub share: f64,
}

impl ScenarioFigures {
    pub fn new(scenario: &str, in_flight: usize, elapsed: Duration, rec: &Recorder) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        ScenarioFigures {
            scenario: scenario.to_owned(),
            in_flight,
            seconds: secs,
            ops: rec
                .ops
                .iter()
                .map(|(op, s)| OpFigures {
                    op: (*op).to_owned(),
                    ok: s.latency.len(),
                    per_sec: s.latency.len() as f64 / secs,
                    p50_ms: ms(&s.latency, 0.50),
                    p95_ms: ms(&s.latency, 0.95),
                    p99_ms: ms(&s.latency, 0.99),
                    max_ms: s.latency.max() as f64 / 1000.0,
                    errors: s.errors.clone(),
                    messages: s.messages.clone(),
                    slowest_failure_ms: s.slowest_failure_us as f64 / 1000.0,
                })
                .collect(),
            server_time: Vec::new(),
            cpu_ms_per_call: Default::default(),
            cores_busy: 0.0,
            machine_cores_busy: 0.0,
        }
    }

    pub fn op(&self, name: &str) -> Option<&OpFigures> {
        self.ops.iter().find(|o| o.op == name)
    }

    pub fn print(&self) {
        println!(
            "\n{} — {} in flight, {:.1} s",
            self.scenario, self.in_flight, self.seconds
        );
        println!(
            "  {:<28} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}  errors",
            "operation", "ok", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        for o in &self.ops {
            let errors = if o.errors.is_empty() {
                "-".to_owned()
            } else {
                o.errors
                    .iter()
                    .map(|(c, n)| format!("{c} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "  {:<28} {:>9} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {errors}",
                o.op, o.ok, o.per_sec, o.p50_ms, o.p95_ms, o.p99_ms, o.max_ms
            );
            for (code, message) in &o.messages {
                println!("    {code}, first: {message}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(tonic::Code::Unavailable), "UNAVAILABLE");
        assert_eq!(
            code_name(tonic::Code::DeadlineExceeded),
            "DEADLINE_EXCEEDED"
        );
        assert_eq!(code_name(tonic::Code::Ok), "OK");
    }

    #[test]
    fn recorders_merge_calls_and_errors() {
        let mut a = Recorder::default();
        a.record("x", Duration::from_millis(2), Ok(()));
        a.record("x", Duration::from_millis(4), Err(tonic::Code::Unavailable));
        let mut b = Recorder::default();
        b.record("x", Duration::from_millis(8), Ok(()));
        b.record("y", Duration::from_millis(1), Err(tonic::Code::Unavailable));
        b.failed("y", &tonic::Status::unavailable("issues is unavailable"));
        b.failed("y", &tonic::Status::unavailable("a later reason"));
        a.merge(&b);
        let f = ScenarioFigures::new("t", 1, Duration::from_secs(2), &a);
        let x = f.op("x").unwrap();
        assert_eq!((x.ok, x.per_sec), (2, 1.0));
        assert!((x.max_ms - 8.0).abs() < 0.01, "{}", x.max_ms);
        assert_eq!(x.errors["UNAVAILABLE"], 1);
        assert_eq!(f.op("y").unwrap().errors["UNAVAILABLE"], 1);
        assert_eq!(
            f.op("y").unwrap().messages["UNAVAILABLE"],
            "issues is unavailable"
        );
        assert!(x.messages.is_empty());
    }
}
