//! The `linli-issues` command: serve (the default), migrate, seed demo issues.
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use linli_core::config::{CommonArgs, ConfigFile, Defaults, Settings};
use linli_core::server::shutdown_signal;

use crate::domain::DeadlinePolicy;

const DEFAULTS: Defaults = Defaults {
    service: "issues",
    listen: "127.0.0.1:50052",
};

/// linli issues service: residents' problems from report to a verified, supervised fix.
///
/// Settings come from, in rising order: built-in defaults, the --config file, environment
/// variables, flags. Deadlines are set in the file under [deadlines] (see README).
#[derive(Debug, Parser)]
#[command(name = "linli-issues", version)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address of the people service [default: http://127.0.0.1:50053].
    #[arg(long, env = "LINLI_PEOPLE_ADDR", global = true)]
    pub people_addr: Option<String>,
    /// Seconds between supervision sweeps (escalations, auto-close) [default: 60].
    #[arg(long, env = "LINLI_SUPERVISION_INTERVAL_SECS", global = true)]
    pub supervision_interval_secs: Option<u64>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (the default).
    Serve,
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Load demo issues for 双泉社区 (needs the people service with its demo data); safe to run again.
    Seed,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("linli-issues: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = ConfigFile::load(cli.common.config.as_deref())?;
    let sections = ["deadlines", "people_addr", "supervision_interval_secs"];
    let settings = Settings::resolve(&cli.common, &file, &sections, DEFAULTS)?;
    let policy: DeadlinePolicy = file.section("deadlines")?.unwrap_or_default();
    policy.validate()?;
    let people_addr = cli
        .people_addr
        .or_else(|| {
            file.table
                .get("people_addr")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "http://127.0.0.1:50053".into());
    let interval = cli
        .supervision_interval_secs
        .or_else(|| {
            file.table
                .get("supervision_interval_secs")
                .and_then(|v| v.as_integer())
                .map(|v| v as u64)
        })
        .unwrap_or(60);
    if interval == 0 {
        anyhow::bail!("supervision_interval_secs must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let telemetry = linli_core::telemetry::init("issues", settings.log_format, settings.otlp_endpoint.as_deref())?;
        let result = async {
            tracing::info!(database = %settings.database_url, people = %people_addr, "opening database");
            let store = crate::open_store(settings.database_url.expose(), policy).await?;
            let people = crate::People::connect_lazy(&people_addr, settings.serve.request_timeout)?;
            match cli.command.unwrap_or(Command::Serve) {
                Command::Serve => {
                    let listener = TcpListener::bind(settings.listen)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
                    tracing::info!(address = %listener.local_addr()?, "issues service listening");
                    let sweeper = crate::spawn_supervision(store.clone(), Duration::from_secs(interval));
                    crate::grpc_server(store, people, settings.serve.clone()).serve(listener, shutdown_signal()).await?;
                    sweeper.abort();
                    tracing::info!("issues service stopped");
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
