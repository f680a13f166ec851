//! The `linli-gateway` command: serve (the default) or migrate.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use linli_core::auth::Keys;
use linli_core::config::CommonArgs;

use crate::{Application, Settings};

/// linli gateway: login, the people, issues and logistics APIs through one
/// address, and the aggregated views (dashboard, household profile, county overview).
///
/// Settings come from, in rising order: built-in defaults, the --config file,
/// environment variables, flags.
///
/// Example: linli-gateway --people-addr http://10.0.0.5:50053,http://10.0.0.6:50053
#[derive(Debug, Parser)]
#[command(name = "linli-gateway", version)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The people service's replicas, comma-separated [default: http://127.0.0.1:50053].
    #[arg(long, env = "LINLI_PEOPLE_ADDR", global = true)]
    pub people_addr: Option<String>,
    /// The issues service's replicas, comma-separated [default: http://127.0.0.1:50052].
    #[arg(long, env = "LINLI_ISSUES_ADDR", global = true)]
    pub issues_addr: Option<String>,
    /// The logistics service's replicas, comma-separated [default: http://127.0.0.1:50054].
    #[arg(long, env = "LINLI_LOGISTICS_ADDR", global = true)]
    pub logistics_addr: Option<String>,
    /// How long a view waits for each part before answering without it [default: 2000].
    #[arg(long, env = "LINLI_PART_TIMEOUT_MS", global = true)]
    pub part_timeout_ms: Option<u64>,
    /// Lifetime of access tokens, 60 to 3600 seconds [default: 900].
    #[arg(long, env = "LINLI_ACCESS_TTL_SECS", global = true)]
    pub access_ttl_secs: Option<u64>,
    /// Lifetime of an unused refresh token [default: 604800, a week].
    #[arg(long, env = "LINLI_REFRESH_TTL_SECS", global = true)]
    pub refresh_ttl_secs: Option<u64>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Bring the database schema (refresh tokens, audit trail) up to date and exit.
    Migrate,
}

pub fn main() -> ExitCode {
    linli_core::cli::exit_with("linli-gateway", run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::resolve(&cli)?;
    let common = settings.common.clone();
    linli_core::cli::run("gateway", &common, async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app = Application::build(settings, Keys::load(&common.auth)?).await?;
                let _jobs = app.spawn_jobs();
                linli_core::cli::serve("gateway", &common, app.grpc_server()).await
            }
            Command::Migrate => {
                crate::open_db(&settings).await?;
                println!("database schema is up to date");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
