//! Layered configuration: built-in defaults, then a TOML file, then `LINLI_…`
//! environment variables, then command-line flags, each overriding the one
//! before. Every service flattens [`CommonArgs`] into its own clap parser, so
//! `--help` lists every setting with its variable.
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::AuthSettings;
use crate::db::redact_url;
use crate::server::ServeSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Settings every service has.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML file with settings (the same names as the flags, in snake_case); overridden by
    /// environment variables and flags.
    #[arg(long, env = "LINLI_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: gateway 127.0.0.1:50051, issues :50052, people :50053, logistics :50054].
    #[arg(long, env = "LINLI_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// Database: sqlite://path/to/file.db (embedded) or postgres://user:pass@host/db
    /// [default: sqlite://data/<service>.db].
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Log format [default: human].
    #[arg(long, env = "LINLI_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// Seconds to keep serving after SIGTERM/SIGINT while health says NOT_SERVING, so balancers
    /// move traffic away first [default: 2; 0 for none].
    #[arg(long, env = "LINLI_SHUTDOWN_GRACE_SECS", global = true)]
    pub shutdown_grace_secs: Option<u64>,
    /// Seconds to let requests in flight finish after SIGTERM/SIGINT [default: 10].
    #[arg(long, env = "LINLI_DRAIN_TIMEOUT_SECS", global = true)]
    pub drain_timeout_secs: Option<u64>,
    /// Seconds before a request is cancelled [default: 30].
    #[arg(long, env = "LINLI_REQUEST_TIMEOUT_SECS", global = true)]
    pub request_timeout_secs: Option<u64>,
    /// UTC offset of the local time zone: duty weeks, ages and the times in messages are
    /// reckoned in it [default: +08:00].
    #[arg(long, env = "LINLI_UTC_OFFSET", global = true)]
    pub utc_offset: Option<chrono::FixedOffset>,
    /// Connections open at once; more are closed as soon as they are accepted [default: 4096].
    #[arg(long, env = "LINLI_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Seconds a new connection may stay silent before it is closed [default: 10].
    #[arg(long, env = "LINLI_HANDSHAKE_TIMEOUT_SECS", global = true)]
    pub handshake_timeout_secs: Option<u64>,
    /// How the embedded store (SQLite) syncs commits: full (survives power loss) or normal
    /// (survives a killed process) [default: full].
    #[arg(long, env = "LINLI_SQLITE_SYNCHRONOUS", value_enum, global = true)]
    pub sqlite_synchronous: Option<crate::db::SqliteSync>,
    /// Milliseconds a request waits for a PostgreSQL connection before failing UNAVAILABLE
    /// [default: 500].
    #[arg(long, env = "LINLI_DB_ACQUIRE_TIMEOUT_MS", global = true)]
    pub db_acquire_timeout_ms: Option<u64>,
    /// Milliseconds one call to another service may take before the calling request gives up
    /// on it with UNAVAILABLE [default: 2000].
    #[arg(long, env = "LINLI_CALL_TIMEOUT_MS", global = true)]
    pub call_timeout_ms: Option<u64>,
    /// Requests worked on at once across all connections; more are refused at once with
    /// RESOURCE_EXHAUSTED (health checks are exempt) [default: 512].
    #[arg(long, env = "LINLI_MAX_CONCURRENT_REQUESTS", global = true)]
    pub max_concurrent_requests: Option<usize>,
    /// OTLP/gRPC endpoint to export traces to (e.g. http://127.0.0.1:4317); no export when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
    /// The keys folder: every part's public key (`<part>.pub.pem`, and `<part>.<label>.pub.pem`
    /// during a rotation) and by default the private keys (`<part>.key.pem`) [default:
    /// data/keys; the missing keys are made on SQLite only, a PostgreSQL deployment is given them].
    #[arg(long, env = "LINLI_KEYS_DIR", global = true)]
    pub keys_dir: Option<PathBuf>,
    /// This service's private key [default: <keys-dir>/<service>.key.pem].
    #[arg(long, env = "LINLI_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    /// The issuer's private key, for the gateway (and `linli-people token`), which sign people's
    /// tokens [default: <keys-dir>/issuer.key.pem].
    #[arg(long, env = "LINLI_ISSUER_KEY_FILE", global = true)]
    pub issuer_key_file: Option<PathBuf>,
    /// A private key whose derived secret seals this service's audit chain, when not its own
    /// key: the suite's old shared key after upgrading, so earlier chains still verify.
    #[arg(long, env = "LINLI_AUDIT_KEY_FILE", global = true)]
    pub audit_key_file: Option<PathBuf>,
}

