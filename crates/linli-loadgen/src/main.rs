//! `linli-loadgen`: builds a benchmark county, drives it through the gateway
//! and measures it against what this machine does with no work at all; with
//! `chaos`, breaks it on purpose under load and checks that nothing
//! acknowledged is lost. See docs/BENCHMARKS.md.
mod chaos;
mod limits;
mod mix;
mod report;
mod suite;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

use mix::{Driver, MIX, Op, Shape, Spread};
use report::ScenarioFigures;
use suite::{Backend, Layout, Suite};

#[derive(Parser)]
#[command(name = "linli-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build (or reuse) a benchmark county, start the suite, run the scenarios, print and save the figures.
    Bench(BenchArgs),
    /// Kill each backend under load, stop PostgreSQL under load, slow a backend; check nothing acknowledged is lost.
    Chaos(chaos::ChaosArgs),
    /// Serve the empty RPC the figures are compared with (used by `bench`).
    LimitServer {
        #[arg(long)]
        listen: String,
        /// Three servers each call goes on to, comma-separated.
        #[arg(long, value_delimiter = ',')]
        fanout: Vec<String>,
    },
}

#[derive(clap::Args, Clone)]
pub struct SuiteArgs {
    /// The storage the services run on.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: Backend,
    /// PostgreSQL server for --backend postgres (databases linli_<prefix>_<service> are made there).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres_url: String,
    /// Processes of each domain service (people, issues, logistics) behind the one gateway.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Where the suite's files and logs go [default: target/bench/<backend>].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Where the service binaries are [default: next to this program].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

impl SuiteArgs {
    fn layout(&self, prefix: &str) -> anyhow::Result<Layout> {
        let backend = match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("target/{prefix}/{backend}")));
        std::fs::create_dir_all(&dir)?;
        Ok(Layout {
            bin_dir: self.bin_dir.clone().unwrap_or_else(suite::own_dir),
            dir: std::fs::canonicalize(&dir)?,
            backend: self.backend,
            postgres: self.postgres_url.clone(),
            db_prefix: prefix.to_owned(),
            replicas: self.replicas,
        })
    }
}

#[derive(clap::Args)]
struct BenchArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Communities in the county.
    #[arg(long, default_value_t = 100)]
    communities: usize,
    /// A year of issues per community.
    #[arg(long, default_value_t = 1000)]
    issues_per_community: usize,
    /// After the scenarios, top the county up to this many issues per community and measure the reads again (growth).
    #[arg(long)]
    grow_to: Option<usize>,
    /// Calls in flight.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Seconds each scenario runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Calls per second for the mix (0: flat out).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// WatchCommunity streams held open during the mix.
    #[arg(long, default_value_t = 50)]
    watchers: usize,
    /// HTTP/2 connections to the gateway (and to the limit servers).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Scenarios to run, comma-separated: limits, dashboard, report, mix.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "limits,dashboard,report,mix"
    )]
    scenarios: Vec<String>,
    /// Drop the databases and build the county again.
    #[arg(long)]
    fresh: bool,
    /// Communities written at a time while seeding.
    #[arg(long, default_value_t = 4)]
    seed_jobs: usize,
    /// The JSON report [default: <dir>/report.json].
    #[arg(long)]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("linli-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Bench(args) => bench(args).await,
            Command::Chaos(args) => chaos::run(args).await,
            Command::LimitServer { listen, fanout } => limits::serve(&listen, fanout).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linli-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Seeds the county: the demo community and accounts, then `communities`
