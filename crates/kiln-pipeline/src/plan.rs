//! Plans: the difference between the declared resources and what was last applied.
//!
//! Every resource has a *key*: the digest of its kind, name, declared spec, external inputs
//! (e.g. a source file's content digest) and the keys of the resources it depends on. A
//! resource whose key equals the recorded one is unchanged; a change anywhere upstream
//! changes every key downstream, so the steps that must run again are exactly those whose
//! inputs differ, and a step that finished before a crash is not run again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The kinds of resource `kiln.toml` declares, in the order they are usually carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dataset,
    Features,
    Train,
    Release,
    Deploy,
    Monitor,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Dataset,
        Kind::Features,
        Kind::Train,
        Kind::Release,
        Kind::Deploy,
        Kind::Monitor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dataset => "dataset",
            Kind::Features => "features",
            Kind::Train => "train",
            Kind::Release => "release",
            Kind::Deploy => "deploy",
            Kind::Monitor => "monitor",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// `kind.name`, e.g. `train.delay`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceId {
    pub kind: Kind,
    pub name: String,
}

impl ResourceId {
    pub fn new(kind: Kind, name: impl Into<String>) -> ResourceId {
        ResourceId {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.name)
    }
}

/// A declared resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub id: ResourceId,
    /// The declared section, as JSON.
    pub spec: Value,
    /// Inputs from outside the file, by name: content digests of source files, for example.
    pub inputs: BTreeMap<String, String>,
    /// Resources whose outputs this one reads; they are carried out first.
    pub depends_on: Vec<ResourceId>,
}

/// What was last applied for a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub id: ResourceId,
    pub spec: Value,
    pub inputs: BTreeMap<String, String>,
    pub key: String,
    pub outputs: Value,
}

/// What a plan will do to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Declared, never applied.
    Create,
    /// Its declared spec changed.
    Update,
    /// Same spec, but an input or an upstream resource changed (or its output is gone).
    Rerun,
    Unchanged,
    /// Applied before, no longer declared.
    Remove,
}

impl Action {
    /// The mark shown before the resource in a plan.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Rerun => "↻",
            Action::Unchanged => " ",
            Action::Remove => "-",
        }
    }
}

/// One changed field of a spec: a dotted path, its value before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub id: ResourceId,
    pub action: Action,
    /// The key the resource will be recorded with (for `Remove`: the recorded one).
    pub key: String,
    /// Spec fields that changed (`Update`).
    pub changes: Vec<FieldChange>,
    /// External inputs that changed: name, recorded digest, new digest.
    pub inputs_changed: Vec<(String, Option<String>, Option<String>)>,
    /// Upstream resources that will run in this plan.
    pub because: Vec<ResourceId>,
    /// Why an otherwise unchanged resource must run again (its output is gone).
    pub missing: Option<String>,
}

impl Step {
    pub fn runs(&self) -> bool {
        !matches!(self.action, Action::Unchanged)
    }
}

