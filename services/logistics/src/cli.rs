//! The `linli-logistics` command: serve (the default), migrate, seed demo data.
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use linli_core::config::{CommonArgs, ConfigFile, Defaults, Settings};
use linli_core::people::People;
use linli_core::server::shutdown_signal;

const DEFAULTS: Defaults = Defaults {
    service: "logistics",
    listen: "127.0.0.1:50054",
};

/// linli logistics service: supplies, deliveries, checkpoints and funds.
///
/// Settings come from, in rising order: built-in defaults, the --config file, environment
/// variables, flags.
#[derive(Debug, Parser)]
#[command(name = "linli-logistics", version)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address of the people service [default: http://127.0.0.1:50053].
    #[arg(long, env = "LINLI_PEOPLE_ADDR", global = true)]
    pub people_addr: Option<String>,
    /// Seconds between runs of the recurring-delivery scheduler [default: 60].
    #[arg(long, env = "LINLI_SCHEDULE_INTERVAL_SECS", global = true)]
    pub schedule_interval_secs: Option<u64>,
    /// Temperature (°C) at or above which a checkpoint reading is flagged [default: 37.3].
    #[arg(long, env = "LINLI_FEVER_THRESHOLD", global = true)]
    pub fever_threshold: Option<f64>,
    /// Most hours a cadre may be on checkpoint duty in any 24 [default: 12].
    #[arg(long, env = "LINLI_MAX_DUTY_HOURS_PER_DAY", global = true)]
    pub max_duty_hours_per_day: Option<i64>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (the default).
    Serve,
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Load demo logistics for 双泉社区 (needs the people service with its demo data); safe to run again.
    Seed,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("linli-logistics: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = ConfigFile::load(cli.common.config.as_deref())?;
    let sections = [
        "people_addr",
        "schedule_interval_secs",
        "fever_threshold",
        "max_duty_hours_per_day",
    ];
    let settings = Settings::resolve(&cli.common, &file, &sections, DEFAULTS)?;
    let get = |k: &str| file.table.get(k);
    let people_addr = cli
        .people_addr
        .or_else(|| {
            get("people_addr")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "http://127.0.0.1:50053".into());
    let interval = cli
        .schedule_interval_secs
        .or_else(|| {
            get("schedule_interval_secs")
                .and_then(|v| v.as_integer())
                .map(|v| v as u64)
        })
        .unwrap_or(60);
    let fever = cli
        .fever_threshold
        .or_else(|| get("fever_threshold").and_then(|v| v.as_float()))
        .unwrap_or(37.3);
    let max_hours = cli
        .max_duty_hours_per_day
        .or_else(|| get("max_duty_hours_per_day").and_then(|v| v.as_integer()))
        .unwrap_or(12);
    if interval == 0 {
        anyhow::bail!("schedule_interval_secs must be at least 1");
    }
    if !(35.0..=42.0).contains(&fever) {
        anyhow::bail!("fever_threshold must be between 35 and 42 °C");
    }
    if !(1..=24).contains(&max_hours) {
        anyhow::bail!("max_duty_hours_per_day must be from 1 to 24");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let telemetry = linli_core::telemetry::init("logistics", settings.log_format, settings.otlp_endpoint.as_deref())?;
        let result = async {
            tracing::info!(database = %settings.database_url, people = %people_addr, "opening database");
            let store = crate::open_store(settings.database_url.expose(), fever, max_hours).await?;
            let people = People::connect_lazy(&people_addr, settings.serve.request_timeout)?;
            match cli.command.unwrap_or(Command::Serve) {
                Command::Serve => {
                    let listener = TcpListener::bind(settings.listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
                    tracing::info!(address = %listener.local_addr()?, "logistics service listening");
                    let scheduler = crate::spawn_schedules(store.clone(), people.clone(), Duration::from_secs(interval));
                    crate::grpc_server(store, people, settings.serve.clone()).serve(listener, shutdown_signal()).await?;
                    scheduler.abort();
                    tracing::info!("logistics service stopped");
                    Ok(ExitCode::SUCCESS)
                }
                Command::Migrate => {
                    println!("database schema is up to date");
                    Ok(ExitCode::SUCCESS)
                }
                Command::Seed => {
                    crate::seed::run(&store, &people).await?;
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        .await;
        telemetry.shutdown();
        result
    })
}