/// benchmark communities and their issues (the people service must be up for
/// the issues; it is started here and stopped after).
pub fn seed_county(
    layout: &Layout,
    communities: usize,
    issues_per_community: usize,
    jobs: usize,
    people: bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    layout.ensure_key()?;
    let fast = match layout.backend {
        Backend::Sqlite => vec!["--sqlite-synchronous", "normal"],
        Backend::Postgres => vec![],
    };
    let jobs = jobs.to_string();
    let communities = communities.to_string();
    let per = issues_per_community.to_string();
    let with = |args: &[&str]| -> Vec<String> {
        fast.iter().chain(args).map(|s| (*s).to_owned()).collect()
    };
    if people {
        layout.run("people", &with(&["seed", "--keep-demo-passwords"]))?;
        layout.run(
            "people",
            &with(&[
                "seed-county",
                "--communities",
                &communities,
                "--jobs",
                &jobs,
            ]),
        )?;
    }
    let people_addr = suite::free_addr();
    let mut people = layout
        .command("linli-people", "people")
        .args(["--listen", &people_addr, "serve"])
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let people_url = format!("http://{people_addr}");
    let outcome = (|| {
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&people_addr).is_err() {
            if Instant::now() > until {
                anyhow::bail!("the people service did not start for seeding");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        layout.run("issues", &with(&["--people-addr", &people_url, "seed"]))?;
        layout.run(
            "issues",
            &with(&[
                "--people-addr",
                &people_url,
                "seed-county",
                "--issues-per-community",
                &per,
                "--jobs",
                &jobs,
            ]),
        )?;
        layout.run("logistics", &with(&["--people-addr", &people_url, "seed"]))?;
        layout.run("gateway", &["migrate".to_owned()])?;
        anyhow::Ok(())
    })();
    let _ = people.kill();
    let _ = people.wait();
    outcome?;
    Ok(started.elapsed())
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "memory_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
    })
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The suite started on `layout`'s databases, its users logged in.
async fn started(
    layout: &Layout,
    connections: usize,
    communities: usize,
) -> anyhow::Result<(Suite, Arc<Driver>)> {
    let mut suite = Suite::plan(layout);
    suite.start(Duration::from_secs(60)).await?;
    let channels = suite::channels(&suite.gateway, connections).await?;
    let county = mix::log_in(&channels[0], communities).await?;
    Ok((suite, Arc::new(Driver::new(channels, county))))
}

