"""Raw HTTP behaviour: error bodies, routing, misc endpoints, GET query conventions."""

from __future__ import annotations

import json
import math
import re
import sys

import pytest
import requests

from helpers import assert_error_response, unique

BAD_BODY_CODES = ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST")


@pytest.mark.stricter_than_mlflow  # MLflow 3.17 answers a 500 HTML page for a truncated log-batch body
def test_malformed_json(api):
    r = api.s.post(
        api.url("experiments/create"), data=b"{not json", headers={"Content-Type": "application/json"}, timeout=30
    )
    assert_error_response(r, 400, BAD_BODY_CODES)
    r = api.s.post(api.url("runs/log-batch"), data=b"[1, 2", headers={"Content-Type": "application/json"}, timeout=30)
    assert_error_response(r, 400, BAD_BODY_CODES)


def test_wrong_field_types(api):
    # experiment name must be a string
    r = api.post("experiments/create", {"name": 123})
    assert_error_response(r, 400, BAD_BODY_CODES)
    r = api.post("runs/log-metric", {"run_id": "x" * 32, "key": "m", "value": "not-a-number", "timestamp": 1})
    assert_error_response(r, 400, BAD_BODY_CODES)


def test_missing_required_fields(api):
    r = api.post("experiments/create", {})
    body = assert_error_response(r, 400, BAD_BODY_CODES)
    assert "name" in body["message"].lower()
    r = api.get("experiments/get")
    assert_error_response(r, 400, BAD_BODY_CODES)
    r = api.post("runs/log-parameter", {"key": "a", "value": "b"})  # no run_id
    assert_error_response(r, 400, BAD_BODY_CODES)


