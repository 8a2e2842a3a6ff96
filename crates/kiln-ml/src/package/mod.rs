//! The model package: a directory holding a model, everything needed to serve it, and a
//! manifest that lists every other file with its size and SHA-256, optionally signed.
//!
//! ```text
//! manifest.json    the Manifest; its SHA-256 is the package digest (the package's identity)
//! model.json | model.onnx   (+ any extra files, in subfolders too)
//! signature.json   optional: {key_id, algorithm: "ed25519", signature} over manifest.json's bytes
//! ```
//!
//! [`PackageBuilder`] writes a package atomically (a temporary folder beside the target,
//! every file fsynced, then one rename). [`Package::open`] checks that the folder holds
//! exactly the files the manifest lists, with their sizes and digests;
//! [`Package::verify_signature`] checks the signature against a set of [`TrustedKeys`].
//! Keys are ed25519 ([`generate_keypair`]); key files are small JSON documents, the private
//! one written with mode 0600.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use kiln_transform::{Column, TransformSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::error::{MlError, Result};
use crate::native::{NativeModel, Task};
use crate::tensor::TensorSpec;

mod keys;
#[cfg(test)]
mod tests;
mod write;

pub use keys::{
    PrivateKey, PublicKey, SignatureFile, TrustedKeys, generate_keypair, key_id, sign_package,
};
pub use write::PackageBuilder;

/// The package format version this code writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SIGNATURE_FILE: &str = "signature.json";
pub const SIGNATURE_ALGORITHM: &str = "ed25519";

/// What went wrong with a package or a key, one variant per case a caller may want to tell
/// apart (wrapped in [`MlError::Package`]).
#[derive(Debug, Error)]
pub enum PackageError {
    /// The manifest cannot be read as a manifest; `message` names the field.
    #[error("{file}: {message}")]
    Manifest { file: String, message: String },
    #[error("package file `{file}` is listed in the manifest but missing")]
    MissingFile { file: String },
    #[error("the package holds files its manifest does not list: {}", files.join(", "))]
    ExtraFiles { files: Vec<String> },
    #[error(
        "package file `{file}` does not match the manifest: expected sha256 {expected_sha256} ({expected_bytes} bytes), found sha256 {actual_sha256} ({actual_bytes} bytes)"
    )]
    FileMismatch {
        file: String,
        expected_sha256: String,
        actual_sha256: String,
        expected_bytes: u64,
        actual_bytes: u64,
    },
    #[error("the package is not signed (no {SIGNATURE_FILE})")]
    NotSigned,
    #[error("the package is signed by key {key_id}, which is not a trusted key")]
    UnknownKey { key_id: String },
    #[error(
        "the signature by key {key_id} does not match {MANIFEST_FILE}: the manifest changed after signing, or the signature is not genuine"
    )]
    BadSignature { key_id: String },
    /// `signature.json` is unreadable or uses an unsupported algorithm.
    #[error("{SIGNATURE_FILE}: {0}")]
    SignatureFile(String),
    #[error("key file {path}: {message}")]
    KeyFile { path: String, message: String },
    /// A package that cannot be written as asked (bad file path, target exists…).
    #[error("{0}")]
    Invalid(String),
}

