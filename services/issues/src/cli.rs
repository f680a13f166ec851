//! The `linli-issues` command: serve (the default), migrate, seed demo issues.
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use linli_core::config::{CommonArgs, ConfigFile, Defaults, Settings};
use linli_core::people::People;

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
    linli_core::cli::exit_with("linli-issues", run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = ConfigFile::load(cli.common.config.as_deref())?;
    let settings = Settings::resolve(
        &cli.common,
        &file,
        &["deadlines", "people_addr", "supervision_interval_secs"],
        DEFAULTS,
    )?;
    let policy: DeadlinePolicy = file.section("deadlines")?.unwrap_or_default();
    policy.validate()?;
    let people_addr = file.setting(
        cli.people_addr,
        "people_addr",
        "http://127.0.0.1:50053".to_owned(),
    )?;
    let interval = file.setting(
        cli.supervision_interval_secs,
        "supervision_interval_secs",
        60,
    )?;
    if interval == 0 {
        anyhow::bail!("supervision_interval_secs must be at least 1");
    }
    linli_core::cli::run("issues", &settings, async {
        let store = crate::open_store(settings.database_url.expose(), policy).await?;
        let people = People::connect_lazy(&people_addr, settings.serve.request_timeout)?;
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let sweeper =
                    crate::spawn_supervision(store.clone(), Duration::from_secs(interval));
                let served = linli_core::cli::serve(
                    "issues",
                    &settings,
                    crate::grpc_server(
                        store,
                        people,
                        &linli_core::auth::Keys::load(&settings.auth)?,
                        settings.serve.clone(),
                    ),
                )
                .await;
                sweeper.abort();
                served
            }
            Command::Migrate => {
                println!("database schema is up to date");
                Ok(ExitCode::SUCCESS)
            }
            Command::Seed => {
                let keys = linli_core::auth::Keys::load(&settings.auth)?;
                crate::seed::run(&store, &people, &keys.service_actor("issues")).await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
