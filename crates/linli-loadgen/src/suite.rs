//! The suite under test: the four services as separate processes from the
//! built binaries (the directory this program lives in), on SQLite files or
//! PostgreSQL databases of their own, with any number of replicas of each
//! domain service behind one gateway.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the suite runs and on what.
#[derive(Debug, Clone)]
pub struct Layout {
    pub bin_dir: PathBuf,
    pub dir: PathBuf,
    pub backend: Backend,
    /// postgres://user@host:port, without a database.
    pub postgres: String,
    /// Databases are named linli_<prefix>_<service>.
    pub db_prefix: String,
    pub replicas: usize,
}

pub const DOMAIN: [&str; 3] = ["people", "issues", "logistics"];

impl Layout {
    pub fn database_url(&self, service: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!(
                "sqlite://{}",
                self.dir.join(format!("{service}.db")).display()
            ),
            Backend::Postgres => format!(
                "{}/linli_{}_{service}",
                self.postgres.trim_end_matches('/'),
                self.db_prefix
            ),
        }
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// Makes every part's keys if they are not there yet (the services make
    /// their own only on SQLite; a PostgreSQL deployment is given them).
    pub fn ensure_key(&self) -> anyhow::Result<()> {
        linli_core::keyring::init_dir(&self.keys_dir())?;
        Ok(())
    }

    /// A program of the suite, configured with the suite's key and the service's database.
    pub fn command(&self, program: &str, service: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.env("LINLI_KEYS_DIR", self.keys_dir())
            .arg("--database-url")
            .arg(self.database_url(service));
        cmd
    }

    /// Runs a one-off command (migrate, seed) to the end, its output shown.
    pub fn run(&self, service: &str, args: &[String]) -> anyhow::Result<()> {
        let mut cmd = self.command(&format!("linli-{service}"), service);
        cmd.args(args);
        let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
        if !status.success() {
            bail!("{cmd:?} failed: {status}");
        }
        Ok(())
    }

    /// Removes the suite's databases.
    pub fn wipe(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sqlite => {
                for s in DOMAIN.iter().chain(["gateway"].iter()) {
                    for suffix in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(self.dir.join(format!("{s}.db{suffix}")));
                    }
                }
            }
            Backend::Postgres => {
                for s in DOMAIN.iter().chain(["gateway"].iter()) {
                    let db = format!("linli_{}_{s}", self.db_prefix);
                    let status = Command::new(psql())
                        .args([&format!("{}/postgres", self.postgres.trim_end_matches('/'))])
                        .args([
                            "-q",
                            "-c",
                            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                        ])
                        .status()
                        .context("psql is needed to reset the PostgreSQL databases")?;
                    if !status.success() {
                        bail!("could not drop {db}");
                    }
                }
            }
        }
        Ok(())
    }
}

/// psql from PATH or from the PostgreSQL installation.
pub fn psql() -> PathBuf {
    pg_program("psql")
}

/// A PostgreSQL program: from PATH, or the newest /usr/lib/postgresql/*/bin.
pub fn pg_program(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    if let Some(found) = dirs.iter().rev().map(|d| d.join(name)).find(|p| p.exists()) {
        return found;
    }
    PathBuf::from(name)
}

/// One running process of the suite.
pub struct Proc {
    pub name: String,
    pub service: &'static str,
    pub addr: String,
    pub args: Vec<String>,
    pub child: Option<Child>,
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory, from /proc (kB).
    pub fn rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

/// The running suite.
pub struct Suite {
    pub layout: Layout,
    pub procs: Vec<Proc>,
    pub gateway: String,
}

pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0);
    format!("127.0.0.1:{port}")
}

