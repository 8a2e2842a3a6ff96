//! Writing a package: staged in a temporary folder beside the target, every file fsynced,
//! then renamed into place.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::{
    FORMAT_VERSION, FileEntry, MANIFEST_FILE, Manifest, Package, PackageError, check_rel_path,
    io_err, now_rfc3339, package_digest, random_hex, sync_dir,
};
use crate::error::Result;

#[derive(Debug, Clone)]
pub(super) enum Source {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

/// Writes a package from a manifest draft and its files.
///
/// On [`write`](Self::write) the builder fills in `files` (path, sha256, size of each file,
/// sorted by path), `version` ([`FORMAT_VERSION`]), `created_at` (now, if empty),
/// `kiln_version` (this crate's version, if empty) and `raw_inputs` (the transform's
/// inputs, if empty); metrics that are not finite are left out (JSON has no NaN).
#[derive(Debug, Clone)]
pub struct PackageBuilder {
    manifest: Manifest,
    files: Vec<(String, Source)>,
}

impl PackageBuilder {
    pub fn new(manifest: Manifest) -> Self {
        PackageBuilder {
            manifest,
            files: vec![],
        }
    }

    /// Adds a file with the given content at `path` (relative, `/`-separated).
    pub fn file(mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.into(), Source::Bytes(bytes.into())));
        self
    }

    /// Adds a copy of the file at `source` as `path`.
    pub fn copy_file(mut self, path: impl Into<String>, source: impl Into<PathBuf>) -> Self {
        self.files.push((path.into(), Source::Path(source.into())));
        self
    }

    /// Writes the package as the folder `target`, which must not exist yet.
    pub fn write(self, target: impl AsRef<Path>) -> Result<Package> {
        let target = target.as_ref();
        let (parent, name) = split_target(target)?;
        if target.exists() {
            return Err(
                PackageError::Invalid(format!("{} already exists", target.display())).into(),
            );
        }
        let staged = self.stage(&parent, &name)?;
        if target.exists() {
            let _ = fs::remove_dir_all(&staged.tmp);
            return Err(
                PackageError::Invalid(format!("{} already exists", target.display())).into(),
            );
        }
        staged.commit(target, &parent)
    }

    /// Writes the package as `parent/<package digest>`; when that folder exists already
    /// (the same manifest, so the same package) it is opened and returned instead.
    pub fn write_into(self, parent: impl AsRef<Path>) -> Result<Package> {
        let parent = parent.as_ref();
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let staged = self.stage(parent, "kiln-package")?;
        let target = parent.join(&staged.digest);
        if target.exists() {
            let _ = fs::remove_dir_all(&staged.tmp);
            return Package::open(&target);
        }
        staged.commit(&target, parent)
    }

    /// Writes everything into a temporary folder in `parent`.
    fn stage(mut self, parent: &Path, name: &str) -> Result<Staged> {
        let mut paths = BTreeSet::new();
        for (p, _) in &self.files {
            check_rel_path(p).map_err(PackageError::Invalid)?;
            if !paths.insert(p.clone()) {
                return Err(PackageError::Invalid(format!("file `{p}` is added twice")).into());
            }
        }
        if !paths.contains(&self.manifest.model_file) {
            return Err(PackageError::Invalid(format!(
                "the model file `{}` is not among the files added",
                self.manifest.model_file
            ))
            .into());
        }
        if let Some(t) = &self.manifest.transform {
            t.validate().map_err(|e| {
                PackageError::Invalid(format!("the feature transform is invalid: {e}"))
            })?;
            if self.manifest.raw_inputs.is_empty() {
                self.manifest.raw_inputs = t.inputs.clone();
            }
        }
        let tmp = parent.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            random_hex(8)?
        ));
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        match self.stage_in(&tmp) {
            Ok((manifest, manifest_bytes)) => Ok(Staged {
                tmp,
                digest: package_digest(&manifest_bytes),
                manifest,
                manifest_bytes,
            }),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    fn stage_in(mut self, tmp: &Path) -> Result<(Manifest, Vec<u8>)> {
        let mut entries = Vec::with_capacity(self.files.len());
        let mut dirs = BTreeSet::new();
        for (rel, source) in std::mem::take(&mut self.files) {
            let dest = tmp.join(&rel);
            if let Some(d) = dest.parent()
                && d != tmp
            {
                fs::create_dir_all(d).map_err(io_err(d))?;
                dirs.insert(d.to_path_buf());
            }
            let (sha256, bytes) = write_file(&dest, &source)?;
            entries.push(FileEntry {
                path: rel,
                sha256,
                bytes,
            });
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let m = &mut self.manifest;
        m.files = entries;
        m.version = FORMAT_VERSION;
        if m.created_at.is_empty() {
            m.created_at = now_rfc3339();
        }
        if m.kiln_version.is_empty() {
            m.kiln_version = env!("CARGO_PKG_VERSION").to_string();
        }
        m.metrics.retain(|_, v| v.is_finite());
        m.check()
            .map_err(|e| PackageError::Invalid(format!("manifest: {e}")))?;
        let mut bytes = serde_json::to_vec_pretty(&m)?;
        bytes.push(b'\n');
        write_file(&tmp.join(MANIFEST_FILE), &Source::Bytes(bytes.clone()))?;
        for d in dirs.iter().rev() {
            sync_dir(d);
        }
        sync_dir(tmp);
        Ok((self.manifest, bytes))
    }
}

struct Staged {
    tmp: PathBuf,
    digest: String,
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
}

impl Staged {
    fn commit(self, target: &Path, parent: &Path) -> Result<Package> {
        if let Err(e) = fs::rename(&self.tmp, target) {
            let _ = fs::remove_dir_all(&self.tmp);
            return Err(io_err(target)(e));
        }
        sync_dir(parent);
        Ok(Package {
            dir: target.to_path_buf(),
            manifest: self.manifest,
            manifest_bytes: self.manifest_bytes,
            digest: self.digest,
        })
    }
}

pub(super) fn split_target(target: &Path) -> Result<(PathBuf, String)> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            PackageError::Invalid(format!(
                "{} is not a usable package folder name",
                target.display()
            ))
        })?
        .to_string();
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    Ok((parent, name))
}

/// Writes `source` to `dest` (a new file), fsyncs it, returns its sha256 and size.
pub(super) fn write_file(dest: &Path, source: &Source) -> Result<(String, u64)> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(io_err(dest))?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    match source {
        Source::Bytes(b) => {
            out.write_all(b).map_err(io_err(dest))?;
            h.update(b);
            n = b.len() as u64;
        }
        Source::Path(src) => {
            let mut f = File::open(src).map_err(io_err(src))?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let k = f.read(&mut buf).map_err(io_err(src))?;
                if k == 0 {
                    break;
                }
                out.write_all(&buf[..k]).map_err(io_err(dest))?;
                h.update(&buf[..k]);
                n += k as u64;
            }
        }
    }
    out.sync_all().map_err(io_err(dest))?;
    Ok((hex::encode(h.finalize()), n))
}