/// The same settings as read from the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCommon {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    log_format: Option<LogFormat>,
    shutdown_grace_secs: Option<u64>,
    drain_timeout_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    call_timeout_ms: Option<u64>,
    sqlite_synchronous: Option<crate::db::SqliteSync>,
    db_acquire_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    handshake_timeout_secs: Option<u64>,
    utc_offset: Option<String>,
    max_concurrent_requests: Option<usize>,
    otlp_endpoint: Option<String>,
    keys_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
    issuer_key_file: Option<PathBuf>,
    audit_key_file: Option<PathBuf>,
}

/// A database URL that never prints its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// Resolved common settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: DatabaseUrl,
    pub log_format: LogFormat,
    pub serve: ServeSettings,
    /// How long one call to another service may take.
    pub call_timeout: Duration,
    pub db: crate::db::DbOptions,
    /// The local time zone (China Standard Time by default).
    pub utc_offset: chrono::FixedOffset,
    pub otlp_endpoint: Option<String>,
    pub auth: AuthSettings,
}

/// A service's built-in defaults.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub service: &'static str,
    pub listen: &'static str,
}

/// The settings file, split into the common part and the service's own tables.
#[derive(Debug, Default)]
pub struct ConfigFile {
    pub table: toml::Table,
}

impl ConfigFile {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(ConfigFile { table })
    }

    /// A service-specific table (e.g. `[care_policy]`), if present.
    pub fn section<T: serde::de::DeserializeOwned>(&self, name: &str) -> anyhow::Result<Option<T>> {
        self.table
            .get(name)
            .map(|v| {
                v.clone()
                    .try_into()
                    .map_err(|e| anyhow::anyhow!("[{name}]: {e}"))
            })
            .transpose()
    }

    /// A service's own top-level setting from the file, if present.
    pub fn value<T: serde::de::DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        self.section(key)
    }

    /// A service's own setting: the flag or environment variable, else the file, else `default`.
    pub fn setting<T: serde::de::DeserializeOwned>(
        &self,
        flag: Option<T>,
        key: &str,
        default: T,
    ) -> anyhow::Result<T> {
        match flag {
            Some(v) => Ok(v),
            None => Ok(self.value(key)?.unwrap_or(default)),
        }
    }

    fn common(&self, service_sections: &[&str]) -> anyhow::Result<FileCommon> {
        let mut common = self.table.clone();
        for s in service_sections {
            common.remove(*s);
        }
        common
            .try_into()
            .map_err(|e| anyhow::anyhow!("settings file: {e}"))
    }
}

impl Settings {
    /// The built-in defaults on `database_url`, for tests and tools that build a
    /// service without a command line.
    pub fn with_database(database_url: &str, defaults: Defaults) -> anyhow::Result<Settings> {
        let args = CommonArgs {
            database_url: Some(database_url.to_owned()),
            ..Default::default()
        };
        Settings::resolve(&args, &ConfigFile::default(), &[], defaults)
    }