impl Suite {
    /// Plans the suite's processes on free ports without starting them.
    pub fn plan(layout: &Layout) -> Suite {
        let replicas = layout.replicas.max(1);
        let people: Vec<String> = (0..replicas).map(|_| free_addr()).collect();
        let issues: Vec<String> = (0..replicas).map(|_| free_addr()).collect();
        let logistics: Vec<String> = (0..replicas).map(|_| free_addr()).collect();
        let urls = |a: &[String]| {
            a.iter()
                .map(|a| format!("http://{a}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut procs = Vec::new();
        for (i, addr) in people.iter().enumerate() {
            procs.push(Proc {
                name: format!("people-{i}"),
                service: "people",
                addr: addr.clone(),
                args: vec!["--listen".into(), addr.clone(), "serve".into()],
                child: None,
            });
        }
        for (service, addrs) in [("issues", &issues), ("logistics", &logistics)] {
            for (i, addr) in addrs.iter().enumerate() {
                procs.push(Proc {
                    name: format!("{service}-{i}"),
                    service,
                    addr: addr.clone(),
                    args: vec![
                        "--listen".into(),
                        addr.clone(),
                        "--people-addr".into(),
                        format!("http://{}", people[i % people.len()]),
                        "serve".into(),
                    ],
                    child: None,
                });
            }
        }
        let gateway = free_addr();
        procs.push(Proc {
            name: "gateway-0".into(),
            service: "gateway",
            addr: gateway.clone(),
            args: vec![
                "--listen".into(),
                gateway.clone(),
                "--http-listen".into(),
                free_addr(),
                "--people-addr".into(),
                urls(&people),
                "--issues-addr".into(),
                urls(&issues),
                "--logistics-addr".into(),
                urls(&logistics),
                "serve".into(),
            ],
            child: None,
        });
        Suite {
            layout: layout.clone(),
            procs,
            gateway,
        }
    }

    pub fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let logs = self.layout.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let p = &mut self.procs[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("{}.log", p.name)))?;
        let child = self
            .layout
            .command(&format!("linli-{}", p.service), p.service)
            .args(&p.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", p.name))?;
        p.child = Some(child);
        Ok(())
    }

    /// Starts every process at once and waits until each answers its health
    /// check; returns how long that took.
    pub async fn start(&mut self, within: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        for i in 0..self.procs.len() {
            self.spawn(i)?;
        }
        for i in 0..self.procs.len() {
            self.wait_healthy(i, started + within).await?;
        }
        Ok(started.elapsed())
    }

    pub async fn wait_healthy(&mut self, index: usize, until: Instant) -> anyhow::Result<()> {
        let addr = self.procs[index].addr.clone();
        loop {
            if let Some(child) = self.procs[index].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited ({status}); see {}",
                    self.procs[index].name,
                    self.layout.dir.join("logs").display()
                );
            }
            if healthy(&addr).await {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("{} is not healthy on {addr}", self.procs[index].name);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.procs[index].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| p.name == name)
    }

    /// Resident memory of every process (kB).
    pub fn rss(&self) -> Vec<(String, u64)> {
        self.procs
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.rss_kb()?)))
            .collect()
    }

    /// SIGTERM to all, then waits for them.
    pub fn stop(&mut self) {
        for p in &mut self.procs {
            if let Some(child) = &p.child {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
        }
        for p in &mut self.procs {
            if let Some(mut child) = p.child.take() {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() > deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        }
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        self.stop();
    }
}

pub async fn healthy(addr: &str) -> bool {
    let Ok(endpoint) = Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_millis(500))
        .connect()
        .await
    else {
        return false;
    };
    matches!(
        HealthClient::new(channel).check(HealthCheckRequest::default()).await,
        Ok(r) if r.get_ref().status == ServingStatus::Serving as i32
    )
}

/// `n` HTTP/2 connections to `addr`, opened now, each reconnecting by itself.
pub async fn channels(addr: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for _ in 0..n.max(1) {
        out.push(
            Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?,
        );
    }
    Ok(out)
}

