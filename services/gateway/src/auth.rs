//! `AuthService`: login with the people service's accounts, short access
//! tokens the services verify, and rotating refresh tokens stored (by hash)
//! so they can be revoked. Every login, refresh, logout and detected reuse
//! is recorded in the gateway's audit trail.
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand_core::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;
use tonic::{Request, Response, Status};

use linli_core::audit::{self, Change};
use linli_core::auth::{Claims, Keys};
use linli_core::time::now_micros;
use linli_core::{Actor, Db, Error, Role};
use linli_proto::gateway::v1 as pb;
use linli_proto::gateway::v1::auth_service_server::AuthService;
use linli_proto::people::v1 as ppb;
use linli_proto::people::v1::people_service_client::PeopleServiceClient;

use crate::backend::Backend;
use crate::throttle::{LoginThrottle, Verdict};

pub struct AuthApi {
    pub(crate) db: Db,
    pub(crate) keys: Keys,
    pub(crate) people: Backend,
    pub(crate) throttle: Arc<LoginThrottle>,
    /// Whose `X-Forwarded-For` names the client.
    pub(crate) proxies: Arc<crate::client::Proxies>,
    pub(crate) access_ttl: Duration,
    pub(crate) refresh_ttl: Duration,
    pub(crate) call_timeout: Duration,
}

type Resp<T> = Result<Response<T>, Status>;

const WRONG: &str = "wrong username or password";

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn login(&self, req: Request<pb::LoginRequest>) -> Resp<pb::LoginResponse> {
        let client = self.proxies.client_of(&req);
        let r = req.into_inner();
        if r.username.trim().is_empty() {
            return Err(Error::required("username").into());
        }
        if r.password.is_empty() {
            return Err(Error::required("password").into());
        }
        let account = self.check_password(r.username, r.password, &client).await?;
        if account.must_change_password {
            return Err(Status::failed_precondition(
                "this password was set by someone else: change it first (AuthService/ChangePassword, or the login page)",
            ));
        }
        let family = linli_core::new_id();
        let session = self.issue(&account, &family, "session.login").await?;
        Ok(Response::new(pb::LoginResponse {
            session: Some(session),
        }))
    }

    async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> Resp<pb::ChangePasswordResponse> {
        let client = self.proxies.client_of(&req);
        let r = req.into_inner();
        if r.username.trim().is_empty() {
            return Err(Error::required("username").into());
        }
        if r.current_password.is_empty() {
            return Err(Error::required("current_password").into());
        }
        if r.new_password.is_empty() {
            return Err(Error::required("new_password").into());
        }
        let account = self
            .change_password_of(r.username, r.current_password, r.new_password, &client)
            .await?;
        let family = linli_core::new_id();
        let session = self.issue(&account, &family, "session.login").await?;
        Ok(Response::new(pb::ChangePasswordResponse {
            session: Some(session),
        }))
    }

    async fn refresh(&self, req: Request<pb::RefreshRequest>) -> Resp<pb::RefreshResponse> {
        let token = req.into_inner().refresh_token;
        let row = self.find(&token).await?;
        let now = now_micros();
        if row.revoked {
            return Err(Status::unauthenticated(
                "refresh token revoked; log in again",
            ));
        }
        if row.expires_at <= now {
            return Err(Status::unauthenticated(
                "refresh token expired; log in again",
            ));
        }
        // Spend it; only one presenter can. A second presentation means a copy
        // is loose: revoke the whole login.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = $2 WHERE token_hash = $1 AND spent_at IS NULL AND revoked_at IS NULL",
        )
        .bind(&row.hash)
        .bind(now)
        .execute(&self.db.writer)
        .await
        .map_err(Error::from)?;
        if spent.rows_affected() == 0 {
            self.revoke_family(&row, "session.reuse_detected").await?;
            return Err(Status::unauthenticated(
                "refresh token already used; every token of this login is revoked",
            ));
        }
        // The account as it is now: a changed role or community takes effect here.
        let account = self.account(&row.account_id).await?;
        if account.session_epoch != row.epoch {
            self.revoke_family(&row, "session.ended").await?;
            return Err(Status::unauthenticated(
                "this login has ended (password changed or reset): log in again",
            ));
        }
        let session = self.issue(&account, &row.family, "session.refresh").await?;
        Ok(Response::new(pb::RefreshResponse {
            session: Some(session),
        }))
    }

    async fn logout(&self, req: Request<pb::LogoutRequest>) -> Resp<pb::LogoutResponse> {
        let token = req.into_inner().refresh_token;
        // Logging out twice, or with a token already gone, is still a logout.
        match self.find(&token).await {
            Ok(row) => {
                self.revoke_family(&row, "session.logout").await?;
                self.end_session(&row).await;
            }
            Err(s) if s.code() == tonic::Code::Unauthenticated => {}
            Err(s) => return Err(s),
        }
        Ok(Response::new(pb::LogoutResponse {}))
    }
}

