"""MLflow 3 logged models: create, finalize, get, tags, params, search, register, pyfunc round trip."""

from __future__ import annotations

import re
import time

import mlflow
import pytest
from mlflow.entities import LoggedModelStatus

from helpers import raises_mlflow, unique

MODEL_ID = re.compile(r"m-[0-9a-f]{32}")


def test_create_get_finalize(client, experiment_id):
    with mlflow.start_run() as run:
        pass
    t0 = int(time.time() * 1000) - 5000
    lm = client.create_logged_model(
        experiment_id,
        name="my-model",
        source_run_id=run.info.run_id,
        tags={"t1": "v1"},
        params={"alpha": "0.5"},
        model_type="agent",
    )
    assert MODEL_ID.fullmatch(lm.model_id), lm.model_id
    assert lm.name == "my-model"
    assert lm.experiment_id == experiment_id
    assert lm.source_run_id == run.info.run_id
    assert lm.status == LoggedModelStatus.PENDING
    assert lm.tags.get("t1") == "v1"
    assert lm.params == {"alpha": "0.5"}
    assert lm.model_type == "agent"
    assert lm.creation_timestamp >= t0
    assert lm.artifact_location.endswith(f"/models/{lm.model_id}/artifacts"), lm.artifact_location
    assert lm.model_uri == f"models:/{lm.model_id}"

    got = client.get_logged_model(lm.model_id)
    assert (got.model_id, got.name, got.status, got.source_run_id) == (
        lm.model_id,
        "my-model",
        LoggedModelStatus.PENDING,
        run.info.run_id,
    )

    done = client.finalize_logged_model(lm.model_id, LoggedModelStatus.READY)
    assert done.status == LoggedModelStatus.READY
    assert client.get_logged_model(lm.model_id).status == LoggedModelStatus.READY


def test_fluent_initialize_and_external(client, experiment_id):
    lm = mlflow.initialize_logged_model(name="init-model", params={"k": "v"})
    assert MODEL_ID.fullmatch(lm.model_id)
    assert lm.experiment_id == experiment_id
    assert lm.status == LoggedModelStatus.PENDING
    ext = mlflow.create_external_model(name="ext-model", tags={"owner": "me"})
    assert ext.status == LoggedModelStatus.READY
    got = client.get_logged_model(ext.model_id)
    assert got.name == "ext-model"
    assert got.tags.get("owner") == "me"
    assert got.status == LoggedModelStatus.READY
    failed = mlflow.finalize_logged_model(lm.model_id, "FAILED")
    assert failed.status == LoggedModelStatus.FAILED


def test_random_name_when_unset(client, experiment_id):
    lm = client.create_logged_model(experiment_id)
    assert lm.name, "server must generate a name"
    assert client.get_logged_model(lm.model_id).name == lm.name


def test_tags_and_params(client, experiment_id):
    lm = client.create_logged_model(experiment_id, name="tagged")
    client.set_logged_model_tags(lm.model_id, {"a": "1", "b": "2"})
    client.set_logged_model_tags(lm.model_id, {"a": "1b"})
    user_tags = lambda m: {k: v for k, v in m.tags.items() if not k.startswith("mlflow.")}  # noqa: E731
    assert user_tags(client.get_logged_model(lm.model_id)) == {"a": "1b", "b": "2"}
    client.delete_logged_model_tag(lm.model_id, "b")
    assert user_tags(client.get_logged_model(lm.model_id)) == {"a": "1b"}
    mlflow.set_logged_model_tags(lm.model_id, {"c": "3"})
    assert user_tags(mlflow.get_logged_model(lm.model_id)) == {"a": "1b", "c": "3"}
    client.log_model_params(lm.model_id, {"p": "q", "n": "5"})
    assert client.get_logged_model(lm.model_id).params == {"p": "q", "n": "5"}


def test_unknown_logged_model(client):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_logged_model("m-" + "0" * 32)


def test_delete_logged_model(client, experiment_id):
    lm = client.create_logged_model(experiment_id, name="doomed")
    client.delete_logged_model(lm.model_id)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_logged_model(lm.model_id)
    found = client.search_logged_models([experiment_id])
    assert lm.model_id not in [m.model_id for m in found]


def test_model_metrics(client, experiment_id):
    lm = client.create_logged_model(experiment_id, name="scored")
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.91, step=1, model_id=lm.model_id)
        mlflow.log_metric("accuracy", 0.93, step=2, model_id=lm.model_id)
    got = client.get_logged_model(lm.model_id)
    vals = sorted((m.key, m.step, m.value) for m in got.metrics or [])
    assert vals == [("accuracy", 1, 0.91), ("accuracy", 2, 0.93)], got.metrics
    assert all(m.run_id == run.info.run_id for m in got.metrics)
    # search on model metrics
    found = client.search_logged_models([experiment_id], filter_string="metrics.accuracy > 0.92")
    assert [m.model_id for m in found] == [lm.model_id]


