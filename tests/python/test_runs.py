"""Runs through the official MLflow client: lifecycle, params, metrics, tags, batches, limits."""

from __future__ import annotations

import json
import math
import re
import sys
import time

import mlflow
import pytest
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType

from helpers import assert_error_response, raises_mlflow, unique


def now_ms() -> int:
    return int(time.time() * 1000)


def test_start_and_end_run(client, experiment_id):
    t0 = now_ms() - 2000
    with mlflow.start_run(run_name="my-run") as run:
        run_id = run.info.run_id
        assert re.fullmatch(r"[0-9a-f]{32}", run_id), run_id
        assert run.info.status == "RUNNING"
        assert run.info.experiment_id == experiment_id
        assert run.info.run_name == "my-run"
        assert run.info.lifecycle_stage == "active"
        assert run.info.start_time >= t0
        assert run.info.end_time is None
        assert run.info.artifact_uri and run_id in run.info.artifact_uri
        live = client.get_run(run_id)
        assert live.info.status == "RUNNING"
        assert live.data.tags["mlflow.runName"] == "my-run"
    done = client.get_run(run_id)
    assert done.info.status == "FINISHED"
    assert done.info.end_time is not None
    assert done.info.start_time <= done.info.end_time <= now_ms() + 2000
    assert done.info.run_name == "my-run"
    assert done.data.tags["mlflow.runName"] == "my-run"
    assert done.data.tags.get("mlflow.user")  # sent by the client at creation
    assert done.data.tags.get("mlflow.source.type") == "LOCAL"


def test_run_status_failed_and_killed(client, experiment_id):
    with mlflow.start_run() as run:
        pass
    client.set_terminated(run.info.run_id, status="FAILED")
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    r2 = client.create_run(experiment_id)
    client.set_terminated(r2.info.run_id, status="KILLED", end_time=1234567890123)
    got = client.get_run(r2.info.run_id)
    assert got.info.status == "KILLED"
    assert got.info.end_time == 1234567890123


def test_random_run_name_when_unset(client, experiment_id):
    run = client.create_run(experiment_id)
    assert run.info.run_name, "server must generate a run name"
    assert client.get_run(run.info.run_id).data.tags["mlflow.runName"] == run.info.run_name


def test_update_run_name(client, experiment_id):
    run = client.create_run(experiment_id, run_name="before")
    client.update_run(run.info.run_id, name="after")
    got = client.get_run(run.info.run_id)
    assert got.info.run_name == "after"
    assert got.data.tags["mlflow.runName"] == "after"


def test_params(client, experiment_id):
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"opt": "adam", "epochs": 10, "empty": ""})
        mlflow.log_param("lr", 0.1)  # same value again: idempotent
        with raises_mlflow("INVALID_PARAMETER_VALUE"):
            mlflow.log_param("lr", 0.2)
        with raises_mlflow("INVALID_PARAMETER_VALUE"):
            mlflow.log_params({"opt": "sgd"})
    params = client.get_run(run.info.run_id).data.params
    assert params == {"lr": "0.1", "opt": "adam", "epochs": "10", "empty": ""}


def test_long_param_value(client, experiment_id):
    value = "v" * 6000
    with mlflow.start_run() as run:
        mlflow.log_param("long", value)
    assert client.get_run(run.info.run_id).data.params["long"] == value


def test_metrics_history_with_special_values(client, experiment_id):
    values = [0.5, float("nan"), float("inf"), float("-inf"), -1.25, 1e-300, 123456789.125]
    with mlflow.start_run() as run:
        for step, v in enumerate(values):
            mlflow.log_metric("m", v, step=step, timestamp=1_700_000_000_000 + step)
    hist = client.get_metric_history(run.info.run_id, "m")
    assert [m.step for m in hist] == list(range(len(values)))
    assert [m.timestamp for m in hist] == [1_700_000_000_000 + s for s in range(len(values))]
    assert all(m.key == "m" for m in hist)
    for got, want in zip(hist, values):
        if math.isnan(want):
            assert math.isnan(got.value), got
        elif math.isinf(want):
            # kiln keeps infinities; MLflow's SQL store clamps them to +-float max. Both are compatible.
            assert got.value in (want, math.copysign(sys.float_info.max, want)), (got.value, want)
        else:
            assert got.value == want, (got.value, want)
    latest = client.get_run(run.info.run_id).data.metrics["m"]
    assert latest == 123456789.125


