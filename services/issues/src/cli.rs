//! The `linli-issues` command: serve (the default), migrate, seed demo issues.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use linli_core::auth::Keys;
use linli_core::config::CommonArgs;

use crate::{Application, Settings};

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
    /// The most reports written together in one transaction under load; 1 writes each alone [default: 64].
    #[arg(long, env = "LINLI_REPORT_BATCH", global = true)]
    pub report_batch: Option<usize>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (the default).
    Serve,
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Exit 0 when the server on the configured address reports SERVING (a container health check).
    Health,
    /// Load demo issues for 双泉社区 (needs the people service with its demo data); safe to run again.
    Seed,
    /// Load a benchmark county's year of issues (clearly not real data; needs
    /// `linli-people seed-county`): ISSUES_PER_COMMUNITY for every community,
    /// written in batches straight into the tables; tops up when run again.
    SeedCounty {
        #[arg(long, default_value_t = 1000)]
        issues_per_community: usize,
        /// Communities written at a time (PostgreSQL takes them in parallel).
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
}

pub fn main() -> ExitCode {
    linli_core::cli::exit_with("linli-issues", run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::resolve(&cli)?;
    let common = settings.common.clone();
    linli_core::cli::run("issues", &common, async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app =
                    Application::build(settings, Keys::load(&common.auth, &["issues"])?).await?;
                let _jobs = app.spawn_jobs();
                linli_core::cli::serve("issues", &common, app.grpc_server()).await
            }
            Command::Health => linli_core::cli::health(&common, crate::SERVICE_NAME).await,
            Command::Migrate => {
                crate::open_store(&settings).await?;
                println!("database schema is up to date");
                Ok(ExitCode::SUCCESS)
            }
            Command::SeedCounty {
                issues_per_community,
                jobs,
            } => {
                let app =
                    Application::build(settings, Keys::load(&common.auth, &["issues"])?).await?;
                crate::seed::county(
                    &app.store,
                    &app.people,
                    &app.keys.service_actor("issues"),
                    issues_per_community,
                    jobs,
                )
                .await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Seed => {
                let app =
                    Application::build(settings, Keys::load(&common.auth, &["issues"])?).await?;
                crate::seed::run(&app.store, &app.people, &app.keys.service_actor("issues"))
                    .await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
