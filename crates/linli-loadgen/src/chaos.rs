//! Faults under load, each bounded in time, on loopback only. Residents keep
//! reporting and workers keep reading dashboards through the gateway while:
//! each backend in turn is killed (SIGKILL) and started again; PostgreSQL (a
//! private instance started here, never the machine's own) is stopped
//! abruptly and started again; a backend is slowed behind a delaying proxy.
//! Afterwards every acknowledged report is asked for again with its
//! idempotency key: each must come back as the same issue, none lost.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use linli_proto::gateway::v1 as gpb;
use linli_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use linli_proto::issues::v1 as ipb;
use linli_proto::issues::v1::issues_service_client::IssuesServiceClient;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::mix::{self, County, with_token};
use crate::report::{Recorder, ScenarioFigures};
use crate::suite::{self, Backend, Suite};

#[derive(clap::Args)]
pub struct ChaosArgs {
    #[command(flatten)]
    pub suite: crate::SuiteArgs,
    /// Communities in the (small) county the faults are run on.
    #[arg(long, default_value_t = 3)]
    communities: usize,
    /// Seconds each backend stays down.
    #[arg(long, default_value_t = 3)]
    down_secs: u64,
    /// Seconds of steady load between faults.
    #[arg(long, default_value_t = 3)]
    steady_secs: u64,
    /// Residents reporting at once.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// The JSON report [default: <dir>/chaos.json].
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Calls slower than this while a backend is away count as not failing fast.
const FAIL_FAST: Duration = Duration::from_millis(2500);
/// How soon after a backend is back everything must be whole again.
const RECOVERY: Duration = Duration::from_secs(2);

/// A report the gateway acknowledged: its request (to ask again) and the issue id.
struct Acked {
    request: ipb::ReportIssueRequest,
    token: String,
    id: String,
}

/// The load, running: writers and readers, their calls by phase.
struct Load {
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Recorder>>>,
    acked: Arc<Mutex<Vec<Acked>>>,
    /// Dashboards answered with parts missing, by phase.
    partial: Arc<Vec<AtomicU64>>,
    /// The slowest call (µs) begun in each phase, wherever it ended: a call
    /// is counted in the phase it ended in (one in flight when a process is
    /// killed fails in the fault's phase), and this keeps one that hung
    /// through a fault from escaping the fault's check.
    slowest_begun: Arc<Vec<AtomicU64>>,
}

const PHASES: usize = 16;

fn start_load(
    channels: &[tonic::transport::Channel],
    county: &Arc<County>,
    writers: usize,
    readers: usize,
) -> Load {
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let partial = Arc::new((0..PHASES).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let slowest_begun = Arc::new((0..PHASES).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
    );
    let mut tasks = Vec::new();
    for w in 0..writers + readers {
        let (phase, stop, acked, partial, slowest_begun) = (
            phase.clone(),
            stop.clone(),
            acked.clone(),
            partial.clone(),
            slowest_begun.clone(),
        );
        let channel = channels[w % channels.len()].clone();
        let county = county.clone();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            let mut recs = vec![Recorder::default(); PHASES];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let m = &county.members[(w + n as usize) % county.members.len()];
                let now = || phase.load(Ordering::Relaxed).min(PHASES - 1);
                let begun_in = now();
                let began = Instant::now();
                if w < writers {
                    let key = format!("chaos-{run}-{w}-{n}");
                    let request = ipb::ReportIssueRequest {
                        idempotency_key: key.clone(),
                        community_id: m.community.clone(),
                        household_id: m.household_id.clone(),
                        title: format!("水管漏水 {key}"),
                        category: ipb::Category::Drainage as i32,
                        source: ipb::Source::ResidentReport as i32,
                        ..Default::default()
                    };
                    let outcome = IssuesServiceClient::new(channel.clone())
                        .report_issue(with_token(request.clone(), &m.resident))
                        .await;
                    let p = now();
                    let outcome = match outcome {
                        Ok(r) => {
                            let id = r.into_inner().issue.map(|i| i.id).unwrap_or_default();
                            acked.lock().expect("acked").push(Acked {
                                request,
                                token: m.resident.clone(),
                                id,
                            });
                            Ok(())
                        }
                        Err(s) => {
                            recs[p].failed("ReportIssue", &s);
                            Err(s.code())
                        }
                    };
                    recs[p].record("ReportIssue", began.elapsed(), outcome);
                } else {
                    let outcome = GatewayServiceClient::new(channel.clone())
                        .get_community_dashboard(with_token(
                            gpb::GetCommunityDashboardRequest {
                                community_id: m.community.clone(),
                                ..Default::default()
                            },
                            &m.worker,
                        ))
                        .await;
                    let p = now();
                    let outcome = match outcome {
                        Ok(r) => {
                            if !r.get_ref().missing.is_empty() {
                                partial[p].fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(())
                        }
                        Err(s) => {
                            recs[p].failed("GetCommunityDashboard", &s);
                            Err(s.code())
                        }
                    };
                    recs[p].record("GetCommunityDashboard", began.elapsed(), outcome);
                }
                slowest_begun[begun_in]
                    .fetch_max(began.elapsed().as_micros() as u64, Ordering::Relaxed);
                if recs[now()].ops.values().any(|s| !s.errors.is_empty()) {
                    // Keep a failing writer from spinning.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            recs
        }));
    }
    Load {
        phase,
        stop,
        tasks,
        acked,
        partial,
        slowest_begun,
    }
}

/// A TCP proxy that holds each answer back by a delay that can be changed while it runs.
struct SlowProxy {
    addr: String,
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowProxy {
    async fn start(to: String) -> anyhow::Result<SlowProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (to, delay) = (to.clone(), delay.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&to).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut ri, &mut wo).await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match ro.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        // Held back while the delay lasts; lifting it lets held answers go at once.
                        let held = Instant::now();
                        while held.elapsed() < Duration::from_millis(delay.load(Ordering::Relaxed))
                        {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if wi.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        Ok(SlowProxy {
            addr,
            delay_ms,
            task,
        })
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A PostgreSQL instance of the test's own, in a directory of its own.
struct PrivatePg {
    data: PathBuf,
    port: u16,
    /// Run the server as this user (PostgreSQL refuses to run as root).
    user: Option<String>,
}

impl PrivatePg {
    fn command(&self, program: &str) -> Command {
        let path = suite::pg_program(program);
        match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn start_new(dir: &Path) -> anyhow::Result<PrivatePg> {
        let data = dir.join("pgdata");
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let user = is_root.then(|| "postgres".to_owned());
        if let Some(user) = &user {
            let ok = Command::new("chown")
                .args(["-R", user])
                .arg(&data)
                .status()?
                .success();
            ensure!(ok, "could not give {} to {user}", data.display());
        }
        let port = suite::free_addr()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(55432);
        let pg = PrivatePg { data, port, user };
        let out = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&pg.data)
            .output()
            .context("initdb (PostgreSQL's server programs) is needed for the database fault")?;
        ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start()?;
        Ok(pg)
    }

    fn start(&self) -> anyhow::Result<()> {
        let log = self.data.join("server.log");
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
                self.port,
                self.data.display()
            ))
            .arg("start")
            .output()?;
        ensure!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Stops it the way a crash would: no checkpoint, no goodbye to clients.
    fn crash(&self) -> anyhow::Result<()> {
        let out = self
            .command("pg_ctl")
            .args(["-w", "-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output()?;
        ensure!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-D"])
            .arg(&self.data)
            .args(["-m", "fast", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls until a dashboard is whole and a report goes through; how long that took.
async fn until_whole(
    channel: &tonic::transport::Channel,
    county: &County,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let m = &county.members[0];
    while started.elapsed() < within + Duration::from_secs(10) {
        let dashboard = GatewayServiceClient::new(channel.clone())
            .get_community_dashboard(with_token(
                gpb::GetCommunityDashboardRequest {
                    community_id: m.community.clone(),
                    ..Default::default()
                },
                &m.worker,
            ))
            .await;
        let whole = matches!(&dashboard, Ok(r) if r.get_ref().missing.is_empty());
        if whole {
            let report = IssuesServiceClient::new(channel.clone())
                .list_issues(with_token(
                    ipb::ListIssuesRequest {
                        community_id: m.community.clone(),
                        page_size: 1,
                        ..Default::default()
                    },
                    &m.worker,
                ))
                .await;
            if report.is_ok() {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// One fault's outcome.
#[derive(Debug, serde::Serialize)]
struct FaultFigures {
    fault: String,
    /// Calls while it lasted.
    during: ScenarioFigures,
    /// Dashboards answered with parts missing while it lasted.
    partial_dashboards: u64,
    /// From the component being back (healthy) to a whole dashboard and a working read.
    recovery_ms: Option<f64>,
    problems: Vec<String>,
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let mut layout = args.suite.layout("chaos")?;
    let pg = if layout.backend == Backend::Postgres {
        let pg = PrivatePg::start_new(&layout.dir)?;
        println!(
            "private PostgreSQL on port {} ({})",
            pg.port,
            pg.data.display()
        );
        layout.postgres = pg.url();
        Some(pg)
    } else {
        layout.wipe()?;
        None
    };
    println!("building a small county: {} communities", args.communities);
    crate::seed_county(&layout, args.communities, 50, 2, true)?;

    let mut suite = Suite::plan(&layout);
    // The gateway reaches logistics through a proxy that can slow it down.
    let logistics = suite
        .index_of("logistics-0")
        .map(|i| suite.procs[i].addr.clone())
        .context("no logistics process")?;
    let proxy = SlowProxy::start(logistics.clone()).await?;
    if let Some(g) = suite.procs.iter_mut().find(|p| p.service == "gateway")
        && let Some(i) = g.args.iter().position(|a| a == "--logistics-addr")
    {
        g.args[i + 1] = format!("http://{}", proxy.addr);
    }
    suite.start(Duration::from_secs(60)).await?;
    let channels = suite::channels(&suite.gateway, 2).await?;
    let county = Arc::new(mix::log_in(&channels[0], args.communities).await?);
    ensure!(!county.members.is_empty(), "no community to drive");
    // The steady phase starts once the gateway has found every backend (its
    // first probes may run before a backend listens).
    until_whole(&channels[0], &county, Duration::from_secs(30))
        .await
        .context("the suite was never whole before the faults")?;
    let load = start_load(&channels, &county, args.writers, 2);
    let steady = Duration::from_secs(args.steady_secs);
    let down = Duration::from_secs(args.down_secs);
    let mut phases: Vec<String> = vec!["steady".into()];
    let mut began: Vec<Instant> = vec![Instant::now()];
    let mut recoveries: Vec<(usize, Option<Duration>)> = Vec::new();
    tokio::time::sleep(steady).await;

    // Kill -9 each backend in turn, then start it again on the same database.
    let mut enter = |phases: &mut Vec<String>, name: String| {
        phases.push(name);
        load.phase.store(phases.len() - 1, Ordering::Relaxed);
        began.push(Instant::now());
    };
    for name in ["issues-0", "people-0", "logistics-0"] {
        let index = suite.index_of(name).context("no such process")?;
        enter(&mut phases, format!("{name} killed"));
        println!("kill -9 {name}");
        suite.kill(index)?;
        tokio::time::sleep(down).await;
        suite.spawn(index)?;
        suite
            .wait_healthy(index, Instant::now() + Duration::from_secs(30))
            .await?;
        enter(&mut phases, format!("after {name} restarted"));
        let recovered = until_whole(&channels[0], &county, RECOVERY).await;
        recoveries.push((phases.len() - 2, recovered));
        tokio::time::sleep(steady).await;
    }

    // PostgreSQL stopped abruptly and started again.
    if let Some(pg) = &pg {
        enter(&mut phases, "PostgreSQL stopped".into());
        println!("PostgreSQL: immediate stop");
        pg.crash()?;
        tokio::time::sleep(down).await;
        pg.start()?;
        enter(&mut phases, "after PostgreSQL started".into());
        let recovered = until_whole(&channels[0], &county, RECOVERY).await;
        recoveries.push((phases.len() - 2, recovered));
        tokio::time::sleep(steady).await;
    }

    // Logistics slowed well past the gateway's part deadline.
    enter(&mut phases, "logistics slowed by 3 s".into());
    println!("logistics answers held back 3 s");
    proxy.delay_ms.store(3000, Ordering::Relaxed);
    tokio::time::sleep(down.max(Duration::from_secs(4))).await;
    proxy.delay_ms.store(0, Ordering::Relaxed);
    enter(&mut phases, "after the slowdown".into());
    let recovered = until_whole(&channels[0], &county, RECOVERY).await;
    recoveries.push((phases.len() - 2, recovered));
    tokio::time::sleep(steady).await;

    load.stop.store(true, Ordering::Relaxed);
    began.push(Instant::now());
    let mut by_phase = vec![Recorder::default(); PHASES];
    for t in load.tasks {
        if let Ok(recs) = t.await {
            for (i, r) in recs.iter().enumerate() {
                by_phase[i].merge(r);
            }
        }
    }

    // Every acknowledged report, asked for again with its key: the same issue, or it was lost.
    let acked = std::mem::take(&mut *load.acked.lock().expect("acked"));
    let mut lost = Vec::new();
    let mut client = IssuesServiceClient::new(channels[0].clone());
    for a in &acked {
        let again = client
            .report_issue(with_token(a.request.clone(), &a.token))
            .await
            .map(|r| r.into_inner().issue.map(|i| i.id).unwrap_or_default());
        match again {
            Ok(id) if id == a.id => {}
            Ok(other) => lost.push(format!(
                "{}: acknowledged as {}, now {other}",
                a.request.idempotency_key, a.id
            )),
            Err(s) => lost.push(format!("{}: {}", a.request.idempotency_key, s.message())),
        }
    }

    let mut faults = Vec::new();
    let mut problems_all = Vec::new();
    for (i, name) in phases.iter().enumerate() {
        let lasted = began[i + 1].saturating_duration_since(began[i]);
        let figures = ScenarioFigures::new(name, args.writers + 2, lasted, &by_phase[i]);
        let mut problems = Vec::new();
        let is_fault = recoveries.iter().any(|(p, _)| *p == i);
        if is_fault {
            for op in &figures.ops {
                let slowest = op.max_ms.max(op.slowest_failure_ms);
                if slowest > FAIL_FAST.as_secs_f64() * 1000.0 {
                    problems.push(format!(
                        "{}: a call took {:.0} ms (limit {} ms)",
                        op.op,
                        slowest,
                        FAIL_FAST.as_millis()
                    ));
                }
            }
            let begun = load.slowest_begun[i].load(Ordering::Relaxed) as f64 / 1000.0;
            if begun > FAIL_FAST.as_secs_f64() * 1000.0 {
                problems.push(format!(
                    "a call begun during it took {begun:.0} ms (limit {} ms)",
                    FAIL_FAST.as_millis()
                ));
            }
        }
        let recovery = recoveries
            .iter()
            .find(|(p, _)| *p == i)
            .and_then(|(_, r)| *r);
        if is_fault {
            match recovery {
                Some(r) if r <= RECOVERY => {}
                Some(r) => problems.push(format!("whole again only after {r:?}")),
                None => problems.push("never whole again".into()),
            }
        }
        problems_all.extend(problems.iter().map(|p| format!("{name}: {p}")));
        faults.push(FaultFigures {
            fault: name.clone(),
            partial_dashboards: load.partial[i].load(Ordering::Relaxed),
            during: figures,
            recovery_ms: recovery.map(|r| r.as_secs_f64() * 1000.0),
            problems,
        });
    }
    println!();
    for f in &faults {
        let calls: Vec<String> = f
            .during
            .ops
            .iter()
            .map(|o| {
                let errors: BTreeMap<_, _> = o.errors.iter().collect();
                format!(
                    "{} ok {} (slowest {:.0} ms) failed {:?} (slowest {:.0} ms)",
                    o.op, o.ok, o.max_ms, errors, o.slowest_failure_ms
                )
            })
            .collect();
        println!("{:<28} {}", f.fault, calls.join("; "));
        for o in &f.during.ops {
            for (code, message) in &o.messages {
                println!("{:<28} {} {code}: {message}", "", o.op);
            }
        }
        if f.partial_dashboards > 0 {
            println!(
                "{:<28} {} dashboards answered partial",
                "", f.partial_dashboards
            );
        }
        if let Some(r) = f.recovery_ms {
            println!("{:<28} whole again {r:.0} ms after it was back", "");
        }
    }
    println!(
        "\nacknowledged reports: {}, lost: {}",
        acked.len(),
        lost.len()
    );
    for l in lost.iter().take(10) {
        println!("  lost: {l}");
    }
    let report = json!({
        "backend": layout.backend,
        "faults": faults,
        "acknowledged_writes": acked.len(),
        "writes_lost": lost.len(),
        "problems": problems_all,
    });
    let path = args.report.unwrap_or_else(|| layout.dir.join("chaos.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", path.display());
    drop(proxy);
    suite.stop();
    if !lost.is_empty() {
        bail!("{} acknowledged writes lost", lost.len());
    }
    if acked.is_empty() {
        bail!("no write was acknowledged: the load did not run");
    }
    if !problems_all.is_empty() {
        bail!("faults not handled:\n  {}", problems_all.join("\n  "));
    }
    println!("chaos: passed");
    Ok(())
}