def test_unknown_fields_ignored(api):
    name = unique("extra")
    r = api.post("experiments/create", {"name": name, "some_future_field": {"x": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["experiment_id"]


@pytest.mark.stricter_than_mlflow  # MLflow 3.17 answers Flask's HTML 404 page
def test_unknown_endpoint(api, tracking):
    r = api.get("no/such/endpoint")
    assert_error_response(r, 404, "ENDPOINT_NOT_FOUND")
    r = api.post("experiments/frobnicate", {})
    assert_error_response(r, 404, "ENDPOINT_NOT_FOUND")
    r = requests.get(f"{tracking}/api/2.0/preview/mlflow/nothing-here", timeout=30)
    assert r.status_code == 404


def test_wrong_method(api):
    # experiments/create is POST only
    r = api.s.get(api.url("experiments/create"), params={"name": "x"}, timeout=30)
    assert r.status_code in (404, 405), (r.status_code, r.text[:200])


def test_health_and_version(tracking):
    r = requests.get(f"{tracking}/health", timeout=30)
    assert r.status_code == 200
    assert r.text.strip() == "OK"
    r = requests.get(f"{tracking}/version", timeout=30)
    assert r.status_code == 200
    assert re.fullmatch(r"\d+\.\d+\.\d+([.+\-][0-9A-Za-z.\-+]*)?", r.text.strip()), r.text


def test_server_info(tracking):
    r = requests.get(f"{tracking}/api/3.0/mlflow/server-info", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body, dict) and body, body
    text = r.text.lower()
    assert "password" not in text and "postgres://" not in text, "server-info must not leak secrets"


def test_ajax_api_mirrors_api(api, tracking):
    a = requests.get(f"{tracking}/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"}, timeout=30)
    b = requests.get(f"{tracking}/ajax-api/2.0/mlflow/experiments/get", params={"experiment_id": "0"}, timeout=30)
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json()
    assert a.json()["experiment"]["name"] == "Default"
    # writes work under ajax-api too
    name = unique("ajax")
    r = requests.post(f"{tracking}/ajax-api/2.0/mlflow/experiments/create", json={"name": name}, timeout=30)
    assert r.status_code == 200, r.text
    r = api.get("experiments/get-by-name", {"experiment_name": name})
    assert r.status_code == 200 and r.json()["experiment"]["experiment_id"]


def test_get_by_name_missing_is_404(api):
    r = api.get("experiments/get-by-name", {"experiment_name": unique("missing")})
    assert_error_response(r, 404, "RESOURCE_DOES_NOT_EXIST")


def test_already_exists_is_400(api):
    name = unique("exists")
    assert api.post("experiments/create", {"name": name}).status_code == 200
    r = api.post("experiments/create", {"name": name})
    assert_error_response(r, 400, "RESOURCE_ALREADY_EXISTS")


def test_get_query_params(api, tracking):
    r = requests.get(f"{tracking}/api/2.0/mlflow/experiments/search?max_results=5&view_type=ALL", timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert 1 <= len(body["experiments"]) <= 5
    # POST form of the same call
    r = api.post("experiments/search", {"max_results": 5, "view_type": "ALL"})
    assert r.status_code == 200, r.text
    assert 1 <= len(r.json()["experiments"]) <= 5


def test_get_repeated_keys(api, client, tracking):
    """Repeated query keys form a repeated field (here order_by and run_ids)."""
    prefix = unique("rep")
    names = [f"{prefix}-{c}" for c in "abc"]
    for n in names:
        client.create_experiment(n)
    r = requests.get(
        f"{tracking}/api/2.0/mlflow/experiments/search",
        params=[
            ("filter", f"name LIKE '{prefix}%'"),
            ("order_by", "name DESC"),
            ("order_by", "creation_time ASC"),
            ("max_results", "2"),
            ("view_type", "ALL"),
        ],
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["name"] for e in body["experiments"]] == [names[2], names[1]]
    assert body.get("next_page_token")


def test_get_history_bulk_interval_repeated_run_ids(api, client):
    """The UI's sampled-history endpoint takes repeated run_ids query keys."""
    exp_id = client.create_experiment(unique("bulk"))
    r1 = client.create_run(exp_id).info.run_id
    r2 = client.create_run(exp_id).info.run_id
    client.log_metric(r1, "loss", 1.0, step=0)
    client.log_metric(r1, "loss", 0.5, step=1)
    client.log_metric(r2, "loss", 2.0, step=0)
    r = api.get(
        "metrics/get-history-bulk-interval",
        [("run_ids", r1), ("run_ids", r2), ("metric_key", "loss"), ("max_results", "100")],
    )
    assert r.status_code == 200, r.text
    got = sorted((m["run_id"], m["step"], m["value"]) for m in r.json()["metrics"])
    assert got == sorted([(r1, 0, 1.0), (r1, 1, 0.5), (r2, 0, 2.0)])


def test_json_numbers_and_enums(api, client, experiment_id):
    rid = client.create_run(experiment_id, start_time=1_700_000_000_123).info.run_id
    r = api.get("runs/get", {"run_id": rid})
    assert r.status_code == 200
    info = r.json()["run"]["info"]
    assert info["run_id"] == rid
    assert info["start_time"] == 1_700_000_000_123  # int64 as a JSON number
    assert isinstance(info["start_time"], int)
    assert info["status"] == "RUNNING"
    assert info["lifecycle_stage"] == "active"
    # legacy run_uuid
    assert info.get("run_uuid", rid) == rid
    r = api.get("runs/get", {"run_uuid": rid})
    assert r.status_code == 200 and r.json()["run"]["info"]["run_id"] == rid


def test_nan_metric_json(api, client, experiment_id):
    rid = client.create_run(experiment_id).info.run_id
    for step, v in enumerate(("NaN", "Infinity", "-Infinity")):
        r = api.post("runs/log-metric", {"run_id": rid, "key": "special", "value": v, "timestamp": 1, "step": step})
        assert r.status_code == 200, (v, r.text)
    r = api.get("metrics/get-history", {"run_id": rid, "metric_key": "special"})
    assert r.status_code == 200

    def no_bare_constants(tok):
        raise AssertionError(f"response is not strict JSON (bare {tok}); MLflow sends \"NaN\"/\"Infinity\" strings")

    body = json.loads(r.text, parse_constant=no_bare_constants)
    vals = [float(m["value"]) for m in body["metrics"]]
    assert len(vals) == 3
    # MLflow's SQL store clamps infinities to +-float max; kiln keeps them. Both are compatible.
    vals.sort(key=lambda v: (not math.isnan(v), v))
    assert math.isnan(vals[0]), vals
    assert vals[1] in (-math.inf, -sys.float_info.max) and vals[2] in (math.inf, sys.float_info.max), vals


def test_delete_with_json_body(api, client):
    name = unique("delbody")
    client.create_registered_model(name)
    client.set_registered_model_tag(name, "k", "v")
    r = api.delete("registered-models/delete-tag", {"name": name, "key": "k"})
    assert r.status_code == 200, r.text
    assert client.get_registered_model(name).tags == {}
    r = api.delete("registered-models/delete", {"name": name})
    assert r.status_code == 200, r.text
    r = api.get("registered-models/get", {"name": name})
    assert_error_response(r, 404, "RESOURCE_DOES_NOT_EXIST")
