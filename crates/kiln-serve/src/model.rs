//! A loaded model version: its predictor, signature, optional feature transform (to encode
//! raw rows the way training did), and its batching queue.

use std::path::Path;
use std::sync::Arc;

use kiln_ml::{Package, Predictor, Tensor, TensorData, TensorSpec};
use kiln_transform::{Column, CompiledSpec};
use thiserror::Error;

use crate::batch::{BatchConfig, Batcher};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{path}: {message}")]
    Load { path: String, message: String },
}

fn load_err(path: &Path, message: impl std::fmt::Display) -> LoadError {
    LoadError::Load {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// One servable version.
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    /// `kiln-native` or `onnx`.
    pub platform: &'static str,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The feature transform of a Kiln package: raw rows (named columns) → the model's
    /// single input tensor.
    pub transform: Option<CompiledSpec>,
    /// The package digest, when loaded from a package.
    pub digest: Option<String>,
    /// How its queue batches (reported by Triton's `/config`).
    pub batch: BatchConfig,
    pub batcher: Batcher,
    /// A package's training profile (the raw input columns over its training split): the
    /// reference the monitor measures drift against.
    pub training_profile: Option<Arc<serde_json::Value>>,
    /// A native classifier's class names, in class order (labels may arrive by name).
    pub class_labels: Vec<String>,
}

impl ModelVersion {
    /// Loads a Kiln package folder (`manifest.json`) or an `.onnx` file.
    pub fn load(
        name: &str,
        version: &str,
        path: &Path,
        batch: BatchConfig,
    ) -> Result<ModelVersion, LoadError> {
        let mut training_profile = None;
        let mut class_labels = vec![];
        let (predictor, platform, transform, digest): (
            Box<dyn Predictor>,
            &'static str,
            Option<CompiledSpec>,
            Option<String>,
        ) = if path.is_dir() {
            let pkg = Package::open(path).map_err(|e| load_err(path, e))?;
            let m = pkg.manifest();
            training_profile = m.training_profile.clone().map(Arc::new);
            let (predictor, platform): (Box<dyn Predictor>, _) = match m.format {
                kiln_ml::ModelFormat::KilnNative => {
                    let model = pkg.native_model().map_err(|e| load_err(path, e))?;
                    class_labels = model.class_labels.clone();
                    (
                        Box::new(
                            kiln_ml::NativePredictor::new(model).map_err(|e| load_err(path, e))?,
                        ),
                        "kiln-native",
                    )
                }
                kiln_ml::ModelFormat::Onnx => {
                    let bytes = pkg
                        .read_file(&m.model_file)
                        .map_err(|e| load_err(path, e))?;
                    (
                        kiln_onnx::load(&bytes).map_err(|e| load_err(path, e))?,
                        "onnx",
                    )
                }
            };
            let transform = match &m.transform {
                Some(spec) => Some(spec.compile().map_err(|e| load_err(path, e))?),
                None => None,
            };
            (
                predictor,
                platform,
                transform,
                Some(pkg.digest().to_string()),
            )
        } else {
            let bytes = std::fs::read(path).map_err(|e| load_err(path, e))?;
            (
                kiln_onnx::load(&bytes).map_err(|e| load_err(path, e))?,
                "onnx",
                None,
                None,
            )
        };
        let inputs = predictor.inputs().to_vec();
        let outputs = predictor.outputs().to_vec();
        if transform.is_some() && inputs.len() != 1 {
            return Err(load_err(
                path,
                "a package with a feature transform must have exactly one model input",
            ));
        }
        let predictor: Arc<dyn Predictor> = Arc::from(predictor);
        let batcher = Batcher::start(name, predictor, batch);
        Ok(ModelVersion {
            name: name.to_string(),
            version: version.to_string(),
            platform,
            inputs,
            outputs,
            transform,
            digest,
            batch,
            batcher,
            training_profile,
            class_labels,
        })
    }

    /// The raw columns the transform takes (empty without one).
    pub fn raw_inputs(&self) -> &[Column] {
        self.transform.as_ref().map_or(&[], |t| t.inputs())
    }

    /// Encodes raw rows (values in [`raw_inputs`](Self::raw_inputs) order) into the model's
    /// input tensor; an error names the row.
    pub fn encode_rows(&self, rows: &[Vec<kiln_transform::Value>]) -> Result<Tensor, String> {
        let Some(t) = &self.transform else {
            return Err("this model takes tensors, not named columns".into());
        };
        let cols = t.inputs();
        let width = t.outputs().len();
        let mut data = Vec::with_capacity(rows.len() * width);
        for (i, row) in rows.iter().enumerate() {
            let get = |name: &str| {
                cols.iter()
                    .position(|c| c.name == name)
                    .and_then(|p| row.get(p).cloned())
            };
            let out = t.apply_row(&get).map_err(|e| format!("row {i}: {e}"))?;
            data.extend(out);
        }
        let spec = &self.inputs[0];
        let tensor_data = match spec.datatype {
            kiln_ml::ElemType::Fp64 => TensorData::Fp64(data),
            _ => TensorData::Fp32(data.into_iter().map(|x| x as f32).collect()),
        };
        Tensor::new(spec.name.clone(), vec![rows.len(), width], tensor_data)
            .map_err(|e| e.to_string())
    }
}
