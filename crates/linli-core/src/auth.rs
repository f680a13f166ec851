//! Verified identity. The gateway signs a short-lived token for each person who
//! logs in; every service verifies it and forwards the same token when it calls
//! another service, so the person stays the actor all the way down. A
//! service's own jobs (sweeps, schedules, seeding, imports) sign a token as
//! that service.
//!
//! Tokens are JWTs (RFC 7519) signed with Ed25519 (`alg: EdDSA`, RFC 8037):
//! asymmetric, so a party that only verifies never holds what it takes to sign.
//! Each part holds its own key ([`crate::keyring`]): people's tokens are signed
//! with the issuer's key alone, and a service's key signs only that service's
//! `service:<name>` tokens, so a compromised service cannot speak for a person
//! or for another service. Tokens carry `kid` (which key), `iss` (which part)
//! and `aud` (`linli`); a verifier checks all three against the key it knows.
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::actor::Actor;
use crate::{Error, Result, Role};

pub const AUTHORIZATION: &str = "authorization";

/// The audience (`aud`) of every token: the linli suite.
pub const AUDIENCE: &str = "linli";

/// How long a service's own token lives; jobs mint a fresh one per run.
pub const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Clock difference between machines that a token's times may be off by.
const LEEWAY_SECS: i64 = 30;

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The actor, as the audit trail names it: `account:<id>` or `service:<name>`.
    pub sub: String,
    #[serde(with = "role_name")]
    pub role: Role,
    /// County-wide: every community (admins, county supervisors, services).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub county: bool,
    /// The communities the bearer acts in, when not county-wide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    /// A resident's own household.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<String>,
    /// A cadre's own cadre record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cadre: Option<String>,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// The part whose key signed (`issuer`, or the service of a `service:` subject); set by signing.
    #[serde(default)]
    pub iss: String,
    /// Always [`AUDIENCE`].
    #[serde(default)]
    pub aud: String,
    /// The login (session) a person's token belongs to: logging out ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The account's session epoch when the token was issued: ending every
    /// login of the account raises it (see [`crate::ended`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

