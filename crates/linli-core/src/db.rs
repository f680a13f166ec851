//! Storage on SQLite (the embedded default) or PostgreSQL (production), chosen
//! by the URL scheme. Services write one dialect that both accept — `$1`
//! placeholders, BIGINT times, TEXT ids made in Rust, `ON CONFLICT`,
//! `RETURNING` — through sqlx's `Any` driver, so both backends run the very
//! same queries and the same tests.
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

use crate::Result;

/// Connections that read an SQLite database beside its one writer.
const SQLITE_READERS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The database a connection speaks to.
    pub fn of(conn: &AnyConnection) -> Backend {
        match conn.backend_name() {
            "PostgreSQL" => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }
}

/// How the embedded store syncs a commit to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// Every commit is on disk before it is acknowledged: survives a power loss.
    #[default]
    Full,
    /// Commits survive the process being killed, but the last ones may be lost
    /// if the machine loses power.
    Normal,
}

/// How a service uses its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbOptions {
    pub sqlite_synchronous: SqliteSync,
    /// How long a request waits for a PostgreSQL connection before it fails
    /// UNAVAILABLE: short, so a database that is gone is reported at once.
    pub acquire_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            sqlite_synchronous: SqliteSync::Full,
            acquire_timeout: Duration::from_millis(500),
        }
    }
}

/// What asking the database found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Answered,
    /// No answer in time, or no connection free in time, while every
    /// connection of the pool was in use: busy, which says nothing either way.
    Busy,
    /// No answer with a connection free to ask on, or an error.
    Unreachable,
}

/// A connection pool and the backend behind it.
#[derive(Clone)]
pub struct Db {
    /// Where reads go. On SQLite these connections only ever read, so any
    /// number of them read at once beside the writer (WAL).
    pub pool: AnyPool,
    /// Where writes go ([`Db::begin_write`]). On SQLite one connection, so
    /// writes queue in-process rather than fail with SQLITE_BUSY; on
    /// PostgreSQL the same pool as reads.
    pub writer: AnyPool,
    pub backend: Backend,
    /// Where a probe connects outside the pools, when every pooled connection is in use.
    probe: AnyConnectOptions,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// One schema change. `id`s sort in the order they must be applied.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub id: &'static str,
    pub sql: &'static str,
}

/// The tables every service has: idempotency keys and the audit trail.
pub const CORE_MIGRATIONS: &[Migration] = &[Migration {
    id: "core/0001_idempotency_audit",
    sql: include_str!("../migrations/0001_idempotency_audit.sql"),
}];

