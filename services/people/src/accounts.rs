//! Accounts: who may log in, with which role and links, and the password check the gateway asks for.
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};

use serde_json::json;
use sqlx::AnyConnection;
use sqlx::Row;
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::db::fetch_by_id;
use linli_core::idempotency::{self, IdemKey, Made, idem_key};
use linli_core::page::{PageRequest, fetch_page};
use linli_core::time::now_micros;
use linli_core::validate::{optional_enum, required_enum};
use linli_core::{Actor, Error, Result, Role};
use linli_proto::people::v1 as pb;

use crate::context::*;
use crate::domain::{self, *};
use crate::store::*;

pub(crate) static DUMMY_HASH: OnceLock<String> = OnceLock::new();

pub(crate) fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
}

/// Argon2's working memory (19 MiB with the defaults), kept between password
/// checks rather than allocated for each: freed and allocated again on the
/// blocking threads, it stayed with the allocator, and a burst of logins left
/// the service holding hundreds of MB. At most one per core is in use at a
/// time (see `blocking`), so at most that many are kept.
static MEMORY: std::sync::Mutex<Vec<Vec<argon2::Block>>> = std::sync::Mutex::new(Vec::new());

pub(crate) fn password_matches(password: &str, hash: &str) -> bool {
    let Ok(h) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        argon2::Algorithm::try_from(h.algorithm),
        argon2::Params::try_from(&h),
    ) else {
        return false;
    };
    let version = match h.version.map(argon2::Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut memory = MEMORY
        .lock()
        .map(|mut m| m.pop())
        .ok()
        .flatten()
        .unwrap_or_default();
    memory.resize(params.block_count(), argon2::Block::default());
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt,
        &mut out,
        &mut memory[..],
    );
    if let Ok(mut kept) = MEMORY.lock() {
        kept.push(memory);
    }
    // `Output` compares in constant time.
    computed.is_ok() && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// Runs password hashing off the async threads, at most one per core at a
/// time: Argon2 with its defaults takes 19 MiB a hash, so a burst of logins
/// queues here instead of growing the process by 19 MiB a login (and no faster
/// for it: the work is all CPU).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    });
    let _slot = slots
        .acquire()
        .await
        .map_err(|e| Error::Internal(e.into()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(e.into()))
}

pub(crate) async fn create_account(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::CreateAccountRequest>,
) -> Resp<pb::CreateAccountResponse> {
    let mut r = req.into_inner();
    let password = std::mem::take(&mut r.password);
    // The password stays out of the fingerprint, which is kept with the key.
    let idem = idem_key(actor, &mut r, |r| &mut r.idempotency_key)?;
    let username = domain::parse_username("username", &r.username)?;
    domain::check_password("password", &password)?;
    let role = required_enum("role", r.role, Role::from_proto)?;
    let community_id = parse_opt_id("community_id", &r.community_id)?;
    let cadre_id = parse_opt_id("cadre_id", &r.cadre_id)?;
    let resident_id = parse_opt_id("resident_id", &r.resident_id)?;
    domain::check_account_links(
        role,
        community_id.is_some(),
        cadre_id.is_some(),
        resident_id.is_some(),
    )?;
    domain::check_account_grant(actor.role, role)?;
    match &community_id {
        Some(c) => actor.check_community_id(c)?,
        None if !actor.is_county() => {
            return Err(Error::PermissionDenied(
                "county-wide accounts are made by county roles".into(),
            )
            .into());
        }
        None => {}
    }
    let password_hash = blocking(move || hash_password(&password)).await??;
    let new = NewAccount {
        username,
        password_hash,
        role,
        community_id,
        cadre_id,
        resident_id,
        must_change_password: false,
    };
    let account = api.store.create_account(actor, &idem, new).await?;
    Ok(Response::new(pb::CreateAccountResponse {
        account: Some(account),
    }))
}

pub(crate) async fn get_account(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::GetAccountRequest>,
) -> Resp<pb::GetAccountResponse> {
    let id = parse_id("account_id", &req.get_ref().account_id)?;
    let account = api.store.get_account(&id).await?;
    actor.check_community("account", &id, &account.community_id)?;
    Ok(Response::new(pb::GetAccountResponse {
        account: Some(account),
    }))
}

