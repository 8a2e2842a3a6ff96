//! Runs recorded straight into the store (the same rows the MLflow API serves): experiment,
//! run, params, metric history, tags, dataset inputs and artifacts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use kiln_core::entities::{DatasetInput, KeyValue};
use kiln_store::{ArtifactStore, BatchInput, MetricInput, RunCreate, RunUpdate, Store, now_ms};

use super::super::data::Ctx;

/// MLflow's tag that makes a run the child of another.
pub const PARENT_TAG: &str = "mlflow.parentRunId";

/// One run being recorded.
#[derive(Debug, Clone)]
pub struct RunRef {
    pub run_id: String,
    pub experiment_id: String,
    /// The run's artifact root inside the artifact store (e.g. `1/<run>/artifacts`), or None
    /// when the experiment keeps artifacts elsewhere.
    pub artifact_dir: Option<String>,
    pub artifact_uri: String,
}

pub struct Tracker<'a> {
    pub ctx: &'a Ctx,
    pub store: &'a Store,
    pub artifacts: ArtifactStore,
    /// Metrics waiting to be written in one batch.
    pending: BTreeMap<String, Vec<MetricInput>>,
}

impl<'a> Tracker<'a> {
    pub fn new(ctx: &'a Ctx) -> anyhow::Result<Tracker<'a>> {
        let store = ctx.store()?;
        let artifacts = ctx.artifacts()?;
        Ok(Tracker {
            ctx,
            store,
            artifacts,
            pending: BTreeMap::new(),
        })
    }

    /// The id of experiment `name`, created if missing.
    pub fn experiment(&self, name: &str) -> anyhow::Result<String> {
        let rt = &self.ctx.rt;
        match rt.block_on(self.store.get_experiment_by_name(name)) {
            Ok(e) => Ok(e.experiment_id),
            Err(_) => Ok(rt
                .block_on(self.store.create_experiment(name.to_string(), None, vec![]))
                .with_context(|| format!("cannot create experiment `{name}`"))?),
        }
    }

    pub fn start(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: Vec<(String, String)>,
    ) -> anyhow::Result<RunRef> {
        let run = self.ctx.rt.block_on(
            self.store.create_run(RunCreate {
                experiment_id: experiment_id.to_string(),
                user_id: super::resources::user(),
                run_name: Some(run_name.to_string()),
                start_time: Some(now_ms()),
                tags: tags
                    .into_iter()
                    .map(|(key, value)| KeyValue { key, value })
                    .collect(),
            }),
        )?;
        let uri = run.info.artifact_uri.clone();
        Ok(RunRef {
            run_id: run.info.run_id,
            experiment_id: experiment_id.to_string(),
            artifact_dir: uri
                .strip_prefix("mlflow-artifacts:")
                .map(|r| r.trim_matches('/').to_string()),
            artifact_uri: uri,
        })
    }

    pub fn params(&self, run: &RunRef, params: &BTreeMap<String, String>) -> anyhow::Result<()> {
        let batch = BatchInput {
            params: key_values(params.iter()),
            ..Default::default()
        };
        Ok(self
            .ctx
            .rt
            .block_on(self.store.log_batch(&run.run_id, batch))?)
    }

    pub fn tags(&self, run: &RunRef, tags: &[(String, String)]) -> anyhow::Result<()> {
        let batch = BatchInput {
            tags: key_values(tags.iter().map(|(k, v)| (k, v))),
            ..Default::default()
        };
        Ok(self
            .ctx
            .rt
            .block_on(self.store.log_batch(&run.run_id, batch))?)
    }

    /// Queues a metric value; written by [`Tracker::flush`] (or now, if many are waiting).
    pub fn metric(&mut self, run: &RunRef, key: &str, value: f64, step: i64) -> anyhow::Result<()> {
        if !value.is_finite() {
            // MLflow stores NaN, but a metric that could not be computed is better absent.
            return Ok(());
        }
        let q = self.pending.entry(run.run_id.clone()).or_default();
        q.push(MetricInput {
            key: key.to_string(),
            value,
            timestamp: now_ms(),
            step,
        });
        if q.len() >= 500 {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        for (run_id, metrics) in std::mem::take(&mut self.pending) {
            for chunk in metrics.chunks(1000) {
                let batch = BatchInput {
                    metrics: chunk.to_vec(),
                    ..Default::default()
                };
                self.ctx.rt.block_on(self.store.log_batch(&run_id, batch))?;
            }
        }
        Ok(())
    }

    pub fn inputs(&self, run: &RunRef, datasets: Vec<DatasetInput>) -> anyhow::Result<()> {
        Ok(self
            .ctx
            .rt
            .block_on(self.store.log_inputs(&run.run_id, datasets, vec![]))?)
    }

    fn artifact_path(&self, run: &RunRef, path: &str) -> anyhow::Result<String> {
        let dir = run.artifact_dir.as_deref().with_context(|| {
            format!(
                "run {} keeps artifacts at {}, which Kiln does not write to",
                run.run_id, run.artifact_uri
            )
        })?;
        Ok(format!("{dir}/{}", path.trim_start_matches('/')))
    }

    pub fn artifact_bytes(&self, run: &RunRef, path: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let full = self.artifact_path(run, path)?;
        let body =
            futures::stream::once(
                async move { Ok::<_, std::io::Error>(bytes::Bytes::from(bytes)) },
            );
        self.ctx
            .rt
            .block_on(self.artifacts.put_stream(&full, body))
            .with_context(|| format!("cannot store artifact {path}"))?;
        Ok(())
    }

    /// Copies every file under `local` to the run's artifacts under `dest`.
    pub fn artifact_dir(&self, run: &RunRef, dest: &str, local: &Path) -> anyhow::Result<()> {
        for entry in walk(local)? {
            let rel = entry
                .strip_prefix(local)
                .expect("walked path under its root")
                .to_string_lossy()
                .replace('\\', "/");
            let bytes = std::fs::read(&entry)
                .with_context(|| format!("cannot read {}", entry.display()))?;
            let path = if dest.is_empty() {
                rel
            } else {
                format!("{}/{rel}", dest.trim_end_matches('/'))
            };
            self.artifact_bytes(run, &path, bytes)?;
        }
        Ok(())
    }

    /// Ends the run with `status` (FINISHED, FAILED, KILLED).
    pub fn end(&mut self, run: &RunRef, status: &str) -> anyhow::Result<()> {
        self.flush()?;
        self.ctx.rt.block_on(self.store.update_run(
            &run.run_id,
            RunUpdate {
                status: Some(status.to_string()),
                end_time: Some(now_ms()),
                run_name: None,
            },
        ))?;
        Ok(())
    }
}

/// Every file under `dir`, sorted (so uploads happen in a stable order).
pub fn walk(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn key_values<'a>(pairs: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<KeyValue> {
    pairs
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}
