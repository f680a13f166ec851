//! The `linli-gateway` command: serve (the default), migrate, Open311 keys, the suite's keys.
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
    /// How long a dashboard or county overview is served from memory before it is read again; 0 reads every time [default: 1000].
    #[arg(long, env = "LINLI_VIEW_MAX_AGE_MS", global = true)]
    pub view_max_age_ms: Option<u64>,
    /// How long an older dashboard or overview may still be served while a fresh one is assembled [default: 30000].
    #[arg(long, env = "LINLI_VIEW_STALE_MS", global = true)]
    pub view_stale_ms: Option<u64>,
    /// How long a dashboard is served from memory while the issues and logistics feeds report no change in its community (people's records and passing deadlines show within this) [default: 10000].
    #[arg(long, env = "LINLI_VIEW_QUIET_MS", global = true)]
    pub view_quiet_ms: Option<u64>,
    /// Lifetime of access tokens, 60 to 3600 seconds [default: 900].
    #[arg(long, env = "LINLI_ACCESS_TTL_SECS", global = true)]
    pub access_ttl_secs: Option<u64>,
    /// Lifetime of an unused refresh token [default: 604800, a week].
    #[arg(long, env = "LINLI_REFRESH_TTL_SECS", global = true)]
    pub refresh_ttl_secs: Option<u64>,
    /// Where the HTTP side (dashboard, JSON API, gRPC-Web, Open311, /metrics) listens [default: 127.0.0.1:8080].
    #[arg(long, env = "LINLI_HTTP_LISTEN", global = true)]
    pub http_listen: Option<String>,
    /// Mark the dashboard's cookies Secure, for serving behind TLS [default: false].
    #[arg(long, env = "LINLI_SECURE_COOKIES", global = true)]
    pub secure_cookies: Option<bool>,
    /// The reverse proxies in front of the gateway, whose X-Forwarded-For names the client (addresses or networks, comma-separated) [default: none].
    #[arg(long, env = "LINLI_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC and the HTTP side (the default).
    Serve,
    /// Make an API key for an Open311 client (a civic reporting app) that
    /// reports into one community; the key is printed once and kept only as a hash.
    Open311Key {
        /// The app's name, as the audit trail will name it (`open311:<name>`).
        #[arg(long)]
        name: String,
        /// The community it reports into: its id, its administrative code, or its exact name.
        #[arg(long)]
        community: String,
    },
    /// Bring the database schema (refresh tokens, audit trail) up to date and exit.
    Migrate,
    /// Exit 0 when the server on the configured address reports SERVING (a container health check).
    Health,
    /// Write the keys each part of the suite holds (issuer, people, issues, logistics,
    /// gateway) into a folder, keeping any already there; see deploy/README.md for
    /// which file goes where.
    Keys {
        /// The folder to write `<part>.key.pem` and `<part>.pub.pem` into.
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

pub fn main() -> ExitCode {
    linli_core::cli::exit_with("linli-gateway", run(Cli::parse()))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Keys { dir }) = &cli.command {
        let made = linli_core::keyring::init_dir(dir)?;
        println!(
            "{}: {}",
            dir.display(),
            if made.is_empty() {
                "every part's keys were there already".to_owned()
            } else {
                format!("wrote the keys of {}", made.join(", "))
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let settings = Settings::resolve(&cli)?;
    let common = settings.common.clone();
    linli_core::cli::run("gateway", &common, async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app = Application::build(
                    settings,
                    Keys::load(&common.auth, &["gateway", linli_core::auth::ISSUER])?,
                )
                .await?;
                let _jobs = app.spawn_jobs();
                let http = tokio::net::TcpListener::bind(app.settings.http_listen)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("cannot listen on {}: {e}", app.settings.http_listen)
                    })?;
                tracing::info!(address = %http.local_addr()?, "gateway HTTP side listening");
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let web = app.serve_web(http, async move {
                    let mut stopped = stopped;
                    let _ = stopped.wait_for(|s| *s).await;
                });
                let grpc = async {
                    let code = linli_core::cli::serve("gateway", &common, app.grpc_server()).await;
                    // The signal that stopped gRPC stops the HTTP side too.
                    let _ = stop.send(true);
                    code
                };
                let (code, web) = tokio::join!(grpc, web);
                web?;
                code
            }
            Command::Open311Key { name, community } => {
                let keys = Keys::load(&common.auth, &["gateway", linli_core::auth::ISSUER])?;
                let app = Application::build(settings, keys).await?;
                let community_id = app.community_id(&community).await?;
                let key = crate::web::open311::add_key(&app.db, &name, &community_id).await?;
                println!("{key}");
                eprintln!(
                    "Open311 API key for {name:?}, reporting into community {community_id}; it is shown only now."
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Health => linli_core::cli::health(&common, crate::SERVICE_NAME).await,
            Command::Keys { .. } => unreachable!("handled before the runtime starts"),
            Command::Migrate => {
                crate::open_db(&settings).await?;
                println!("database schema is up to date");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