def test_search_logged_models(client, experiment_id):
    ids = []
    for i in range(5):
        lm = client.create_logged_model(
            experiment_id, name=f"s{i}", params={"idx": str(i)}, tags={"parity": "even" if i % 2 == 0 else "odd"}
        )
        if i % 2 == 0:
            client.finalize_logged_model(lm.model_id, LoggedModelStatus.READY)
        ids.append(lm.model_id)
        time.sleep(0.005)  # distinct creation timestamps

    everything = client.search_logged_models([experiment_id])
    assert sorted(m.model_id for m in everything) == sorted(ids)

    by_name = client.search_logged_models([experiment_id], filter_string="name = 's3'")
    assert [m.model_id for m in by_name] == [ids[3]]
    by_tag = client.search_logged_models([experiment_id], filter_string="tags.parity = 'odd'")
    assert sorted(m.model_id for m in by_tag) == sorted([ids[1], ids[3]])
    by_param = client.search_logged_models([experiment_id], filter_string="params.idx = '4'")
    assert [m.model_id for m in by_param] == [ids[4]]

    asc = client.search_logged_models([experiment_id], order_by=[{"field_name": "creation_time", "ascending": True}])
    assert [m.model_id for m in asc] == ids
    desc = client.search_logged_models([experiment_id], order_by=[{"field_name": "creation_time", "ascending": False}])
    assert [m.model_id for m in desc] == list(reversed(ids))

    seen, token = [], None
    for _ in range(10):
        page = client.search_logged_models(
            [experiment_id],
            max_results=2,
            order_by=[{"field_name": "creation_time", "ascending": True}],
            page_token=token,
        )
        assert len(page) <= 2
        seen.extend(m.model_id for m in page)
        token = page.token
        if not token:
            break
    assert seen == ids

    fluent = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
    assert sorted(m.model_id for m in fluent) == sorted(ids)


def test_register_logged_model_resolves_run_id(client, experiment_id):
    with mlflow.start_run() as run:
        lm = mlflow.initialize_logged_model(name="reg-me", source_run_id=run.info.run_id)
    mlflow.finalize_logged_model(lm.model_id, "READY")
    name = unique("lm-reg")
    mv = mlflow.register_model(f"models:/{lm.model_id}", name)
    assert mv.version == "1"
    # MLflow 3.17's SQL server does not echo model_id on versions; kiln may.
    assert mv.model_id in (None, lm.model_id)
    assert mv.run_id == run.info.run_id, "server must derive run_id from the logged model's source_run_id"
    assert mv.source == f"models:/{lm.model_id}"
    got = client.get_model_version(name, "1")
    assert got.run_id == run.info.run_id and got.model_id in (None, lm.model_id)
    assert got.source == f"models:/{lm.model_id}"

    # runs:/<run>/<model name> with no MLmodel file falls back to the logged model of that name
    mv2 = mlflow.register_model(f"runs:/{run.info.run_id}/reg-me", name)
    assert mv2.version == "2"
    assert mv2.model_id in (None, lm.model_id)
    assert mv2.source == f"models:/{lm.model_id}"
    assert mv2.run_id == run.info.run_id

    # the registry records the version on the logged model
    tags = client.get_logged_model(lm.model_id).tags
    assert "mlflow.modelVersions" in tags, tags
    assert name in tags["mlflow.modelVersions"]


def _pyfunc_model():
    """Built lazily: importing mlflow.pyfunc needs numpy and pandas."""
    import mlflow.pyfunc

    class AddN(mlflow.pyfunc.PythonModel):
        def __init__(self, n):
            self.n = n

        def predict(self, context, model_input, params=None):
            return model_input.apply(lambda col: col + self.n)

    return AddN(5)


def test_pyfunc_log_register_load_predict(client, experiment_id):
    pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    name = unique("pyfunc")
    with mlflow.start_run() as run:
        mlflow.log_metric("score", 0.75)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=_pyfunc_model(),
            registered_model_name=name,
            pip_requirements=["mlflow-skinny==3.17.2"],
        )
    assert MODEL_ID.fullmatch(info.model_id), info.model_id
    assert str(info.registered_model_version) == "1"

    lm = client.get_logged_model(info.model_id)
    assert lm.status == LoggedModelStatus.READY
    assert lm.source_run_id == run.info.run_id
    assert lm.name == "model"

    # the run records the model as an output
    outputs = client.get_run(run.info.run_id).outputs
    assert outputs is not None
    assert [o.model_id for o in outputs.model_outputs] == [info.model_id]

    mv = client.get_model_version(name, "1")
    assert mv.model_id in (None, info.model_id)
    assert mv.source == f"models:/{info.model_id}"
    assert mv.run_id == run.info.run_id
    assert mv.status == "READY"

    files = sorted(f.path for f in client.list_logged_model_artifacts(info.model_id))
    assert "MLmodel" in files and "python_model.pkl" in files, files

    client.set_registered_model_alias(name, "champion", "1")
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    out = loaded.predict(pd.DataFrame({"x": [1, 2, 3]}))
    assert list(out["x"]) == [6, 7, 8]
    # also by model id and by version
    loaded2 = mlflow.pyfunc.load_model(f"models:/{info.model_id}")
    assert list(loaded2.predict(pd.DataFrame({"x": [0]}))["x"]) == [5]
    loaded3 = mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert list(loaded3.predict(pd.DataFrame({"x": [10]}))["x"]) == [15]
