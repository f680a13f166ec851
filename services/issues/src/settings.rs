//! The issues service's settings, typed and checked once, from built-in
//! defaults, the settings file, the environment and flags (in rising order).
use std::time::Duration;

use linli_core::config::{ConfigFile, Defaults};

use crate::cli::Cli;
use crate::domain::DeadlinePolicy;

pub const DEFAULTS: Defaults = Defaults {
    service: "issues",
    listen: "127.0.0.1:50052",
};

/// Reports written together at most, by default.
pub(crate) const DEFAULT_REPORT_BATCH: usize = 64;
/// A batch's statements stay within both databases' limits on parameters.
const MAX_REPORT_BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: linli_core::config::Settings,
    /// Deadlines by category and 三最 mark (`[deadlines]` in the file).
    pub deadlines: DeadlinePolicy,
    /// Where the people service answers.
    pub people_addr: String,
    /// How often each replica sweeps for missed deadlines.
    pub supervision_interval: Duration,
    /// The most reports written together in one transaction under load; 1
    /// writes each alone.
    pub report_batch: usize,
}

impl Settings {
    pub fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
        let file = ConfigFile::load(cli.common.config.as_deref())?;
        let sections = [
            "deadlines",
            "people_addr",
            "supervision_interval_secs",
            "report_batch",
        ];
        let common =
            linli_core::config::Settings::resolve(&cli.common, &file, &sections, DEFAULTS)?;
        let settings = Settings {
            common,
            deadlines: file.section("deadlines")?.unwrap_or_default(),
            people_addr: file.setting(
                cli.people_addr.clone(),
                "people_addr",
                "http://127.0.0.1:50053".to_owned(),
            )?,
            supervision_interval: Duration::from_secs(file.setting(
                cli.supervision_interval_secs,
                "supervision_interval_secs",
                60,
            )?),
            report_batch: file.setting(cli.report_batch, "report_batch", DEFAULT_REPORT_BATCH)?,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// The defaults, on `database_url`, talking to people at `people_addr` (tests, tools).
    pub fn new(database_url: &str, people_addr: &str) -> anyhow::Result<Settings> {
        let common = linli_core::config::Settings::with_database(database_url, DEFAULTS)?;
        Ok(Settings {
            common,
            deadlines: DeadlinePolicy::default(),
            people_addr: people_addr.to_owned(),
            supervision_interval: Duration::from_secs(60),
            report_batch: DEFAULT_REPORT_BATCH,
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.deadlines.validate()?;
        if self.supervision_interval.is_zero() {
            anyhow::bail!("supervision_interval_secs must be at least 1");
        }
        if !(1..=MAX_REPORT_BATCH).contains(&self.report_batch) {
            anyhow::bail!("report_batch must be from 1 to {MAX_REPORT_BATCH}");
        }
        Ok(())
    }
}
