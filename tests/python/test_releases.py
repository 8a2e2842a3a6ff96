"""Release gates through the stock MLflow client: one registry, where a version logged with
`mlflow.onnx.log_model` is released by `set_registered_model_alias`, and the server runs the
model's release policy (integrity, metrics, latency) before a protected alias moves."""

from __future__ import annotations

import signal
import subprocess

import mlflow
import mlflow.data
import mlflow.onnx
import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from helpers import assert_error_response, raises_mlflow, unique
from kilnproc import BACKENDS, REFERENCE_MLFLOW, make_server

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")
pytestmark = pytest.mark.skipif(bool(REFERENCE_MLFLOW), reason="release gates are a kiln extension")

ADMIN_TOKEN = "py-admin-secret"


@pytest.fixture(scope="module", params=[pytest.param(b, id=b) for b in BACKENDS])
def server(request, tmp_path_factory):
    """Overrides conftest's server for this module: one started with `--admin-token`."""
    srv, cleanup = make_server(
        request.param, tmp_path_factory.mktemp(f"kiln-rel-{request.param}"), ["--admin-token", ADMIN_TOKEN]
    )
    try:
        srv.start()
        yield srv
    finally:
        cleanup()


@pytest.fixture(scope="module")
def models():
    """A good and a deliberately worse (shuffled labels) classifier on 4 float features, as ONNX,
    with their AUCs on one shared test set."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(7)
    X = rng.normal(size=(600, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] + 0.3 * rng.normal(size=600) > 0).astype(np.int64)
    X_train, X_test, y_train, y_test = X[:400], X[400:], y[:400], y[400:]
    out = {"X_test": X_test, "y_test": y_test}
    for kind, labels in (("good", y_train), ("bad", rng.permutation(y_train))):
        m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, labels)
        auc = float(roc_auc_score(y_test, m.predict_proba(X_test)[:, 1]))
        onx = to_onnx(m, X_train[:1], options={id(m.steps[-1][1]): {"zipmap": False}})
        out[kind] = (onx, auc)
    assert out["good"][1] > 0.9 and out["good"][1] - out["bad"][1] > 0.1, (out["good"][1], out["bad"][1])
    return out


def log_version(name: str, models, kind: str) -> str:
    """One run: the model's test_auc, its test dataset input and the ONNX model, registered as `name`."""
    onx, auc = models[kind]
    with mlflow.start_run():
        mlflow.log_metric("test_auc", auc)
        mlflow.log_input(mlflow.data.from_numpy(models["X_test"], targets=models["y_test"]), context="test")
        info = mlflow.onnx.log_model(onx, name="model", registered_model_name=name)
    return str(info.registered_model_version)


def put_policy(url: str, name: str, aliases: dict, token: str | None = ADMIN_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"policy": {"model": name, "trusted_keys": [], "aliases": aliases}}
    return requests.put(f"{url}/api/kiln/release-policies", json=body, headers=headers, timeout=30)


def apply_policy(url: str, name: str, aliases: dict) -> None:
    r = put_policy(url, name, aliases)
    assert r.status_code == 200, r.text


