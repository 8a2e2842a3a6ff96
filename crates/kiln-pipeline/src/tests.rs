//! Plans and applies over an in-memory ledger: ordering, keys that cascade downstream,
//! idempotence, resumption after a failed step, removals, vanished outputs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::plan::{self, Action, Applied, Kind, PlanError, Resource, ResourceId};
use crate::{Executor, Ledger, StepError, apply};

fn id(kind: Kind, name: &str) -> ResourceId {
    ResourceId::new(kind, name)
}

fn project(rounds: i64, flights_digest: &str) -> Vec<Resource> {
    vec![
        Resource {
            id: id(Kind::Train, "delay"),
            spec: json!({"features": "delay", "params": {"num_rounds": rounds}}),
            inputs: BTreeMap::new(),
            depends_on: vec![id(Kind::Features, "delay")],
        },
        Resource {
            id: id(Kind::Dataset, "weather"),
            spec: json!({"source": "weather.csv"}),
            inputs: [("source".to_string(), "w1".to_string())].into(),
            depends_on: vec![],
        },
        Resource {
            id: id(Kind::Features, "delay"),
            spec: json!({"source": "flights", "join": ["weather"]}),
            inputs: BTreeMap::new(),
            depends_on: vec![id(Kind::Dataset, "flights"), id(Kind::Dataset, "weather")],
        },
        Resource {
            id: id(Kind::Dataset, "flights"),
            spec: json!({"source": "flights.csv"}),
            inputs: [("source".to_string(), flights_digest.to_string())].into(),
            depends_on: vec![],
        },
    ]
}

#[derive(Default)]
struct Memory {
    records: BTreeMap<ResourceId, Applied>,
    ran: Vec<String>,
    fail_on: Option<ResourceId>,
    removed: Vec<String>,
}

impl Executor for Memory {
    fn run(
        &mut self,
        step: &plan::Step,
        _r: &Resource,
        upstream: &BTreeMap<ResourceId, Value>,
    ) -> Result<Value, StepError> {
        if self.fail_on.as_ref() == Some(&step.id) {
            return Err(format!("{} broke", step.id).into());
        }
        self.ran.push(step.id.to_string());
        // Outputs carry what the step saw upstream, so the test can check it was handed on.
        Ok(
            json!({"n": self.ran.len(), "upstream": upstream.keys().map(|k| k.to_string()).collect::<Vec<_>>()}),
        )
    }
    fn remove(&mut self, a: &Applied) -> Result<(), StepError> {
        self.removed.push(a.id.to_string());
        Ok(())
    }
}

struct Book<'a>(&'a mut BTreeMap<ResourceId, Applied>);

impl Ledger for Book<'_> {
    fn record(&mut self, a: &Applied, _s: &plan::Step) -> Result<(), StepError> {
        self.0.insert(a.id.clone(), a.clone());
        Ok(())
    }
    fn forget(&mut self, a: &Applied, _s: &plan::Step) -> Result<(), StepError> {
        self.0.remove(&a.id);
        Ok(())
    }
}

fn run(m: &mut Memory, desired: &[Resource]) -> Result<plan::Plan, crate::ApplyError> {
    let applied: Vec<Applied> = m.records.values().cloned().collect();
    let p = plan::plan(desired, &applied, &|_| None).unwrap();
    let mut records = std::mem::take(&mut m.records);
    let r = apply(
        &p,
        desired,
        &applied,
        m,
        &mut Book(&mut records),
        &mut |_| {},
    );
    m.records = records;
    r.map(|_| p)
}

#[test]
fn dependencies_come_first_and_order_is_stable() {
    let d = project(200, "f1");
    let order: Vec<String> = plan::order(&d)
        .unwrap()
        .into_iter()
        .map(|i| d[i].id.to_string())
        .collect();
    assert_eq!(
        order,
        [
            "dataset.flights",
            "dataset.weather",
            "features.delay",
            "train.delay"
        ]
    );
}

#[test]
fn missing_dependencies_cycles_and_duplicates_are_refused() {
    let mut d = project(200, "f1");
    d.retain(|r| r.id != id(Kind::Dataset, "weather"));
    assert_eq!(
        plan::order(&d).unwrap_err(),
        PlanError::MissingDependency {
            resource: id(Kind::Features, "delay"),
            missing: id(Kind::Dataset, "weather")
        }
    );
    let mut d = project(200, "f1");
    d[3].depends_on.push(id(Kind::Train, "delay"));
    let e = plan::order(&d).unwrap_err();
    assert!(matches!(e, PlanError::Cycle(ref c) if c.len() == 3), "{e}");
    assert!(e.to_string().contains("dependency cycle"), "{e}");
    let mut d = project(200, "f1");
    d.push(d[0].clone());
    assert_eq!(
        plan::order(&d).unwrap_err(),
        PlanError::Duplicate(id(Kind::Train, "delay"))
    );
}

