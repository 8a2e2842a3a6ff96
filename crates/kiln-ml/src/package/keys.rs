//! Signing keys (ed25519), their files, and package signatures.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::write::{Source, split_target, write_file};
use super::{
    Package, PackageError, SIGNATURE_ALGORITHM, SIGNATURE_FILE, io_err, random_hex, sha256_hex,
    sync_dir,
};
use crate::error::{MlError, Result};

/// `signature.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureFile {
    pub key_id: String,
    pub algorithm: String,
    /// Base64 (standard alphabet) of the 64-byte ed25519 signature of `manifest.json`.
    pub signature: String,
}

/// The id of a public key: the first 16 hex digits of the sha256 of its 32 bytes.
pub fn key_id(public_key: &[u8; 32]) -> String {
    sha256_hex(public_key)[..16].to_string()
}

fn decode_bytes(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    BASE64.decode(s).ok().or_else(|| hex::decode(s).ok())
}

const PRIVATE_KIND: &str = "kiln-ed25519-private-key";
const PUBLIC_KIND: &str = "kiln-ed25519-public-key";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateKeyFile {
    kind: String,
    key_id: String,
    /// Base64 of the 32-byte seed.
    private_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyFile {
    kind: String,
    key_id: String,
    /// Base64 of the 32-byte public key.
    public_key: String,
}

/// An ed25519 signing key. Its `Debug` output shows only the key id.
#[derive(Clone)]
pub struct PrivateKey {
    key_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// An ed25519 public key with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key_id: String,
    key: VerifyingKey,
}

/// A new key pair from the operating system's random source.
pub fn generate_keypair() -> Result<(PrivateKey, PublicKey)> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| MlError::Io {
        path: "(system random source)".into(),
        source: io::Error::other(e.to_string()),
    })?;
    let private = PrivateKey::from_seed(&seed);
    let public = private.public_key();
    Ok((private, public))
}

impl PrivateKey {
    pub fn from_seed(seed: &[u8; 32]) -> PrivateKey {
        let key = SigningKey::from_bytes(seed);
        PrivateKey {
            key_id: key_id(key.verifying_key().as_bytes()),
            key,
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key_id: self.key_id.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `message`; returns the 64-byte signature.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The key file's text (JSON: kind, key_id, base64 seed).
    pub fn to_text(&self) -> String {
        let f = PrivateKeyFile {
            kind: PRIVATE_KIND.into(),
            key_id: self.key_id.clone(),
            private_key: BASE64.encode(self.key.to_bytes()),
        };
        let mut s = serde_json::to_string_pretty(&f).unwrap_or_default();
        s.push('\n');
        s
    }

    pub fn from_text(text: &str) -> std::result::Result<PrivateKey, String> {
        let f: PrivateKeyFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if f.kind != PRIVATE_KIND {
            return Err(format!("kind is `{}`, expected `{PRIVATE_KIND}`", f.kind));
        }
        let seed: [u8; 32] = decode_bytes(&f.private_key)
            .and_then(|b| b.try_into().ok())
            .ok_or("`private_key` is not 32 bytes of base64")?;
        let k = PrivateKey::from_seed(&seed);
        check_key_id(&f.key_id, &k.key_id)?;
        Ok(k)
    }

    /// Writes the key to a new file (mode 0600); an existing file is not replaced.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_new_file(path.as_ref(), self.to_text().as_bytes(), 0o600)
    }

    pub fn load(path: impl AsRef<Path>) -> Result<PrivateKey> {
        load_key_file(path.as_ref(), PrivateKey::from_text)
    }
}

impl PublicKey {
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> std::result::Result<PublicKey, String> {
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|_| "not a valid ed25519 public key".to_string())?;
        Ok(PublicKey {
            key_id: key_id(key.as_bytes()),
            key,
        })
    }

    /// Checks an ed25519 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.key
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    /// The key file's text (JSON: kind, key_id, base64 key).
    pub fn to_text(&self) -> String {
        let f = PublicKeyFile {
            kind: PUBLIC_KIND.into(),
            key_id: self.key_id.clone(),
            public_key: BASE64.encode(self.key.as_bytes()),
        };
        let mut s = serde_json::to_string_pretty(&f).unwrap_or_default();
        s.push('\n');
        s
    }

    pub fn from_text(text: &str) -> std::result::Result<PublicKey, String> {
        let f: PublicKeyFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if f.kind != PUBLIC_KIND {
            return Err(format!("kind is `{}`, expected `{PUBLIC_KIND}`", f.kind));
        }
        let bytes: [u8; 32] = decode_bytes(&f.public_key)
            .and_then(|b| b.try_into().ok())
            .ok_or("`public_key` is not 32 bytes of base64")?;
        let k = PublicKey::from_bytes(&bytes)?;
        check_key_id(&f.key_id, &k.key_id)?;
        Ok(k)
    }

    /// Writes the key to a new file (mode 0644); an existing file is not replaced.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_new_file(path.as_ref(), self.to_text().as_bytes(), 0o644)
    }

    pub fn load(path: impl AsRef<Path>) -> Result<PublicKey> {
        load_key_file(path.as_ref(), PublicKey::from_text)
    }
}

