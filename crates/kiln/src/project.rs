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
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
    /// Values interpolated from the environment (`${NAME}`): (name, value).
    pub secrets: Vec<(String, String)>,
}

impl Project {
    pub fn load(path: &Path) -> anyhow::Result<Project> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the project file {} (give another with --config or KILN_CONFIG)",
                path.display()
            )
        })?;
        let (file, secrets) = parse_with_env(&text, &|name| std::env::var(name).ok())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Project {
            path: path.to_path_buf(),
            dir,
            file,
            secrets,
        })
    }

    /// `v` with every value taken from the environment put back as `${NAME}`, for anything
    /// that is logged, printed or stored (plans, apply records, timeline events).
    pub fn redact(&self, v: serde_json::Value) -> serde_json::Value {
        redact(v, &self.secrets)
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

/// Parses the project file strictly (errors name the line and column), then replaces
/// `${NAME}` in every string with the variable `NAME` from `env` (`$${` is a literal `${`).
/// Returns the file and the values interpolated, which [`redact`] puts back as `${NAME}`.
/// A variable that is not set is an error naming it, its line and the key.
pub fn parse_with_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(KilnToml, Vec<(String, String)>), String> {
    let file = parse(text).map_err(|e| e.to_string())?;
    if !text.contains("${") {
        return Ok((file, vec![]));
    }
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut secrets: Vec<(String, String)> = vec![];
    let mut value = toml::Value::Table(table);
    interpolate(&mut value, "", text, env, &mut secrets)?;
    let file: KilnToml = value
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    secrets.sort();
    secrets.dedup();
    Ok((file, secrets))
}

fn interpolate(
    v: &mut toml::Value,
    key: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Vec<(String, String)>,
) -> Result<(), String> {
    match v {
        toml::Value::String(s) if s.contains('$') => {
            *s = expand(s, key, text, env, secrets)?;
        }
        toml::Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                interpolate(x, &format!("{key}[{i}]"), text, env, secrets)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, x) in t.iter_mut() {
                let path = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                interpolate(x, &path, text, env, secrets)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(
    s: &str,
    key: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Vec<(String, String)>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(lit) = after.strip_prefix("${") {
            out.push_str("${");
            rest = lit;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = inner.find('}') else {
            return Err(format!(
                "{key}: `${{` without a closing `}}` in {s:?} (write `$${{` for a literal `${{`)"
            ));
        };
        let name = &inner[..end];
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "{key}: `${{{name}}}` is not a variable name (letters, digits and _)"
            ));
        }
        let line = text
            .find(&format!("${{{name}}}"))
            .map(|at| text[..at].matches('\n').count() + 1);
        let Some(value) = env(name) else {
            return Err(format!(
                "{}{key}: the environment variable {name} is not set",
                line.map_or(String::new(), |l| format!("line {l}: "))
            ));
        };
        if !value.is_empty() {
            secrets.push((name.to_string(), value.clone()));
        }
        out.push_str(&value);
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `v` with each secret value replaced by `${NAME}` wherever it appears in a string.
pub fn redact(v: serde_json::Value, secrets: &[(String, String)]) -> serde_json::Value {
    use serde_json::Value;
    if secrets.is_empty() {
        return v;
    }
    match v {
        Value::String(mut s) => {
            // Longest first, so a value containing another is replaced whole.
            let mut by_len: Vec<&(String, String)> = secrets.iter().collect();
            by_len.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
            for (name, value) in by_len {
                if s.contains(value.as_str()) {
                    s = s.replace(value.as_str(), &format!("${{{name}}}"));
                }
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| redact(x, secrets)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, x)| (k, redact(x, secrets)))
                .collect(),
        ),
        other => other,
    }
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
    fn environment_variables_are_interpolated_and_redacted() {
        let text = "[monitor.d]\nreceivers = [{ name = \"hook\", url = \"https://hooks.example/${HOOK_TOKEN}/x\" }]\n\n[data.a]\nsource = \"$${literal}/${DIR}/a.csv\"\n";
        let env = |n: &str| match n {
            "HOOK_TOKEN" => Some("s3cr3t-t0ken".to_string()),
            "DIR" => Some("data".to_string()),
            _ => None,
        };
        let (file, secrets) = parse_with_env(text, &env).unwrap();
        assert_eq!(file.data["a"].source, "${literal}/data/a.csv");
        let url = &file.monitor["d"].receivers[0];
        let shown = serde_json::to_value(url).unwrap();
        assert!(shown.to_string().contains("s3cr3t-t0ken"), "{shown}");
        // Whatever is shown or stored gets the placeholder back.
        let red = redact(shown, &secrets);
        assert!(!red.to_string().contains("s3cr3t"), "{red}");
        assert!(red.to_string().contains("${HOOK_TOKEN}"), "{red}");
        // A variable that is not set names itself, the line and the key.
        let e = parse_with_env(
            "[data.a]\nsource = \"x\"\n\n[data.b]\nsource = \"${NOPE}.csv\"\n",
            &env,
        )
        .unwrap_err();
        assert!(e.contains("NOPE"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("data.b.source"), "{e}");
        let e = parse_with_env("[data.a]\nsource = \"${1X}\"\n", &env).unwrap_err();
        assert!(e.contains("not a variable name"), "{e}");
        // Strict parsing still comes first, with its line and column.
        let e = parse_with_env("[data.a]\nsource = \"${DIR}\"\nsorce = 1\n", &env).unwrap_err();
        assert!(e.contains("line 3") && e.contains("sorce"), "{e}");
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