struct TokenRow {
    hash: String,
    family: String,
    account_id: String,
    expires_at: i64,
    revoked: bool,
    /// The account's session epoch the login was made under.
    epoch: i64,
}

/// The claims of a token for `identity` in login `sid` (made under the
/// account's session epoch `epoch`), good for `ttl`.
pub(crate) fn claims(
    identity: &pb::Identity,
    (sid, epoch): (&str, i64),
    ttl: Duration,
) -> Result<Claims, Status> {
    let role = Role::from_proto(identity.role)
        .ok_or_else(|| Status::internal("the account has no known role"))?;
    let mut claims =
        Claims::new(format!("account:{}", identity.account_id), role, ttl).session(sid, epoch);
    claims = if identity.community_id.is_empty() {
        claims.county()
    } else {
        claims.community(&identity.community_id)
    };
    if !identity.cadre_id.is_empty() {
        claims = claims.cadre(&identity.cadre_id);
    }
    if !identity.household_id.is_empty() {
        claims = claims.household(&identity.household_id);
    }
    Ok(claims)
}

pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl AuthApi {
    /// Calls people as the gateway itself (VerifyPassword and GetAccount are for admins).
    async fn people_call<M, R, F, Fut>(&self, rpc: F, msg: M) -> Result<R, Status>
    where
        F: FnOnce(PeopleServiceClient<Backend>, Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<R>, Status>>,
    {
        let mut req = self.keys.service_actor("gateway").request(msg);
        req.set_timeout(self.call_timeout);
        let call = rpc(PeopleServiceClient::new(self.people.clone()), req);
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(r) => r.map(Response::into_inner),
            Err(_) => Err(Status::unavailable(
                "the people service did not answer in time",
            )),
        }
    }

    async fn find(&self, token: &str) -> Result<TokenRow, Status> {
        if token.is_empty() {
            return Err(Error::required("refresh_token").into());
        }
        let h = hash(token);
        let row = sqlx::query(
            "SELECT family_id, account_id, expires_at, revoked_at, session_epoch FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(&h)
        .fetch_optional(&self.db.pool)
        .await
        .map_err(Error::from)?
        .ok_or_else(|| Status::unauthenticated("unknown refresh token; log in again"))?;
        let get = |e: sqlx::Error| Status::from(Error::from(e));
        Ok(TokenRow {
            hash: h,
            family: row.try_get("family_id").map_err(get)?,
            account_id: row.try_get("account_id").map_err(get)?,
            expires_at: row.try_get("expires_at").map_err(get)?,
            revoked: row
                .try_get::<Option<i64>, _>("revoked_at")
                .map_err(get)?
                .is_some(),
            epoch: row.try_get("session_epoch").map_err(get)?,
        })
    }

    async fn revoke_family(&self, row: &TokenRow, action: &str) -> Result<(), Status> {
        let mut tx = self.db.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(&row.family)
        .bind(now_micros())
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?;
        if revoked.rows_affected() > 0 {
            let change = Change::updated(
                "",
                action,
                "session",
                &row.family,
                json!({"account_id": row.account_id, "revoked": false}),
                json!({"account_id": row.account_id, "revoked": true}),
            );
            audit::record(
                &mut tx,
                &Actor::local(format!("account:{}", row.account_id)),
                change,
            )
            .await?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    /// Changes a password given the current one, throttled as a login is; the account after.
    pub(crate) async fn change_password_of(
        &self,
        username: String,
        current: String,
        new: String,
        client: &str,
    ) -> Result<ppb::Account, Status> {
        let account = self
            .check_password(username, current.clone(), client)
            .await?;
        self.people_call(
            |mut c, req| async move { c.change_password(req).await },
            ppb::ChangePasswordRequest {
                account_id: account.id,
                current_password: current,
                new_password: new,
            },
        )
        .await?
        .account
        .ok_or_else(|| Status::internal("no account"))
    }

    /// Tells people that login `row` ended, so its access tokens stop working
    /// everywhere. Logging out still succeeds when people cannot be told (the
    /// refresh token is revoked already); the access token then lives out its time.
    async fn end_session(&self, row: &TokenRow) {
        let ended = self
            .people_call(
                |mut c, req| async move { c.end_session(req).await },
                ppb::EndSessionRequest {
                    account_id: row.account_id.clone(),
                    session_id: row.family.clone(),
                },
            )
            .await;
        if let Err(s) = ended {
            tracing::warn!(error = %s.message(), "logged out, but people could not be told: the login's access token works until it expires");
        }
    }

    /// Reads what ended from people every few seconds, so the gateway's own
    /// views refuse the tokens of ended logins as the services do.
    pub(crate) fn follow_ended(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let auth = self.clone();
        self.keys.ended().follow(move |since| {
            let auth = auth.clone();
            async move {
                auth.people_call(
                    |mut c, req| async move { c.list_ended_sessions(req).await },
                    ppb::ListEndedSessionsRequest { since },
                )
                .await
                .map(|r| r.ended)
                .map_err(|s| Error::Unavailable(s.message().to_owned()))
            }
        })
    }

    /// Signs an access token for `account` and stores a new refresh token in `family`.
    async fn issue(
        &self,
        account: &ppb::Account,
        family: &str,
        action: &str,
    ) -> Result<pb::Session, Status> {
        let identity = self.identity(account).await?;
        let claims = claims(&identity, (family, account.session_epoch), self.access_ttl)?;
        let access_token = self.keys.sign(&claims);

        let mut raw = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut raw);
        let refresh_token = B64.encode(raw);
        let now = now_micros();
        let ttl_micros = i64::try_from(self.refresh_ttl.as_micros()).unwrap_or(i64::MAX / 2);
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, account_id, created_at, expires_at, session_epoch) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash(&refresh_token))
        .bind(family)
        .bind(&account.id)
        .bind(now)
        .bind(now + ttl_micros)
        .bind(account.session_epoch)
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?;
        let change = Change::created(
            "",
            action,
            "session",
            family,
            json!({"account_id": account.id, "username": account.username, "role": claims.role.as_str()}),
        );
        audit::record(
            &mut tx,
            &Actor::local(format!("account:{}", account.id)),
            change,
        )
        .await?;
        tx.commit().await.map_err(Error::from)?;
        Ok(pb::Session {
            access_token,
            expires_in_seconds: self.access_ttl.as_secs() as i64,
            refresh_token,
            refresh_expires_in_seconds: self.refresh_ttl.as_secs() as i64,
            identity: Some(identity),
        })
    }

    /// Checks a username and password, throttled: from the third failure in a
    /// while each attempt waits longer, and many failures lock the name (and,
    /// with more, the client address) out for a while. The account on success.
    pub(crate) async fn check_password(
        &self,
        username: String,
        password: String,
        client: &str,
    ) -> Result<ppb::Account, Status> {
        // Usernames are matched as people stores them; count by the trimmed, lowercased form.
        let user = username.trim().to_lowercase();
        // The attempt is counted before the password is checked, so logins
        // sent together cannot all be checked before any has failed.
        match self.throttle.reserve(&user, client) {
            Verdict::Locked(left) => {
                return Err(Status::resource_exhausted(format!(
                    "too many failed logins; try again in {} s",
                    left.as_secs().max(1)
                )));
            }
            Verdict::Proceed(delay) if !delay.is_zero() => tokio::time::sleep(delay).await,
            Verdict::Proceed(_) => {}
        }
        let verified = self
            .people_call(
                |mut c, req| async move { c.verify_password(req).await },
                ppb::VerifyPasswordRequest { username, password },
            )
            .await;
        let account = match verified {
            Ok(resp) => resp.account.ok_or_else(|| Status::internal("no account"))?,
            // Counted already.
            Err(s) if s.code() == tonic::Code::Unauthenticated => {
                return Err(Status::unauthenticated(WRONG));
            }
            Err(s) => {
                self.throttle.unchecked(&user, client);
                return Err(s);
            }
        };
        self.throttle.succeeded(&user, client);
        Ok(account)
    }

    /// The account as people has it now; one that is gone or disabled is UNAUTHENTICATED.
    pub(crate) async fn account(&self, account_id: &str) -> Result<ppb::Account, Status> {
        let account = self
            .people_call(
                |mut c, req| async move { c.get_account(req).await },
                ppb::GetAccountRequest {
                    account_id: account_id.to_owned(),
                },
            )
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => Status::unauthenticated("the account no longer exists"),
                _ => s,
            })?
            .account
            .ok_or_else(|| Status::internal("no account"))?;
        if account.disabled_at.is_some() {
            return Err(Status::unauthenticated(
                "this account is disabled; ask your community worker",
            ));
        }
        Ok(account)
    }

    /// Who the account speaks for; a resident's household is looked up from their record.
    pub(crate) async fn identity(&self, account: &ppb::Account) -> Result<pb::Identity, Status> {
        let household_id = if account.resident_id.is_empty() {
            String::new()
        } else {
            self.people_call(|mut c, req| async move { c.get_resident(req).await }, {
                ppb::GetResidentRequest {
                    resident_id: account.resident_id.clone(),
                    view: 0,
                }
            })
            .await?
            .resident
            .map(|r| {
                if r.removed_at.is_some() {
                    // Moved out: she speaks for no household here any more.
                    return Err(Status::unauthenticated(
                        "this resident has moved out; ask your community worker",
                    ));
                }
                Ok(r.household_id)
            })
            .transpose()?
            .unwrap_or_default()
        };
        if account.role == Role::Resident.to_proto() && household_id.is_empty() {
            return Err(Status::failed_precondition(
                "this resident's account is not linked to a household",
            ));
        }
        Ok(pb::Identity {
            account_id: account.id.clone(),
            username: account.username.clone(),
            role: account.role,
            community_id: account.community_id.clone(),
            cadre_id: account.cadre_id.clone(),
            household_id,
        })
    }
}
