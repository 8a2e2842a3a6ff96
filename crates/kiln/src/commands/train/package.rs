//! The package of a trained model: written, signed when a key is given, verified by reading
//! it back, stored as the run's `package/` artifacts, and registered as a model version
//! whose source is that folder.

use std::collections::BTreeMap;

use anyhow::Context;
use kiln_core::entities::KeyValue;
use kiln_ml::package::{DatasetRef, Lineage, PrivateKey, sign_package};
use kiln_ml::{Manifest, ModelFormat, NativePredictor, Package, PackageBuilder, Predictor};
use kiln_store::CreateModelVersion;

use super::super::data::Ctx;
use super::super::features::Built;
use super::command::FoundModel;
use super::tracking::{RunRef, Tracker};
use super::{Data, TrainArgs, TrainConfig, Trial, resources};

/// Where the package is and what it became.
pub struct Pkg {
    pub digest: String,
    pub uri: String,
    /// (registered model, version).
    pub registered: Option<(String, String)>,
}

/// The tag holding a package's digest on runs and model versions.
pub const DIGEST_TAG: &str = "kiln.package_digest";

fn lineage(ctx: &Ctx, run: &RunRef, built: Option<&Built>) -> Lineage {
    let code = resources::code_version(&ctx.project.dir);
    let mut datasets = vec![];
    if let Some(b) = built {
        for (name, digest) in &b.inputs {
            datasets.push(DatasetRef {
                name: name.clone(),
                digest: digest.clone(),
                role: "source".into(),
            });
        }
        datasets.push(DatasetRef {
            name: format!("features.{}", b.summary.name),
            digest: b.table_digest.clone(),
            role: "features".into(),
        });
    }
    Lineage {
        run_id: Some(run.run_id.clone()),
        experiment_id: Some(run.experiment_id.clone()),
        datasets,
        code_commit: code.commit,
        code_dirty: Some(code.dirty),
    }
}

/// Fills in the feature transform and the training profile of a build.
fn with_features(m: &mut Manifest, built: &Built) -> anyhow::Result<()> {
    let spec: kiln_transform::TransformSpec = serde_json::from_slice(
        &std::fs::read(built.dir.join("spec.json")).context("cannot read the transform spec")?,
    )
    .context("cannot parse the transform spec")?;
    m.raw_inputs = spec.inputs.clone();
    m.transform = Some(spec);
    let profile = built.dir.join(kiln_data::features::PROFILE_FILE);
    m.training_profile = Some(
        serde_json::from_slice(&std::fs::read(&profile).context("cannot read the profile")?)
            .context("cannot parse the training profile")?,
    );
    Ok(())
}

fn model_name(args: &TrainArgs, cfg: &TrainConfig) -> String {
    cfg.register.clone().unwrap_or_else(|| args.name.clone())
}

pub fn native(
    ctx: &Ctx,
    tracker: &mut Tracker<'_>,
    args: &TrainArgs,
    cfg: &TrainConfig,
    built: &Built,
    data: &Data,
    best: &Trial,
) -> anyhow::Result<Pkg> {
    let mut model = best.fitted.model.clone();
    model.class_labels = data.class_labels.clone();
    let predictor = NativePredictor::new(model.clone())?;
    let mut m = Manifest::new(model_name(args, cfg), ModelFormat::KilnNative, "model.json");
    m.task = Some(data.task);
    m.inputs = predictor.inputs().to_vec();
    m.outputs = predictor.outputs().to_vec();
    with_features(&mut m, built)?;
    m.metrics = best.metrics.clone();
    m.params = best.params.clone();
    m.params
        .insert("algorithm".into(), serde_json::json!(model.algorithm));
    m.lineage = lineage(ctx, &best.run, Some(built));
    let bytes = serde_json::to_vec(&model)?;
    finish(
        ctx,
        tracker,
        args,
        cfg,
        &best.run,
        m,
        vec![("model.json".into(), bytes)],
    )
}

