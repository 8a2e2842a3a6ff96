//! Carrying out a plan: each step in order, each finished step recorded at once (so an
//! apply that stops — a failure, a crash — resumes where it stopped), the outputs of each
//! step handed to the steps that depend on it.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::plan::{Action, Applied, Plan, Resource, ResourceId, Step};

/// A step's failure, as the executor reports it.
pub type StepError = Box<dyn std::error::Error + Send + Sync>;

/// How steps are carried out (the binary's datasets, features, trainings, …).
pub trait Executor {
    /// Carries out `step` for `resource`; `upstream` holds the outputs of every resource it
    /// depends on. Returns the step's outputs.
    fn run(
        &mut self,
        step: &Step,
        resource: &Resource,
        upstream: &BTreeMap<ResourceId, Value>,
    ) -> Result<Value, StepError>;

    /// Undoes a resource that is no longer declared.
    fn remove(&mut self, applied: &Applied) -> Result<(), StepError>;
}

/// Where finished steps are recorded.
pub trait Ledger {
    fn record(&mut self, applied: &Applied, step: &Step) -> Result<(), StepError>;
    fn forget(&mut self, applied: &Applied, step: &Step) -> Result<(), StepError>;
    /// Called before each step: keep the apply lock (an error stops the apply).
    fn heartbeat(&mut self) -> Result<(), StepError> {
        Ok(())
    }
}

/// What an apply is doing, for progress output.
pub enum Progress<'a> {
    Start {
        step: &'a Step,
        index: usize,
        total: usize,
    },
    Done {
        step: &'a Step,
        outputs: &'a Value,
        seconds: f64,
    },
    Removed {
        step: &'a Step,
    },
}

/// What an apply did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The steps carried out: resource, action, seconds.
    pub ran: Vec<(ResourceId, Action, f64)>,
    pub unchanged: usize,
}

/// An apply that stopped at a step; what ran before it is recorded.
#[derive(Debug, thiserror::Error)]
#[error("{step} failed: {error}")]
pub struct ApplyError {
    pub step: ResourceId,
    pub error: StepError,
    pub report: Report,
}

/// Carries out `plan` (made from `desired` and `applied`).
pub fn apply(
    plan: &Plan,
    desired: &[Resource],
    applied: &[Applied],
    exec: &mut dyn Executor,
    ledger: &mut dyn Ledger,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report, ApplyError> {
    let resources: BTreeMap<&ResourceId, &Resource> = desired.iter().map(|r| (&r.id, r)).collect();
    let recorded: BTreeMap<&ResourceId, &Applied> = applied.iter().map(|a| (&a.id, a)).collect();
    let mut outputs: BTreeMap<ResourceId, Value> = BTreeMap::new();
    let mut report = Report::default();
    let total = plan.steps.iter().filter(|s| s.runs()).count();
    let mut index = 0;
    for step in &plan.steps {
        let fail = |error: StepError, report: &Report| ApplyError {
            step: step.id.clone(),
            error,
            report: report.clone(),
        };
        if !step.runs() {
            if let Some(a) = recorded.get(&step.id) {
                outputs.insert(step.id.clone(), a.outputs.clone());
            }
            report.unchanged += 1;
            continue;
        }
        index += 1;
        ledger.heartbeat().map_err(|e| fail(e, &report))?;
        progress(Progress::Start { step, index, total });
        let started = Instant::now();
        if step.action == Action::Remove {
            let Some(a) = recorded.get(&step.id) else {
                continue;
            };
            exec.remove(a).map_err(|e| fail(e, &report))?;
            ledger.forget(a, step).map_err(|e| fail(e, &report))?;
            report.ran.push((
                step.id.clone(),
                step.action,
                started.elapsed().as_secs_f64(),
            ));
            progress(Progress::Removed { step });
            continue;
        }
        let Some(r) = resources.get(&step.id) else {
            continue;
        };
        let upstream: BTreeMap<ResourceId, Value> = r
            .depends_on
            .iter()
            .filter_map(|d| outputs.get(d).map(|v| (d.clone(), v.clone())))
            .collect();
        let out = exec.run(step, r, &upstream).map_err(|e| fail(e, &report))?;
        let done = Applied {
            id: step.id.clone(),
            spec: r.spec.clone(),
            inputs: r.inputs.clone(),
            key: step.key.clone(),
            outputs: out,
        };
        ledger.record(&done, step).map_err(|e| fail(e, &report))?;
        let seconds = started.elapsed().as_secs_f64();
        report.ran.push((step.id.clone(), step.action, seconds));
        progress(Progress::Done {
            step,
            outputs: &done.outputs,
            seconds,
        });
        outputs.insert(step.id.clone(), done.outputs);
    }
    Ok(report)
}