/// Runs one scenario of `mix` calls and prints it.
async fn scenario(
    suite: &Suite,
    driver: &Arc<Driver>,
    name: &str,
    shape: Shape,
    mix: &[(Op, u32)],
    spread: Spread,
) -> ScenarioFigures {
    let before = suite::server_times(suite);
    let cpu_before = suite::cpu_times(suite);
    let (rec, took) = mix::drive(name, shape, |w, calls| {
        mix::work(driver.clone(), w, shape, mix.to_vec(), spread, calls)
    })
    .await;
    let mut figures = ScenarioFigures::new(name, shape.in_flight, took, &rec);
    figures.print();
    let calls: f64 = figures.ops.iter().map(|o| o.ok as f64).sum();
    let cpu_after = suite::cpu_times(suite);
    let (cpu, busy) = suite::cpu_spent(&cpu_before, &cpu_after, calls, took.as_secs_f64());
    let machine = suite::machine_busy(&cpu_before, &cpu_after, took.as_secs_f64());
    println!(
        "  CPU per answered call (ms), {busy:.2} cores busy in these processes \
         ({machine:.2} on the whole machine, kernel included): {}",
        cpu.iter()
            .map(|(k, ms)| format!("{k} {ms:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    figures.cpu_ms_per_call = cpu.into_iter().collect();
    figures.cores_busy = busy;
    figures.machine_cores_busy = machine;
    let spent = suite::time_spent(&before, &suite::server_times(suite));
    if !spent.is_empty() {
        println!("  server time (from each process's /metrics), most first:");
        for (what, calls, mean_ms, share) in spent.iter().take(10) {
            println!(
                "    {what:<44} {calls:>8.0} calls {mean_ms:>8.2} ms mean {:>5.1}%",
                share * 100.0
            );
        }
    }
    figures.server_time = spent
        .into_iter()
        .map(|(what, calls, mean_ms, share)| report::ServerTime {
            what,
            calls,
            mean_ms,
            share,
        })
        .collect();
    figures
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let layout = args.suite.layout("bench")?;
    let marker = layout.dir.join(format!(
        "county-{}x{}.seeded",
        args.communities, args.issues_per_community
    ));
    if args.fresh {
        layout.wipe()?;
        let _ = std::fs::remove_file(&marker);
    }
    let mut report = json!({
        "date": now_utc(),
        "machine": machine(),
        "backend": args.suite.backend,
        "replicas": args.suite.replicas,
        "communities": args.communities,
        "issues_per_community": args.issues_per_community,
        "in_flight": args.in_flight,
        "seconds": args.seconds,
    });
    if !marker.exists() {
        println!(
            "building the county: {} communities, {} issues each (seeded directly, see linli-people/linli-issues seed-county)",
            args.communities, args.issues_per_community
        );
        let took = seed_county(
            &layout,
            args.communities,
            args.issues_per_community,
            args.seed_jobs,
            true,
        )?;
        println!("county built in {:.1} s", took.as_secs_f64());
        report["seed_seconds"] = json!(took.as_secs_f64());
        std::fs::write(&marker, "")?;
    }

    // PostgreSQL's own insert rate, measured before the suite holds its connections.
    if layout.backend == Backend::Postgres && args.scenarios.iter().any(|s| s == "report") {
        match pgbench(&layout, args.in_flight, args.seconds) {
            Ok((tps, cpu, machine)) => {
                println!(
                    "pgbench, one INSERT per transaction, {} clients: {tps:.1} tps; CPU per insert (ms): {}; {machine:.2} cores busy on the whole machine",
                    args.in_flight,
                    cpu.iter()
                        .map(|(k, ms)| format!("{k} {ms:.3}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                report["pgbench_machine_cores_busy"] = json!(machine);
                report["pgbench_insert_tps"] = json!(tps);
                report["pgbench_cpu_ms_per_insert"] = json!(
                    cpu.into_iter()
                        .collect::<std::collections::BTreeMap<_, _>>()
                );
            }
            Err(e) => println!("pgbench could not run: {e:#}"),
        }
    }

    let mut suite = Suite::plan(&layout);
    let start = suite.start(Duration::from_secs(60)).await?;
    println!(
        "start: {} processes healthy {:.0} ms after launch",
        suite.procs.len(),
        start.as_secs_f64() * 1000.0
    );
    report["start_ms"] = json!(start.as_secs_f64() * 1000.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle: Vec<_> = suite.rss();
    report["idle_rss_kb"] = json!(
        idle.iter()
            .cloned()
            .collect::<std::collections::BTreeMap<_, _>>()
    );

    let channels = suite::channels(&suite.gateway, args.connections).await?;
    let county = mix::log_in(&channels[0], args.communities).await?;
    println!(
        "{} communities logged in (worker, cadre, resident each) and the supervisor",
        county.members.len()
    );
    anyhow::ensure!(!county.members.is_empty(), "no community to drive");
    let mut driver = Driver::new(channels, county);
    let _limits = if args.scenarios.iter().any(|s| s == "limits") {
        let servers = limits::LimitServers::start().await?;
        driver.limit_empty = suite::channels(&servers.empty, 1).await?.pop();
        driver.limit_fanout = suite::channels(&servers.fanout, 1).await?.pop();
        Some(servers)
    } else {
        None
    };
    let driver = Arc::new(driver);
    let shape = Shape {
        in_flight: args.in_flight,
        duration: Duration::from_secs(args.seconds),
        rate: 0.0,
    };
    let mut scenarios: Vec<ScenarioFigures> = Vec::new();
    let mut ratios = serde_json::Map::new();
    for name in &args.scenarios {
        match name.as_str() {
            "limits" => {
                scenarios.push(
                    scenario(
                        &suite,
                        &driver,
                        "limit: empty",
                        shape,
                        &[(Op::Empty, 1)],
                        Spread::County,
                    )
                    .await,
                );
                scenarios.push(
                    scenario(
                        &suite,
                        &driver,
                        "limit: fan-out",
                        shape,
                        &[(Op::FanOut, 1)],
                        Spread::County,
                    )
                    .await,
                );
            }
            "dashboard" => {
                scenarios.push(
                    scenario(
                        &suite,
                        &driver,
                        "dashboard",
                        shape,
                        &[(Op::Dashboard, 1)],
                        Spread::County,
                    )
                    .await,
                );
                scenarios.push(
                    scenario(
                        &suite,
                        &driver,
                        "dashboard, read fresh",
                        shape,
                        &[(Op::DashboardFresh, 1)],
                        Spread::County,
                    )
                    .await,
                );
                scenarios.push(
                    scenario(
                        &suite,
                        &driver,
                        "county overview",
                        Shape {
                            in_flight: 8,
                            ..shape
                        },
                        &[(Op::County, 1)],
                        Spread::County,
                    )
                    .await,
                );
            }
            "report" => {
                scenarios.push(
                    scenario(
                        &suite,
                        &driver,
                        "report",
                        shape,
                        &[(Op::Report, 1)],
                        Spread::County,
                    )
                    .await,
                );
                for in_flight in [1, args.in_flight] {
                    let label = format!("report, one community, {in_flight} in flight");
                    scenarios.push(
                        scenario(
                            &suite,
                            &driver,
                            &label,
                            Shape { in_flight, ..shape },
                            &[(Op::Report, 1)],
                            Spread::One,
                        )
                        .await,
                    );
                }
            }
            "mix" => {
                let stop = Arc::new(tokio::sync::Notify::new());
                let watching = mix::watchers(&driver, args.watchers, stop.clone());
                let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
                let pids: Vec<(String, u32)> = suite
                    .procs
                    .iter()
                    .filter_map(|p| Some((p.name.clone(), p.pid()?)))
                    .collect();
                let sampler = {
                    let sampling = sampling.clone();
                    tokio::spawn(async move {
                        let mut peak = std::collections::BTreeMap::<String, u64>::new();
                        while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                            for (name, pid) in &pids {
                                if let Some(kb) = rss_of(*pid) {
                                    let e = peak.entry(name.clone()).or_default();
                                    *e = (*e).max(kb);
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        peak
                    })
                };
                let mix_shape = Shape {
                    rate: args.rate,
                    ..shape
                };
                scenarios
                    .push(scenario(&suite, &driver, "mix", mix_shape, MIX, Spread::County).await);
                sampling.store(false, std::sync::atomic::Ordering::Relaxed);
                let peak = sampler.await.unwrap_or_default();
                stop.notify_one();
                let (events, failed) = watching.await.unwrap_or((0, 0));
                println!(
                    "  {} WatchCommunity streams: {events} events received, {failed} refused or ended with an error",
                    args.watchers
                );
                println!(
                    "  peak resident memory under the mix (MB): {}",
                    mb_list(&peak)
                );
                report["mix_watch_events"] = json!(events);
                report["mix_watch_refused"] = json!(failed);
                report["load_rss_peak_kb"] = json!(peak);
            }
            other => anyhow::bail!("unknown scenario {other:?} (limits, dashboard, report, mix)"),
        }
    }
    let find = |s: &str, op: &str| {
        scenarios
            .iter()
            .find(|f| f.scenario == s)
            .and_then(|f| f.op(op).cloned())
    };
    for (label, scenario_name, op) in [
        ("dashboard", "dashboard", Op::Dashboard),
        (
            "dashboard_fresh",
            "dashboard, read fresh",
            Op::DashboardFresh,
        ),
    ] {
        if let (Some(d), Some(f)) = (
            find(scenario_name, op.name()),
            find("limit: fan-out", Op::FanOut.name()),
        ) {
            ratios.insert(
                format!("{label}_throughput_over_fanout"),
                json!(ratio(d.per_sec, f.per_sec)),
            );
            ratios.insert(
                format!("{label}_p99_over_fanout_p99"),
                json!(ratio(d.p99_ms, f.p99_ms)),
            );
        }
    }
    if let (Some(r), Some(tps)) = (
        find("report", Op::Report.name()),
        report
            .get("pgbench_insert_tps")
            .and_then(serde_json::Value::as_f64),
    ) {
        ratios.insert(
            "report_rate_over_pgbench_insert".into(),
            json!(ratio(r.per_sec, tps)),
        );
    }
    let idle_suite: std::collections::BTreeMap<String, u64> = idle.into_iter().collect();
    println!("\nidle resident memory (MB): {}", mb_list(&idle_suite));

    if let Some(grow_to) = args.grow_to {
        let first = find("dashboard", Op::Dashboard.name());
        let before_fresh = find("dashboard, read fresh", Op::DashboardFresh.name());
        // The report and mix scenarios have written open issues since the
        // first dashboard run: the dashboard is read again on the same
        // county, from a suite started afresh as the grown one will be (nothing
        // held), so the growth compares the same county but for its history.
        suite.stop();
        drop(suite);
        let again = match &first {
            Some(_) => {
                let (mut cold, driver) =
                    started(&layout, args.connections, args.communities).await?;
                let label = "dashboard, just before growing (suite started afresh)";
                let f = scenario(
                    &cold,
                    &driver,
                    label,
                    shape,
                    &[(Op::Dashboard, 1)],
                    Spread::County,
                )
                .await;
                cold.stop();
                let op = f.op(Op::Dashboard.name()).cloned();
                scenarios.push(f);
                op
            }
            None => None,
        };
        let before = again.clone().or(first.clone());
        println!("\ngrowing the county to {grow_to} issues per community");
        let took = seed_county(&layout, args.communities, grow_to, args.seed_jobs, false)?;
        // The county is the larger one now.
        let _ = std::fs::remove_file(&marker);
        std::fs::write(
            layout
                .dir
                .join(format!("county-{}x{grow_to}.seeded", args.communities)),
            "",
        )?;
        println!("grown in {:.1} s", took.as_secs_f64());
        let (grown, driver) = started(&layout, args.connections, args.communities).await?;
        let label = format!("dashboard at {grow_to} issues per community");
        let after = scenario(
            &grown,
            &driver,
            &label,
            shape,
            &[(Op::Dashboard, 1)],
            Spread::County,
        )
        .await;
        let fresh_label = format!("dashboard, read fresh, at {grow_to} issues per community");
        let after_fresh = scenario(
            &grown,
            &driver,
            &fresh_label,
            shape,
            &[(Op::DashboardFresh, 1)],
            Spread::County,
        )
        .await;
        let county_label = format!("county overview at {grow_to} issues per community");
        scenarios.push(
            scenario(
                &grown,
                &driver,
                &county_label,
                Shape {
                    in_flight: 8,
                    ..shape
                },
                &[(Op::County, 1)],
                Spread::County,
            )
            .await,
        );
        if let (Some(b), Some(a)) = (before, after.op(Op::Dashboard.name()).cloned()) {
            ratios.insert(
                "dashboard_p99_growth".into(),
                json!(ratio(a.p99_ms, b.p99_ms)),
            );
            if let (Some(f), Some(_)) = (first, again) {
                ratios.insert(
                    "dashboard_p99_growth_over_first_run".into(),
                    json!(ratio(a.p99_ms, f.p99_ms)),
                );
            }
        }
        if let (Some(b), Some(a)) = (
            before_fresh,
            after_fresh.op(Op::DashboardFresh.name()).cloned(),
        ) {
            ratios.insert(
                "dashboard_fresh_p99_growth".into(),
                json!(ratio(a.p99_ms, b.p99_ms)),
            );
        }
        scenarios.push(after);
        scenarios.push(after_fresh);
        report["grown_issues_per_community"] = json!(grow_to);
    }

    report["scenarios"] = serde_json::to_value(&scenarios)?;
    report["ratios"] = serde_json::Value::Object(ratios.clone());
    println!("\nratios (same run):");
    for (k, v) in &ratios {
        println!("  {k}: {v}");
    }
    let path = args
        .report
        .unwrap_or_else(|| layout.dir.join("report.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("report: {}", path.display());
    Ok(())
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mb_list(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {:.1}", *v as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU ms per call, by process.
type CpuPerCall = Vec<(String, f64)>;

/// PostgreSQL's own single-row durable insert rate on this machine: pgbench
/// with a one-INSERT script, `clients` clients, `seconds` seconds.
fn pgbench(
    layout: &Layout,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<(f64, CpuPerCall, f64)> {
    let base = layout.postgres.trim_end_matches('/');
    let db = format!("linli_{}_pgbench", layout.db_prefix);
    let psql = |url: &str, sql: &str| {
        std::process::Command::new(suite::psql())
            .args([url, "-q", "-c", sql])
            .status()
    };
    psql(
        &format!("{base}/postgres"),
        &format!("DROP DATABASE IF EXISTS {db}"),
    )?;
    psql(
        &format!("{base}/postgres"),
        &format!("CREATE DATABASE {db}"),
    )?;
    let url = format!("{base}/{db}");
    let made = psql(
        &url,
        "CREATE TABLE reports (id BIGSERIAL PRIMARY KEY, community_id TEXT NOT NULL, title TEXT NOT NULL, at BIGINT NOT NULL)",
    )?;
    anyhow::ensure!(made.success(), "could not make the pgbench table");
    let script = layout.dir.join("pgbench-insert.sql");
    std::fs::write(
        &script,
        "\\set c random(1, 100)\nINSERT INTO reports (community_id, title, at) VALUES ('community-' || :c, '楼道灯坏了', :c);\n",
    )?;
    let child = std::process::Command::new(suite::pg_program("pgbench"))
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(&url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running pgbench")?;
    // CPU per insert, read while it runs: from a second in to a second
    // before the end, of the processes alive throughout (its connections').
    let pgbench_pid = child.id().to_string();
    let sample = || {
        let mut all = suite::postgres_cpu();
        if let Some(ms) = suite::cpu_ms(&pgbench_pid, false) {
            all.insert("pgbench".into(), ms);
        }
        all.insert(suite::MACHINE.into(), suite::machine_busy_ms());
        all
    };
    let window = seconds.saturating_sub(2).max(1);
    std::thread::sleep(Duration::from_secs(1));
    let before = sample();
    std::thread::sleep(Duration::from_secs(window));
    let after = sample();
    let out = child.wait_with_output().context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no tps in pgbench's output: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let (cpu, _) = suite::cpu_spent(&before, &after, tps * window as f64, window as f64);
    let machine = suite::machine_busy(&before, &after, window as f64);
    Ok((tps, cpu, machine))
}
