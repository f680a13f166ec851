//! The `linli-people` command: serve (the default), migrate, import a roster, seed demo data.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use linli_core::auth::Keys;
use linli_core::config::CommonArgs;

use crate::{Application, Settings};

/// linli people service: households, residents, cadres, pairings, duty, visits and accounts.
///
/// Settings come from, in rising order: built-in defaults, the --config file, environment
/// variables, flags. The care policy is set in the file under [care_policy] (see README).
#[derive(Debug, Parser)]
#[command(name = "linli-people", version)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
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
    /// Import households and residents from a roster CSV (see services/people/examples/).
    Import {
        /// The community to import into, by id or exact name.
        #[arg(long)]
        community: String,
        /// Check every row and report, without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// The CSV file.
        file: PathBuf,
    },
    /// Load the demo data (双泉社区, 八角亭小区); safe to run again. The demo
    /// accounts must change their published password at their first login,
    /// unless --keep-demo-passwords (what `make run` does, on this machine only).
    Seed {
        #[arg(long)]
        keep_demo_passwords: bool,
    },
    /// Load a benchmark county (clearly not real data): COMMUNITIES communities
    /// spread over 通山县's towns, each with the demo roster (1,258 residents),
    /// cadres, pairings, duty and visits, and accounts w001, c001, r001, …;
    /// written through the store like the API, safe to run again.
    SeedCounty {
        #[arg(long, default_value_t = 100)]
        communities: usize,
        /// Communities written at a time (PostgreSQL takes them in parallel).
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// Print a signed access token, for operators calling a service directly
    /// (e.g. with `buf curl -H "authorization: Bearer $TOKEN"`); needs the
    /// issuer's key, and the database only to find a community
    /// (`linli-people token --help` lists its own flags).
    Token(TokenArgs),
}

/// `linli-people token`: its own flags only, the keys it needs and nothing else.
#[derive(Debug, Parser)]
#[command(name = "linli-people token", version)]
pub struct TokenCli {
    #[command(flatten)]
    pub args: TokenArgs,
    /// The suite's keys folder, where the issuer's key is looked for [default: data/keys].
    #[arg(long, env = "LINLI_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
    /// The issuer's private key [default: <keys-dir>/issuer.key.pem].
    #[arg(long, env = "LINLI_ISSUER_KEY_FILE")]
    pub issuer_key_file: Option<PathBuf>,
    /// The people database, to find --community by name [default: sqlite://data/people.db].
    #[arg(long, env = "LINLI_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// admin, supervisor, community_worker, cadre or resident.
    #[arg(long)]
    pub role: linli_core::Role,
    /// The community the token acts in, by id or exact name; omit for county-wide
    /// (admin and supervisor only).
    #[arg(long)]
    pub community: Option<String>,
    /// The cadre record of a cadre's token.
    #[arg(long)]
    pub cadre: Option<String>,
    /// The household of a resident's token.
    #[arg(long)]
    pub household: Option<String>,
    /// Who the audit trail names [default: operator:<role>].
    #[arg(long)]
    pub subject: Option<String>,
    /// Minutes until the token expires.
    #[arg(long, default_value_t = 60)]
    pub ttl_minutes: u64,
}

pub fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "token") {
        let mut argv: Vec<_> = std::env::args_os().collect();
        argv.remove(1);
        return linli_core::cli::exit_with(
            "linli-people token",
            run_token(TokenCli::parse_from(argv)),
        );
    }
    linli_core::cli::exit_with("linli-people", run(Cli::parse()))
}

/// Signs a token with the issuer's key found where the suite keeps it, never
/// making a key or a database of its own.
fn run_token(cli: TokenCli) -> anyhow::Result<ExitCode> {
    let mut auth = linli_core::auth::AuthSettings::in_dir(
        cli.keys_dir
            .unwrap_or_else(|| linli_core::auth::AuthSettings::DEFAULT_KEYS_DIR.into()),
        false,
    );
    auth.issuer_key_file = cli.issuer_key_file;
    let keys = Keys::load(&auth, &[linli_core::auth::ISSUER]).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}; run this where the suite keeps its keys, or set --keys-dir / LINLI_KEYS_DIR"
        )
    })?;
    let url = cli
        .database_url
        .unwrap_or_else(|| "sqlite://data/people.db".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let token = runtime.block_on(token(&url, &keys, cli.args))?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Token(args)) = cli.command {
        // Flags before the word `token` (`linli-people --keys-dir k token …`).
        return run_token(TokenCli {
            args,
            keys_dir: cli.common.keys_dir,
            issuer_key_file: cli.common.issuer_key_file,
            database_url: cli.common.database_url,
        });
    }
    let settings = Settings::resolve(&cli)?;
    let common = settings.common.clone();
    linli_core::cli::run("people", &common, async {
        let store = crate::open_store(&settings).await?;
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let app = Application::new(settings, store, Keys::load(&common.auth, &["people"])?);
                let _jobs = app.spawn_jobs();
                linli_core::cli::serve("people", &common, app.grpc_server()).await
            }
            Command::Token(_) => unreachable!("handled before the settings"),
            Command::Health => linli_core::cli::health(&common, crate::SERVICE_NAME).await,
            Command::Migrate => {
                println!("database schema is up to date");
                Ok(ExitCode::SUCCESS)
            }
            Command::Import {
                community,
                dry_run,
                file,
            } => crate::import::run(&store, &community, &file, dry_run).await,
            Command::Seed {
                keep_demo_passwords,
            } => {
                let passwords = if keep_demo_passwords {
                    crate::seed::DemoPasswords::Keep
                } else {
                    crate::seed::DemoPasswords::MustChange
                };
                crate::seed::run(&store, passwords).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::SeedCounty { communities, jobs } => {
                crate::seed::county(&store, communities, jobs).await?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// A token with the claims an account of that role would get at login.
async fn token(
    database_url: &str,
    keys: &linli_core::auth::Keys,
    args: TokenArgs,
) -> anyhow::Result<String> {
    use linli_core::Role;
    let subject = args
        .subject
        .unwrap_or_else(|| format!("operator:{}", args.role));
    let ttl = std::time::Duration::from_secs(args.ttl_minutes.max(1) * 60);
    let mut claims = linli_core::auth::Claims::new(subject, args.role, ttl);
    claims = match args.community {
        Some(c) => claims.community(community_id(database_url, &c).await?),
        None if matches!(args.role, Role::Admin | Role::Supervisor) => claims.county(),
        None => anyhow::bail!("--community is required for the {} role", args.role),
    };
    match (args.role, args.cadre, args.household) {
        (Role::Cadre, Some(c), _) => claims = claims.cadre(c),
        (Role::Cadre, None, _) => anyhow::bail!("--cadre is required for the cadre role"),
        (Role::Resident, _, Some(h)) => claims = claims.household(h),
        (Role::Resident, _, None) => anyhow::bail!("--household is required for the resident role"),
        _ => {}
    }
    Ok(keys.sign(&claims))
}

/// The id of a community named by id or exact name, read from an existing people database.
async fn community_id(database_url: &str, community: &str) -> anyhow::Result<String> {
    if let Some(path) = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
    {
        let file = path.split('?').next().unwrap_or_default();
        if !std::path::Path::new(file).exists() {
            anyhow::bail!(
                "no people database at {file}: run this where the suite keeps its data, or set --database-url"
            );
        }
    }
    let db = linli_core::Db::connect(database_url).await?;
    let store = crate::Store::new(
        db,
        crate::care::CarePolicy::default(),
        linli_core::time::china_standard_time(),
    );
    Ok(store.find_community(community).await?.id)
}
