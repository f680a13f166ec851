//! The logistics service's settings, typed and checked once, from built-in
//! defaults, the settings file, the environment and flags (in rising order).
use std::time::Duration;

use linli_core::config::{ConfigFile, Defaults};

use crate::cli::Cli;

pub const DEFAULTS: Defaults = Defaults {
    service: "logistics",
    listen: "127.0.0.1:50054",
};

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: linli_core::config::Settings,
    /// Where the people service answers.
    pub people_addr: String,
    /// How often the recurring-delivery scheduler runs.
    pub schedule_interval: Duration,
    /// Temperature (°C) at or above which a checkpoint reading is flagged.
    pub fever_threshold: f64,
    /// Most hours a cadre may be on checkpoint duty in any 24.
    pub max_duty_hours_per_day: i64,
}

impl Settings {
    pub fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
        let file = ConfigFile::load(cli.common.config.as_deref())?;
        let sections = [
            "people_addr",
            "schedule_interval_secs",
            "fever_threshold",
            "max_duty_hours_per_day",
        ];
        let common =
            linli_core::config::Settings::resolve(&cli.common, &file, &sections, DEFAULTS)?;
        let settings = Settings {
            common,
            people_addr: file.setting(
                cli.people_addr.clone(),
                "people_addr",
                "http://127.0.0.1:50053".to_owned(),
            )?,
            schedule_interval: Duration::from_secs(file.setting(
                cli.schedule_interval_secs,
                "schedule_interval_secs",
                60,
            )?),
            fever_threshold: file.setting(cli.fever_threshold, "fever_threshold", 37.3)?,
            max_duty_hours_per_day: file.setting(
                cli.max_duty_hours_per_day,
                "max_duty_hours_per_day",
                12,
            )?,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// The defaults, on `database_url`, talking to people at `people_addr` (tests, tools).
    pub fn new(database_url: &str, people_addr: &str) -> anyhow::Result<Settings> {
        let common = linli_core::config::Settings::with_database(database_url, DEFAULTS)?;
        Ok(Settings {
            common,
            people_addr: people_addr.to_owned(),
            schedule_interval: Duration::from_secs(60),
            fever_threshold: 37.3,
            max_duty_hours_per_day: 12,
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.schedule_interval.is_zero() {
            anyhow::bail!("schedule_interval_secs must be at least 1");
        }
        if !(35.0..=42.0).contains(&self.fever_threshold) {
            anyhow::bail!("fever_threshold must be between 35 and 42 °C");
        }
        if !(1..=24).contains(&self.max_duty_hours_per_day) {
            anyhow::bail!("max_duty_hours_per_day must be from 1 to 24");
        }
        Ok(())
    }
}
