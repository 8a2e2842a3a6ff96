//! `kiln.toml`: the project file. Parsed strictly (unknown sections and fields are errors
//! naming their line and column), with paths resolved against the file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kiln_data::config::{DatasetConfig, FeatureConfig};
use serde::Deserialize;

/// `[project]`: parsed (and so checked) now; read by the commands that report on the whole
/// project.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ProjectSection {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KilnToml {
    #[serde(default)]
    #[allow(dead_code)]
    pub project: ProjectSection,
    #[serde(default)]
    pub data: BTreeMap<String, DatasetConfig>,
    #[serde(default)]
    pub features: BTreeMap<String, FeatureConfig>,
    #[serde(default)]
    pub train: BTreeMap<String, TrainConfig>,
    #[serde(default)]
    pub costs: Costs,
    #[serde(default)]
    pub release: BTreeMap<String, ReleaseConfig>,
    /// `[deploy.NAME]`: SLOs and canary policy of a served name (read by `kiln serve --monitor`).
    #[serde(default)]
    pub deploy: BTreeMap<String, kiln_monitor::config::DeployConfig>,
    /// `[monitor.NAME]`: alert rules, receivers, drift settings.
    #[serde(default)]
    pub monitor: BTreeMap<String, kiln_monitor::config::MonitorConfig>,
}

/// `[release.MODEL]`: the release policy of a registered model (the server enforces it once
/// `kiln release policy --apply` has sent it), plus what its model card says about it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseConfig {
    /// What the model is for (the model card's first section).
    #[serde(default)]
    pub purpose: Option<String>,
    /// Known limitations, one sentence each (the model card lists them).
    #[serde(default)]
    pub limitations: Vec<String>,
    /// Public key files (relative to the project) a package may be signed with.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Protected aliases and their gates.
    #[serde(default)]
    pub aliases: BTreeMap<String, kiln_core::release::AliasGates>,
}

/// `[costs]`: prices used for the cost estimate of every run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Costs {
    /// Price of one CPU core for one hour.
    #[serde(default = "Costs::default_core_hour")]
    pub core_hour: f64,
    /// Price of one GB of memory (peak resident) for one hour.
    #[serde(default = "Costs::default_gb_hour")]
    pub gb_hour: f64,
    #[serde(default = "Costs::default_currency")]
    pub currency: String,
}

impl Costs {
    // On-demand general-purpose cloud prices, late 2026 (per vCPU-hour and GB-hour).
    fn default_core_hour() -> f64 {
        0.0425
    }
    fn default_gb_hour() -> f64 {
        0.0057
    }
    fn default_currency() -> String {
        "USD".into()
    }
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            core_hour: Costs::default_core_hour(),
            gb_hour: Costs::default_gb_hour(),
            currency: Costs::default_currency(),
        }
    }
}

/// `[train.NAME]`: a native trainer on a feature set, or an external command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub description: Option<String>,
    /// The feature set (`[features.NAME]`) to train on. Required for native trainers; given to
    /// commands as `KILN_FEATURES_DIR`.
    #[serde(default)]
    pub features: Option<String>,
    /// `gbdt`, `linear` or `logistic` (native trainers).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// `binary`, `multiclass` or `regression`; default from the label's type.
    #[serde(default)]
    pub task: Option<String>,
    /// The trainer's parameters.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub search: Option<toml::Value>,
    /// The MLflow experiment of the runs (default: the training name).
    #[serde(default)]
    pub experiment: Option<String>,
    /// Register the model under this name (a new version per run).
    #[serde(default)]
    pub register: Option<String>,
    /// Kept columns of the feature set to report metrics per value of (e.g. `carrier`).
    #[serde(default)]
    pub segments: Vec<String>,
    /// An external training command, run by `sh -c` in the project directory.
    #[serde(default)]
    pub command: Option<String>,
    /// How long the command may run, e.g. `"10m"` (default 1h).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Where the command writes its ONNX model, relative to `KILN_OUTPUT_DIR` (default
    /// `model.onnx`; an MLflow model with an `onnx` flavour logged to the run also counts).
    #[serde(default)]
    pub model: Option<String>,
    /// Extra environment for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A parsed project file and where it lives.
