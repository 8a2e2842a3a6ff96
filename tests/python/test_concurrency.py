"""Concurrent clients on the shared server: races the MLflow client relies on being handled."""

from __future__ import annotations

import concurrent.futures as cf

from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from helpers import unique


def test_concurrent_model_version_numbers_unique(client, tracking, experiment_id):
    name = unique("race-mv")
    client.create_registered_model(name)
    rid = client.create_run(experiment_id).info.run_id

    def make(_):
        c = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
        return c.create_model_version(name, f"runs:/{rid}/model", run_id=rid).version

    with cf.ThreadPoolExecutor(8) as ex:
        versions = list(ex.map(make, range(24)))
    assert sorted(int(v) for v in versions) == list(range(1, 25))
    found = client.search_model_versions(f"name='{name}'")
    assert sorted(int(m.version) for m in found) == list(range(1, 25))


def test_concurrent_create_same_experiment(tracking):
    name = unique("race-exp")

    def create(_):
        try:
            return MlflowClient(tracking_uri=tracking).create_experiment(name)
        except MlflowException as e:
            return e.error_code

    with cf.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(create, range(8)))
    ids = [r for r in results if r != "RESOURCE_ALREADY_EXISTS"]
    assert len(ids) == 1, results
    assert results.count("RESOURCE_ALREADY_EXISTS") == 7, results
    assert MlflowClient(tracking_uri=tracking).get_experiment_by_name(name).experiment_id == ids[0]


def test_concurrent_logging_to_one_run(client, tracking, experiment_id):
    rid = client.create_run(experiment_id).info.run_id

    def log(t):
        c = MlflowClient(tracking_uri=tracking)
        for step in range(20):
            c.log_batch(
                rid,
                metrics=[Metric("shared", float(t * 100 + step), 1000 + step, step), Metric(f"own{t}", float(step), 1, step)],
                synchronous=True,
            )
        c.log_param(rid, "same", "value")  # idempotent from every thread
        return t

    with cf.ThreadPoolExecutor(6) as ex:
        assert sorted(ex.map(log, range(6))) == list(range(6))
    run = client.get_run(rid)
    assert len(client.get_metric_history(rid, "shared")) == 120
    for t in range(6):
        assert run.data.metrics[f"own{t}"] == 19.0
        assert len(client.get_metric_history(rid, f"own{t}")) == 20
    # latest 'shared': max step (19), same timestamp for all threads at step 19 -> the max value wins
    assert run.data.metrics["shared"] == 519.0
    assert run.data.params == {"same": "value"}
