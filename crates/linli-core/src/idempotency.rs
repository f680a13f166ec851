//! Idempotent creates. A create carries a client-chosen key; the first request
//! with a key makes the record, and every retry with the same key gets that
//! same record back instead of a second one.
//!
//! The key is claimed inside the create's own transaction, so a create that
//! fails releases its key, and two concurrent requests with one key cannot both
//! win: the second waits on the first's row (PostgreSQL) or its turn at the
//! single writer (SQLite), then finds the key taken.
use prost::Message;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use crate::audit::{self, Change};
use crate::{Actor, Db, Error, Result};

pub const MAX_KEY_LEN: usize = 128;

/// What a create should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: make the record with the id given to [`claim`].
    New,
    /// A record was already made with this key: return it.
    Replay(String),
}

/// Validates a request's idempotency key and takes it out of the request, so
/// the rest of the request can be fingerprinted.
pub fn take_key(key: &mut String) -> Result<String> {
    let key = std::mem::take(key);
    if key.trim().is_empty() {
        return Err(Error::invalid(
            "idempotency_key",
            "is required: choose one per record, and reuse it when retrying",
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid(
            "idempotency_key",
            "must not contain control characters",
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(
            "idempotency_key",
            format!("must be at most {MAX_KEY_LEN} bytes"),
        ));
    }
    Ok(key)
}

/// A create's idempotency key and the fingerprint of the rest of its request.
#[derive(Debug, Clone)]
pub struct IdemKey {
    pub key: String,
    pub fingerprint: String,
}

/// Takes the idempotency key out of a create request and fingerprints the rest.
///
/// Keys are the caller's own: the stored key is prefixed with the actor, so two
/// callers (and so two communities, whose callers are never the same) cannot
/// collide however they choose their keys.
pub fn idem_key<M: Message>(
    actor: &Actor,
    req: &mut M,
    key: impl FnOnce(&mut M) -> &mut String,
) -> Result<IdemKey> {
    let key = take_key(key(req))?;
    Ok(IdemKey {
        key: format!("{}/{key}", actor.id),
        fingerprint: fingerprint(req),
    })
}

/// A digest of a request (its key already taken out), to tell a retry from a
/// different request that reuses a key by mistake.
pub fn fingerprint<M: Message>(request: &M) -> String {
    hex::encode(Sha256::digest(request.encode_to_vec()))
}

/// Claims `key` in `scope` for a record about to be made with id `new_id`.
pub async fn claim(
    conn: &mut AnyConnection,
    scope: &str,
    key: &str,
    fingerprint: &str,
    new_id: &str,
) -> Result<Claim> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, resource_id, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .bind(new_id)
    .bind(crate::time::now_micros())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let (existing_fp, id): (String, String) = sqlx::query_as(
        "SELECT fingerprint, resource_id FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    if existing_fp != fingerprint {
        return Err(Error::invalid(
            "idempotency_key",
            "was already used for a different request",
        ));
    }
    Ok(Claim::Replay(id))
}

/// Claims several keys in `scope` in one statement, each for the record about
/// to be made with its id, and returns the keys that were new. A key already
/// held (a retry, or a key reused by mistake) is left as it was; the caller
/// answers its request through [`create`], which tells the two apart. The keys
/// must differ from one another. They are claimed in the order of the keys, so
/// that two batches claiming the same keys at once never wait on each other in
/// a cycle.
pub async fn claim_all(
    conn: &mut AnyConnection,
    scope: &str,
    keys: &[(&IdemKey, &str)],
) -> Result<std::collections::HashSet<String>> {
    let mut sorted = keys.to_vec();
    sorted.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    let now = crate::time::now_micros();
    let mut rows = crate::db::Values::default();
    for (idem, new_id) in sorted {
        rows.bind(scope.to_owned())?
            .bind(idem.key.clone())?
            .bind(idem.fingerprint.clone())?
            .bind(new_id.to_owned())?
            .bind(now)?
            .row();
    }
    let claimed = rows
        .fetch_all(conn, |piece| {
            format!(
                "INSERT INTO idempotency_keys (scope, key, fingerprint, resource_id, created_at) VALUES {} \
                 ON CONFLICT (scope, key) DO NOTHING RETURNING key",
                piece.sql()
            )
        })
        .await?;
    claimed
        .iter()
        .map(|row| Ok(sqlx::Row::try_get::<String, _>(row, "key")?))
        .collect()
}

/// What a create made: the record, the change that describes it, and any changes
/// it caused to other records (recorded after it, in this order).
pub struct Made<T> {
    pub record: T,
    pub change: Change,
    pub then: Vec<Change>,
}

impl<T> Made<T> {
    pub fn new(record: T, change: Change) -> Self {
        Made {
            record,
            change,
            then: Vec::new(),
        }
    }
}

/// A future that borrows what it was given for `'c`.
pub type Step<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'c>>;

/// One idempotent create in one transaction; the only place that spells the
/// sequence out. The key is claimed first: a retry gets the first record back,
/// read with `replay`, and nothing else runs. Otherwise `make` writes the record
/// under a new id and returns it with the change it made (and any it caused),
/// which are appended to the audit trail; all of it commits together.
///
/// `store` is handed to both steps (rather than captured) so that their futures
/// borrow only what they are given, which keeps the handler's future `Send`.
pub async fn create<S: Sync, T>(
    store: &S,
    db: &Db,
    actor: &Actor,
    scope: &str,
    idem: &IdemKey,
    replay: impl for<'c> FnOnce(&'c S, &'c mut AnyConnection, &'c str) -> Step<'c, T>,
    make: impl for<'c> FnOnce(&'c S, &'c mut AnyConnection, &'c str) -> Step<'c, Made<T>>,
) -> Result<T> {
    let mut tx = db.begin_write().await?;
    let id = crate::new_id();
    if let Claim::Replay(existing) =
        claim(&mut tx, scope, &idem.key, &idem.fingerprint, &id).await?
    {
        let record = replay(store, &mut tx, &existing).await?;
        tx.commit().await?;
        return Ok(record);
    }
    let made = make(store, &mut tx, &id).await?;
    for change in std::iter::once(made.change).chain(made.then) {
        audit::record(&mut tx, actor, change).await?;
    }
    let record = made.record;
    tx.commit().await?;
    Ok(record)
}

