//! Fetching a registered version's files: its location (the resolved storage location, else
//! the source) must be in this server's artifact store (`mlflow-artifacts:/<path>`); every
//! file under it is downloaded into a temporary folder, which is then recognised as
//!
//! - a Kiln package (`manifest.json`, written by `kiln train`), opened with
//!   [`Package::open`] — whose error, if any, is kept for the integrity gate — or
//! - an MLflow model whose `MLmodel` file has an `onnx` flavor (`mlflow.onnx.log_model`):
//!   the file named by `onnx_model:` under `flavors:`, else the folder's only `*.onnx` file.
//!
//! Anything else is [`ReleaseError::UnsupportedSource`].

use std::path::{Path, PathBuf};

use futures::StreamExt;
use kiln_core::entities::ModelVersion;
use kiln_ml::package::MANIFEST_FILE;
use kiln_ml::{ModelFormat, NativePredictor, Package, Predictor, TensorSpec};
use kiln_store::{ArtifactStore, Store};
use kiln_transform::Column;
use tempfile::TempDir;

use crate::ReleaseError;

/// The name of an MLflow model's metadata file.
pub const MLMODEL_FILE: &str = "MLmodel";

/// What kind of model a version holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionKind {
    /// A Kiln package: manifest, file digests, optional signature.
    KilnPackage,
    /// An MLflow model with an ONNX flavor.
    MlflowOnnx,
}

impl VersionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionKind::KilnPackage => "kiln-package",
            VersionKind::MlflowOnnx => "mlflow-onnx",
        }
    }
}

enum Content {
    Package(Box<Result<Package, kiln_ml::MlError>>),
    MlflowOnnx { model_file: String },
}

/// A version's files in a temporary folder, removed when this is dropped.
pub struct Fetched {
    _tmp: TempDir,
    dir: PathBuf,
    location: String,
    content: Content,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("dir", &self.dir)
            .field("location", &self.location)
            .field("kind", &self.kind())
            .finish()
    }
}

/// A borrowed view of [`Content`].
enum View<'a> {
    Pkg(&'a Package),
    Broken(&'a kiln_ml::MlError),
    Mlflow(&'a str),
}

impl Fetched {
    fn view(&self) -> View<'_> {
        match &self.content {
            Content::Package(r) => match r.as_ref() {
                Ok(p) => View::Pkg(p),
                Err(e) => View::Broken(e),
            },
            Content::MlflowOnnx { model_file } => View::Mlflow(model_file),
        }
    }

    /// The local folder holding the version's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the files came from (`mlflow-artifacts:/…`).
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn kind(&self) -> VersionKind {
        match self.content {
            Content::Package(_) => VersionKind::KilnPackage,
            Content::MlflowOnnx { .. } => VersionKind::MlflowOnnx,
        }
    }

    /// The opened package; `None` for an MLflow model, or a package that did not open (see
    /// [`package_error`](Self::package_error)).
    pub fn package(&self) -> Option<&Package> {
        match self.view() {
            View::Pkg(p) => Some(p),
            _ => None,
        }
    }

    /// Why the package did not open (a file that changed, went missing…), for a Kiln package.
    pub fn package_error(&self) -> Option<&kiln_ml::MlError> {
        match self.view() {
            View::Broken(e) => Some(e),
            _ => None,
        }
    }

    /// The model file, relative to [`dir`](Self::dir).
    pub fn model_file(&self) -> Option<&str> {
        match self.view() {
            View::Pkg(p) => Some(&p.manifest().model_file),
            View::Broken(_) => None,
            View::Mlflow(model_file) => Some(model_file),
        }
    }

    /// `kiln-native` or `onnx`, when known.
    pub fn format(&self) -> Option<&'static str> {
        match self.view() {
            View::Pkg(p) => Some(match p.manifest().format {
                ModelFormat::KilnNative => "kiln-native",
                ModelFormat::Onnx => "onnx",
            }),
            View::Broken(_) => None,
            View::Mlflow(_) => Some("onnx"),
        }
    }

    /// Loads the model: a native model through [`NativePredictor`], ONNX through
    /// `kiln_onnx`. Package files are checked against the manifest again as they are read.
    pub fn predictor(&self) -> Result<Box<dyn Predictor>, ReleaseError> {
        match self.view() {
            View::Broken(e) => Err(ReleaseError::Package(e.to_string())),
            View::Pkg(p) => match p.manifest().format {
                ModelFormat::KilnNative => {
                    let model = p.native_model().map_err(load_err)?;
                    Ok(Box::new(NativePredictor::new(model).map_err(load_err)?))
                }
                ModelFormat::Onnx => {
                    let bytes = p
                        .read_file(&p.manifest().model_file)
                        .map_err(|e| ReleaseError::Package(e.to_string()))?;
                    kiln_onnx::load(&bytes).map_err(load_err)
                }
            },
            View::Mlflow(model_file) => {
                let path = self.dir.join(model_file);
                let bytes = std::fs::read(&path).map_err(|source| ReleaseError::Io {
                    path: model_file.to_string(),
                    source,
                })?;
                kiln_onnx::load(&bytes)
                    .map_err(|e| ReleaseError::Load(format!("{model_file}: {e}")))
            }
        }
    }

    /// The model's tensor inputs: the manifest's for a package, the loaded model's otherwise.
    pub fn inputs(&self) -> Result<Vec<TensorSpec>, ReleaseError> {
        match self.view() {
            View::Pkg(p) => Ok(p.manifest().inputs.clone()),
            _ => Ok(self.predictor()?.inputs().to_vec()),
        }
    }

    /// The model's tensor outputs, like [`inputs`](Self::inputs).
    pub fn outputs(&self) -> Result<Vec<TensorSpec>, ReleaseError> {
        match self.view() {
            View::Pkg(p) => Ok(p.manifest().outputs.clone()),
            _ => Ok(self.predictor()?.outputs().to_vec()),
        }
    }

    /// The raw columns the package's feature transform takes; empty when there are none
    /// (no transform, or an MLflow model).
    pub fn raw_inputs(&self) -> &[Column] {
        match self.view() {
            View::Pkg(p) => &p.manifest().raw_inputs,
            _ => &[],
        }
    }
}