mod role_name {
    use super::Role;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(role.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl Claims {
    /// Claims for `role`, valid from now for `ttl`.
    pub fn new(sub: impl Into<String>, role: Role, ttl: Duration) -> Claims {
        let now = crate::time::now_micros() / 1_000_000;
        Claims {
            sub: sub.into(),
            role,
            county: false,
            communities: Vec::new(),
            household: None,
            cadre: None,
            iat: now,
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iss: String::new(),
            aud: AUDIENCE.into(),
            sid: None,
            epoch: 0,
        }
    }

    pub fn county(mut self) -> Claims {
        self.county = true;
        self
    }

    pub fn community(mut self, id: impl Into<String>) -> Claims {
        self.communities.push(id.into());
        self
    }

    pub fn household(mut self, id: impl Into<String>) -> Claims {
        self.household = Some(id.into());
        self
    }

    pub fn cadre(mut self, id: impl Into<String>) -> Claims {
        self.cadre = Some(id.into());
        self
    }

    /// The login this token belongs to, and the account's session epoch.
    pub fn session(mut self, sid: impl Into<String>, epoch: i64) -> Claims {
        self.sid = Some(sid.into());
        self.epoch = epoch;
        self
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    /// Which key signed: `<part>:<fingerprint>` (see [`crate::keyring::key_id`]).
    #[serde(default)]
    kid: String,
}

pub use crate::keyring::{AuthSettings, ISSUER, PARTS};

/// Who may be named by a token each part signs: the issuer signs for people
/// (and operators and apps), a service only for itself.
fn may_sign_for(part: &str, sub: &str) -> bool {
    match sub.strip_prefix("service:") {
        Some(service) => part == service,
        None => part == ISSUER,
    }
}

/// The keys of one process: those it signs with (its own parts'), and every
/// public key it accepts, by key id.
#[derive(Clone)]
pub struct Keys {
    inner: Arc<KeysInner>,
}

struct Signer {
    part: String,
    kid: String,
    key: SigningKey,
}

struct KeysInner {
    own: Vec<Signer>,
    audit: [u8; 32],
    /// Where more public keys are read from, if anywhere.
    dir: Option<PathBuf>,
    trusted: Mutex<Trusted>,
    /// Logins that ended before their tokens expire.
    ended: crate::ended::Ended,
    /// Tokens whose signature has verified, with their claims: a signature
    /// check costs tens of microseconds, and every call of a session carries
    /// the same token. The claims' times are checked again on every use.
    verified: Mutex<HashMap<String, Claims>>,
}

struct Trusted {
    /// Key id → (part, key).
    keys: HashMap<String, (String, VerifyingKey)>,
    read_at: Option<Instant>,
    /// The folder's modification time when it was read: a key added or removed changes it.
    dir_modified: Option<std::time::SystemTime>,
}

/// Verified tokens remembered at most; past this the memory starts afresh.
const MOST_VERIFIED: usize = 4096;
/// How often the keys folder is read again even when it looks unchanged.
const REREAD_ALWAYS: Duration = Duration::from_secs(30);

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field(
                "signs_as",
                &self.inner.own.iter().map(|s| &s.part).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// A fresh key for every part, all held and trusted by this one value: the
    /// whole suite in one process (tests).
    pub fn generate() -> Keys {
        Keys::generate_parts(&PARTS)
    }

    /// Fresh keys for `parts` only, trusting nothing else.
    pub fn generate_parts(parts: &[&str]) -> Keys {
        let own = parts
            .iter()
            .map(|p| (p.to_string(), SigningKey::generate(&mut rand_core::OsRng)))
            .collect();
        Keys::from_own(own, None, None)
    }

    fn from_own(
        own: Vec<(String, SigningKey)>,
        audit: Option<[u8; 32]>,
        dir: Option<PathBuf>,
    ) -> Keys {
        let own: Vec<Signer> = own
            .into_iter()
            .map(|(part, key)| Signer {
                kid: crate::keyring::key_id(&part, &key.verifying_key()),
                part,
                key,
            })
            .collect();
        let audit = audit.unwrap_or_else(|| {
            own.first()
                .map(|s| crate::keyring::derive_audit_secret(&s.key))
                .unwrap_or_default()
        });
        let keys = Keys {
            inner: Arc::new(KeysInner {
                audit,
                dir,
                trusted: Mutex::new(Trusted {
                    keys: HashMap::new(),
                    read_at: None,
                    dir_modified: None,
                }),
                verified: Mutex::default(),
                ended: crate::ended::Ended::default(),
                own,
            }),
        };
        keys.reread();
        keys
    }

    /// Loads the private keys of `parts` (the service first, then any other part
    /// it is, e.g. the gateway is also the issuer) and the folder's public keys.
    pub fn load(settings: &AuthSettings, parts: &[&str]) -> anyhow::Result<Keys> {
        let own = parts
            .iter()
            .map(|part| {
                let path = settings.private_key_file(part);
                crate::keyring::load_private(&path, part, settings.create_if_missing)
                    .map(|key| (part.to_string(), key))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let audit = settings
            .audit_key_file
            .as_deref()
            .map(crate::keyring::audit_secret)
            .transpose()?;
        // A folder that cannot be read is a start-up error, not a quiet "trust nobody".
        crate::keyring::scan_public(&settings.keys_dir)?;
        let keys = Keys::from_own(own, audit, Some(settings.keys_dir.clone()));
        crate::audit::use_key(keys.audit_key());
        Ok(keys)
    }

    /// The logins this process knows have ended; a service keeps it current with
    /// [`crate::ended::Ended::follow`].
    pub fn ended(&self) -> &crate::ended::Ended {
        &self.inner.ended
    }

    /// The secret the audit chain is sealed with: derived from the service's own
    /// private key (or the one `audit_key_file` names), so it lives where that
    /// key lives, never in the database. Someone who can write to the database
    /// but does not hold it cannot rewrite a record and re-seal the chain after it.
    pub fn audit_key(&self) -> [u8; 32] {
        self.inner.audit
    }

    /// The private key of `part` as PKCS#8 PEM, if this process holds it.
    pub fn private_pem(&self, part: &str) -> Option<String> {
        self.signer(part)
            .map(|s| crate::keyring::private_pem(&s.key))
    }

    /// The public key of `part` as PEM, if this process holds its private key.
    pub fn public_pem(&self, part: &str) -> Option<String> {
        self.signer(part)
            .map(|s| crate::keyring::public_pem(&s.key.verifying_key()))
    }

    /// Writes the public halves of this process's keys into `dir`, as `<part>.pub.pem`.
    pub fn write_public(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for s in &self.inner.own {
            std::fs::write(
                dir.join(format!("{}.pub.pem", s.part)),
                crate::keyring::public_pem(&s.key.verifying_key()),
            )?;
        }
        Ok(())
    }

    fn signer(&self, part: &str) -> Option<&Signer> {
        self.inner.own.iter().find(|s| s.part == part)
    }

    /// Whether this process may sign `claims`: it holds the key of the part that signs for their subject.
    pub fn can_sign(&self, claims: &Claims) -> bool {
        self.inner
            .own
            .iter()
            .any(|s| may_sign_for(&s.part, &claims.sub))
    }

    /// A signed token for `claims`, with `iss` and `aud` set. A person's token is
    /// signed with the issuer's key, `service:<name>` with that service's.
    ///
    /// # Panics
    /// When this process holds no such key: the parts a process is are fixed
    /// when it loads its keys, so this is a mistake in the code, not in input.
    pub fn sign(&self, claims: &Claims) -> String {
        let signer = self
            .inner
            .own
            .iter()
            .find(|s| may_sign_for(&s.part, &claims.sub))
            .unwrap_or_else(|| panic!("this process holds no key to sign for {}", claims.sub));
        let mut claims = claims.clone();
        claims.iss = signer.part.clone();
        claims.aud = AUDIENCE.into();
        self.sign_with(signer, &claims)
    }

    /// A token with any payload, signed by `part`'s key: for tests of what verification refuses.
    pub fn sign_payload<T: Serialize>(&self, part: &str, claims: &T) -> String {
        let signer = self.signer(part).expect("a key this process holds");
        self.sign_with(signer, claims)
    }

    fn sign_with<T: Serialize>(&self, signer: &Signer, claims: &T) -> String {
        let header = Header {
            alg: "EdDSA".into(),
            typ: "JWT".into(),
            kid: signer.kid.clone(),
        };
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(claims));
        let signature = signer.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(signature.to_bytes()))
    }

    fn dir_modified(&self) -> Option<std::time::SystemTime> {
        let dir = self.inner.dir.as_ref()?;
        std::fs::metadata(dir).and_then(|m| m.modified()).ok()
    }

    /// Reads the keys folder again (and the process's own keys): the trusted set.
    fn reread(&self) {
        let modified = self.dir_modified();
        let mut keys: HashMap<String, (String, VerifyingKey)> = self
            .inner
            .own
            .iter()
            .map(|s| (s.kid.clone(), (s.part.clone(), s.key.verifying_key())))
            .collect();
        if let Some(dir) = &self.inner.dir {
            match crate::keyring::scan_public(dir) {
                Ok(found) => {
                    for (part, key) in found {
                        keys.insert(crate::keyring::key_id(&part, &key), (part, key));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "keys folder unreadable; keeping the keys known")
                }
            }
        }
        let mut trusted = self.trusted();
        if trusted.keys.len() != keys.len() || keys.keys().any(|k| !trusted.keys.contains_key(k)) {
            // A key left: tokens it signed must be checked again.
            self.verified().clear();
        }
        trusted.keys = keys;
        trusted.read_at = Some(Instant::now());
        trusted.dir_modified = modified;
    }

    /// The part and key of `kid`. The folder is read again when the key is
    /// unknown and the folder changed since it was read (one `stat`, so tokens
    /// naming made-up keys cost no more), and every half minute regardless.
    fn trusted_key(&self, kid: &str) -> Option<(String, VerifyingKey)> {
        let (found, stale, seen) = {
            let trusted = self.trusted();
            (
                trusted.keys.get(kid).cloned(),
                self.inner.dir.is_some()
                    && trusted.read_at.is_none_or(|t| t.elapsed() >= REREAD_ALWAYS),
                trusted.dir_modified,
            )
        };
        if stale || (found.is_none() && self.inner.dir.is_some() && self.dir_modified() != seen) {
            self.reread();
            return self.trusted().keys.get(kid).cloned();
        }
        found
    }

    fn trusted(&self) -> std::sync::MutexGuard<'_, Trusted> {
        self.inner.trusted.lock().expect("the trusted keys' lock")
    }

    /// The claims of a token this process trusts, if it is well formed, signed by a
    /// trusted key and current. Every failure is UNAUTHENTICATED.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        // Remembered tokens skip the key lookup: a retired key must still drop out.
        let stale = self.inner.dir.is_some()
            && self
                .trusted()
                .read_at
                .is_none_or(|t| t.elapsed() >= REREAD_ALWAYS);
        if stale {
            self.reread();
        }
        let known = self.verified().get(token).cloned();
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signed(token)?;
                let mut verified = self.verified();
                if verified.len() >= MOST_VERIFIED {
                    verified.clear();
                }
                verified.insert(token.to_owned(), claims.clone());
                claims
            }
        };
        let now = crate::time::now_micros() / 1_000_000;
        if claims.exp + LEEWAY_SECS < now {
            return Err(Error::Unauthenticated(
                "token expired: log in again or refresh it".into(),
            ));
        }
        if claims.iat - LEEWAY_SECS > now {
            return Err(Error::Unauthenticated(
                "invalid token: issued in the future".into(),
            ));
        }
        if let Some(why) = self.inner.ended.refuses(&claims) {
            return Err(Error::Unauthenticated(why.into()));
        }
        Ok(claims)
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claims>> {
        self.inner
            .verified
            .lock()
            .expect("the verified tokens' lock")
    }