pub fn onnx(
    ctx: &Ctx,
    tracker: &mut Tracker<'_>,
    args: &TrainArgs,
    cfg: &TrainConfig,
    built: Option<&Built>,
    run: &RunRef,
    found: &FoundModel,
) -> anyhow::Result<Pkg> {
    let predictor = kiln_onnx::load(&found.onnx)
        .with_context(|| format!("the model from {} does not load", found.origin))?;
    let mut m = Manifest::new(model_name(args, cfg), ModelFormat::Onnx, "model.onnx");
    m.inputs = predictor.inputs().to_vec();
    m.outputs = predictor.outputs().to_vec();
    if let Some(b) = built {
        with_features(&mut m, b)?;
    }
    let logged = ctx.rt.block_on(tracker.store.get_run(&run.run_id))?;
    m.metrics = logged
        .data
        .metrics
        .iter()
        .filter(|x| x.value.is_finite())
        .map(|x| (x.key.clone(), x.value))
        .collect();
    m.params = logged
        .data
        .params
        .iter()
        .map(|p| (p.key.clone(), serde_json::json!(p.value)))
        .collect();
    m.lineage = lineage(ctx, run, built);
    finish(
        ctx,
        tracker,
        args,
        cfg,
        run,
        m,
        vec![("model.onnx".into(), found.onnx.clone())],
    )
}

fn finish(
    ctx: &Ctx,
    tracker: &mut Tracker<'_>,
    args: &TrainArgs,
    cfg: &TrainConfig,
    run: &RunRef,
    mut manifest: Manifest,
    files: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<Pkg> {
    manifest.created_at = kiln_ml::package::now_rfc3339();
    manifest.kiln_version = env!("CARGO_PKG_VERSION").to_string();
    let mut builder = PackageBuilder::new(manifest);
    for (path, bytes) in files {
        builder = builder.file(path, bytes);
    }
    let staging = ctx.args.data_dir.join("packages");
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let pkg = builder
        .write_into(&staging)
        .context("cannot write the model package")?;
    if let Some(key_path) = &args.sign_key {
        let key = PrivateKey::load(key_path)
            .with_context(|| format!("cannot load the signing key {}", key_path.display()))?;
        sign_package(pkg.dir(), &key).context("cannot sign the package")?;
        eprintln!("  signed with key {}", key.key_id());
    }
    // Read back: what is stored is exactly what was checked.
    let pkg = Package::open(pkg.dir()).context("the package just written does not verify")?;
    tracker.artifact_dir(run, "package", pkg.dir())?;
    let digest = pkg.digest().to_string();
    tracker.tags(run, &[(DIGEST_TAG.into(), digest.clone())])?;
    let uri = format!("{}/package", run.artifact_uri.trim_end_matches('/'));
    let registered = match (&cfg.register, args.no_register) {
        (Some(name), false) => Some(register(ctx, tracker, name, run, &uri, &pkg, cfg)?),
        _ => None,
    };
    Ok(Pkg {
        digest,
        uri,
        registered,
    })
}

fn register(
    ctx: &Ctx,
    tracker: &Tracker<'_>,
    name: &str,
    run: &RunRef,
    uri: &str,
    pkg: &Package,
    cfg: &TrainConfig,
) -> anyhow::Result<(String, String)> {
    let store = tracker.store;
    if ctx.rt.block_on(store.get_registered_model(name)).is_err() {
        ctx.rt
            .block_on(store.create_registered_model(
                name.to_string(),
                vec![],
                cfg.description.clone(),
            ))
            .with_context(|| format!("cannot create registered model `{name}`"))?;
    }
    let m = pkg.manifest();
    let format = match m.format {
        ModelFormat::KilnNative => "kiln-native",
        ModelFormat::Onnx => "onnx",
    };
    let mut tags = vec![
        KeyValue {
            key: DIGEST_TAG.into(),
            value: pkg.digest().to_string(),
        },
        KeyValue {
            key: "kiln.format".into(),
            value: format.into(),
        },
    ];
    for d in &m.lineage.datasets {
        tags.push(KeyValue {
            key: format!("kiln.dataset.{}", d.name),
            value: d.digest.clone(),
        });
    }
    let summary: BTreeMap<&str, String> = m
        .metrics
        .iter()
        .filter(|(k, _)| k.starts_with("test_") && !k.contains('.'))
        .map(|(k, v)| (k.as_str(), format!("{v:.4}")))
        .collect();
    let v = ctx
        .rt
        .block_on(store.create_model_version(CreateModelVersion {
            name: name.to_string(),
            source: uri.to_string(),
            run_id: Some(run.run_id.clone()),
            tags,
            run_link: None,
            description: Some(format!(
                "{} package {}; {}",
                format,
                &pkg.digest()[..12],
                summary
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            model_id: None,
        }))
        .with_context(|| format!("cannot register a version of `{name}`"))?;
    Ok((name.to_string(), v.version))
}
