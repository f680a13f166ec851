//! Stopping accounts and ending logins: disable and enable, a holder's own
//! password change, a worker's reset, logout; and the list of what ended that
//! every service follows, so an access token already handed out stops working
//! everywhere within a minute instead of living out its 15 minutes.
use serde_json::json;
use sqlx::AnyConnection;
use tonic::{Request, Response};

use linli_core::audit::{self, Change};
use linli_core::time::{now_micros, optional, to_timestamp};
use linli_core::validate::{parse_id, parse_text};
use linli_core::{Actor, Error, Result, Role};
use linli_proto::people::v1 as pb;

use crate::accounts::{blocking, hash_password, password_matches};
use crate::context::*;
use crate::domain;
use crate::store::*;

/// How long an ending is kept: longer than any access token lives (at most an hour).
const KEPT_MICROS: i64 = 2 * 3600 * 1_000_000;
/// Endings answered at most per call.
const MOST_ENDED: i64 = 5000;

/// Why the logins of an account end, as the audit trail says.
#[derive(Clone, Copy)]
pub(crate) enum Ending {
    Disabled,
    PasswordChanged,
    PasswordReset,
    MovedOut,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Disabled => "disabled",
            Ending::PasswordChanged => "password changed",
            Ending::PasswordReset => "password reset",
            Ending::MovedOut => "the resident moved out",
        }
    }
}

/// The account `id`, if it is in the caller's reach (otherwise NOT_FOUND).
async fn in_reach(api: &PeopleApi, actor: &Actor, id: &str) -> Result<pb::Account> {
    let account = api.store.get_account(id).await?;
    actor.check_community("account", id, &account.community_id)?;
    Ok(account)
}

/// Whether the caller may manage `account`: of a role they may make, and not
/// their own (they would lock themselves out).
fn may_manage(actor: &Actor, account: &pb::Account) -> Result<()> {
    let role = Role::from_proto(account.role).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!("account {} has no known role", account.id))
    })?;
    domain::check_account_grant(actor.role, role).map_err(|_| {
        Error::PermissionDenied(format!(
            "account {} is a {role} account: the {} role may not manage it",
            account.username, actor.role
        ))
    })?;
    if actor.id == format!("account:{}", account.id) {
        return Err(Error::FailedPrecondition(format!(
            "account {} is your own: ask another worker or an admin",
            account.username
        )));
    }
    Ok(())
}

pub(crate) async fn disable_account(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::DisableAccountRequest>,
) -> Resp<pb::DisableAccountResponse> {
    let r = req.into_inner();
    let id = parse_id("account_id", &r.account_id)?;
    let account = in_reach(api, actor, &id).await?;
    let reason = parse_text("reason", &r.reason, 200)?;
    if reason.is_empty() {
        return Err(Error::required("reason").into());
    }
    may_manage(actor, &account)?;
    let account = api.store.set_disabled(actor, &id, Some(&reason)).await?;
    Ok(Response::new(pb::DisableAccountResponse {
        account: Some(account),
    }))
}

pub(crate) async fn enable_account(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::EnableAccountRequest>,
) -> Resp<pb::EnableAccountResponse> {
    let id = parse_id("account_id", &req.get_ref().account_id)?;
    let account = in_reach(api, actor, &id).await?;
    may_manage(actor, &account)?;
    if !account.resident_id.is_empty() {
        let resident = api.store.get_resident(&account.resident_id).await?;
        if resident.removed_at.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "account {} belongs to {}, who moved out: make a new account if she moved back",
                account.username, resident.name
            ))
            .into());
        }
    }
    let account = api.store.set_disabled(actor, &id, None).await?;
    Ok(Response::new(pb::EnableAccountResponse {
        account: Some(account),
    }))
}

