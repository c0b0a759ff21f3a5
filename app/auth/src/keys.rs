//! Ed25519 signing keys, their public JWKS, and the key directory.
//!
//! A key directory holds every signing key that is still trusted, one
//! `<kid>.pem` file each (PKCS#8, mode 0600), `jwks.json` with their public
//! halves (what verifiers load), and `current`, the kid new tokens are signed
//! with. Rotating adds a key and makes it current while the old one stays in
//! the JWKS, so tokens signed before the rotation keep working until the old
//! key is retired.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};

/// The PKCS#8 (RFC 8410) prefix of an Ed25519 private key: the 32-byte seed
/// follows it.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const PEM_LABEL: &str = "PRIVATE KEY";
/// The JWKS file of a key directory.
pub const JWKS_FILE: &str = "jwks.json";
/// The file naming the current key of a key directory.
pub const CURRENT_FILE: &str = "current";

/// What can go wrong with keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("the key id {0:?} is not 1 to 64 letters, digits, '-' or '_'")]
    BadKid(String),
    #[error("no key {kid:?} in {dir}")]
    NoSuchKey { kid: String, dir: PathBuf },
    #[error("{kid:?} is the current key of {dir}: rotate first, then retire it")]
    RetiringCurrent { kid: String, dir: PathBuf },
    #[error("cannot sign: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeyError + 'a {
    move |source| KeyError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A key id: 1 to 64 of `[A-Za-z0-9_-]`, so that it is a safe file name.
pub fn valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An Ed25519 private key and its id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate(kid: &str) -> Result<Self, KeyError> {
        let seed: [u8; 32] = rand::random();
        Self::from_seed(kid, seed)
    }

    /// The key of a 32-byte seed (deterministic keys in tests).
    pub fn from_seed(kid: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        if !valid_kid(kid) {
            return Err(KeyError::BadKid(kid.to_owned()));
        }
        let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
        pkcs8.extend_from_slice(&seed);
        Ok(Self {
            kid: kid.to_owned(),
            pkcs8,
        })
    }

    /// Reads a PKCS#8 PEM Ed25519 key.
    pub fn from_pem(kid: &str, pem: &str, path: &Path) -> Result<Self, KeyError> {
        let invalid = |reason: &str| KeyError::Invalid {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with("-----") && !line.is_empty())
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|_| invalid("not a PEM file (bad base64)"))?;
        let seed = der
            .strip_prefix(&ED25519_PKCS8_PREFIX[..])
            .and_then(|seed| <[u8; 32]>::try_from(seed).ok())
            .ok_or_else(|| invalid("not a PKCS#8 Ed25519 private key"))?;
        Self::from_seed(kid, seed)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm its tokens carry.
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }

    pub fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_ed_der(&self.pkcs8)
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        let body = STANDARD.encode(&self.pkcs8);
        let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
        pem
    }

    /// The public half as a JWK (`kid`, `alg`, `use=sig`).
    pub fn public_jwk(&self) -> Result<Jwk, KeyError> {
        let mut jwk = Jwk::from_encoding_key(&self.encoding_key(), Algorithm::EdDSA)?;
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(jwk)
    }
}