/// Hides the password in a database URL, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Db {
    /// Opens the database at `url`, creating it (an SQLite file and its
    /// directory, or a PostgreSQL database) if it does not exist yet.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        Db::connect_with(url, &DbOptions::default()).await
    }

    /// As [`Db::connect`], with `options`.
    pub async fn connect_with(url: &str, options: &DbOptions) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let settings = options.clone();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!(
                "database URL {} must start with sqlite:// or postgres://",
                redact_url(url)
            );
        };
        let url = match backend {
            Backend::Sqlite => prepare_sqlite(url)?,
            Backend::Postgres => {
                ensure_postgres_database(url).await?;
                url.to_owned()
            }
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let probe = options.clone();
        let synchronous = match settings.sqlite_synchronous {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        };
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                let pragmas = move |write: bool| {
                    format!(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = {synchronous};{}",
                        if write {
                            ""
                        } else {
                            " PRAGMA query_only = ON;"
                        }
                    )
                };
                let sqlite = |connections: u32, write: bool| {
                    let pragmas = pragmas(write);
                    AnyPoolOptions::new()
                        .max_connections(connections)
                        .after_connect(move |conn, _| {
                            let pragmas = pragmas.clone();
                            Box::pin(async move {
                                conn.execute(pragmas.as_str()).await?;
                                Ok(())
                            })
                        })
                };
                // The writer first: it creates the file and turns WAL on.
                let writer = sqlite(1, true).connect_with(options.clone()).await?;
                let readers = sqlite(SQLITE_READERS, false)
                    .min_connections(0)
                    .connect_with(options)
                    .await?;
                (readers, writer)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(settings.acquire_timeout)
                    // A connection that was used a moment ago is alive; one
                    // that sat idle (the server may have restarted since) is
                    // asked first. Pinging every time cost each query a
                    // second round trip under load.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= TRUST_IDLE_FOR {
                                conn.ping().await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(options)
                    .await?;
                (pool.clone(), pool)
            }
        };
        Ok(Db {
            pool,
            writer,
            backend,
            probe,
        })
    }

    /// Whether the database answers within `timeout`: what readiness reports.
    /// A database too busy to say (see [`Reach::Busy`]) counts as reachable.
    pub async fn is_reachable(&self, timeout: Duration) -> bool {
        self.reach(timeout).await != Reach::Unreachable
    }

    /// Asks the database `SELECT 1` through the pool, within `timeout`.
    pub async fn reach(&self, timeout: Duration) -> Reach {
        // Every connection open and in use: the ask queues behind the load,
        // and a late or refused turn says the pool is busy, not that the
        // database is gone (a database that is gone fails those connections'
        // own queries, and they are closed).
        let queued = self.pool.size() > 0 && self.pool.num_idle() == 0;
        let ping = async {
            let mut conn = self.pool.acquire().await?;
            conn.execute("SELECT 1").await.map(|_| ())
        };
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(())) => Reach::Answered,
            Ok(Err(sqlx::Error::PoolTimedOut)) | Err(_) if queued => self.probe(timeout).await,
            _ => Reach::Unreachable,
        }
    }

    /// With every pooled connection in use, a late turn says nothing: they
    /// may be busy with work, or busy failing to reach a database that is
    /// gone (under load they never fall idle, so readiness would stay as it
    /// was for the whole outage). A connection of its own tells the two apart.
    async fn probe(&self, timeout: Duration) -> Reach {
        let ask = async {
            let mut conn = AnyConnection::connect_with(&self.probe).await?;
            conn.execute("SELECT 1").await?;
            conn.close().await
        };
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(())) => Reach::Busy,
            _ => Reach::Unreachable,
        }
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock
    /// at once (`BEGIN IMMEDIATE`): a transaction that read first and wrote
    /// later would fail at once with SQLITE_BUSY when another process or
    /// replica wrote in between, instead of waiting its turn.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }

    /// Applies, in order, every migration not applied yet. Safe to run from
    /// several replicas at once: PostgreSQL serialises them with an advisory lock.
    pub async fn migrate(&self, migrations: &[Migration]) -> anyhow::Result<Vec<&'static str>> {
        let mut conn = self.writer.acquire().await?;
        if self.backend == Backend::Postgres {
            conn.execute("SELECT pg_advisory_lock(7468171)").await?;
        }
        let result = apply(&mut conn, migrations).await;
        if self.backend == Backend::Postgres {
            conn.execute("SELECT pg_advisory_unlock(7468171)").await?;
        }
        result
    }
}

async fn apply(
    conn: &mut AnyConnection,
    migrations: &[Migration],
) -> anyhow::Result<Vec<&'static str>> {
    conn.execute("CREATE TABLE IF NOT EXISTS linli_migrations (id TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .await?;
    let mut applied = Vec::new();
    for m in migrations {
        let done: Option<(String,)> =
            sqlx::query_as("SELECT id FROM linli_migrations WHERE id = $1")
                .bind(m.id)
                .fetch_optional(&mut *conn)
                .await?;
        if done.is_some() {
            continue;
        }
        let mut tx = conn.begin().await?;
        tx.execute(m.sql)
            .await
            .map_err(|e| anyhow::anyhow!("migration {}: {e}", m.id))?;
        sqlx::query("INSERT INTO linli_migrations (id, applied_at) VALUES ($1, $2)")
            .bind(m.id)
            .bind(crate::time::now_micros())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(migration = m.id, "applied migration");
        applied.push(m.id);
    }
    Ok(applied)
}

/// A PostgreSQL connection idle for less than this is handed out without a ping.
const TRUST_IDLE_FOR: Duration = Duration::from_secs(1);