#[test]
fn first_apply_creates_everything_and_a_second_changes_nothing() {
    let mut m = Memory::default();
    let d = project(200, "f1");
    let p = run(&mut m, &d).unwrap();
    assert_eq!(p.count(Action::Create), 4);
    assert_eq!(
        m.ran,
        [
            "dataset.flights",
            "dataset.weather",
            "features.delay",
            "train.delay"
        ]
    );
    // Outputs of the steps depended on were handed to the step.
    assert_eq!(
        m.records[&id(Kind::Features, "delay")].outputs["upstream"],
        json!(["dataset.flights", "dataset.weather"])
    );
    let p2 = run(&mut m, &d).unwrap();
    assert!(p2.is_empty(), "{}", p2.render(true));
    assert_eq!(p2.count(Action::Unchanged), 4);
    assert_eq!(m.ran.len(), 4, "nothing ran again");
}

#[test]
fn a_changed_input_reruns_it_and_everything_downstream_only() {
    let mut m = Memory::default();
    run(&mut m, &project(200, "f1")).unwrap();
    m.ran.clear();
    let p = run(&mut m, &project(200, "f2")).unwrap();
    assert_eq!(m.ran, ["dataset.flights", "features.delay", "train.delay"]);
    let flights = &p.steps[0];
    assert_eq!(flights.action, Action::Rerun);
    assert_eq!(
        flights.inputs_changed,
        vec![("source".into(), Some("f1".into()), Some("f2".into()))]
    );
    let features = p
        .steps
        .iter()
        .find(|s| s.id.kind == Kind::Features)
        .unwrap();
    assert_eq!(features.because, vec![id(Kind::Dataset, "flights")]);
    let text = p.render(false);
    assert!(text.contains("↻ dataset.flights"), "{text}");
    assert!(text.contains("input source changed"), "{text}");
    assert!(text.contains("dataset.flights will run"), "{text}");
    assert!(!text.contains("dataset.weather"), "{text}");
    assert!(
        text.contains("0 to create, 0 to update, 3 to run again"),
        "{text}"
    );
}

#[test]
fn a_changed_spec_is_an_update_naming_the_field() {
    let mut m = Memory::default();
    run(&mut m, &project(200, "f1")).unwrap();
    m.ran.clear();
    let p = run(&mut m, &project(300, "f1")).unwrap();
    assert_eq!(m.ran, ["train.delay"]);
    let s = p.steps.iter().find(|s| s.runs()).unwrap();
    assert_eq!(s.action, Action::Update);
    assert_eq!(s.changes.len(), 1);
    assert_eq!(s.changes[0].path, "params.num_rounds");
    assert_eq!(s.changes[0].before, Some(json!(200)));
    assert_eq!(s.changes[0].after, Some(json!(300)));
    assert!(p.render(false).contains("params.num_rounds: 200 → 300"));
}

#[test]
fn an_apply_that_fails_resumes_after_the_last_finished_step() {
    let mut m = Memory {
        fail_on: Some(id(Kind::Features, "delay")),
        ..Default::default()
    };
    let d = project(200, "f1");
    let e = run(&mut m, &d).unwrap_err();
    assert_eq!(e.step, id(Kind::Features, "delay"));
    assert!(
        e.to_string()
            .contains("features.delay failed: features.delay broke")
    );
    assert_eq!(e.report.ran.len(), 2);
    assert_eq!(m.records.len(), 2, "the two datasets were recorded");
    m.fail_on = None;
    m.ran.clear();
    let p = run(&mut m, &d).unwrap();
    assert_eq!(
        m.ran,
        ["features.delay", "train.delay"],
        "datasets not redone"
    );
    assert_eq!(p.count(Action::Unchanged), 2);
}

#[test]
fn undeclared_resources_are_removed_dependents_first() {
    let mut m = Memory::default();
    run(&mut m, &project(200, "f1")).unwrap();
    let mut d = project(200, "f1");
    d.retain(|r| r.id.kind == Kind::Dataset);
    let p = run(&mut m, &d).unwrap();
    assert_eq!(p.count(Action::Remove), 2);
    assert_eq!(m.removed, ["train.delay", "features.delay"]);
    assert_eq!(m.records.len(), 2);
}

#[test]
fn a_vanished_output_runs_again() {
    let mut m = Memory::default();
    let d = project(200, "f1");
    run(&mut m, &d).unwrap();
    let applied: Vec<Applied> = m.records.values().cloned().collect();
    let p = plan::plan(&d, &applied, &|a| {
        (a.id == id(Kind::Features, "delay")).then(|| "its build directory is gone".to_string())
    })
    .unwrap();
    let s = p.steps.iter().find(|s| s.runs()).unwrap();
    assert_eq!(s.id, id(Kind::Features, "delay"));
    assert_eq!(s.action, Action::Rerun);
    assert!(p.render(false).contains("its build directory is gone"));
    // Its key is unchanged, so the training after it does not run again.
    assert_eq!(p.count(Action::Rerun), 1);
}

#[test]
fn null_and_absent_fields_are_the_same() {
    assert!(plan::diff(&json!({"a": 1, "b": null}), &json!({"a": 1})).is_empty());
    let c = plan::diff(
        &json!({"a": {"x": [1, 2]}}),
        &json!({"a": {"x": [1, 3]}, "c": 1}),
    );
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].path, "a.x");
    assert_eq!(c[1].path, "c");
    assert_eq!(c[1].before, None);
}