/// A key directory (see the module's documentation).
#[derive(Debug, Clone)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn jwks_path(&self) -> PathBuf {
        self.dir.join(JWKS_FILE)
    }

    /// Creates the directory with one key unless it has a current key
    /// already; returns the current key's id. Safe to run at every start.
    pub fn ensure(&self) -> Result<String, KeyError> {
        match self.current_kid() {
            Ok(kid) => Ok(kid),
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                self.rotate(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Adds a new key (named `kid`, else `key-<random>`) and makes it current;
    /// the others stay trusted. Returns the new key's id.
    pub fn rotate(&self, kid: Option<&str>) -> Result<String, KeyError> {
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let kid = match kid {
            Some(kid) => kid.to_owned(),
            None => format!("key-{:08x}", rand::random::<u32>()),
        };
        let key = SigningKey::generate(&kid)?;
        let pem_path = self.dir.join(format!("{kid}.pem"));
        write_private(&pem_path, key.to_pem().as_bytes())?;
        let mut jwks = self.jwks().or_else(|err| match err {
            KeyError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(JwkSet::default())
            }
            other => Err(other),
        })?;
        jwks.keys
            .retain(|jwk| jwk.common.key_id.as_deref() != Some(kid.as_str()));
        jwks.keys.push(key.public_jwk()?);
        self.write_jwks(&jwks)?;
        let current = self.dir.join(CURRENT_FILE);
        write_atomically(&current, format!("{kid}\n").as_bytes())?;
        Ok(kid)
    }

    /// Stops trusting `kid`: drops it from the JWKS and deletes its private
    /// key. The current key cannot be retired.
    pub fn retire(&self, kid: &str) -> Result<(), KeyError> {
        if self.current_kid()? == kid {
            return Err(KeyError::RetiringCurrent {
                kid: kid.to_owned(),
                dir: self.dir.clone(),
            });
        }
        let mut jwks = self.jwks()?;
        let before = jwks.keys.len();
        jwks.keys
            .retain(|jwk| jwk.common.key_id.as_deref() != Some(kid));
        if jwks.keys.len() == before {
            return Err(KeyError::NoSuchKey {
                kid: kid.to_owned(),
                dir: self.dir.clone(),
            });
        }
        self.write_jwks(&jwks)?;
        let pem_path = self.dir.join(format!("{kid}.pem"));
        match fs::remove_file(&pem_path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io("remove", &pem_path)(err)),
        }
    }

    /// The id of the key new tokens are signed with.
    pub fn current_kid(&self) -> Result<String, KeyError> {
        let path = self.dir.join(CURRENT_FILE);
        let kid = fs::read_to_string(&path).map_err(io("read", &path))?;
        let kid = kid.trim();
        if valid_kid(kid) {
            Ok(kid.to_owned())
        } else {
            Err(KeyError::BadKid(kid.to_owned()))
        }
    }

    /// A key by id (the current one without).
    pub fn signing_key(&self, kid: Option<&str>) -> Result<SigningKey, KeyError> {
        let kid = match kid {
            Some(kid) => kid.to_owned(),
            None => self.current_kid()?,
        };
        if !valid_kid(&kid) {
            return Err(KeyError::BadKid(kid));
        }
        let path = self.dir.join(format!("{kid}.pem"));
        let pem = fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                KeyError::NoSuchKey {
                    kid: kid.clone(),
                    dir: self.dir.clone(),
                }
            } else {
                io("read", &path)(source)
            }
        })?;
        SigningKey::from_pem(&kid, &pem, &path)
    }

    /// The public keys.
    pub fn jwks(&self) -> Result<JwkSet, KeyError> {
        let path = self.jwks_path();
        let text = fs::read_to_string(&path).map_err(io("read", &path))?;
        serde_json::from_str(&text).map_err(|err| KeyError::Invalid {
            path,
            reason: format!("not a JWKS: {err}"),
        })
    }

    fn write_jwks(&self, jwks: &JwkSet) -> Result<(), KeyError> {
        let path = self.jwks_path();
        let mut text = serde_json::to_string_pretty(jwks).map_err(|err| KeyError::Invalid {
            path: path.clone(),
            reason: err.to_string(),
        })?;
        text.push('\n');
        write_atomically(&path, text.as_bytes())
    }
}

/// Writes through a temporary file and a rename, so that a verifier that
/// re-reads the file never sees half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename", path))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io("create", path))?;
    file.write_all(bytes).map_err(io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_pem_and_its_jwk_is_public_only() {
        let key = SigningKey::generate("k1").unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let again = SigningKey::from_pem("k1", &pem, Path::new("k1.pem")).unwrap();
        assert_eq!(again.pkcs8, key.pkcs8);
        let jwk = serde_json::to_value(key.public_jwk().unwrap()).unwrap();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["kid"], "k1");
        assert_eq!(jwk["alg"], "EdDSA");
        assert!(
            jwk.get("d").is_none(),
            "a JWKS never carries the private part"
        );
    }

    #[test]
    fn a_broken_pem_is_named() {
        let err = SigningKey::from_pem(
            "k",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n",
            Path::new("/k.pem"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/k.pem") && err.contains("Ed25519"), "{err}");
    }

    #[test]
    fn key_ids_are_safe_file_names() {
        assert!(valid_kid("key-1_a"));
        for bad in ["", "../x", "a b", &"k".repeat(65)] {
            assert!(!valid_kid(bad), "{bad}");
            assert!(SigningKey::generate(bad).is_err());
        }
    }

    #[test]
    fn rotation_keeps_the_old_key_until_it_is_retired() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let first = keys.ensure().unwrap();
        assert_eq!(keys.ensure().unwrap(), first, "ensure is idempotent");
        let second = keys.rotate(Some("second")).unwrap();
        assert_eq!(keys.current_kid().unwrap(), second);
        let kids: Vec<_> = keys
            .jwks()
            .unwrap()
            .keys
            .into_iter()
            .filter_map(|k| k.common.key_id)
            .collect();
        assert_eq!(kids, vec![first.clone(), second.clone()]);
        assert!(matches!(
            keys.retire(&second),
            Err(KeyError::RetiringCurrent { .. })
        ));
        keys.retire(&first).unwrap();
        assert_eq!(keys.jwks().unwrap().keys.len(), 1);
        assert!(matches!(
            keys.signing_key(Some(&first)),
            Err(KeyError::NoSuchKey { .. })
        ));
        assert_eq!(keys.signing_key(None).unwrap().kid(), second);
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let kid = keys.ensure().unwrap();
        let mode = fs::metadata(dir.path().join(format!("{kid}.pem")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }
}