/// The ordered steps of a plan: every declared resource in dependency order (unchanged ones
/// included, so the runner can hand their recorded outputs downstream), then removals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.steps.iter().filter(|s| s.action == action).count()
    }

    /// Whether applying would change anything.
    pub fn is_empty(&self) -> bool {
        self.steps.iter().all(|s| !s.runs())
    }

    /// A Terraform-like rendering: one line per resource that changes, the changed fields
    /// under it, and a summary line.
    pub fn render(&self, verbose: bool) -> String {
        let mut out = String::new();
        for s in &self.steps {
            if !s.runs() && !verbose {
                continue;
            }
            let why = match s.action {
                Action::Create => "create".to_string(),
                Action::Update => "update".to_string(),
                Action::Remove => "remove (no longer declared)".to_string(),
                Action::Unchanged => "unchanged".to_string(),
                Action::Rerun => {
                    let mut r = vec![];
                    if !s.inputs_changed.is_empty() {
                        r.push(format!(
                            "input {} changed",
                            s.inputs_changed
                                .iter()
                                .map(|(n, _, _)| n.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    if !s.because.is_empty() {
                        r.push(format!(
                            "{} will run",
                            s.because
                                .iter()
                                .map(|b| b.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    if let Some(m) = &s.missing {
                        r.push(m.clone());
                    }
                    if r.is_empty() {
                        r.push("what it depends on changed since it last ran".into());
                    }
                    format!("run again: {}", r.join("; "))
                }
            };
            out.push_str(&format!("  {} {:<28} {why}\n", s.action.symbol(), s.id));
            for c in &s.changes {
                out.push_str(&format!(
                    "      {}: {} → {}\n",
                    c.path,
                    show(c.before.as_ref()),
                    show(c.after.as_ref())
                ));
            }
            if s.action == Action::Update {
                for (n, before, after) in &s.inputs_changed {
                    out.push_str(&format!(
                        "      input {n}: {} → {}\n",
                        short(before.as_deref()),
                        short(after.as_deref())
                    ));
                }
            }
        }
        out.push_str(&format!(
            "Plan: {} to create, {} to update, {} to run again, {} to remove, {} unchanged.\n",
            self.count(Action::Create),
            self.count(Action::Update),
            self.count(Action::Rerun),
            self.count(Action::Remove),
            self.count(Action::Unchanged)
        ));
        out
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(59).collect::<String>())
            } else {
                s
            }
        }
    }
}

fn short(d: Option<&str>) -> String {
    match d {
        None => "(absent)".into(),
        Some(d) => d.chars().take(12).collect(),
    }
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("{resource} depends on {missing}, which is not declared")]
    MissingDependency {
        resource: ResourceId,
        missing: ResourceId,
    },
    #[error("a dependency cycle: {}", .0.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(" → "))]
    Cycle(Vec<ResourceId>),
    #[error("{0} is declared twice")]
    Duplicate(ResourceId),
}

/// Orders `resources` so every resource comes after what it depends on; ties by kind, then
/// name, so a plan is the same every time.
pub fn order(resources: &[Resource]) -> Result<Vec<usize>, PlanError> {
    let mut index: BTreeMap<&ResourceId, usize> = BTreeMap::new();
    for (i, r) in resources.iter().enumerate() {
        if index.insert(&r.id, i).is_some() {
            return Err(PlanError::Duplicate(r.id.clone()));
        }
    }
    let mut indegree = vec![0usize; resources.len()];
    let mut dependents: Vec<Vec<usize>> = vec![vec![]; resources.len()];
    for (i, r) in resources.iter().enumerate() {
        let deps: BTreeSet<&ResourceId> = r.depends_on.iter().collect();
        for d in deps {
            let Some(&j) = index.get(d) else {
                return Err(PlanError::MissingDependency {
                    resource: r.id.clone(),
                    missing: d.clone(),
                });
            };
            indegree[i] += 1;
            dependents[j].push(i);
        }
    }
    let mut ready: BTreeSet<(&ResourceId, usize)> = resources
        .iter()
        .enumerate()
        .filter(|(i, _)| indegree[*i] == 0)
        .map(|(i, r)| (&r.id, i))
        .collect();
    let mut out = Vec::with_capacity(resources.len());
    while let Some(first) = ready.iter().next().cloned() {
        ready.remove(&first);
        let i = first.1;
        out.push(i);
        for &k in &dependents[i] {
            indegree[k] -= 1;
            if indegree[k] == 0 {
                ready.insert((&resources[k].id, k));
            }
        }
    }
    if out.len() < resources.len() {
        let cycle: Vec<ResourceId> = resources
            .iter()
            .enumerate()
            .filter(|(i, _)| indegree[*i] > 0)
            .map(|(_, r)| r.id.clone())
            .collect();
        return Err(PlanError::Cycle(cycle));
    }
    Ok(out)
}

/// The key of a resource given the keys of its dependencies.
pub fn key_of(r: &Resource, dep_keys: &BTreeMap<&ResourceId, String>) -> String {
    let deps: BTreeMap<String, &String> = r
        .depends_on
        .iter()
        .filter_map(|d| dep_keys.get(d).map(|k| (d.to_string(), k)))
        .collect();
    // serde_json's maps are ordered (BTreeMap), so this text is canonical.
    let doc = json!({
        "kind": r.id.kind.as_str(),
        "name": r.id.name,
        "spec": r.spec,
        "inputs": r.inputs,
        "deps": deps,
    });
    let mut h = Sha256::new();
    h.update(doc.to_string().as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The plan that brings `applied` to `desired`. `gone` tells whether an applied resource's
/// output has disappeared since (a deleted build, a deleted version): it returns why, and
/// the resource then runs again.
pub fn plan(
    desired: &[Resource],
    applied: &[Applied],
    gone: &dyn Fn(&Applied) -> Option<String>,
) -> Result<Plan, PlanError> {
    let order = order(desired)?;
    let recorded: BTreeMap<&ResourceId, &Applied> = applied.iter().map(|a| (&a.id, a)).collect();
    let mut keys: BTreeMap<&ResourceId, String> = BTreeMap::new();
    let mut runs: BTreeSet<&ResourceId> = BTreeSet::new();
    let mut steps = Vec::with_capacity(desired.len());
    for i in order {
        let r = &desired[i];
        let key = key_of(r, &keys);
        let mut step = Step {
            id: r.id.clone(),
            action: Action::Unchanged,
            key: key.clone(),
            changes: vec![],
            inputs_changed: vec![],
            because: r
                .depends_on
                .iter()
                .filter(|d| runs.contains(d))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            missing: None,
        };
        match recorded.get(&r.id) {
            None => step.action = Action::Create,
            Some(a) => {
                step.changes = diff(&a.spec, &r.spec);
                step.inputs_changed = diff_inputs(&a.inputs, &r.inputs);
                if !step.changes.is_empty() {
                    step.action = Action::Update;
                } else if a.key != key {
                    step.action = Action::Rerun;
                } else if let Some(why) = gone(a) {
                    step.action = Action::Rerun;
                    step.missing = Some(why);
                }
            }
        }
        if step.runs() {
            runs.insert(&r.id);
        }
        keys.insert(&r.id, key);
        steps.push(step);
    }
    let declared: BTreeSet<&ResourceId> = desired.iter().map(|r| &r.id).collect();
    let mut removed: Vec<&Applied> = applied
        .iter()
        .filter(|a| !declared.contains(&a.id))
        .collect();
    // Dependents go before what they read: deployments before trainings before datasets.
    removed.sort_by(|a, b| b.id.kind.cmp(&a.id.kind).then(a.id.name.cmp(&b.id.name)));
    for a in removed {
        steps.push(Step {
            id: a.id.clone(),
            action: Action::Remove,
            key: a.key.clone(),
            changes: vec![],
            inputs_changed: vec![],
            because: vec![],
            missing: None,
        });
    }
    Ok(Plan { steps })
}

/// The fields that differ between two specs, as dotted paths (arrays compare whole).
pub fn diff(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut out = vec![];
    walk("", Some(before), Some(after), &mut out);
    out
}

fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(&p, x.get(k), y.get(k), out);
            }
        }
        (a, b) if a == b => {}
        // A field absent on one side and null on the other is the same (an optional left out).
        (None, Some(Value::Null)) | (Some(Value::Null), None) => {}
        (a, b) => out.push(FieldChange {
            path: if path.is_empty() {
                "(spec)".into()
            } else {
                path.to_string()
            },
            before: a.cloned(),
            after: b.cloned(),
        }),
    }
}

fn diff_inputs(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .map(|n| (n.clone(), a.get(n).cloned(), b.get(n).cloned()))
        .collect()
}