def status(url: str, name: str) -> dict:
    r = requests.get(f"{url}/api/kiln/releases/status", params={"name": name}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def gates_of(evaluation: dict) -> dict:
    return {g["gate"]: g for g in evaluation["gates"]}


def assert_blocked(info, *words: str) -> str:
    msg = str(info.value.message)
    assert info.value.error_code == "PERMISSION_DENIED", (info.value.error_code, msg)
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_logged_onnx_version_passes_gates_and_becomes_champion(client, experiment_id, models, tracking):
    name = unique("py_delay")
    assert log_version(name, models, "good") == "1"
    apply_policy(tracking, name, {"champion": {
        "metrics": [{"metric": "test_auc", "min": 0.5}],
        "latency": {"p99_ms": 50.0, "rows": 1, "iterations": 100},
    }})
    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    st = status(tracking, name)
    assert st["model"] == name
    assert {"alias": "champion", "version": "1", "protected": True} in st["aliases"], st["aliases"]
    assert len(st["evaluations"]) == 1, st["evaluations"]
    ev = st["evaluations"][0]
    assert (ev["alias"], ev["version"], ev["outcome"], ev["holder"]) == ("champion", "1", "moved", None), ev
    gates = gates_of(ev)
    assert {"integrity", "metric", "latency"} <= set(gates), gates
    assert all(g["passed"] for g in ev["gates"]), ev["gates"]
    assert gates["latency"]["value"] > 0, gates["latency"]
    assert gates["latency"]["value"] <= 50.0, gates["latency"]
    assert gates["metric"]["value"] == pytest.approx(models["good"][1], abs=1e-9), gates["metric"]
    assert gates["metric"]["threshold"] == pytest.approx(0.5), gates["metric"]
    assert [(h["alias"], h["version"], h["previous"], h["action"]) for h in st["history"]] == [
        ("champion", "1", None, "release")
    ], st["history"]
    assert st["history"][0]["evaluation"] == ev["id"], st["history"]


def test_worse_version_is_blocked_by_relative_gate_but_unprotected_alias_moves(
    client, experiment_id, models, tracking
):
    name = unique("py_delay")
    assert log_version(name, models, "good") == "1"
    assert log_version(name, models, "bad") == "2"
    apply_policy(tracking, name, {"champion": {"metrics": [{"metric": "test_auc", "max_drop": 0.01}]}})
    client.set_registered_model_alias(name, "champion", "1")

    with pytest.raises(MlflowException) as info:
        client.set_registered_model_alias(name, "champion", "2")
    assert_blocked(info, "metric_relative", "test_auc")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    # The same request on the wire: a 403 in MLflow's error shape.
    r = requests.post(
        f"{tracking}/api/2.0/mlflow/registered-models/alias",
        json={"name": name, "alias": "champion", "version": "2"},
        timeout=30,
    )
    body = assert_error_response(r, 403, "PERMISSION_DENIED")
    assert "metric_relative" in body["message"], body
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    ev = status(tracking, name)["evaluations"][0]  # newest first
    assert (ev["alias"], ev["version"], ev["holder"], ev["outcome"]) == ("champion", "2", "1", "blocked"), ev
    failed = {g["gate"] for g in ev["gates"] if not g["passed"]}
    assert failed == {"metric_relative"}, ev["gates"]
    rel = gates_of(ev)["metric_relative"]
    assert rel["value"] == pytest.approx(models["bad"][1], abs=1e-9), rel
    assert rel["threshold"] == pytest.approx(models["good"][1] - 0.01, abs=1e-9), rel  # the holder's value

    # An alias the policy does not name moves without gates (and without a stored evaluation).
    client.set_registered_model_alias(name, "challenger", "2")
    assert client.get_model_version_by_alias(name, "challenger").version == "2"
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    st = status(tracking, name)
    assert [(e["alias"], e["outcome"]) for e in st["evaluations"]] == [
        ("champion", "blocked"), ("champion", "blocked"), ("champion", "moved")
    ], st["evaluations"]
    assert {"alias": "challenger", "version": "2", "protected": False} in st["aliases"], st["aliases"]
    moves = [(h["alias"], h["version"], h["action"], h["evaluation"]) for h in st["history"]]
    assert ("challenger", "2", "set", None) in moves, st["history"]


def test_latency_budget_blocks_champion(client, experiment_id, models, tracking):
    name = unique("py_slow")
    log_version(name, models, "good")
    apply_policy(tracking, name, {"champion": {"latency": {"p99_ms": 1e-6, "rows": 1, "iterations": 20}}})
    with pytest.raises(MlflowException) as info:
        client.set_registered_model_alias(name, "champion", "1")
    assert_blocked(info, "[latency", "p99")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version_by_alias(name, "champion")
    ev = status(tracking, name)["evaluations"][0]
    assert ev["outcome"] == "blocked", ev
    lat = gates_of(ev)["latency"]
    assert lat["passed"] is False and lat["value"] > 1e-6, lat


def test_actor_is_the_basic_auth_user(client, experiment_id, models, tracking, monkeypatch):
    name = unique("py_actor")
    log_version(name, models, "good")
    apply_policy(tracking, name, {"champion": {}})
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "x")
    client.set_registered_model_alias(name, "champion", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    client.set_registered_model_alias(name, "staging", "1")  # anonymous, for contrast
    st = status(tracking, name)
    actors = {h["alias"]: h["actor"] for h in st["history"]}
    assert actors == {"champion": "bob", "staging": "anonymous"}, st["history"]
    assert st["evaluations"][0]["actor"] == "bob", st["evaluations"]


def test_protected_alias_needs_the_admin(client, experiment_id, models, tracking, monkeypatch):
    name = unique("py_admin")
    log_version(name, models, "good")
    policy = {"champion": {"compatible_inputs": True}}
    r = put_policy(tracking, name, policy, token=None)
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text
    r = put_policy(tracking, name, policy, token="wrong")
    assert r.status_code == 403, r.text
    apply_policy(tracking, name, policy)
    client.set_registered_model_alias(name, "champion", "1")

    with pytest.raises(MlflowException) as info:
        client.delete_registered_model_alias(name, "champion")
    assert_blocked(info)
    assert client.get_model_version_by_alias(name, "champion").version == "1"

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ADMIN_TOKEN)  # sent as a bearer token
    client.delete_registered_model_alias(name, "champion")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version_by_alias(name, "champion")
    last = status(tracking, name)["history"][-1]  # oldest first
    assert (last["alias"], last["action"], last["version"], last["previous"]) == ("champion", "delete", None, "1"), last