pub(crate) async fn change_password(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ChangePasswordRequest>,
) -> Resp<pb::ChangePasswordResponse> {
    let r = req.into_inner();
    let id = parse_id("account_id", &r.account_id)?;
    if r.current_password.is_empty() {
        return Err(Error::required("current_password").into());
    }
    domain::check_password("new_password", &r.new_password)?;
    if r.new_password == r.current_password {
        return Err(Error::invalid("new_password", "must differ from the current one").into());
    }
    let hash = api.store.password_hash(&id).await?;
    let current = r.current_password;
    if !blocking(move || password_matches(&current, &hash)).await? {
        return Err(Error::Unauthenticated("the current password is wrong".into()).into());
    }
    let new = r.new_password;
    let hash = blocking(move || hash_password(&new)).await??;
    let account = api
        .store
        .set_password(actor, &id, &hash, Ending::PasswordChanged)
        .await?;
    Ok(Response::new(pb::ChangePasswordResponse {
        account: Some(account),
    }))
}

pub(crate) async fn reset_password(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::ResetPasswordRequest>,
) -> Resp<pb::ResetPasswordResponse> {
    let r = req.into_inner();
    let id = parse_id("account_id", &r.account_id)?;
    let account = in_reach(api, actor, &id).await?;
    domain::check_password("new_password", &r.new_password)?;
    may_manage(actor, &account)?;
    let new = r.new_password;
    let hash = blocking(move || hash_password(&new)).await??;
    let account = api
        .store
        .set_password(actor, &id, &hash, Ending::PasswordReset)
        .await?;
    Ok(Response::new(pb::ResetPasswordResponse {
        account: Some(account),
    }))
}

pub(crate) async fn end_session(
    api: &PeopleApi,
    actor: &Actor,
    req: Request<pb::EndSessionRequest>,
) -> Resp<pb::EndSessionResponse> {
    let r = req.into_inner();
    let id = parse_id("account_id", &r.account_id)?;
    let session = parse_text("session_id", &r.session_id, 64)?;
    if session.is_empty() {
        return Err(Error::required("session_id").into());
    }
    let account = api.store.get_account(&id).await?;
    api.store.end_session(actor, &account, &session).await?;
    Ok(Response::new(pb::EndSessionResponse {}))
}

pub(crate) async fn list_ended_sessions(
    api: &PeopleApi,
    req: Request<pb::ListEndedSessionsRequest>,
) -> Resp<pb::ListEndedSessionsResponse> {
    let since = optional("since", req.get_ref().since.as_ref())?.unwrap_or(0);
    let ended = api.store.ended_sessions(since).await?;
    Ok(Response::new(pb::ListEndedSessionsResponse { ended }))
}

