//! Browser sessions: a random value in an HttpOnly, SameSite=Lax cookie,
//! stored only as its hash, revoked by logging out. Each request made with it
//! is signed as the person with a token of a few minutes, so the pages ask the
//! views and services exactly as a gRPC caller with that person's token would.
//! Forms carry a CSRF token bound to the session (an HMAC of it).
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand_core::RngCore;
use serde_json::json;
use sqlx::Row;
use tonic::Status;
use tonic::metadata::MetadataMap;

use linli_core::audit::{self, Change, hmac_sha256};
use linli_core::time::now_micros;
use linli_core::{Actor, Error, Role};
use linli_proto::gateway::v1 as pb;

use super::{State, WebError};
use crate::auth::{claims, hash};

pub const COOKIE: &str = "linli_session";
/// The login form's double-submit value, before there is a session.
pub const LOGIN_COOKIE: &str = "linli_login";

/// How long the token a page request is signed with lives: one page's calls.
const REQUEST_TOKEN_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// How long a browser session lasts from login.
    pub ttl: Duration,
    /// How long a session's identity is trusted before people is asked again.
    pub recheck: Duration,
    /// Mark cookies `Secure` (serve behind TLS).
    pub secure_cookies: bool,
}

/// A signed-in person, for one request.
#[derive(Clone)]
pub struct Signed {
    pub identity: pb::Identity,
    pub actor: Actor,
    /// The form token for this session.
    pub csrf: String,
    pub(crate) session_hash: String,
}

impl Signed {
    pub fn role(&self) -> Role {
        self.actor.role
    }

    /// Does the form's token belong to this session?
    pub fn check_csrf(&self, token: &str) -> Result<(), WebError> {
        if constant_time_eq(token.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(WebError::Forbidden(
                "the form has expired; reload the page and try again".into(),
            ))
        }
    }
}

/// The value of cookie `name` in a request's headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Lax always, Secure when configured.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .expect("cookie values are base64 or fixed words")
}

pub fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut raw);
    B64.encode(raw)
}

/// The login form's value, when the form came back with it (a double-submit
/// value: the cookie and the form field must match).
pub fn login_nonce<'a>(headers: &'a HeaderMap, sent: &str) -> Option<&'a str> {
    cookie(headers, LOGIN_COOKIE).filter(|expected| {
        !expected.is_empty() && constant_time_eq(expected.as_bytes(), sent.as_bytes())
    })
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn csrf_for(state: &State, session_hash: &str) -> String {
    hex::encode(&hmac_sha256(&state.csrf_key, session_hash.as_bytes())[..16])
}

/// Starts a session for `identity`; the cookie value to set.
pub async fn start(state: &State, identity: &pb::Identity, epoch: i64) -> Result<String, Status> {
    let token = random_token();
    let now = now_micros();
    let ttl = i64::try_from(state.sessions.ttl.as_micros()).unwrap_or(i64::MAX / 2);
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO web_sessions (session_hash, account_id, username, role, community_id, cadre_id, household_id, created_at, checked_at, expires_at, session_epoch) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)",
    )
    .bind(hash(&token))
    .bind(&identity.account_id)
    .bind(&identity.username)
    .bind(i64::from(identity.role))
    .bind(&identity.community_id)
    .bind(&identity.cadre_id)
    .bind(&identity.household_id)
    .bind(now)
    .bind(now + ttl)
    .bind(epoch)
    .execute(&mut *tx)
    .await
    .map_err(Error::from)?;
    let change = Change::created(
        "",
        "web_session.login",
        "web_session",
        &hash(&token)[..16],
        json!({"account_id": identity.account_id, "username": identity.username}),
    );
    audit::record(
        &mut tx,
        &Actor::local(format!("account:{}", identity.account_id)),
        change,
    )
    .await?;
    tx.commit().await.map_err(Error::from)?;
    Ok(token)
}

/// Ends the session the cookie names (logging out twice is still a logout).
/// Starts a page session for `account` and sends the browser home with its
/// cookie (the login form's value cleared).
pub async fn signed_in(
    state: &State,
    account: &linli_proto::people::v1::Account,
) -> Result<axum::response::Response, Status> {
    use axum::response::IntoResponse;
    let identity = state.auth.identity(account).await?;
    let token = start(state, &identity, account.session_epoch).await?;
    let mut resp = axum::response::Redirect::to("/").into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(
            COOKIE,
            &token,
            state.sessions.ttl,
            state.sessions.secure_cookies,
        ),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", Duration::ZERO, false),
    );
    Ok(resp)
}

