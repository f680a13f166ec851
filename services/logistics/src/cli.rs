//! The `linli-logistics` command: serve (the default), migrate, seed demo data.
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use linli_core::config::{CommonArgs, ConfigFile, Defaults, Settings};
use linli_core::people::People;

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
    linli_core::cli::exit_with("linli-logistics", run(Cli::parse()))
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
    let people_addr = file.setting(
        cli.people_addr,
        "people_addr",
        "http://127.0.0.1:50053".to_owned(),
    )?;
    let interval = file.setting(cli.schedule_interval_secs, "schedule_interval_secs", 60)?;
    let fever = file.setting(cli.fever_threshold, "fever_threshold", 37.3)?;
    let max_hours = file.setting(cli.max_duty_hours_per_day, "max_duty_hours_per_day", 12)?;
    if interval == 0 {
        anyhow::bail!("schedule_interval_secs must be at least 1");
    }
    if !(35.0..=42.0).contains(&fever) {
        anyhow::bail!("fever_threshold must be between 35 and 42 °C");
    }
    if !(1..=24).contains(&max_hours) {
        anyhow::bail!("max_duty_hours_per_day must be from 1 to 24");
    }
    linli_core::cli::run("logistics", &settings, async {
        let store = crate::open_store(settings.database_url.expose(), fever, max_hours).await?;
        let people = People::connect_lazy(&people_addr, settings.serve.request_timeout)?;
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let keys = linli_core::auth::Keys::load(&settings.auth)?;
                let scheduler = crate::spawn_schedules(
                    store.clone(),
                    people.clone(),
                    keys.clone(),
                    Duration::from_secs(interval),
                );
                let served = linli_core::cli::serve(
                    "logistics",
                    &settings,
                    crate::grpc_server(store, people, &keys, settings.serve.clone()),
                )
                .await;
                scheduler.abort();
                served
            }
            Command::Migrate => {
                println!("database schema is up to date");
                Ok(ExitCode::SUCCESS)
            }
            Command::Seed => {
                let keys = linli_core::auth::Keys::load(&settings.auth)?;
                crate::seed::run(&store, &people, &keys.service_actor("logistics")).await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