pub(crate) async fn list_accounts(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ListAccountsRequest>,
) -> Resp<pb::ListAccountsResponse> {
    let r = req.into_inner();
    let page = PageRequest::parse(r.page_size, &r.page_token)?;
    let community = actor.community_filter("community_id", &r.community_id)?;
    let role = optional_enum("role", r.role, Role::from_proto)?;
    let (accounts, next_page_token) = api.store.list_accounts(&community, role, &page).await?;
    Ok(Response::new(pb::ListAccountsResponse {
        accounts,
        next_page_token,
    }))
}

pub(crate) async fn verify_password(
    api: &PeopleApi,
    req: Request<pb::VerifyPasswordRequest>,
) -> Resp<pb::VerifyPasswordResponse> {
    let r = req.into_inner();
    if r.username.is_empty() {
        return Err(Error::required("username").into());
    }
    if r.username.chars().any(char::is_control) {
        return Err(Error::invalid("username", "must not contain control characters").into());
    }
    let found = api.store.account_for_login(r.username.trim()).await?;
    // An unknown username costs as much as a wrong password, so timing does not reveal which usernames exist.
    let (account, hash) = match found {
        Some((a, h)) => (Some(a), h),
        None => (
            None,
            DUMMY_HASH
                .get_or_init(|| hash_password("linli-no-such-account").unwrap_or_default())
                .clone(),
        ),
    };
    let ok = blocking(move || password_matches(&r.password, &hash)).await?;
    match account {
        Some(account) if ok => Ok(Response::new(pb::VerifyPasswordResponse {
            account: Some(account),
        })),
        _ => Err(Error::Unauthenticated("wrong username or password".into()).into()),
    }
}

