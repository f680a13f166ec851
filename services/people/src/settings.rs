//! The people service's settings, typed and checked once, from built-in
//! defaults, the settings file, the environment and flags (in rising order).
use chrono::FixedOffset;

use linli_core::config::{ConfigFile, Defaults};

use crate::cli::Cli;
use crate::domain::CarePolicy;

pub const DEFAULTS: Defaults = Defaults {
    service: "people",
    listen: "127.0.0.1:50053",
};

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: linli_core::config::Settings,
    /// Which vulnerability sets which care level and visit cadence (`[care_policy]`).
    pub care_policy: CarePolicy,
    /// The local time zone, in which duty weeks and ages are reckoned.
    pub utc_offset: FixedOffset,
}

impl Settings {
    pub fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
        let file = ConfigFile::load(cli.common.config.as_deref())?;
        let common =
            linli_core::config::Settings::resolve(&cli.common, &file, &["care_policy"], DEFAULTS)?;
        let utc_offset = common.utc_offset;
        let settings = Settings {
            common,
            care_policy: file.section("care_policy")?.unwrap_or_default(),
            utc_offset,
        };
        settings.care_policy.validate()?;
        Ok(settings)
    }

    /// The defaults, on `database_url` (tests, tools).
    pub fn new(database_url: &str) -> anyhow::Result<Settings> {
        let common = linli_core::config::Settings::with_database(database_url, DEFAULTS)?;
        Ok(Settings {
            common,
            care_policy: CarePolicy::default(),
            utc_offset: crate::default_utc_offset(),
        })
    }
}