def test_latest_metric_per_key(client, experiment_id):
    run = client.create_run(experiment_id)
    rid = run.info.run_id
    client.log_metric(rid, "loss", 3.0, timestamp=1000, step=0)
    client.log_metric(rid, "loss", 2.0, timestamp=2000, step=1)
    client.log_metric(rid, "loss", 1.0, timestamp=3000, step=2)
    # Same step and timestamp: the larger value wins.
    client.log_metric(rid, "acc", 0.25, timestamp=5000, step=3)
    client.log_metric(rid, "acc", 0.75, timestamp=5000, step=3)
    client.log_metric(rid, "acc", 0.5, timestamp=5000, step=3)
    client.log_metric(rid, "single", 42.0, timestamp=1, step=0)
    metrics = client.get_run(rid).data.metrics
    assert metrics == {"loss": 1.0, "acc": 0.75, "single": 42.0}
    assert len(client.get_metric_history(rid, "loss")) == 3
    assert len(client.get_metric_history(rid, "acc")) == 3
    assert client.get_metric_history(rid, "missing") == []


def test_log_metrics_and_set_tags_fluent(client, experiment_id):
    with mlflow.start_run() as run:
        mlflow.log_metrics({"a": 1.0, "b": 2.5}, step=7)
        mlflow.log_metrics({"a": 1.5}, step=8)
        mlflow.set_tags({"team": "x", "stage": "dev"})
        mlflow.set_tag("single", "yes")
    data = client.get_run(run.info.run_id).data
    assert data.metrics == {"a": 1.5, "b": 2.5}
    assert {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")} == {
        "team": "x",
        "stage": "dev",
        "single": "yes",
    }
    hist = client.get_metric_history(run.info.run_id, "a")
    assert [(m.step, m.value) for m in hist] == [(7, 1.0), (8, 1.5)]