impl Store {
    pub(crate) async fn load_account(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<pb::Account> {
        fetch_by_id(
            conn,
            &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1"),
            id,
            "account",
            account_from_row,
        )
        .await
    }

    /// A cadre's account acts in a community the cadre is registered with (a
    /// registration requested or active there), and a cadre has one account:
    /// otherwise a worker could make an account for another community's cadre
    /// and log in as him.
    async fn check_cadre_account(
        &self,
        tx: &mut AnyConnection,
        cadre: &pb::Cadre,
        community_id: Option<&str>,
    ) -> Result<()> {
        let registered: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM registrations WHERE community_id = $1 AND cadre_id = $2 AND state <> 'ended' LIMIT 1",
        )
        .bind(community_id.unwrap_or_default())
        .bind(&cadre.id)
        .fetch_optional(&mut *tx)
        .await?;
        if registered.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "cadre {} ({}) is not registered with this community: an account is made once they have registered here",
                cadre.name, cadre.id
            )));
        }
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT username FROM accounts WHERE cadre_id = $1")
                .bind(&cadre.id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((username,)) = existing {
            return Err(Error::AlreadyExists(format!(
                "cadre {} ({}) already has the account {username}",
                cadre.name, cadre.id
            )));
        }
        Ok(())
    }

    /// Whether an account, enabled or not, has `username`.
    pub async fn username_taken(&self, username: &str) -> Result<bool> {
        let found: Option<(String,)> =
            sqlx::query_as("SELECT id FROM accounts WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.db.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Disables every account of resident `resident_id`, each with its audit record.
    pub(crate) async fn disable_accounts_of_resident(
        &self,
        tx: &mut AnyConnection,
        actor: &Actor,
        resident_id: &str,
    ) -> Result<()> {
        let now = now_micros();
        let disabled: Vec<(String,)> = sqlx::query_as(
            "UPDATE accounts SET disabled_at = $2, disabled_reason = $3 WHERE resident_id = $1 AND disabled_at IS NULL RETURNING id",
        )
        .bind(resident_id)
        .bind(now)
        .bind("the resident moved out")
        .fetch_all(&mut *tx)
        .await?;
        for (id,) in disabled {
            // Accounts are on the county-wide chain, as when they were made.
            let change = Change::updated(
                "",
                "account.disable",
                "account",
                &id,
                json!({"disabled": false}),
                json!({"disabled": true, "reason": "the resident moved out"}),
            );
            audit::record(&mut *tx, actor, change).await?;
            let account = self.load_account(&mut *tx, &id).await?;
            self.end_all(
                &mut *tx,
                actor,
                &account,
                crate::sessions::Ending::MovedOut,
                now,
            )
            .await?;
        }
        Ok(())
    }

    pub async fn get_account(&self, id: &str) -> Result<pb::Account> {
        let mut conn = self.db.pool.acquire().await?;
        self.load_account(&mut conn, id).await
    }

    pub async fn create_account(
        &self,
        actor: &Actor,
        idem: &IdemKey,
        new: NewAccount,
    ) -> Result<pb::Account> {
        idempotency::create(
            self,
            &self.db,
            actor,
            "people.account",
            idem,
            |s, tx, existing| {
                Box::pin(async move {

                    let a = s.load_account(&mut *tx, existing).await?;
                    Ok(a)
                })
            },
            |s, tx, id| {
                Box::pin(async move {

                    let taken: Option<(String,)> =
                        sqlx::query_as("SELECT id FROM accounts WHERE username = $1")
                            .bind(&new.username)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if taken.is_some() {
                        return Err(Error::AlreadyExists(format!(
                            "the username {} is taken",
                            new.username
                        )));
                    }
                    if let Some(c) = &new.community_id {
                        s.load_community(&mut *tx, c).await?;
                    }
                    if let Some(c) = &new.cadre_id {
                        let cadre = s.load_cadre(&mut *tx, c).await?;
                        s.check_cadre_account(&mut *tx, &cadre, new.community_id.as_deref())
                            .await?;
                    }
                    if let Some(r) = &new.resident_id {
                        let resident = s.load_resident(&mut *tx, r).await?;
                        if new.community_id.as_deref() != Some(resident.community_id.as_str()) {
                            return Err(Error::invalid(
                                "resident_id",
                                "lives in another community than community_id",
                            ));
                        }
                    }
                    sqlx::query("INSERT INTO accounts (id, username, password_hash, role, community_id, cadre_id, resident_id, created_at, must_change_password) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                        .bind(id)
                        .bind(&new.username)
                        .bind(&new.password_hash)
                        .bind(new.role.as_str())
                        .bind(new.community_id.clone().unwrap_or_default())
                        .bind(new.cadre_id.unwrap_or_default())
                        .bind(new.resident_id.unwrap_or_default())
                        .bind(now_micros())
                        .bind(i64::from(new.must_change_password))
                        .execute(&mut *tx)
                        .await?;
                    let a = s.load_account(&mut *tx, id).await?;
                    let after = json!({ "id": a.id, "username": a.username, "role": new.role.as_str(), "community_id": a.community_id, "cadre_id": a.cadre_id, "resident_id": a.resident_id });
                    let change = Change::created("", "account.create", "account", id, after);
                    Ok(Made::new(a, change))
                })
            },
        )
        .await
    }

    pub async fn list_accounts(
        &self,
        community_id: &str,
        role: Option<Role>,
        page: &PageRequest,
    ) -> Result<(Vec<pb::Account>, String)> {
        let sql = format!(
            "SELECT {ACCOUNT_COLS} FROM accounts WHERE ($1 = '' OR community_id = $1) AND ($2 = '' OR role = $2) AND id > $3 ORDER BY id LIMIT $4"
        );
        let role = role.map(|r| r.as_str()).unwrap_or_default();
        fetch_page(
            &self.db,
            &sql,
            vec![community_id.into(), role.into()],
            page,
            account_from_row,
            |a| &a.id,
        )
        .await
    }

    /// The account and its password hash, for a login check.
    pub async fn account_for_login(&self, username: &str) -> Result<Option<(pb::Account, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLS}, password_hash FROM accounts WHERE username = $1 AND disabled_at IS NULL"
        ))
        .bind(username)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(|r| Ok((account_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_matches_its_hash_only_and_memory_is_kept_for_the_next() {
        let hash = hash_password("linli-demo-2021").unwrap();
        assert!(password_matches("linli-demo-2021", &hash));
        assert!(!password_matches("linli-demo-2020", &hash));
        assert!(!password_matches("", &hash));
        assert!(!password_matches("linli-demo-2021", "not a hash"));
        // A hash made elsewhere with other costs is checked with its own.
        let salt = SaltString::generate(&mut OsRng);
        let other = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8 * 1024, 3, 1, Some(32)).unwrap(),
        )
        .hash_password(b"secret", &salt)
        .unwrap()
        .to_string();
        assert!(password_matches("secret", &other));
        assert!(!password_matches("Secret", &other));
        assert!(!MEMORY.lock().unwrap().is_empty());
    }
}