pub async fn end(state: &State, signed: &Signed) -> Result<(), Status> {
    let mut tx = state.db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE web_sessions SET revoked_at = $2 WHERE session_hash = $1 AND revoked_at IS NULL",
    )
    .bind(&signed.session_hash)
    .bind(now_micros())
    .execute(&mut *tx)
    .await
    .map_err(Error::from)?;
    if done.rows_affected() > 0 {
        let change = Change::updated(
            "",
            "web_session.logout",
            "web_session",
            &signed.session_hash[..16],
            json!({"revoked": false}),
            json!({"revoked": true}),
        );
        audit::record(&mut tx, &Actor::local(signed.actor.id.clone()), change).await?;
    }
    tx.commit().await.map_err(Error::from)?;
    Ok(())
}

/// The person a session cookie stands for, signed for this request.
pub async fn resolve(state: &State, cookie: &str) -> Result<Signed, Status> {
    let session_hash = hash(cookie);
    let row = sqlx::query(
        "SELECT account_id, username, role, community_id, cadre_id, household_id, checked_at, expires_at, revoked_at, session_epoch \
         FROM web_sessions WHERE session_hash = $1",
    )
    .bind(&session_hash)
    .fetch_optional(&state.db.pool)
    .await
    .map_err(Error::from)?
    .ok_or_else(|| Status::unauthenticated("no such session"))?;
    let get = |e: sqlx::Error| Status::from(Error::from(e));
    let now = now_micros();
    let revoked: Option<i64> = row.try_get("revoked_at").map_err(get)?;
    let expires_at: i64 = row.try_get("expires_at").map_err(get)?;
    if revoked.is_some() || expires_at <= now {
        return Err(Status::unauthenticated("the session has ended"));
    }
    let mut identity = pb::Identity {
        account_id: row.try_get("account_id").map_err(get)?,
        username: row.try_get("username").map_err(get)?,
        role: row.try_get::<i64, _>("role").map_err(get)? as i32,
        community_id: row.try_get("community_id").map_err(get)?,
        cadre_id: row.try_get("cadre_id").map_err(get)?,
        household_id: row.try_get("household_id").map_err(get)?,
    };
    let checked_at: i64 = row.try_get("checked_at").map_err(get)?;
    let epoch: i64 = row.try_get("session_epoch").map_err(get)?;
    let recheck = i64::try_from(state.sessions.recheck.as_micros()).unwrap_or(i64::MAX / 2);
    if checked_at + recheck <= now {
        // As a refresh does: a changed role or community takes effect here.
        let account = state.auth.account(&identity.account_id).await?;
        if account.session_epoch != epoch {
            return Err(Status::unauthenticated(
                "this login has ended (password changed or reset): log in again",
            ));
        }
        identity = state.auth.identity(&account).await?;
        sqlx::query(
            "UPDATE web_sessions SET role = $2, community_id = $3, cadre_id = $4, household_id = $5, checked_at = $6 WHERE session_hash = $1",
        )
        .bind(&session_hash)
        .bind(i64::from(identity.role))
        .bind(&identity.community_id)
        .bind(&identity.cadre_id)
        .bind(&identity.household_id)
        .bind(now)
        .execute(&state.db.writer)
        .await
        .map_err(Error::from)?;
    }
    let actor = actor_for(state, &identity, (&session_hash[..16], epoch))?;
    Ok(Signed {
        csrf: csrf_for(state, &session_hash),
        identity,
        actor,
        session_hash,
    })
}

/// The caller a token for `identity` makes, read back through the same
/// verification every service applies.
fn actor_for(
    state: &State,
    identity: &pb::Identity,
    session: (&str, i64),
) -> Result<Actor, Status> {
    let token = state
        .keys
        .sign(&claims(identity, session, REQUEST_TOKEN_TTL)?);
    actor_from_token(state, &token)
}

pub fn actor_from_token(state: &State, token: &str) -> Result<Actor, Status> {
    let mut md = MetadataMap::new();
    linli_core::auth::set_bearer(&mut md, token);
    Ok(state.keys.authenticate(&md)?)
}

/// A page's caller: the session cookie's person, or the way to the login page.
impl FromRequestParts<State> for Signed {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let Some(value) = cookie(&parts.headers, COOKIE) else {
            return Err(WebError::SignIn);
        };
        resolve(state, value).await.map_err(|s| match s.code() {
            tonic::Code::Unauthenticated => WebError::SignIn,
            _ => WebError::from(s),
        })
    }
}