/// Reads and parses a key file; parse errors name the file.
fn load_key_file<T>(path: &Path, parse: fn(&str) -> std::result::Result<T, String>) -> Result<T> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    parse(&text).map_err(|message| {
        PackageError::KeyFile {
            path: path.display().to_string(),
            message,
        }
        .into()
    })
}

/// The id written in a key file must be the id of the key it holds.
fn check_key_id(declared: &str, actual: &str) -> std::result::Result<(), String> {
    if declared == actual {
        Ok(())
    } else {
        Err(format!(
            "key_id {declared} does not match the key (its id is {actual})"
        ))
    }
}

/// The public keys whose signatures are accepted, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, PublicKey>,
}

impl TrustedKeys {
    pub fn new() -> Self {
        TrustedKeys::default()
    }

    pub fn add(&mut self, key: PublicKey) {
        self.keys.insert(key.key_id.clone(), key);
    }

    /// Loads public key files; a directory given among `paths` contributes every `*.pub`
    /// file in it (not recursively).
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<TrustedKeys> {
        let mut t = TrustedKeys::new();
        for p in paths {
            let p = p.as_ref();
            if p.is_dir() {
                let mut files: Vec<PathBuf> = fs::read_dir(p)
                    .map_err(io_err(p))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.extension().is_some_and(|x| x == "pub") && f.is_file())
                    .collect();
                files.sort();
                for f in files {
                    t.add(PublicKey::load(&f)?);
                }
            } else {
                t.add(PublicKey::load(p)?);
            }
        }
        Ok(t)
    }

    pub fn get(&self, key_id: &str) -> Option<&PublicKey> {
        self.keys.get(key_id)
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Signs the package in `dir` (opened and verified first) with `key`: writes
/// `signature.json` atomically, replacing an earlier signature.
pub fn sign_package(dir: impl AsRef<Path>, key: &PrivateKey) -> Result<SignatureFile> {
    let pkg = Package::open(dir.as_ref())?;
    let sig = SignatureFile {
        key_id: key.key_id.clone(),
        algorithm: SIGNATURE_ALGORITHM.into(),
        signature: BASE64.encode(key.sign(pkg.manifest_bytes())),
    };
    let mut bytes = serde_json::to_vec_pretty(&sig)?;
    bytes.push(b'\n');
    let dir = pkg.dir();
    let tmp = dir.join(format!(".{SIGNATURE_FILE}.tmp-{}", random_hex(8)?));
    let result = write_file(&tmp, &Source::Bytes(bytes))
        .and_then(|_| fs::rename(&tmp, dir.join(SIGNATURE_FILE)).map_err(io_err(&tmp)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir);
    Ok(sig)
}

/// Writes a new file atomically with `mode` (on Unix): a temporary file beside it, fsynced,
/// then hard-linked to `path`, which fails if `path` exists.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let (parent, name) = split_target(path)?;
    if path.exists() {
        return Err(PackageError::Invalid(format!(
            "{} already exists; not replacing it",
            path.display()
        ))
        .into());
    }
    let tmp = parent.join(format!(".{name}.tmp-{}", random_hex(8)?));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| -> Result<()> {
        let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_err(&tmp))?;
        }
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(PackageError::Invalid(
                format!("{} already exists; not replacing it", path.display()),
            )
            .into()),
            // A filesystem without hard links: fall back to a rename.
            Err(_) => fs::rename(&tmp, path).map_err(io_err(path)),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(&parent);
    Ok(())
}

impl Package {
    pub fn is_signed(&self) -> bool {
        self.dir.join(SIGNATURE_FILE).exists()
    }

    /// Checks `signature.json` against the manifest bytes read by [`open`](Self::open).
    /// Returns the signing key's id; errors are [`PackageError::NotSigned`],
    /// [`PackageError::UnknownKey`], [`PackageError::BadSignature`] or
    /// [`PackageError::SignatureFile`] (unreadable).
    pub fn verify_signature(&self, trusted: &TrustedKeys) -> Result<String> {
        let path = self.dir.join(SIGNATURE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PackageError::NotSigned.into());
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let sig: SignatureFile = serde_json::from_slice(&bytes)
            .map_err(|e| PackageError::SignatureFile(e.to_string()))?;
        if sig.algorithm != SIGNATURE_ALGORITHM {
            return Err(PackageError::SignatureFile(format!(
                "algorithm `{}` is not supported (only {SIGNATURE_ALGORITHM})",
                sig.algorithm
            ))
            .into());
        }
        let Some(key) = trusted.get(&sig.key_id) else {
            return Err(PackageError::UnknownKey { key_id: sig.key_id }.into());
        };
        let raw = decode_bytes(&sig.signature).ok_or_else(|| {
            PackageError::SignatureFile("`signature` is neither base64 nor hex".into())
        })?;
        let raw: [u8; 64] = raw
            .try_into()
            .map_err(|_| PackageError::SignatureFile("`signature` is not 64 bytes".into()))?;
        let signature = Signature::from_bytes(&raw);
        key.key
            .verify_strict(&self.manifest_bytes, &signature)
            .map_err(|_| PackageError::BadSignature {
                key_id: sig.key_id.clone(),
            })?;
        Ok(sig.key_id)
    }
}
