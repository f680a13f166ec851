//! Verified identity. The gateway signs a short-lived token for each person who
//! logs in; every service verifies it with the public key and forwards the same
//! token when it calls another service, so the person stays the actor all the
//! way down. A service's own jobs (sweeps, schedules, seeding, imports) sign a
//! token as that service.
//!
//! Tokens are JWTs (RFC 7519) signed with Ed25519 (`alg: EdDSA`, RFC 8037):
//! asymmetric, so a party that only verifies never holds what it takes to sign.
//! Keys are PKCS#8 PEM files, the format `openssl genpkey -algorithm ed25519`
//! writes. The embedded default generates one under `./data` on first start;
//! with PostgreSQL a missing key is a start-up error instead, so replicas never
//! silently sign with keys of their own.
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::actor::Actor;
use crate::{Error, Result, Role};

pub const AUTHORIZATION: &str = "authorization";

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
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
}

/// Where a service finds its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The private key (PKCS#8 PEM) this process signs with and whose public half it trusts.
    pub key_file: PathBuf,
    /// Write a new key to `key_file` if there is none (the embedded default only).
    pub create_if_missing: bool,
    /// More public keys (PEM) to accept, e.g. the previous key during a rotation.
    pub trusted_public_keys: Vec<PathBuf>,
}

impl AuthSettings {
    pub const DEFAULT_KEY_FILE: &'static str = "data/auth-key.pem";
}

/// The keys of one process: one to sign with, and every key it accepts.
#[derive(Clone)]
pub struct Keys {
    inner: Arc<KeysInner>,
}

struct KeysInner {
    signing: SigningKey,
    trusted: Vec<VerifyingKey>,
    /// Tokens whose signature has verified, with their claims: a signature
    /// check costs tens of microseconds, and every call of a session carries
    /// the same token. The claims' times are checked again on every use.
    verified: Mutex<HashMap<String, Claims>>,
}

/// Verified tokens remembered at most; past this the memory starts afresh.
const MOST_VERIFIED: usize = 4096;

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("trusted", &self.inner.trusted.len())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// A fresh random key pair (tests, and the embedded default's first start).
    pub fn generate() -> Keys {
        Keys::from_signing(SigningKey::generate(&mut rand_core::OsRng), Vec::new())
    }

    fn from_signing(signing: SigningKey, mut trusted: Vec<VerifyingKey>) -> Keys {
        trusted.insert(0, signing.verifying_key());
        Keys {
            inner: Arc::new(KeysInner {
                signing,
                trusted,
                verified: Mutex::default(),
            }),
        }
    }

    /// Loads the keys the settings name, creating the private key if allowed and missing.
    pub fn load(settings: &AuthSettings) -> anyhow::Result<Keys> {
        let path = &settings.key_file;
        if !path.exists() {
            if !settings.create_if_missing {
                anyhow::bail!(
                    "no signing key at {} (set LINLI_AUTH_KEY_FILE to a PKCS#8 Ed25519 key, e.g. from \
                     `openssl genpkey -algorithm ed25519`)",
                    path.display()
                );
            }
            write_new_key(path)?;
        }
        let pem = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the signing key {}: {e}", path.display()))?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a PKCS#8 Ed25519 private key: {e}",
                path.display()
            )
        })?;
        let trusted = settings
            .trusted_public_keys
            .iter()
            .map(|p| {
                let pem = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
                VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
                    anyhow::anyhow!("{} is not an Ed25519 public key: {e}", p.display())
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let keys = Keys::from_signing(signing, trusted);
        crate::audit::use_key(keys.audit_key());
        Ok(keys)
    }

    /// The key the audit chain is sealed with: derived from the private key, so
    /// it lives where that key lives, never in the database. Someone who can
    /// write to the database but does not hold this key cannot rewrite a record
    /// and re-seal the chain after it.
    pub fn audit_key(&self) -> [u8; 32] {
        crate::audit::hmac_sha256(self.inner.signing.as_bytes(), b"linli audit chain v1")
    }

    /// The private key as PKCS#8 PEM.
    pub fn private_pem(&self) -> String {
        self.inner
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map(|p| p.to_string())
            .expect("an Ed25519 key always encodes")
    }

    /// The public key as PEM, for parties that only verify.
    pub fn public_pem(&self) -> String {
        self.inner
            .signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("an Ed25519 key always encodes")
    }

    /// A signed token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_payload(claims)
    }

    /// A signed token with any payload: for tests of what verification refuses.
    pub fn sign_payload<T: Serialize>(&self, claims: &T) -> String {
        let header = Header {
            alg: "EdDSA".into(),
            typ: "JWT".into(),
        };
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(claims));
        let signature = self.inner.signing.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(signature.to_bytes()))
    }

    /// The claims of a token this process trusts, if it is well formed, signed by a
    /// trusted key and current. Every failure is UNAUTHENTICATED.
    pub fn verify(&self, token: &str) -> Result<Claims> {
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
        Ok(claims)
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claims>> {
        self.inner
            .verified
            .lock()
            .expect("the verified tokens' lock")
    }

    /// The claims of a well-formed token signed by a trusted key, times not checked.
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
        let signature = B64
            .decode(signature)
            .ok()
            .and_then(|s| Signature::from_slice(&s).ok())
            .ok_or_else(|| bad("unreadable signature"))?;
        let signing_input = &token[..header_and_payload_len(token)];
        if !self
            .inner
            .trusted
            .iter()
            .any(|k| k.verify(signing_input.as_bytes(), &signature).is_ok())
        {
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

fn write_new_key(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let pem = Keys::generate().private_pem();
    // Write aside and link into place: services starting together must all end
    // up with the one key that won, never a half-written file.
    // The aside name is unique to this attempt, so two threads (or processes) racing
    // to make the key never trip over each other's half-written file.
    let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), crate::new_id()));
    write_private(&tmp, &pem)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new token signing key");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot write {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    Ok(())
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

    #[test]
    fn a_signed_token_round_trips_into_an_actor() {
        let keys = Keys::generate();
        let claims = Claims::new("account:7", Role::Cadre, Duration::from_secs(60))
            .community("c1")
            .cadre("cadre-7");
        let token = keys.sign(&claims);
        assert_eq!(keys.verify(&token).unwrap(), claims);
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
        let unauth = |r: Result<Claims>| matches!(r, Err(Error::Unauthenticated(_)));

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
        assert_eq!(keys.verify(&token).unwrap(), claims);
        assert_eq!(keys.verify(&token).unwrap(), claims);
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut raised = claims.clone();
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
    fn keys_load_from_pem_and_trust_extra_public_keys() {
        let dir = std::env::temp_dir().join(format!("linli-keys-{}", crate::new_id()));
        let settings = AuthSettings {
            key_file: dir.join("auth-key.pem"),
            create_if_missing: false,
            trusted_public_keys: Vec::new(),
        };
        assert!(Keys::load(&settings).is_err(), "missing key, no creation");
        let created = Keys::load(&AuthSettings {
            create_if_missing: true,
            ..settings.clone()
        })
        .unwrap();
        let again = Keys::load(&settings).unwrap();
        assert_eq!(created.public_pem(), again.public_pem());

        let old = Keys::generate();
        std::fs::write(dir.join("old.pub.pem"), old.public_pem()).unwrap();
        let rotating = Keys::load(&AuthSettings {
            trusted_public_keys: vec![dir.join("old.pub.pem")],
            ..settings
        })
        .unwrap();
        let claims = Claims::new("account:1", Role::Admin, Duration::from_secs(60)).county();
        assert!(rotating.verify(&old.sign(&claims)).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