/// Makes sure an SQLite file can be created: its directory exists and the URL asks for create mode.
fn prepare_sqlite(url: &str) -> anyhow::Result<String> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        anyhow::bail!(
            "use a file for SQLite (e.g. sqlite://data/people.db): an in-memory database is lost on restart"
        );
    }
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(if rest.contains("mode=") {
        url.to_owned()
    } else if rest.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// Creates the PostgreSQL database named in `url` when it is missing, so one
/// server can hold each service's database without a manual step.
async fn ensure_postgres_database(url: &str) -> anyhow::Result<()> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let Some((server, name)) = base
        .rsplit_once('/')
        .filter(|(s, n)| s.contains("://") && !s.ends_with('/') && !n.is_empty())
    else {
        return Ok(());
    };
    if name == "postgres" {
        return Ok(());
    }
    let admin_url = match query {
        Some(q) => format!("{server}/postgres?{q}"),
        None => format!("{server}/postgres"),
    };
    let mut admin = match AnyConnection::connect(&admin_url).await {
        Ok(c) => c,
        // Without access to the maintenance database, assume the database exists;
        // connecting to it will tell otherwise.
        Err(_) => return Ok(()),
    };
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await?;
    if exists.is_none() {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            anyhow::bail!("database name {name:?} may only hold letters, digits and underscores");
        }
        match admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
        {
            Ok(_) => tracing::info!(database = name, "created database"),
            // Another replica created it first.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    admin.close().await?;
    Ok(())
}

/// Reads a column stored as the text of an enum; an unknown text is corrupt data, an internal error.
pub fn text_col<T>(
    row: &sqlx::any::AnyRow,
    col: &str,
    parse: fn(&str) -> Option<T>,
) -> crate::Result<T> {
    use sqlx::Row;
    let s: String = row.try_get(col)?;
    parse(&s).ok_or_else(|| {
        crate::Error::Internal(anyhow::anyhow!("column {col} holds unknown value {s:?}"))
    })
}

/// Fetches the one record `sql` selects by id (its only placeholder, `$1`),
/// or NOT_FOUND naming `what`.
pub async fn fetch_by_id<T>(
    conn: &mut AnyConnection,
    sql: &str,
    id: &str,
    what: &'static str,
    map: impl Fn(&sqlx::any::AnyRow) -> crate::Result<T>,
) -> crate::Result<T> {
    let row = sqlx::query(sql).bind(id).fetch_optional(&mut *conn).await?;
    row.as_ref()
        .map(map)
        .transpose()?
        .ok_or_else(|| crate::Error::not_found(what, id))
}

/// Moves communities' heads (`table`: a `seq` keyed by `community_id`) on,
/// each by its count, and returns each one's row as it now stands (its
/// `community_id` and the `returning` columns; `seq` is the last one taken).
/// A community without a head gets one first (`new_head`, its id as `$1`).
///
/// The heads are moved together ([`update_heads`]); their row locks are what
/// order each community's writers.
pub async fn advance_heads(
    conn: &mut AnyConnection,
    table: &str,
    returning: &str,
    new_head: &str,
    counts: &std::collections::BTreeMap<&str, i64>,
) -> crate::Result<std::collections::HashMap<String, sqlx::any::AnyRow>> {
    use sqlx::Row;
    let mut heads = std::collections::HashMap::new();
    let mut todo: Vec<(&str, i64)> = counts.iter().map(|(c, n)| (*c, *n)).collect();
    for first_try in [true, false] {
        if todo.is_empty() {
            break;
        }
        let mut by = Values::default();
        for (community, n) in &todo {
            by.bind(community.to_string())?.bind(*n)?.row();
        }
        let rows = update_heads(
            conn,
            table,
            "seq = seq + d.n",
            &["c", "n"],
            by,
            &format!("RETURNING community_id, {returning}"),
        )
        .await?;
        for row in rows {
            heads.insert(row.try_get::<String, _>("community_id")?, row);
        }
        todo.retain(|(community, _)| !heads.contains_key(*community));
        if first_try {
            for (community, _) in &todo {
                sqlx::query(new_head)
                    .bind(community.to_string())
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    if let Some((community, _)) = todo.first() {
        return Err(crate::Error::Internal(anyhow::anyhow!(
            "{table}: no head for community {community}"
        )));
    }
    Ok(heads)
}

/// `UPDATE {table} SET {set}` for the communities' heads in `by`, each row
/// the community's id and the values `set` reads as `d.<name>` (`names`,
/// the id's first), in [`pieces`]; returns the rows `tail` (a `RETURNING`
/// clause, or nothing) asks for.
///
/// On PostgreSQL the rows of a piece of several are locked first in the
/// order of their ids, and pieces follow the order of `by`: a writer moving
/// heads given in id order takes their locks in that order, so writers never
/// wait on each other in a cycle. (SQLite has one writer at a time.)
pub async fn update_heads(
    conn: &mut AnyConnection,
    table: &str,
    set: &str,
    names: &[&str],
    by: Values,
    tail: &str,
) -> crate::Result<Vec<sqlx::any::AnyRow>> {
    let postgres = Backend::of(conn) == Backend::Postgres;
    let mut rows = Vec::new();
    for piece in by.into_pieces() {
        if postgres && piece.len() > 1 {
            let mut ids = sqlx::any::AnyArguments::default();
            ids.values.0.clone_from(&piece.args.values.0);
            sqlx::query_with(
                &format!(
                    "SELECT community_id FROM {table} WHERE community_id IN (SELECT {id} FROM ({}) AS d) \
                     ORDER BY community_id FOR UPDATE",
                    piece.select(names),
                    id = names[0],
                ),
                ids,
            )
            .fetch_all(&mut *conn)
            .await?;
        }
        rows.extend(
            sqlx::query_with(
                &format!(
                    "UPDATE {table} SET {set} FROM ({}) AS d WHERE community_id = d.{} {tail}",
                    piece.select(names),
                    names[0],
                ),
                piece.args,
            )
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    Ok(rows)
}

/// The rows of a multi-row `VALUES` list and their arguments: many records
/// written in one statement (a batch of creates, a seeding).
///
/// ```ignore
/// let mut v = Values::default();
/// for r in rows { v.bind(&r.a)?.bind(r.b)?.row(); }
/// v.insert(conn, "INSERT INTO t (a, b)").await?;
/// ```
///
/// [`Values::insert`] and [`Values::fetch_all`] run their statement in
/// [`pieces`] of 1, 2, 4, … rows. Each number of rows is a statement of its
/// own to the database, prepared and planned once per connection and kept in
/// the connection's cache of statements (100 on PostgreSQL): batches of every
/// size from 1 to 64 made 64 statements of each kind, hundreds in all, which
/// pushed each other out of that cache, so that batches were parsed and
/// planned again. In pieces there are seven sizes to 64.
#[derive(Default)]
pub struct Values {
    args: sqlx::any::AnyArguments<'static>,
    /// Each row's values: an argument (the next one in `args`) or a constant.
    rows: Vec<Vec<Item>>,
    row: Vec<Item>,
}

enum Item {
    Arg,
    Literal(&'static str),
}

/// `0..n` cut into ranges whose lengths are powers of two, largest first
/// (45: 32, 8, 4, 1), so that statements over them come in few sizes.
pub fn pieces(n: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let len = 1 << (usize::BITS - 1 - (n - start).leading_zeros());
        out.push(start..start + len);
        start += len;
    }
    out
}

impl Values {
    /// The next value of the current row, as a placeholder.
    pub fn bind<T>(&mut self, value: T) -> crate::Result<&mut Self>
    where
        T: 'static + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        use sqlx::Arguments;
        self.args
            .add(value)
            .map_err(|e| crate::Error::Internal(anyhow::anyhow!("binding a value: {e}")))?;
        self.row.push(Item::Arg);
        Ok(self)
    }

    /// The next value of the current row, written into the statement (a constant).
    pub fn literal(&mut self, sql: &'static str) -> &mut Self {
        self.row.push(Item::Literal(sql));
        self
    }

    /// Ends the current row.
    pub fn row(&mut self) {
        self.rows.push(std::mem::take(&mut self.row));
    }

    /// How many rows have been ended.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Each row's values as SQL, placeholders numbered from `$1`.
    fn rendered(&self) -> impl Iterator<Item = Vec<String>> + '_ {
        let mut placeholders = 0;
        self.rows.iter().map(move |row| {
            row.iter()
                .map(|item| match item {
                    Item::Arg => {
                        placeholders += 1;
                        format!("${placeholders}")
                    }
                    Item::Literal(sql) => (*sql).to_owned(),
                })
                .collect()
        })
    }

    /// The rows, to follow `VALUES`.
    pub fn sql(&self) -> String {
        let rows: Vec<String> = self
            .rendered()
            .map(|row| format!("({})", row.join(", ")))
            .collect();
        rows.join(", ")
    }

    /// The rows as a `SELECT … UNION ALL SELECT …` whose columns are named
    /// `names`, to join an `UPDATE … FROM` with (both databases read it; a
    /// `VALUES` list's columns are named differently in each).
    pub fn select(&self, names: &[&str]) -> String {
        let rows: Vec<String> = self
            .rendered()
            .enumerate()
            .map(|(i, row)| {
                let values: Vec<String> = if i == 0 {
                    // The first row names the columns.
                    row.iter()
                        .zip(names)
                        .map(|(v, name)| format!("{v} AS {name}"))
                        .collect()
                } else {
                    row
                };
                format!("SELECT {}", values.join(", "))
            })
            .collect();
        rows.join(" UNION ALL ")
    }

    /// The rows cut as [`pieces`] cuts them, in order, each piece with its
    /// own arguments and placeholders numbered from `$1`.
    pub fn into_pieces(self) -> Vec<Values> {
        let Values { args, rows, .. } = self;
        // Rows take their arguments in order, so a piece's are the next ones.
        let mut values = args.values.0.into_iter();
        let mut rows = rows.into_iter();
        pieces(rows.len())
            .into_iter()
            .map(|range| {
                let mut piece = Values::default();
                piece.rows.extend(rows.by_ref().take(range.len()));
                let used = piece
                    .rows
                    .iter()
                    .flatten()
                    .filter(|item| matches!(item, Item::Arg))
                    .count();
                piece.args.values.0.extend(values.by_ref().take(used));
                piece
            })
            .collect()
    }

    /// Runs `head VALUES <the rows>` (`head` being `INSERT INTO t (columns)`),
    /// in [`pieces`]; nothing when there are no rows.
    pub async fn insert(self, conn: &mut AnyConnection, head: &str) -> crate::Result<()> {
        self.fetch_all(conn, |piece| format!("{head} VALUES {}", piece.sql()))
            .await?;
        Ok(())
    }

    /// Runs the statement `sql` makes of each of the [`pieces`] (from its
    /// [`Values::sql`] or [`Values::select`]), and returns every row they
    /// return, piece after piece.
    pub async fn fetch_all(
        self,
        conn: &mut AnyConnection,
        sql: impl Fn(&Values) -> String,
    ) -> crate::Result<Vec<sqlx::any::AnyRow>> {
        let mut out = Vec::new();
        for piece in self.into_pieces() {
            out.extend(
                sqlx::query_with(&sql(&piece), piece.args)
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://linli:s3cret@db:5432/people"),
            "postgres://linli:****@db:5432/people"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/people"),
            "postgres://postgres@127.0.0.1/people"
        );
        assert_eq!(
            redact_url("sqlite://data/people.db"),
            "sqlite://data/people.db"
        );
    }

    #[tokio::test]
    async fn a_pool_in_use_is_busy_not_unreachable() {
        let dir = std::env::temp_dir().join(format!("linli-db-{}", crate::new_id()));
        let url = format!("sqlite://{}/x.db", dir.display());
        let db = Db::connect(&url).await.unwrap();
        let wait = Duration::from_millis(200);
        assert_eq!(db.reach(wait).await, Reach::Answered);
        // Every reader taken, as by long reports under load.
        let mut held = Vec::new();
        for _ in 0..SQLITE_READERS {
            held.push(db.pool.acquire().await.unwrap());
        }
        assert_eq!(db.reach(wait).await, Reach::Busy);
        assert!(db.is_reachable(wait).await);
        drop(held);
        assert_eq!(db.reach(wait).await, Reach::Answered);
        db.pool.close().await;
        assert_eq!(db.reach(wait).await, Reach::Unreachable);
        db.writer.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Under load every pooled connection is in use; whether the database is
    /// there is asked on a connection of its own.
    #[tokio::test]
    async fn a_busy_pool_to_a_database_that_is_gone_is_unreachable() {
        let url = std::env::var("LINLI_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut db = Db::connect(&url).await.expect("PostgreSQL for the tests");
        let wait = Duration::from_millis(300);
        let mut held = Vec::new();
        while held.len() < db.pool.options().get_max_connections() as usize {
            held.push(db.pool.acquire().await.unwrap());
        }
        assert_eq!(db.reach(wait).await, Reach::Busy);
        // The same pool, all of it in use, when the server no longer answers.
        db.probe = AnyConnectOptions::from_str("postgres://postgres@127.0.0.1:1/postgres").unwrap();
        assert_eq!(db.reach(wait).await, Reach::Unreachable);
        assert!(!db.is_reachable(wait).await);
        drop(held);
        db.pool.close().await;
    }

    #[test]
    fn pieces_are_powers_of_two_largest_first() {
        assert_eq!(pieces(0), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(pieces(1), vec![0..1]);
        assert_eq!(pieces(64), vec![0..64]);
        assert_eq!(pieces(45), vec![0..32, 32..40, 40..44, 44..45]);
        for n in 0..300 {
            let p = pieces(n);
            assert_eq!(p.iter().map(|r| r.len()).sum::<usize>(), n);
            assert!(p.iter().all(|r| r.len().is_power_of_two()));
            assert!(
                p.windows(2)
                    .all(|w| w[0].end == w[1].start && w[0].len() > w[1].len())
            );
        }
    }

    /// Rows written in pieces arrive whole and in order, each with its own
    /// values and constants, and what each piece returns comes back.
    #[tokio::test]
    async fn values_in_pieces_write_every_row_with_its_own_values() {
        let dir = std::env::temp_dir().join(format!("linli-values-{}", crate::new_id()));
        let db = Db::connect(&format!("sqlite://{}/x.db", dir.display()))
            .await
            .unwrap();
        let mut conn = db.writer.acquire().await.unwrap();
        conn.execute("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT NOT NULL, c TEXT NOT NULL)")
            .await
            .unwrap();
        let rows = |range: std::ops::Range<i64>| {
            let mut v = Values::default();
            for k in range {
                v.bind(k)
                    .unwrap()
                    .literal("'c'")
                    .bind(format!("v{k}"))
                    .unwrap();
                v.row();
            }
            v
        };
        let first = rows(0..45);
        assert_eq!(
            first
                .into_pieces()
                .iter()
                .map(Values::len)
                .collect::<Vec<_>>(),
            [32, 8, 4, 1]
        );
        rows(0..45)
            .insert(&mut conn, "INSERT INTO t (k, c, v)")
            .await
            .unwrap();
        let returned = rows(45..52)
            .fetch_all(&mut conn, |piece| {
                format!("INSERT INTO t (k, c, v) VALUES {} RETURNING k", piece.sql())
            })
            .await
            .unwrap();
        let returned: Vec<i64> = returned.iter().map(|r| sqlx::Row::get(r, "k")).collect();
        assert_eq!(returned, (45..52).collect::<Vec<_>>());
        let all: Vec<(i64, String, String)> = sqlx::query_as("SELECT k, v, c FROM t ORDER BY k")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(all.len(), 52);
        for (i, (k, v, c)) in all.into_iter().enumerate() {
            assert_eq!(
                (k, v.as_str(), c.as_str()),
                (i as i64, format!("v{i}").as_str(), "c")
            );
        }
        drop(conn);
        db.pool.close().await;
        db.writer.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = std::env::temp_dir().join(format!("linli-db-{}", crate::new_id()));
        let url = format!("sqlite://{}/x.db", dir.display());
        assert_eq!(prepare_sqlite(&url).unwrap(), format!("{url}?mode=rwc"));
        assert!(dir.is_dir());
        std::fs::remove_dir_all(dir).unwrap();
        assert!(prepare_sqlite("sqlite::memory:").is_err());
    }
}
