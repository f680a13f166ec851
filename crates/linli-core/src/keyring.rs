//! Where each part of the suite keeps its keys. One folder (`LINLI_KEYS_DIR`,
//! `data/keys` by default) holds, for each part — `issuer` (who signs people's
//! tokens: the gateway, and the operators' `linli-people token`), `people`,
//! `issues`, `logistics`, `gateway`:
//!
//! - `<part>.key.pem`: its private key (PKCS#8 Ed25519), only where that part runs;
//! - `<part>.pub.pem`: its public key, on every machine;
//! - `<part>.<label>.pub.pem`: an older public key still accepted during a rotation.
//!
//! A process signs only with the private keys of the parts it is; it verifies
//! with every public key in the folder, read again when a token names a key it
//! does not know (so parts may start in any order) and every half minute (so a
//! retired key's file, once removed, stops being accepted).
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The part whose key signs people's tokens.
pub const ISSUER: &str = "issuer";

/// Every part that holds a key.
pub const PARTS: [&str; 5] = [ISSUER, "people", "issues", "logistics", "gateway"];

/// Where a process finds its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// Every part's public keys, and by default the private keys.
    pub keys_dir: PathBuf,
    /// The private key of the service itself [default: `<keys_dir>/<service>.key.pem`].
    pub key_file: Option<PathBuf>,
    /// The issuer's private key, for the parts that sign people's tokens
    /// [default: `<keys_dir>/issuer.key.pem`].
    pub issuer_key_file: Option<PathBuf>,
    /// A private key whose derived secret seals this service's audit chain
    /// [default: the service's own key]. Kept apart so chains sealed before a
    /// key change still verify.
    pub audit_key_file: Option<PathBuf>,
    /// Write the missing private keys, and their public halves (the embedded default only).
    pub create_if_missing: bool,
}

impl AuthSettings {
    pub const DEFAULT_KEYS_DIR: &'static str = "data/keys";

    /// Settings for the keys in `dir`, nothing overridden.
    pub fn in_dir(dir: impl Into<PathBuf>, create_if_missing: bool) -> AuthSettings {
        AuthSettings {
            keys_dir: dir.into(),
            key_file: None,
            issuer_key_file: None,
            audit_key_file: None,
            create_if_missing,
        }
    }

    /// Where the private key of `part` is.
    pub fn private_key_file(&self, part: &str) -> PathBuf {
        let given = if part == ISSUER {
            self.issuer_key_file.as_ref()
        } else {
            self.key_file.as_ref()
        };
        given
            .cloned()
            .unwrap_or_else(|| self.keys_dir.join(format!("{part}.key.pem")))
    }
}

/// A key's id as tokens carry it (`kid`): the part and a fingerprint of the public key.
pub fn key_id(part: &str, key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("{part}:{}", hex::encode(&digest[..8]))
}

/// The private key of `part` from `path`, made first when allowed and missing.
pub fn load_private(path: &Path, part: &str, create: bool) -> anyhow::Result<SigningKey> {
    if !path.exists() {
        if !create {
            anyhow::bail!(
                "no {part} key at {} (give every part its keys: `linli-gateway keys --dir <folder>` \
                 writes any that are missing; see deploy/README.md)",
                path.display()
            );
        }
        write_new_key(path)?;
    }
    let key = read_private(path)?;
    if create {
        let public = path.with_file_name(format!("{part}.pub.pem"));
        if !public.exists() {
            write_file(&public, &public_pem(&key.verifying_key()), 0o644)?;
        }
    }
    Ok(key)
}

fn read_private(path: &Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the key {}: {e}", path.display()))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a PKCS#8 Ed25519 private key: {e}",
            path.display()
        )
    })
}

/// The secret the audit chain is sealed with, from the private key at `path`.
pub fn audit_secret(path: &Path) -> anyhow::Result<[u8; 32]> {
    Ok(derive_audit_secret(&read_private(path)?))
}

pub(crate) fn derive_audit_secret(key: &SigningKey) -> [u8; 32] {
    crate::audit::hmac_sha256(key.as_bytes(), b"linli audit chain v1")
}

/// Every public key in `dir`, with its part: `<part>.pub.pem` and `<part>.<label>.pub.pem`.
/// A folder that does not exist holds none; an unreadable key file is an error.
pub fn scan_public(dir: &Path) -> anyhow::Result<Vec<(String, VerifyingKey)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("cannot read the keys folder {}: {e}", dir.display()),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".pub.pem") else {
            continue;
        };
        let part = stem.split('.').next().unwrap_or_default();
        if !PARTS.contains(&part) {
            tracing::warn!(file = %path.display(), "a public key of no known part is ignored");
            continue;
        }
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let key = VerifyingKey::from_public_key_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not an Ed25519 public key: {e}", path.display()))?;
        keys.push((part.to_owned(), key));
    }
    Ok(keys)
}

/// Writes the keys of every part missing from `dir` (private and public): what
/// an operator runs once per deployment. Returns the parts written.
pub fn init_dir(dir: &Path) -> anyhow::Result<Vec<&'static str>> {
    let mut made = Vec::new();
    for part in PARTS {
        let private = dir.join(format!("{part}.key.pem"));
        if !private.exists() {
            made.push(part);
        }
        load_private(&private, part, true)?;
    }
    Ok(made)
}

pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("an Ed25519 key always encodes")
}

pub fn private_pem(key: &SigningKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|p| p.to_string())
        .expect("an Ed25519 key always encodes")
}

fn write_new_key(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let pem = private_pem(&SigningKey::generate(&mut rand_core::OsRng));
    write_file(path, &pem, 0o600)?;
    tracing::info!(path = %path.display(), "generated a new signing key");
    Ok(())
}

/// Writes aside and links into place: processes starting together all end up
/// with the one file that won, never a half-written one.
fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), crate::new_id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let written = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(contents.as_bytes()).and_then(|()| f.sync_all()));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("cannot write {}: {e}", tmp.display());
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot write {}: {e}", path.display())),
    }
}
