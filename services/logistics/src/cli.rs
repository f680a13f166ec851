//! The `linli-logistics` command: serve (the default), migrate, seed demo data.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use linli_core::auth::Keys;
use linli_core::config::CommonArgs;

use crate::{Application, Settings};

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
    /// Exit 0 when the server on the configured address reports SERVING (a container health check).
    Health,
    /// Load demo logistics for 双泉社区 (needs the people service with its demo data); safe to run again.
    Seed,
}

pub fn main() -> ExitCode {
    linli_core::cli::exit_with("linli-logistics", run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::resolve(&cli)?;
    let common = settings.common.clone();
    linli_core::cli::run("logistics", &common, async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app =
                    Application::build(settings, Keys::load(&common.auth, &["logistics"])?).await?;
                let _jobs = app.spawn_jobs();
                linli_core::cli::serve("logistics", &common, app.grpc_server()).await
            }
            Command::Health => linli_core::cli::health(&common, crate::SERVICE_NAME).await,
            Command::Migrate => {
                crate::open_store(&settings).await?;
                println!("database schema is up to date");
                Ok(ExitCode::SUCCESS)
            }
            Command::Seed => {
                let app =
                    Application::build(settings, Keys::load(&common.auth, &["logistics"])?).await?;
                crate::seed::run(
                    &app.store,
                    &app.people,
                    &app.keys.service_actor("logistics"),
                )
                .await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