    /// The claims of a well-formed token signed by a trusted key of a part that
    /// may sign for its subject, times not checked.
    fn verify_signed(&self, token: &str) -> Result<Claims> {
        let bad = |why: &str| Error::Unauthenticated(format!("invalid token: {why}"));
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not a JWT"));
        };
        let header: Header = B64
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| bad("unreadable header"))?;
        if header.alg != "EdDSA" {
            return Err(bad("only EdDSA tokens are accepted"));
        }
        if header.kid.is_empty() {
            return Err(bad("no key id (kid)"));
        }
        let (part, key) = self
            .trusted_key(&header.kid)
            .ok_or_else(|| bad("signed by a key not trusted here"))?;
        let signature = B64
            .decode(signature)
            .ok()
            .and_then(|s| Signature::from_slice(&s).ok())
            .ok_or_else(|| bad("unreadable signature"))?;
        let signing_input = &token[..header_and_payload_len(token)];
        if key.verify(signing_input.as_bytes(), &signature).is_err() {
            return Err(bad("signature does not verify"));
        }
        let claims: Claims = B64
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or_else(|| bad("unreadable claims"))?;
        if claims.sub.is_empty() {
            return Err(bad("no subject"));
        }
        if claims.aud != AUDIENCE {
            return Err(bad("not meant for linli (aud)"));
        }
        if claims.iss != part {
            return Err(bad("issuer (iss) is not the signing key's part"));
        }
        if !may_sign_for(&part, &claims.sub) {
            return Err(bad(&format!(
                "the {part} key does not sign for {}",
                claims.sub
            )));
        }
        Ok(claims)
    }

    /// The identity of a request, from its `authorization: Bearer …` metadata.
    pub fn authenticate(&self, md: &MetadataMap) -> Result<Actor> {
        let Some(value) = md.get(AUTHORIZATION) else {
            let bare = md.keys().any(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => k.as_str().starts_with("x-linli-"),
                tonic::metadata::KeyRef::Binary(_) => false,
            });
            return Err(Error::Unauthenticated(if bare {
                "x-linli-* headers are not accepted as identity: send `authorization: Bearer <token>`".into()
            } else {
                "no token: send `authorization: Bearer <token>` (log in at the gateway, or see the README)".into()
            }));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                Error::Unauthenticated("authorization must be `Bearer <token>`".into())
            })?;
        let claims = self.verify(token)?;
        Ok(Actor::verified(&claims, token))
    }

    /// An identity for this service's own work, with a fresh token.
    pub fn service_actor(&self, service: &str) -> Actor {
        let claims =
            Claims::new(format!("service:{service}"), Role::Admin, SERVICE_TOKEN_TTL).county();
        let token = self.sign(&claims);
        Actor::verified(&claims, &token)
    }

    /// A tonic interceptor that reads the caller once into the request's extensions.
    pub fn interceptor(&self) -> Authenticate {
        Authenticate { keys: self.clone() }
    }
}