/// The id of the record a key already made in `scope`, if any. A create that
/// must ask another service first reads this before asking, so that a retry is
/// answered from the database even while that service is down; the key is
/// still claimed in the create's own transaction ([`create`]) if it is new.
pub async fn replayed(db: &Db, scope: &str, idem: &IdemKey) -> Result<Option<String>> {
    let found: Option<(String, String)> = sqlx::query_as(
        "SELECT fingerprint, resource_id FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(&idem.key)
    .fetch_optional(&db.pool)
    .await?;
    match found {
        None => Ok(None),
        Some((fingerprint, _)) if fingerprint != idem.fingerprint => Err(Error::invalid(
            "idempotency_key",
            "was already used for a different request",
        )),
        Some((_, id)) => Ok(Some(id)),
    }
}

/// Records which record a claimed key made, for creates whose record id is
/// only known once it is made (a ledger row, a timeline event). Call it in
/// the same transaction as [`claim`], which was given a placeholder id.
pub async fn made(
    conn: &mut AnyConnection,
    scope: &str,
    key: &str,
    resource_id: &str,
) -> Result<()> {
    sqlx::query("UPDATE idempotency_keys SET resource_id = $3 WHERE scope = $1 AND key = $2")
        .bind(scope)
        .bind(key)
        .bind(resource_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_required_and_bounded() {
        assert!(
            take_key(&mut String::new())
                .unwrap_err()
                .to_string()
                .starts_with("idempotency_key:")
        );
        assert!(take_key(&mut "k".repeat(129)).is_err());
        assert!(
            take_key(&mut "k\0".to_owned())
                .unwrap_err()
                .to_string()
                .starts_with("idempotency_key:")
        );
        let mut k = "roster-2021-01".to_owned();
        assert_eq!(take_key(&mut k).unwrap(), "roster-2021-01");
        assert!(k.is_empty(), "the key is taken out of the request");
    }
}