/// The directory this program was started from (the built binaries live there).
pub fn own_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Server time by RPC as one process's `/metrics` reports it: rpc → (calls, seconds).
pub fn scrape(addr: &str) -> std::collections::BTreeMap<String, (f64, f64)> {
    use std::io::{Read, Write};
    let mut out = std::collections::BTreeMap::new();
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return out;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_string(&mut text).is_err() {
        return out;
    }
    for line in text.lines() {
        let (kind, rest) = if let Some(r) =
            line.strip_prefix("linli_grpc_server_request_duration_seconds_sum{rpc=\"")
        {
            (1, r)
        } else if let Some(r) =
            line.strip_prefix("linli_grpc_server_request_duration_seconds_count{rpc=\"")
        {
            (0, r)
        } else {
            continue;
        };
        let Some((rpc, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let e: &mut (f64, f64) = out.entry(rpc.to_owned()).or_default();
        if kind == 0 {
            e.0 = v;
        } else {
            e.1 = v;
        }
    }
    out
}

/// Every process's server time by RPC, keyed "process rpc".
pub fn server_times(suite: &Suite) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut all = std::collections::BTreeMap::new();
    for p in &suite.procs {
        for (rpc, v) in scrape(&p.addr) {
            let short = rpc.rsplit('/').next().unwrap_or(&rpc).to_owned();
            all.insert(format!("{} {short}", p.service), v);
        }
    }
    all
}

/// Where the servers spent their time between two snapshots, most first:
/// (process and RPC, calls, mean ms, share of all server time).
pub fn time_spent(
    before: &std::collections::BTreeMap<String, (f64, f64)>,
    after: &std::collections::BTreeMap<String, (f64, f64)>,
) -> Vec<(String, f64, f64, f64)> {
    let mut rows: Vec<(String, f64, f64)> = after
        .iter()
        .map(|(k, (n, s))| {
            let (n0, s0) = before.get(k).copied().unwrap_or_default();
            (k.clone(), n - n0, s - s0)
        })
        .filter(|(_, n, _)| *n > 0.0)
        .collect();
    // The gateway's time includes the backends'; shares are of the backends' time.
    let total: f64 = rows
        .iter()
        .filter(|(k, _, _)| !k.starts_with("gateway "))
        .map(|(_, _, s)| s)
        .sum();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    rows.into_iter()
        .map(|(k, n, s)| {
            let share = if k.starts_with("gateway ") || total <= 0.0 {
                0.0
            } else {
                s / total
            };
            (k, n, s / n * 1000.0, share)
        })
        .collect()
}

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// A process's CPU time (user + system) so far, in ms; with `children`, that
/// of its reaped children too.
pub fn cpu_ms(pid: &str, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // utime, stime, cutime, cstime are fields 14–17 of the line, 12–15 after the name.
    let own = f.get(11)? + f.get(12)?;
    let reaped = if children {
        f.get(13)? + f.get(14)?
    } else {
        0.0
    };
    Some((own + reaped) * 1000.0 / TICKS_PER_SEC)
}

/// CPU time so far (ms) of each of the suite's processes, of each PostgreSQL
/// process on the machine (`postgres:<pid>`), and of this load generator with
/// the programs it ran and reaped (`loadgen`).
pub fn cpu_times(suite: &Suite) -> std::collections::BTreeMap<String, f64> {
    let mut all = postgres_cpu();
    for p in &suite.procs {
        if let Some(ms) = p.pid().and_then(|pid| cpu_ms(&pid.to_string(), false)) {
            all.insert(p.name.clone(), ms);
        }
    }
    all.insert("loadgen".into(), loadgen_cpu_ms());
    all.insert(MACHINE.into(), machine_busy_ms());
    all
}

/// The key under which `cpu_times` keeps the whole machine's busy time.
pub const MACHINE: &str = "machine";

/// Busy CPU time so far (ms) of the whole machine, from `/proc/stat`: every
/// process, and the kernel's work on their behalf (softirq included).
pub fn machine_busy_ms() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let f: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy * 1000.0 / TICKS_PER_SEC
}

/// CPU time so far (ms) of this load generator and the programs it ran and reaped.
pub fn loadgen_cpu_ms() -> f64 {
    cpu_ms("self", true).unwrap_or(0.0)
}

/// CPU time so far (ms) of every process named `postgres`, by `postgres:<pid>`
/// (a backend's time is lost when it exits, so only those alive at both
/// ends of a measurement are counted).
pub fn postgres_cpu() -> std::collections::BTreeMap<String, f64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Default::default();
    };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|pid| Some((format!("postgres:{pid}"), cpu_ms(&pid, false)?)))
        .collect()
}

/// CPU ms per call of each process between two snapshots, most first (the
/// PostgreSQL processes together as `postgres`, those that started in between
/// included; those that ended in between are lost), and the cores kept busy
/// in all over `seconds`.
pub fn cpu_spent(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    calls: f64,
    seconds: f64,
) -> (Vec<(String, f64)>, f64) {
    let mut spent: std::collections::BTreeMap<String, f64> = Default::default();
    for (k, ms) in after.iter().filter(|(k, _)| *k != MACHINE) {
        let name = if k.starts_with("postgres:") {
            "postgres"
        } else {
            k
        };
        // A PostgreSQL process that started meanwhile (a pool opening
        // connections under the load) spent all its time in the window.
        let was = match before.get(k) {
            Some(was) => *was,
            None if name == "postgres" => 0.0,
            None => continue,
        };
        *spent.entry(name.to_owned()).or_default() += ms - was;
    }
    let mut rows: Vec<(String, f64)> = spent.into_iter().filter(|(_, ms)| *ms > 0.0).collect();
    let total: f64 = rows.iter().map(|(_, ms)| ms).sum();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let per_call = rows
        .into_iter()
        .map(|(k, ms)| (k, ms / calls.max(1.0)))
        .collect();
    (per_call, total / 1000.0 / seconds.max(1e-9))
}

/// The cores the whole machine kept busy between two snapshots.
pub fn machine_busy(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    seconds: f64,
) -> f64 {
    let busy = |m: &std::collections::BTreeMap<String, f64>| m.get(MACHINE).copied().unwrap_or(0.0);
    (busy(after) - busy(before)) / 1000.0 / seconds.max(1e-9)
}
