//! `kiln-pipeline`: the `plan` / `apply` reconciler that brings the platform's state to what
//! `kiln.toml` declares (datasets, features, trainings, release policies, deployments,
//! monitors), and the Kubernetes export of the same file.
//!
//! The reconciler knows nothing of how a step is carried out: the binary hands it the
//! declared resources (each a kind, a name, a canonical spec and its dependencies) and an
//! executor per step; this crate computes the plan, orders the steps, keys each finished
//! step by the digests of its spec and inputs so a second apply (or one after a crash)
//! does not redo it, and holds the store's apply lock while it runs.

pub mod apply;
pub mod k8s;
pub mod plan;

pub use apply::{ApplyError, Executor, Ledger, Progress, Report, StepError, apply};
pub use plan::{Action, Applied, FieldChange, Kind, Plan, PlanError, Resource, ResourceId, Step};

#[cfg(test)]
mod tests;