def test_log_batch_at_limits(client, experiment_id):
    run = client.create_run(experiment_id)
    rid = run.info.run_id
    ts = now_ms()
    metrics = [Metric(f"m{i}", float(i), ts, i) for i in range(1000)]
    params = [Param(f"p{i}", f"v{i}") for i in range(100)]
    tags = [RunTag(f"t{i}", f"tv{i}") for i in range(100)]
    client.log_batch(rid, metrics=metrics, params=params, tags=tags)
    data = client.get_run(rid).data
    assert data.metrics == {f"m{i}": float(i) for i in range(1000)}
    assert data.params == {f"p{i}": f"v{i}" for i in range(100)}
    user_tags = {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")}
    assert user_tags == {f"t{i}": f"tv{i}" for i in range(100)}


def test_log_batch_raw_exact_limits_accepted(api, client, experiment_id):
    """One request with 1000 metrics (the documented per-batch maximum) is accepted as a unit."""
    rid = client.create_run(experiment_id).info.run_id
    body = {
        "run_id": rid,
        "metrics": [{"key": f"k{i}", "value": i, "timestamp": 1, "step": 0} for i in range(1000)],
    }
    r = api.post("runs/log-batch", body)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    assert len(client.get_run(rid).data.metrics) == 1000


def test_log_batch_over_limit_rejected(api, client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    body = {
        "run_id": rid,
        "metrics": [{"key": f"k{i}", "value": i, "timestamp": 1, "step": 0} for i in range(1001)],
    }
    r = api.post("runs/log-batch", body)
    err = assert_error_response(r, 400, "INVALID_PARAMETER_VALUE")
    assert "metric" in err["message"].lower(), err
    # Nothing from the rejected batch was written.
    assert client.get_run(rid).data.metrics == {}

    params = {"run_id": rid, "params": [{"key": f"p{i}", "value": "v"} for i in range(101)]}
    err = assert_error_response(api.post("runs/log-batch", params), 400, "INVALID_PARAMETER_VALUE")
    assert "param" in err["message"].lower(), err
    tags = {"run_id": rid, "tags": [{"key": f"t{i}", "value": "v"} for i in range(101)]}
    err = assert_error_response(api.post("runs/log-batch", tags), 400, "INVALID_PARAMETER_VALUE")
    assert "tag" in err["message"].lower(), err
    assert client.get_run(rid).data.params == {}


def test_key_too_long(api, client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    key = "k" * 251
    ok_key = "k" * 250
    r = api.post("runs/log-parameter", {"run_id": rid, "key": key, "value": "v"})
    assert_error_response(r, 400, "INVALID_PARAMETER_VALUE")
    r = api.post("runs/log-metric", {"run_id": rid, "key": key, "value": 1.0, "timestamp": 1, "step": 0})
    assert_error_response(r, 400, "INVALID_PARAMETER_VALUE")
    r = api.post("runs/set-tag", {"run_id": rid, "key": key, "value": "v"})
    assert_error_response(r, 400, "INVALID_PARAMETER_VALUE")
    r = api.post("runs/log-batch", {"run_id": rid, "params": [{"key": key, "value": "v"}]})
    assert_error_response(r, 400, "INVALID_PARAMETER_VALUE")
    # Through the client as well (whichever side validates, the code must be the same).
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_param(rid, key, "v")
    # 250 is fine.
    client.log_param(rid, ok_key, "v")
    assert client.get_run(rid).data.params == {ok_key: "v"}


def test_nested_runs(client, experiment_id):
    with mlflow.start_run(run_name="parent") as parent:
        with mlflow.start_run(run_name="child", nested=True) as child:
            assert mlflow.active_run().info.run_id == child.info.run_id
        assert mlflow.active_run().info.run_id == parent.info.run_id
    child_run = client.get_run(child.info.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child_run.info.status == "FINISHED"
    assert "mlflow.parentRunId" not in client.get_run(parent.info.run_id).data.tags
    kids = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert [r.info.run_id for r in kids] == [child.info.run_id]


def test_delete_tag(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    client.set_tag(rid, "a", "1")
    client.set_tag(rid, "b", "2")
    client.set_tag(rid, "a", "1b")  # tags are mutable
    client.delete_tag(rid, "b")
    tags = client.get_run(rid).data.tags
    assert tags["a"] == "1b" and "b" not in tags
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.delete_tag(rid, "never-set")


def test_delete_and_restore_run(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    client.delete_run(rid)
    assert client.get_run(rid).info.lifecycle_stage == "deleted"
    active = client.search_runs([experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
    assert rid not in [r.info.run_id for r in active]
    deleted = client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [rid]
    client.restore_run(rid)
    assert client.get_run(rid).info.lifecycle_stage == "active"
    active = client.search_runs([experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
    assert [r.info.run_id for r in active] == [rid]


def test_unknown_run(client):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_run("0" * 32)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.log_param("f" * 32, "a", "b")


def test_log_to_deleted_experiment_or_finished_run(client):
    exp_id = client.create_experiment(unique("gone"))
    client.delete_experiment(exp_id)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.create_run(exp_id)


def test_log_to_deleted_run_rejected(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    client.delete_run(rid)
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.log_param(rid, "a", "b")


def test_metric_history_paging_26k(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    n = 26_000
    base_ts = 1_700_000_000_000
    for start in range(0, n, 1000):
        batch = [Metric("big", float(i) * 0.5, base_ts + i, i) for i in range(start, start + 1000)]
        client.log_batch(rid, metrics=batch, synchronous=True)
    hist = client.get_metric_history(rid, "big")
    assert len(hist) == n
    steps = [m.step for m in hist]
    assert steps == list(range(n))
    assert [m.value for m in hist[:3]] == [0.0, 0.5, 1.0]
    assert hist[-1].value == (n - 1) * 0.5
    assert client.get_run(rid).data.metrics["big"] == (n - 1) * 0.5


def test_raw_metric_history_pages(api, client, experiment_id):
    """get-history honours max_results and returns a page token until exhausted."""
    rid = client.create_run(experiment_id).info.run_id
    client.log_batch(rid, metrics=[Metric("p", float(i), 1000 + i, i) for i in range(25)], synchronous=True)
    got, token, calls = [], None, 0
    while True:
        params = {"run_id": rid, "metric_key": "p", "max_results": 10}
        if token:
            params["page_token"] = token
        r = api.get("metrics/get-history", params)
        assert r.status_code == 200, r.text
        body = r.json()
        calls += 1
        assert len(body.get("metrics", [])) <= 10, body
        got.extend(m["step"] for m in body.get("metrics", []))
        token = body.get("next_page_token")
        if not token:
            break
        assert calls < 10
    assert got == list(range(25))
    assert calls == 3


def test_run_status_enum_via_client(client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    client.update_run(rid, status=RunStatus.to_string(RunStatus.SCHEDULED))
    assert client.get_run(rid).info.status == "SCHEDULED"


def test_value_length_limits(api, client, experiment_id):
    """Over-long values are either rejected (INVALID_PARAMETER_VALUE) or truncated to the limit, as
    MLflow does with MLFLOW_TRUNCATE_LONG_VALUES (its default). Never stored longer than the limit."""
    rid = client.create_run(experiment_id).info.run_id
    r = api.post("runs/set-tag", {"run_id": rid, "key": "t", "value": "v" * 8000})
    assert r.status_code == 200, r.text
    for path, body, limit, where in [
        ("runs/log-parameter", {"run_id": rid, "key": "p", "value": "v" * 6001}, 6000, "params"),
        ("runs/set-tag", {"run_id": rid, "key": "t2", "value": "v" * 8001}, 8000, "tags"),
    ]:
        r = api.post(path, body)
        stored = getattr(client.get_run(rid).data, where).get(body["key"])
        if r.status_code == 200:
            assert stored == "v" * limit, (path, len(stored or ""))
        else:
            assert_error_response(r, 400, "INVALID_PARAMETER_VALUE")
            assert stored is None
    assert client.get_run(rid).data.tags["t"] == "v" * 8000


def test_batch_param_conflicts(api, client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    # MLflow rejects duplicate keys inside one batch, even with equal values
    r = api.post("runs/log-batch", {"run_id": rid, "params": [{"key": "a", "value": "1"}, {"key": "a", "value": "1"}]})
    assert_error_response(r, 400, "INVALID_PARAMETER_VALUE")
    assert client.get_run(rid).data.params == {}
    r = api.post("runs/log-batch", {"run_id": rid, "params": [{"key": "a", "value": "1"}]})
    assert r.status_code == 200, r.text
    # a batch changing an existing param is rejected
    r = api.post("runs/log-batch", {"run_id": rid, "params": [{"key": "a", "value": "2"}, {"key": "b", "value": "x"}]})
    assert_error_response(r, 400, "INVALID_PARAMETER_VALUE")
    assert client.get_run(rid).data.params == {"a": "1"}


def test_run_name_tag_sync(client, experiment_id):
    """Setting the mlflow.runName tag renames the run (and vice versa)."""
    rid = client.create_run(experiment_id, run_name="first").info.run_id
    client.set_tag(rid, "mlflow.runName", "second")
    run = client.get_run(rid)
    assert run.info.run_name == "second"
    assert run.data.tags["mlflow.runName"] == "second"


def test_metric_defaults(api, client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    r = api.post("runs/log-metric", {"run_id": rid, "key": "nostep", "value": 3.5, "timestamp": 1234})
    assert r.status_code == 200, r.text
    (m,) = client.get_metric_history(rid, "nostep")
    assert (m.value, m.timestamp, m.step) == (3.5, 1234, 0)


def test_duplicate_metric_points_kept(client, experiment_id):
    """Retried writes may append the same point twice; history keeps both, latest is unchanged."""
    rid = client.create_run(experiment_id).info.run_id
    for _ in range(2):
        client.log_metric(rid, "dup", 1.5, timestamp=10, step=1)
    hist = client.get_metric_history(rid, "dup")
    assert [(m.value, m.timestamp, m.step) for m in hist] in ([(1.5, 10, 1)] * 2, [(1.5, 10, 1)])
    assert client.get_run(rid).data.metrics == {"dup": 1.5}


def test_unicode_roundtrip(client):
    name = unique("\u5b9e\u9a8c-\u00fc")
    exp_id = client.create_experiment(name, tags={"note": "\U0001f680 launch"})
    assert client.get_experiment_by_name(name).experiment_id == exp_id
    rid = client.create_run(exp_id, run_name="\u00e9t\u00e9").info.run_id
    client.log_param(rid, "caf\u00e9", "na\u00efve \u2603")
    client.set_tag(rid, "path/with spaces.and-dashes", "\U0001f600")
    client.log_metric(rid, "\u00b5-loss", 0.5)
    run = client.get_run(rid)
    assert run.info.run_name == "\u00e9t\u00e9"
    assert run.data.params == {"caf\u00e9": "na\u00efve \u2603"}
    assert run.data.tags["path/with spaces.and-dashes"] == "\U0001f600"
    assert run.data.metrics == {"\u00b5-loss": 0.5}
    assert client.get_experiment(exp_id).tags == {"note": "\U0001f680 launch"}
    found = client.search_runs([exp_id], filter_string="params.`caf\u00e9` = 'na\u00efve \u2603'")
    assert [r.info.run_id for r in found] == [rid]


def test_log_inputs_datasets(client, experiment_id):
    pd = pytest.importorskip("pandas")
    import mlflow.data

    df = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 0.25, 0.125]})
    ds = mlflow.data.from_pandas(df, name="train-set")
    with mlflow.start_run() as run:
        mlflow.log_input(ds, context="training", tags={"split": "train"})
        mlflow.log_input(ds, context="training")  # same (name, digest): deduplicated
    other = client.create_run(experiment_id).info.run_id
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1, inputs
    d = inputs[0].dataset
    assert (d.name, d.digest) == ("train-set", ds.digest)
    assert d.source_type == ds.source._get_source_type()
    assert json.loads(d.profile) == {"num_rows": 3, "num_elements": 6}
    tags = {t.key: t.value for t in inputs[0].tags}
    assert tags.get("mlflow.data.context") == "training"
    found = client.search_runs([experiment_id], filter_string="datasets.name = 'train-set'")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    found = client.search_runs([experiment_id], filter_string=f"datasets.digest = '{ds.digest}'")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    assert other not in [r.info.run_id for r in found]