fn load_err(e: impl std::fmt::Display) -> ReleaseError {
    ReleaseError::Load(e.to_string())
}

/// The artifact-store path of an `mlflow-artifacts:` URI (`mlflow-artifacts:/1/x`,
/// `mlflow-artifacts:///1/x` or `mlflow-artifacts://host:port/1/x` → `1/x`).
pub fn artifact_path_of(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        // `//host/path` or `///path`
        Some(after) => after.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    Some(path.trim_matches('/').to_string())
}

/// Downloads version `mv`'s files and recognises them (see the module docs).
pub async fn fetch_version(
    store: &Store,
    artifacts: &ArtifactStore,
    mv: &ModelVersion,
) -> Result<Fetched, ReleaseError> {
    let unsupported = |detail: String| ReleaseError::UnsupportedSource {
        model: mv.name.clone(),
        version: mv.version.clone(),
        uri: mv.source.clone(),
        detail,
    };
    let location = store
        .get_model_version_download_uri(&mv.name, &mv.version)
        .await?;
    let Some(root) = artifact_path_of(&location) else {
        return Err(unsupported(if location == mv.source {
            String::new()
        } else {
            format!(" (its files are at {location}, outside this artifact store)")
        }));
    };
    let tmp = tempfile::tempdir().map_err(|source| ReleaseError::Io {
        path: "(temporary folder)".into(),
        source,
    })?;
    let dir = tmp.path().join("model");
    let n = download(artifacts, &root, &dir).await?;
    if n == 0 {
        return Err(ReleaseError::NoFiles {
            model: mv.name.clone(),
            version: mv.version.clone(),
            location,
        });
    }
    let content = if dir.join(MANIFEST_FILE).is_file() {
        let d = dir.clone();
        let opened = tokio::task::spawn_blocking(move || Package::open(&d))
            .await
            .map_err(|e| ReleaseError::Package(format!("the package check stopped: {e}")))?;
        Content::Package(Box::new(opened))
    } else if dir.join(MLMODEL_FILE).is_file() {
        let text = tokio::fs::read_to_string(dir.join(MLMODEL_FILE))
            .await
            .map_err(|source| ReleaseError::Io {
                path: MLMODEL_FILE.into(),
                source,
            })?;
        let model_file = onnx_model_file(&text, &dir).ok_or_else(|| {
            unsupported(
                " (its MLmodel has no onnx flavor and there is no single .onnx file)".into(),
            )
        })?;
        Content::MlflowOnnx { model_file }
    } else {
        return Err(unsupported(format!(
            " (no {MANIFEST_FILE} or {MLMODEL_FILE} under {location})"
        )));
    };
    Ok(Fetched {
        _tmp: tmp,
        dir,
        location,
        content,
    })
}