impl From<PackageError> for MlError {
    fn from(e: PackageError) -> Self {
        MlError::Package(e)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MlError + '_ {
    move |source| MlError::Io {
        path: path.display().to_string(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// Manifest

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelFormat {
    /// `model.json`: a serialised [`NativeModel`].
    #[serde(rename = "kiln-native")]
    KilnNative,
    #[serde(rename = "onnx")]
    Onnx,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path with `/` separators.
    pub path: String,
    /// Lower-case hex.
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRef {
    pub name: String,
    pub digest: String,
    /// `train`, `valid`, `test`…
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Lineage {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub experiment_id: Option<String>,
    #[serde(default)]
    pub datasets: Vec<DatasetRef>,
    #[serde(default)]
    pub code_commit: Option<String>,
    /// Whether the working tree had uncommitted changes when the model was trained.
    #[serde(default)]
    pub code_dirty: Option<bool>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model's name (e.g. the train config's).
    pub name: String,
    /// Package format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub kiln_version: String,
    pub format: ModelFormat,
    /// The model file, one of `files`.
    pub model_file: String,
    /// The task, when the model has one (native models always do).
    #[serde(default)]
    pub task: Option<Task>,
    /// The model's input signature (after the feature transform).
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The raw columns the feature transform takes (its `inputs`), when there is one.
    #[serde(default)]
    pub raw_inputs: Vec<Column>,
    #[serde(default)]
    pub transform: Option<TransformSpec>,
    #[serde(default)]
    pub training_profile: Option<Value>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    #[serde(default)]
    pub lineage: Lineage,
    /// Every file of the package except `manifest.json` and `signature.json`, sorted by
    /// path. Filled in by [`PackageBuilder`].
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// A draft with the required fields; the rest empty, to fill in before building.
    pub fn new(
        name: impl Into<String>,
        format: ModelFormat,
        model_file: impl Into<String>,
    ) -> Self {
        Manifest {
            name: name.into(),
            version: FORMAT_VERSION,
            created_at: String::new(),
            kiln_version: String::new(),
            format,
            model_file: model_file.into(),
            task: None,
            inputs: vec![],
            outputs: vec![],
            raw_inputs: vec![],
            transform: None,
            training_profile: None,
            metrics: BTreeMap::new(),
            params: BTreeMap::new(),
            lineage: Lineage::default(),
            files: vec![],
        }
    }

    /// The entry of `path`.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The manifest's own rules: a known format version, safe and unique file paths, the
    /// model file among the files, raw inputs that agree with the transform.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.version == 0 || self.version > FORMAT_VERSION {
            return Err(format!(
                "version: package format version {} is not supported (this Kiln reads 1 to {FORMAT_VERSION})",
                self.version
            ));
        }
        let mut seen = BTreeSet::new();
        for f in &self.files {
            check_rel_path(&f.path).map_err(|m| format!("files: {m}"))?;
            if !seen.insert(f.path.as_str()) {
                return Err(format!("files: `{}` is listed twice", f.path));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "files: the sha256 of `{}` is not 64 hex digits",
                    f.path
                ));
            }
        }
        if !seen.contains(self.model_file.as_str()) {
            return Err(format!(
                "model_file: `{}` is not among the package's files",
                self.model_file
            ));
        }
        if self.format == ModelFormat::KilnNative && self.task.is_none() {
            return Err("task: a kiln-native package needs the model's task".into());
        }
        if let Some(t) = &self.transform
            && !self.raw_inputs.is_empty()
            && self.raw_inputs != t.inputs
        {
            return Err(
                "raw_inputs: they differ from the transform's inputs (the raw columns it takes)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Parses a manifest; an error names the field (with line and column).
pub fn parse_manifest(bytes: &[u8]) -> std::result::Result<Manifest, PackageError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let m: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        PackageError::Manifest {
            file: MANIFEST_FILE.into(),
            message: if path == "." {
                inner.to_string()
            } else {
                format!("field `{path}`: {inner}")
            },
        }
    })?;
    m.check().map_err(|message| PackageError::Manifest {
        file: MANIFEST_FILE.into(),
        message,
    })?;
    Ok(m)
}

/// Checks a package-relative file path: `/`-separated, no empty, `.` or `..` component, not
/// absolute, not the manifest or the signature.
fn check_rel_path(p: &str) -> std::result::Result<(), String> {
    if p.is_empty() {
        return Err("an empty file path".into());
    }
    if p.starts_with('/') || p.contains('\\') || p.contains('\0') {
        return Err(format!("`{p}` must be a relative path with `/` separators"));
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("`{p}` has an empty, `.` or `..` component"));
    }
    if p == MANIFEST_FILE || p == SIGNATURE_FILE {
        return Err(format!("`{p}` is reserved"));
    }
    Ok(())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The package digest: the SHA-256 of `manifest.json`'s bytes.
pub fn package_digest(manifest_bytes: &[u8]) -> String {
    sha256_hex(manifest_bytes)
}

/// SHA-256 and size of a file, read in chunks.
fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io_err(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Now as RFC 3339 UTC with seconds (`2025-01-31T12:00:00Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    rfc3339(secs)
}

/// RFC 3339 (UTC, seconds) of a Unix time.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| MlError::Io {
        path: "(system random source)".into(),
        source: io::Error::other(e.to_string()),
    })?;
    Ok(hex::encode(b))
}

/// fsync of a directory, best effort (not every filesystem supports it).
fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

// ---------------------------------------------------------------------------------------
// Reading

/// An opened package whose files all matched its manifest when it was opened.
#[derive(Debug, Clone)]
pub struct Package {
    dir: PathBuf,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    digest: String,
}

impl Package {
    /// Reads `dir/manifest.json` and checks that the folder holds exactly the files it
    /// lists (besides the manifest and `signature.json`), each with its size and sha256.
    pub fn open(dir: impl AsRef<Path>) -> Result<Package> {
        let dir = dir.as_ref();
        let mpath = dir.join(MANIFEST_FILE);
        let manifest_bytes = fs::read(&mpath).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                MlError::Package(PackageError::Manifest {
                    file: MANIFEST_FILE.into(),
                    message: format!(
                        "{} has no {MANIFEST_FILE}: not a Kiln package",
                        dir.display()
                    ),
                })
            } else {
                io_err(&mpath)(e)
            }
        })?;
        let manifest = parse_manifest(&manifest_bytes)?;
        let mut present = BTreeSet::new();
        list_files(dir, "", &mut present)?;
        let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        if let Some(f) = manifest
            .files
            .iter()
            .find(|f| !present.contains(f.path.as_str()))
        {
            return Err(PackageError::MissingFile {
                file: f.path.clone(),
            }
            .into());
        }
        let extra: Vec<String> = present
            .iter()
            .filter(|p| !listed.contains(p.as_str()))
            .cloned()
            .collect();
        if !extra.is_empty() {
            return Err(PackageError::ExtraFiles { files: extra }.into());
        }
        for f in &manifest.files {
            let (sha256, bytes) = hash_file(&dir.join(&f.path))?;
            check_entry(f, &sha256, bytes)?;
        }
        Ok(Package {
            dir: dir.to_path_buf(),
            digest: package_digest(&manifest_bytes),
            manifest,
            manifest_bytes,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The exact bytes of `manifest.json` (what a signature covers).
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// The package digest: sha256 of `manifest.json` (lower-case hex).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.model_file)
    }

    /// Reads one listed file, checking its digest again (it may have changed since
    /// [`open`](Self::open)).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        let entry = self.manifest.file(path).ok_or_else(|| {
            PackageError::Invalid(format!("`{path}` is not a file of this package"))
        })?;
        let full = self.dir.join(path);
        let bytes = fs::read(&full).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                MlError::Package(PackageError::MissingFile { file: path.into() })
            } else {
                io_err(&full)(e)
            }
        })?;
        check_entry(entry, &sha256_hex(&bytes), bytes.len() as u64)?;
        Ok(bytes)
    }

    /// The native model of a `kiln-native` package, validated.
    pub fn native_model(&self) -> Result<NativeModel> {
        if self.manifest.format != ModelFormat::KilnNative {
            return Err(MlError::InvalidModel(format!(
                "package `{}` holds an ONNX model, not a native one",
                self.manifest.name
            )));
        }
        let bytes = self.read_file(&self.manifest.model_file)?;
        let model: NativeModel = serde_json::from_slice(&bytes)
            .map_err(|e| MlError::InvalidModel(format!("{}: {e}", self.manifest.model_file)))?;
        model.validate()?;
        Ok(model)
    }
}

fn check_entry(f: &FileEntry, sha256: &str, bytes: u64) -> Result<()> {
    if bytes != f.bytes || !sha256.eq_ignore_ascii_case(&f.sha256) {
        return Err(PackageError::FileMismatch {
            file: f.path.clone(),
            expected_sha256: f.sha256.clone(),
            actual_sha256: sha256.to_string(),
            expected_bytes: f.bytes,
            actual_bytes: bytes,
        }
        .into());
    }
    Ok(())
}

/// Every regular file under `dir` as `/`-separated relative paths, except the manifest and
/// the signature at the top. Anything else (a symlink, a device) is an error.
fn list_files(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) -> Result<()> {
    let rd = fs::read_dir(dir).map_err(io_err(dir))?;
    for entry in rd {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(PackageError::Invalid(format!(
                "{}: a file name that is not UTF-8",
                entry.path().display()
            ))
            .into());
        };
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let ft = entry.file_type().map_err(io_err(&entry.path()))?;
        if ft.is_dir() {
            list_files(&entry.path(), &rel, out)?;
        } else if ft.is_file() {
            if prefix.is_empty() && (name == MANIFEST_FILE || name == SIGNATURE_FILE) {
                continue;
            }
            out.insert(rel);
        } else {
            return Err(PackageError::Invalid(format!(
                "package entry `{rel}` is not a regular file (symlinks are not allowed)"
            ))
            .into());
        }
    }
    Ok(())
}