#[derive(Debug, Clone)]
pub struct Project {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub file: KilnToml,
}

impl Project {
    pub fn load(path: &Path) -> anyhow::Result<Project> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the project file {} (give another with --config or KILN_CONFIG)",
                path.display()
            )
        })?;
        let file = parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Project {
            path: path.to_path_buf(),
            dir,
            file,
        })
    }

    pub fn dataset(&self, name: &str) -> anyhow::Result<&DatasetConfig> {
        match self.file.data.get(name) {
            Some(d) => Ok(d),
            None => bail!(
                "{}: no dataset `{name}` (declared: {})",
                self.path.display(),
                list(self.file.data.keys())
            ),
        }
    }

    pub fn feature_set(&self, name: &str) -> anyhow::Result<&FeatureConfig> {
        match self.file.features.get(name) {
            Some(d) => Ok(d),
            None => bail!(
                "{}: no feature pipeline `{name}` (declared: {})",
                self.path.display(),
                list(self.file.features.keys())
            ),
        }
    }

    pub fn training(&self, name: &str) -> anyhow::Result<&TrainConfig> {
        match self.file.train.get(name) {
            Some(d) => Ok(d),
            None => bail!(
                "{}: no training `{name}` (declared: {})",
                self.path.display(),
                list(self.file.train.keys())
            ),
        }
    }

    /// A source as written in the project file: URLs stay, relative paths are taken from the
    /// file's directory.
    /// The release policy of `model` as the server stores it: key files read and checked.
    pub fn release_policy(&self, model: &str) -> anyhow::Result<kiln_core::release::ReleasePolicy> {
        let Some(cfg) = self.file.release.get(model) else {
            bail!(
                "{}: no [release.{model}] section (declared: {})",
                self.path.display(),
                list(self.file.release.keys())
            );
        };
        let mut trusted_keys = vec![];
        for path in &cfg.trusted_keys {
            let full = self.dir.join(path);
            let key = kiln_ml::package::PublicKey::load(&full).with_context(|| {
                format!(
                    "[release.{model}].trusted_keys: cannot load {}",
                    full.display()
                )
            })?;
            trusted_keys.push(key.to_text());
        }
        for (alias, g) in &cfg.aliases {
            if g.signed && trusted_keys.is_empty() {
                bail!("[release.{model}.aliases.{alias}]: signed = true needs trusted_keys");
            }
        }
        Ok(kiln_core::release::ReleasePolicy {
            model: model.to_string(),
            trusted_keys,
            aliases: cfg.aliases.clone(),
        })
    }

    pub fn resolve_source(&self, source: &str) -> String {
        if source.contains("://") || Path::new(source).is_absolute() {
            source.to_string()
        } else {
            self.dir.join(source).display().to_string()
        }
    }
}

fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Parses project text; errors carry TOML's line and column.
pub fn parse(text: &str) -> Result<KilnToml, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_name_line_and_column() {
        let e = parse("[data.a]\nsource = \"x.csv\"\nsorce = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("sorce"), "{e}");
        let e = parse(
            "[data.a]\nsource = \"x.csv\"\n[[data.a.expect]]\nrule = \"not_nul\"\ncolumn = \"c\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not_nul"), "{e}");
        assert!(e.contains("line 3") || e.contains("line 4"), "{e}");
        let e = parse("[data.a]\nsource = \"x.csv\"\n[[data.a.expect]]\nrule = \"between\"\ncolumn = \"c\"\nmostly = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mostly"), "{e}");
        let e = parse("[dat.a]\n").unwrap_err().to_string();
        assert!(e.contains("dat"), "{e}");
    }

    #[test]
    fn great_expectations_names_are_accepted() {
        let t = parse(
            "[data.a]\nsource = \"x.csv\"\n[[data.a.expect]]\nrule = \"expect_column_values_to_not_be_null\"\ncolumn = \"c\"\nmostly = 0.9\n",
        )
        .unwrap();
        let e = &t.data["a"].expect[0];
        assert_eq!(e.rule.kind(), "not_null");
        assert_eq!(e.mostly, Some(0.9));
    }
}