/// Copies every file under artifact path `root` into `dir`; returns how many.
async fn download(
    artifacts: &ArtifactStore,
    root: &str,
    dir: &Path,
) -> Result<usize, ReleaseError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ReleaseError::Io { path, source }
    };
    let mut stack = vec![root.to_string()];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        for f in artifacts.list(&d).await? {
            if f.is_dir {
                stack.push(f.path);
                continue;
            }
            let rel = f.path.strip_prefix(&format!("{root}/")).unwrap_or(&f.path);
            if rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(ReleaseError::Invalid(format!(
                    "artifact `{}` has an unsafe path",
                    f.path
                )));
            }
            let local = dir.join(rel);
            if let Some(p) = local.parent() {
                tokio::fs::create_dir_all(p).await.map_err(io(p))?;
            }
            let (_, mut s) = artifacts.get_stream(&f.path).await?;
            let mut bytes = vec![];
            while let Some(c) = s.next().await {
                bytes.extend_from_slice(&c?);
            }
            tokio::fs::write(&local, bytes).await.map_err(io(&local))?;
            n += 1;
        }
    }
    Ok(n)
}

/// The ONNX file of an MLflow model: `onnx_model: <file>` under `flavors:` → `onnx:`, else
/// the only `*.onnx` file at the top of `dir`.
pub fn onnx_model_file(mlmodel: &str, dir: &Path) -> Option<String> {
    if let Some(f) = flavor_onnx_model(mlmodel) {
        let safe = !f.is_empty() && !f.split('/').any(|c| c.is_empty() || c == "." || c == "..");
        return (safe && dir.join(&f).is_file()).then_some(f);
    }
    let mut onnx: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(".onnx"))
        .collect();
    (onnx.len() == 1).then(|| onnx.remove(0))
}

/// Reads `flavors: onnx: onnx_model: X` from MLmodel YAML by indentation.
fn flavor_onnx_model(yaml: &str) -> Option<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut in_flavors = None::<usize>;
    let mut in_onnx = None::<usize>;
    for line in yaml.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = indent(line);
        if let Some(o) = in_onnx {
            if ind <= o {
                in_onnx = None;
            } else if let Some(v) = t.strip_prefix("onnx_model:") {
                return Some(v.trim().trim_matches(['"', '\'']).to_string());
            }
        }
        if let Some(f) = in_flavors {
            if ind <= f {
                in_flavors = None;
            } else if t == "onnx:" {
                in_onnx = Some(ind);
            }
        }
        if t == "flavors:" {
            in_flavors = Some(ind);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_onnx_flavor() {
        let y = "artifact_path: model\nflavors:\n  onnx:\n    code: null\n    onnx_model: model.onnx\n    providers: []\n  python_function:\n    data: other.onnx\nmodel_id: m-1\n";
        assert_eq!(flavor_onnx_model(y).as_deref(), Some("model.onnx"));
        let y = "flavors:\n  python_function:\n    onnx_model: nope.onnx\n";
        assert_eq!(flavor_onnx_model(y), None);
    }

    #[test]
    fn artifact_paths() {
        assert_eq!(
            artifact_path_of("mlflow-artifacts:/1/a/b/").unwrap(),
            "1/a/b"
        );
        assert_eq!(artifact_path_of("mlflow-artifacts:///1/a").unwrap(), "1/a");
        assert_eq!(
            artifact_path_of("mlflow-artifacts://h:5000/1/a").unwrap(),
            "1/a"
        );
        assert_eq!(artifact_path_of("s3://b/x"), None);
    }
}