    /// Resolves flags and environment (already merged by clap) over the file over the defaults.
    /// `service_sections` are the file's tables that belong to the service, not to these settings.
    pub fn resolve(
        args: &CommonArgs,
        file: &ConfigFile,
        service_sections: &[&str],
        defaults: Defaults,
    ) -> anyhow::Result<Settings> {
        let f = file.common(service_sections)?;
        let listen = match args.listen.or(f.listen) {
            Some(a) => a,
            None => defaults.listen.parse()?,
        };
        let database_url = args
            .database_url
            .clone()
            .or(f.database_url)
            .unwrap_or_else(|| format!("sqlite://data/{}.db", defaults.service));
        let secs = |flag: Option<u64>,
                    file: Option<u64>,
                    default: u64,
                    name: &str|
         -> anyhow::Result<Duration> {
            match flag.or(file).unwrap_or(default) {
                0 => anyhow::bail!("{name} must be at least 1 second"),
                s => Ok(Duration::from_secs(s)),
            }
        };
        let serve = ServeSettings {
            shutdown_grace: Duration::from_secs(
                args.shutdown_grace_secs
                    .or(f.shutdown_grace_secs)
                    .unwrap_or(2),
            ),
            drain_timeout: secs(
                args.drain_timeout_secs,
                f.drain_timeout_secs,
                10,
                "drain_timeout_secs",
            )?,
            request_timeout: secs(
                args.request_timeout_secs,
                f.request_timeout_secs,
                30,
                "request_timeout_secs",
            )?,
            max_concurrent_requests: match args
                .max_concurrent_requests
                .or(f.max_concurrent_requests)
                .unwrap_or(512)
            {
                0 => anyhow::bail!("max_concurrent_requests must be at least 1"),
                n => n,
            },
            max_connections: match args.max_connections.or(f.max_connections).unwrap_or(4096) {
                0 => anyhow::bail!("max_connections must be at least 1"),
                n => n,
            },
            handshake_timeout: secs(
                args.handshake_timeout_secs,
                f.handshake_timeout_secs,
                10,
                "handshake_timeout_secs",
            )?,
        };
        let auth = AuthSettings {
            // Only the embedded default makes its own keys; a production deployment
            // is given them, so that every replica of a part signs with the same key.
            create_if_missing: database_url.starts_with("sqlite:"),
            keys_dir: args
                .keys_dir
                .clone()
                .or(f.keys_dir)
                .unwrap_or_else(|| AuthSettings::DEFAULT_KEYS_DIR.into()),
            key_file: args.key_file.clone().or(f.key_file),
            issuer_key_file: args.issuer_key_file.clone().or(f.issuer_key_file),
            audit_key_file: args.audit_key_file.clone().or(f.audit_key_file),
        };
        Ok(Settings {
            listen,
            database_url: DatabaseUrl(database_url),
            log_format: args.log_format.or(f.log_format).unwrap_or(LogFormat::Human),
            serve,
            utc_offset: match (args.utc_offset, f.utc_offset) {
                (Some(o), _) => o,
                (None, Some(s)) => s
                    .parse()
                    .map_err(|_| anyhow::anyhow!("utc_offset {s:?} is not like +08:00"))?,
                (None, None) => crate::time::china_standard_time(),
            },
            db: crate::db::DbOptions {
                sqlite_synchronous: args
                    .sqlite_synchronous
                    .or(f.sqlite_synchronous)
                    .unwrap_or_default(),
                acquire_timeout: match args
                    .db_acquire_timeout_ms
                    .or(f.db_acquire_timeout_ms)
                    .unwrap_or(500)
                {
                    0 => anyhow::bail!("db_acquire_timeout_ms must be at least 1"),
                    ms => Duration::from_millis(ms),
                },
            },
            call_timeout: match args.call_timeout_ms.or(f.call_timeout_ms).unwrap_or(2000) {
                0 => anyhow::bail!("call_timeout_ms must be at least 1"),
                ms => Duration::from_millis(ms),
            },
            otlp_endpoint: args
                .otlp_endpoint
                .clone()
                .or(f.otlp_endpoint)
                .filter(|e| !e.is_empty()),
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults = Defaults {
        service: "people",
        listen: "127.0.0.1:50053",
    };

    #[test]
    fn flags_override_file_override_defaults() {
        let none = Settings::resolve(
            &CommonArgs::default(),
            &ConfigFile::default(),
            &[],
            DEFAULTS,
        )
        .unwrap();
        assert_eq!(none.listen.port(), 50053);
        assert_eq!(none.database_url.expose(), "sqlite://data/people.db");
        assert_eq!(none.serve.drain_timeout, Duration::from_secs(10));

        let file = ConfigFile {
            table: toml::from_str(
                "listen = \"0.0.0.0:6000\"\ndrain_timeout_secs = 3\nlog_format = \"json\"\n[care_policy]\nx = 1",
            )
            .unwrap(),
        };
        let from_file =
            Settings::resolve(&CommonArgs::default(), &file, &["care_policy"], DEFAULTS).unwrap();
        assert_eq!(from_file.listen.port(), 6000);
        assert_eq!(from_file.log_format, LogFormat::Json);
        assert_eq!(from_file.serve.drain_timeout, Duration::from_secs(3));

        let args = CommonArgs {
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Default::default()
        };
        let from_flag = Settings::resolve(&args, &file, &["care_policy"], DEFAULTS).unwrap();
        assert_eq!(from_flag.listen.port(), 7000);
        assert_eq!(from_flag.serve.drain_timeout, Duration::from_secs(3));
    }

    #[test]
    fn unknown_file_settings_and_zero_timeouts_are_refused() {
        let typo = ConfigFile {
            table: toml::from_str("listne = \"x\"").unwrap(),
        };
        assert!(Settings::resolve(&CommonArgs::default(), &typo, &[], DEFAULTS).is_err());
        let zero = CommonArgs {
            drain_timeout_secs: Some(0),
            ..Default::default()
        };
        assert!(Settings::resolve(&zero, &ConfigFile::default(), &[], DEFAULTS).is_err());
    }

    #[test]
    fn database_passwords_never_print() {
        let url = DatabaseUrl("postgres://u:hunter2@db/people".into());
        assert!(!format!("{url:?} {url}").contains("hunter2"));
    }
}