impl Store {
    pub(crate) async fn password_hash(&self, id: &str) -> Result<String> {
        let found: Option<(String,)> =
            sqlx::query_as("SELECT password_hash FROM accounts WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.db.pool)
                .await?;
        found
            .map(|(h,)| h)
            .ok_or_else(|| Error::not_found("account", id))
    }

    /// Disables account `id` with `reason`, or enables it (`None`); disabling ends its logins.
    pub(crate) async fn set_disabled(
        &self,
        actor: &Actor,
        id: &str,
        reason: Option<&str>,
    ) -> Result<pb::Account> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_account(&mut tx, id).await?;
        let now = now_micros();
        match reason {
            Some(reason) => {
                sqlx::query(
                    "UPDATE accounts SET disabled_at = COALESCE(disabled_at, $2), disabled_reason = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
                self.end_all(&mut tx, actor, &before, Ending::Disabled, now)
                    .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE accounts SET disabled_at = NULL, disabled_reason = '' WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
        }
        let action = if reason.is_some() {
            "account.disable"
        } else {
            "account.enable"
        };
        self.commit_change(tx, actor, action, &before).await
    }

    /// Records how account `before` changed under `action` and commits; the account after.
    /// The trail keeps the account's state, never a password or its hash.
    async fn commit_change(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        actor: &Actor,
        action: &str,
        before: &pb::Account,
    ) -> Result<pb::Account> {
        let after = self.load_account(&mut tx, &before.id).await?;
        let change = Change::updated(
            "",
            action,
            "account",
            &before.id,
            account_state(before),
            account_state(&after),
        );
        audit::record(&mut tx, actor, change).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Sets account `id`'s password hash and ends its logins; after a reset the holder must change it.
    pub(crate) async fn set_password(
        &self,
        actor: &Actor,
        id: &str,
        hash: &str,
        why: Ending,
    ) -> Result<pb::Account> {
        let mut tx = self.db.begin_write().await?;
        let before = self.load_account(&mut tx, id).await?;
        let must_change = matches!(why, Ending::PasswordReset);
        sqlx::query(
            "UPDATE accounts SET password_hash = $2, must_change_password = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(hash)
        .bind(i64::from(must_change))
        .execute(&mut *tx)
        .await?;
        self.end_all(&mut tx, actor, &before, why, now_micros())
            .await?;
        let action = match why {
            Ending::PasswordReset => "account.reset_password",
            _ => "account.change_password",
        };
        self.commit_change(tx, actor, action, &before).await
    }

    /// Ends every login of `account`: its epoch rises, and the ending is listed for the services.
    pub(crate) async fn end_all(
        &self,
        tx: &mut AnyConnection,
        actor: &Actor,
        account: &pb::Account,
        why: Ending,
        now: i64,
    ) -> Result<()> {
        let epoch = account.session_epoch + 1;
        sqlx::query("UPDATE accounts SET session_epoch = $2 WHERE id = $1")
            .bind(&account.id)
            .bind(epoch)
            .execute(&mut *tx)
            .await?;
        self.record_ending(tx, &account.id, "", epoch, now).await?;
        let change = Change::updated(
            "",
            "account.end_sessions",
            "account",
            &account.id,
            json!({"session_epoch": account.session_epoch}),
            json!({"session_epoch": epoch, "reason": why.as_str()}),
        );
        audit::record(&mut *tx, actor, change).await?;
        Ok(())
    }

    async fn record_ending(
        &self,
        tx: &mut AnyConnection,
        account_id: &str,
        session_id: &str,
        epoch: i64,
        now: i64,
    ) -> Result<()> {
        sqlx::query("DELETE FROM ended_sessions WHERE ended_at < $1")
            .bind(now - KEPT_MICROS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ended_sessions (id, account_id, session_id, session_epoch, ended_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(linli_core::new_id())
        .bind(account_id)
        .bind(session_id)
        .bind(epoch)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Ends one login (logout).
    pub(crate) async fn end_session(
        &self,
        actor: &Actor,
        account: &pb::Account,
        session_id: &str,
    ) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        self.record_ending(
            &mut tx,
            &account.id,
            session_id,
            account.session_epoch,
            now_micros(),
        )
        .await?;
        let change = Change::created(
            "",
            "account.end_session",
            "session",
            session_id,
            json!({"account_id": account.id}),
        );
        audit::record(&mut tx, actor, change).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn ended_sessions(&self, since: i64) -> Result<Vec<pb::EndedSession>> {
        let since = since.max(now_micros() - KEPT_MICROS);
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT account_id, session_id, session_epoch, ended_at FROM ended_sessions WHERE ended_at >= $1 ORDER BY ended_at LIMIT $2",
        )
        .bind(since)
        .bind(MOST_ENDED)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(account_id, session_id, session_epoch, at)| pb::EndedSession {
                    account_id,
                    session_id,
                    session_epoch,
                    ended_at: Some(to_timestamp(at)),
                },
            )
            .collect())
    }
}

/// What the audit trail keeps of an account's state (never a password or its hash).
fn account_state(a: &pb::Account) -> serde_json::Value {
    json!({
        "username": a.username,
        "disabled": a.disabled_at.is_some(),
        "disabled_reason": a.disabled_reason,
        "must_change_password": a.must_change_password,
        "session_epoch": a.session_epoch,
    })
}