/// The length of `header.payload` in a token already split in three.
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn b64_json<T: Serialize>(v: &T) -> String {
    B64.encode(serde_json::to_vec(v).expect("plain structs always serialize"))
}

/// Verifies the caller of every RPC of the service it wraps (health and
/// reflection are served beside it, unwrapped) and puts the [`Actor`] into the
/// request's extensions for the handlers.
#[derive(Clone)]
pub struct Authenticate {
    keys: Keys,
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut req: Request<()>) -> std::result::Result<Request<()>, Status> {
        let actor = self.keys.authenticate(req.metadata())?;
        req.extensions_mut().insert(actor);
        Ok(req)
    }
}

/// Puts `token` on an outgoing request.
pub fn set_bearer(md: &mut MetadataMap, token: &str) {
    if let Ok(v) = format!("Bearer {token}").parse() {
        md.insert(AUTHORIZATION, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(token: &str) -> MetadataMap {
        let mut md = MetadataMap::new();
        set_bearer(&mut md, token);
        md
    }

    fn unauth(r: Result<Claims>) -> bool {
        matches!(r, Err(Error::Unauthenticated(_)))
    }

    fn temp_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("linli-{name}-{}", crate::new_id()))
    }

    #[test]
    fn a_signed_token_round_trips_into_an_actor() {
        let keys = Keys::generate();
        let claims = Claims::new("account:7", Role::Cadre, Duration::from_secs(60))
            .community("c1")
            .cadre("cadre-7");
        let token = keys.sign(&claims);
        let read = keys.verify(&token).unwrap();
        assert_eq!(read.iss, ISSUER);
        assert_eq!(read.aud, AUDIENCE);
        assert_eq!(
            Claims {
                iss: String::new(),
                ..read
            },
            claims
        );
        let actor = keys.authenticate(&md(&token)).unwrap();
        assert_eq!(actor.id, "account:7");
        assert_eq!(actor.role, Role::Cadre);
        assert!(actor.sees_community("c1"));
        assert!(!actor.sees_community("c2"));
        assert_eq!(actor.cadre.as_deref(), Some("cadre-7"));
        assert_eq!(actor.token(), Some(token.as_str()));
    }

    #[test]
    fn forged_expired_and_tampered_tokens_are_refused() {
        let keys = Keys::generate();
        let other = Keys::generate();
        let claims = Claims::new("account:1", Role::Resident, Duration::from_secs(60));

        assert!(unauth(keys.verify(&other.sign(&claims))), "wrong key");
        let mut old = claims.clone();
        old.iat -= 3600;
        old.exp -= 3600;
        let expired = keys.sign(&old);
        assert!(unauth(keys.verify(&expired)), "expired");
        // Its signature is remembered as good, its times are still checked.
        assert!(unauth(keys.verify(&expired)), "expired, asked again");

        // Raise the role in the payload and keep the signature, after the
        // genuine token has been verified (and remembered).
        let token = keys.sign(&claims);
        let genuine = keys.verify(&token).unwrap();
        assert_eq!(keys.verify(&token).unwrap(), genuine);
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut raised = genuine.clone();
        raised.role = Role::Admin;
        let payload = B64.encode(serde_json::to_vec(&raised).unwrap());
        parts[1] = &payload;
        assert!(unauth(keys.verify(&parts.join("."))), "tampered");

        // "alg": "none" with no signature.
        let none = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            B64.encode(serde_json::to_vec(&raised).unwrap())
        );
        assert!(unauth(keys.verify(&none)), "alg none");
        assert!(unauth(keys.verify("garbage")), "garbage");

        // Signed by a trusted key, but for another audience, with no issuer, or with no key id.
        let elsewhere = Claims {
            iss: ISSUER.into(),
            aud: "elsewhere".into(),
            ..claims.clone()
        };
        assert!(
            unauth(keys.verify(&keys.sign_payload(ISSUER, &elsewhere))),
            "aud"
        );
        assert!(
            unauth(keys.verify(&keys.sign_payload(ISSUER, &claims))),
            "no iss"
        );
        let header = B64.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[0] = header;
        assert!(unauth(keys.verify(&parts.join("."))), "no kid");
    }

    /// What one compromised service could do with its own key: speak for a
    /// person, for another service, or claim to be the issuer. None passes.
    #[test]
    fn a_service_key_signs_for_that_service_alone() {
        let dir = temp_dir("split");
        let issuer = Keys::generate_parts(&[ISSUER]);
        let issues = Keys::generate_parts(&["issues"]);
        issuer.write_public(&dir).unwrap();
        issues.write_public(&dir).unwrap();
        let people = Keys::load(&AuthSettings::in_dir(&dir, true), &["people"]).unwrap();

        let admin = Claims::new("account:1", Role::Admin, Duration::from_secs(60)).county();
        assert!(
            people.verify(&issuer.sign(&admin)).is_ok(),
            "the issuer's person token"
        );
        let own = issues.service_actor("issues");
        assert!(
            people.verify(own.token().unwrap()).is_ok(),
            "issues as itself"
        );

        let as_issuer = Claims {
            iss: ISSUER.into(),
            ..admin.clone()
        };
        let as_issues = Claims {
            iss: "issues".into(),
            ..admin.clone()
        };
        for forged in [
            issues.sign_payload("issues", &as_issuer),
            issues.sign_payload("issues", &as_issues),
        ] {
            let Err(Error::Unauthenticated(msg)) = people.verify(&forged) else {
                panic!("a service key spoke for a person")
            };
            assert!(
                msg.contains("iss") || msg.contains("does not sign"),
                "{msg}"
            );
        }
        let mut other_service =
            Claims::new("service:logistics", Role::Admin, Duration::from_secs(60)).county();
        other_service.iss = "issues".into();
        assert!(
            unauth(people.verify(&issues.sign_payload("issues", &other_service))),
            "issues spoke for logistics"
        );
        let mut service_by_issuer = other_service.clone();
        service_by_issuer.iss = ISSUER.into();
        assert!(
            unauth(people.verify(&issuer.sign_payload(ISSUER, &service_by_issuer))),
            "the issuer spoke for a service"
        );
        assert!(
            std::panic::catch_unwind(|| issues.sign(&admin)).is_err(),
            "issues signed a person's token"
        );
        assert!(!issues.can_sign(&admin) && issuer.can_sign(&admin));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_rotated_key_is_accepted_until_its_file_is_removed() {
        let dir = temp_dir("rotate");
        let old = Keys::generate_parts(&[ISSUER]);
        old.write_public(&dir).unwrap();
        let verifier = Keys::load(&AuthSettings::in_dir(&dir, true), &["issues"]).unwrap();
        let claims = Claims::new("account:1", Role::Admin, Duration::from_secs(600)).county();
        let before = old.sign(&claims);
        assert!(verifier.verify(&before).is_ok());

        // The new key takes the name; the old public key stays beside it, labelled.
        std::fs::rename(
            dir.join("issuer.pub.pem"),
            dir.join("issuer.retiring.pub.pem"),
        )
        .unwrap();
        let new = Keys::generate_parts(&[ISSUER]);
        new.write_public(&dir).unwrap();
        // Its first token names a key id not seen yet, and the folder changed: read again.
        assert!(verifier.verify(&new.sign(&claims)).is_ok(), "new key");
        assert!(verifier.verify(&before).is_ok(), "old key, still listed");

        std::fs::remove_file(dir.join("issuer.retiring.pub.pem")).unwrap();
        verifier.reread();
        assert!(unauth(verifier.verify(&before)), "retired key");
        assert!(verifier.verify(&new.sign(&claims)).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_token_or_bare_headers_are_unauthenticated() {
        let keys = Keys::generate();
        assert!(matches!(
            keys.authenticate(&MetadataMap::new()),
            Err(Error::Unauthenticated(_))
        ));
        let mut bare = MetadataMap::new();
        bare.insert("x-linli-role", "admin".parse().unwrap());
        let Err(Error::Unauthenticated(msg)) = keys.authenticate(&bare) else {
            panic!("bare headers accepted")
        };
        assert!(msg.contains("x-linli"), "{msg}");
    }

    #[test]
    fn keys_load_from_their_folder_made_only_when_allowed() {
        let dir = temp_dir("keys");
        let settings = AuthSettings::in_dir(&dir, false);
        let Err(e) = Keys::load(&settings, &["gateway", ISSUER]) else {
            panic!("a missing key was not refused")
        };
        assert!(e.to_string().contains("no gateway key at"), "{e}");
        let created = Keys::load(&AuthSettings::in_dir(&dir, true), &["gateway", ISSUER]).unwrap();
        for part in ["gateway", ISSUER] {
            assert!(dir.join(format!("{part}.key.pem")).exists());
            assert_eq!(
                std::fs::read_to_string(dir.join(format!("{part}.pub.pem"))).unwrap(),
                created.public_pem(part).unwrap()
            );
        }
        let again = Keys::load(&settings, &["gateway", ISSUER]).unwrap();
        assert_eq!(created.public_pem(ISSUER), again.public_pem(ISSUER));
        assert_eq!(created.audit_key(), again.audit_key());
        // The issuer's key held by the gateway is not read by a service that is only itself.
        let people = Keys::load(&AuthSettings::in_dir(&dir, true), &["people"]).unwrap();
        assert!(people.private_pem(ISSUER).is_none());
        assert_ne!(people.audit_key(), again.audit_key());

        let made = crate::keyring::init_dir(&dir).unwrap();
        assert_eq!(made, vec!["issues", "logistics"], "only the missing parts");
        let _ = std::fs::remove_dir_all(dir);
    }
}
