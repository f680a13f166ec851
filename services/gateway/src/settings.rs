//! The gateway's settings, typed and checked once, from built-in defaults,
//! the settings file, the environment and flags (in rising order).
use std::time::Duration;

use linli_core::config::{ConfigFile, Defaults};

use crate::backend::BackendSettings;
use crate::cache::CacheSettings;
use crate::cli::Cli;
use crate::throttle::ThrottleSettings;

pub const DEFAULTS: Defaults = Defaults {
    service: "gateway",
    listen: "127.0.0.1:50051",
};

const DEFAULT_HTTP: &str = "127.0.0.1:8080";
const SESSION_RECHECK: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: linli_core::config::Settings,
    /// Each service's replicas (`http://host:port`).
    pub people_addrs: Vec<String>,
    pub issues_addrs: Vec<String>,
    pub logistics_addrs: Vec<String>,
    /// How long a view waits for each of its parts before answering without it.
    pub part_timeout: Duration,
    /// How long the dashboards and the county overview are held.
    pub views: CacheSettings,
    pub backends: BackendSettings,
    /// How long an access token is good for.
    pub access_ttl: Duration,
    /// How long a refresh token is good for, if not used.
    pub refresh_ttl: Duration,
    pub throttle: ThrottleSettings,
    /// Where the HTTP side (dashboard, JSON, Open311, metrics) listens.
    pub http_listen: std::net::SocketAddr,
    /// Mark the dashboard's cookies Secure (when served behind TLS).
    pub secure_cookies: bool,
    /// The proxies whose X-Forwarded-For names the client.
    pub trusted_proxies: crate::client::Proxies,
    /// How often a page session asks people whether its account may still
    /// log in (a disabled account, a resident who moved out): at most a minute.
    pub session_recheck: Duration,
}

const SECTIONS: &[&str] = &[
    "people_addr",
    "issues_addr",
    "logistics_addr",
    "part_timeout_ms",
    "view_max_age_ms",
    "view_stale_ms",
    "view_quiet_ms",
    "access_ttl_secs",
    "refresh_ttl_secs",
    "http_listen",
    "secure_cookies",
    "trusted_proxies",
];

impl Settings {
    pub fn resolve(cli: &Cli) -> anyhow::Result<Settings> {
        let file = ConfigFile::load(cli.common.config.as_deref())?;
        let common = linli_core::config::Settings::resolve(&cli.common, &file, SECTIONS, DEFAULTS)?;
        let addrs =
            |flag: &Option<String>, key: &str, default: &str| -> anyhow::Result<Vec<String>> {
                let list: String = file.setting(flag.clone(), key, default.to_owned())?;
                split_addrs(key, &list)
            };
        let settings = Settings {
            common,
            people_addrs: addrs(&cli.people_addr, "people_addr", "http://127.0.0.1:50053")?,
            issues_addrs: addrs(&cli.issues_addr, "issues_addr", "http://127.0.0.1:50052")?,
            logistics_addrs: addrs(
                &cli.logistics_addr,
                "logistics_addr",
                "http://127.0.0.1:50054",
            )?,
            part_timeout: Duration::from_millis(file.setting(
                cli.part_timeout_ms,
                "part_timeout_ms",
                2000,
            )?),
            views: CacheSettings {
                max_age: Duration::from_millis(file.setting(
                    cli.view_max_age_ms,
                    "view_max_age_ms",
                    CacheSettings::default().max_age.as_millis() as u64,
                )?),
                quiet_for: Duration::from_millis(file.setting(
                    cli.view_quiet_ms,
                    "view_quiet_ms",
                    CacheSettings::default().quiet_for.as_millis() as u64,
                )?),
                stale_for: Duration::from_millis(file.setting(
                    cli.view_stale_ms,
                    "view_stale_ms",
                    CacheSettings::default().stale_for.as_millis() as u64,
                )?),
                ..CacheSettings::default()
            },
            backends: BackendSettings::default(),
            access_ttl: Duration::from_secs(file.setting(
                cli.access_ttl_secs,
                "access_ttl_secs",
                15 * 60,
            )?),
            refresh_ttl: Duration::from_secs(file.setting(
                cli.refresh_ttl_secs,
                "refresh_ttl_secs",
                7 * 24 * 3600,
            )?),
            throttle: ThrottleSettings::default(),
            http_listen: {
                let addr: String =
                    file.setting(cli.http_listen.clone(), "http_listen", DEFAULT_HTTP.into())?;
                addr.parse()
                    .map_err(|e| anyhow::anyhow!("http_listen {addr:?}: {e}"))?
            },
            secure_cookies: file.setting(cli.secure_cookies, "secure_cookies", false)?,
            trusted_proxies: crate::client::Proxies::parse(&file.setting(
                cli.trusted_proxies.clone(),
                "trusted_proxies",
                String::new(),
            )?)?,
            session_recheck: SESSION_RECHECK,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// The defaults, on `database_url`, in front of the given services (tests, tools).
    pub fn new(
        database_url: &str,
        people: &str,
        issues: &str,
        logistics: &str,
    ) -> anyhow::Result<Settings> {
        let common = linli_core::config::Settings::with_database(database_url, DEFAULTS)?;
        Ok(Settings {
            common,
            people_addrs: split_addrs("people_addr", people)?,
            issues_addrs: split_addrs("issues_addr", issues)?,
            logistics_addrs: split_addrs("logistics_addr", logistics)?,
            part_timeout: Duration::from_secs(2),
            views: CacheSettings::default(),
            backends: BackendSettings::default(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            throttle: ThrottleSettings::default(),
            http_listen: DEFAULT_HTTP.parse().expect("a valid address"),
            secure_cookies: false,
            trusted_proxies: crate::client::Proxies::default(),
            session_recheck: SESSION_RECHECK,
        })
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.part_timeout.is_zero() {
            anyhow::bail!("part_timeout_ms must be at least 1");
        }
        if self.access_ttl < Duration::from_secs(60) || self.access_ttl > Duration::from_secs(3600)
        {
            anyhow::bail!(
                "access_ttl_secs must be between 60 and 3600: access tokens cannot be revoked, so they must be short"
            );
        }
        if self.refresh_ttl < self.access_ttl {
            anyhow::bail!("refresh_ttl_secs must be at least access_ttl_secs");
        }
        Ok(())
    }
}

/// A comma-separated list of replica addresses.
fn split_addrs(key: &str, list: &str) -> anyhow::Result<Vec<String>> {
    let addrs: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if addrs.is_empty() {
        anyhow::bail!("{key} names no address");
    }
    for a in &addrs {
        if !(a.starts_with("http://") || a.starts_with("https://")) {
            anyhow::bail!("{key}: {a:?} must start with http:// or https://");
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_lists_are_split_and_checked() {
        assert_eq!(
            split_addrs("x", "http://a:1, http://b:2,").unwrap(),
            vec!["http://a:1", "http://b:2"]
        );
        assert!(split_addrs("x", " , ").is_err());
        assert!(split_addrs("x", "a:1").is_err());
    }
}