def test_released_mlflow_onnx_version_is_served_from_the_registry(client, experiment_id, models, tracking, server):
    """The version `mlflow.onnx.log_model(registered_model_name=…)` made is deployable: once it
    holds `champion`, `kiln serve --model NAME=NAME@champion` on the same store loads it from the
    registry and answers as onnxruntime does on the same model."""
    import onnxruntime as ort

    from kilnproc import KILN_BIN

    name = unique("py_served")
    assert log_version(name, models, "good") == "1"
    apply_policy(tracking, name, {"champion": {"metrics": [{"metric": "test_auc", "min": 0.5}]}})
    client.set_registered_model_alias(name, "champion", "1")

    cmd = [str(KILN_BIN), "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(server.data_dir),
           "--model", f"{name}={name}@champion"]
    if server.store_url:
        cmd += ["--store", server.store_url]
    log_path = server.data_dir.parent / f"serve-{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    try:
        line = proc.stdout.readline().decode(errors="replace").strip()
        assert line.startswith("Listening on "), (line, log_path.read_text(errors="replace"))
        url = line[len("Listening on "):].rstrip("/")
        meta = requests.get(f"{url}/v2/models/{name}", timeout=10).json()
        assert meta["versions"] == ["1"], meta

        X = models["X_test"]
        body = {"inputs": [{"name": "X", "shape": list(X.shape), "datatype": "FP32", "data": X.ravel().tolist()}]}
        r = requests.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        got = {o["name"]: o for o in r.json()["outputs"]}
        sess = ort.InferenceSession(models["good"][0].SerializeToString(), providers=["CPUExecutionProvider"])
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"X": X})))
        assert set(want) <= set(got), (sorted(want), sorted(got))
        for out_name, expected in want.items():
            actual = np.asarray(got[out_name]["data"]).reshape(got[out_name]["shape"])
            assert actual.shape == expected.shape, (out_name, actual.shape, expected.shape)
            np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6, err_msg=out_name)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
