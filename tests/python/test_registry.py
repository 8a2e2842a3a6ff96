"""Model registry through the official client: models, versions, aliases, stages, search, errors."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from helpers import raises_mlflow, unique


@pytest.fixture
def model_run(client, experiment_id, tmp_path):
    """A finished run with a `model/` artifact directory; returns its run_id."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    (d / "weights.bin").write_bytes(b"\x00\x01\x02")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(d), artifact_path="model")
    return run.info.run_id


def test_registered_model_crud(client):
    name = unique("rm")
    t0 = int(time.time() * 1000) - 5000
    rm = client.create_registered_model(name, tags={"team": "ml"}, description="first")
    assert rm.name == name
    assert rm.description == "first"
    assert rm.tags == {"team": "ml"}
    assert rm.creation_timestamp >= t0
    assert rm.last_updated_timestamp >= rm.creation_timestamp

    got = client.get_registered_model(name)
    assert (got.name, got.description, got.tags) == (name, "first", {"team": "ml"})
    assert got.latest_versions == []
    assert got.aliases == {}

    client.update_registered_model(name, description="second")
    assert client.get_registered_model(name).description == "second"

    client.set_registered_model_tag(name, "k", "v")
    client.set_registered_model_tag(name, "team", "ops")
    assert client.get_registered_model(name).tags == {"team": "ops", "k": "v"}
    client.delete_registered_model_tag(name, "team")
    assert client.get_registered_model(name).tags == {"k": "v"}

    new = unique("rm-renamed")
    client.rename_registered_model(name, new)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(name)
    got = client.get_registered_model(new)
    assert got.description == "second" and got.tags == {"k": "v"}

    client.delete_registered_model(new)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(new)


def test_registry_errors(client):
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(unique("missing"))
    name = unique("dup")
    client.create_registered_model(name)
    with raises_mlflow("RESOURCE_ALREADY_EXISTS"):
        client.create_registered_model(name)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version(name, "1")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.delete_registered_model(unique("missing"))
    other = unique("other")
    client.create_registered_model(other)
    with raises_mlflow("RESOURCE_ALREADY_EXISTS"):
        client.rename_registered_model(name, other)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_model_versions_aliases_stages(client, model_run):
    name = unique("mv")
    client.create_registered_model(name)
    v1 = client.create_model_version(name, f"runs:/{model_run}/model", run_id=model_run, description="v one")
    assert v1.name == name
    assert v1.version == "1"
    assert v1.run_id == model_run
    assert v1.status == "READY"
    assert v1.current_stage == "None"
    assert v1.description == "v one"
    assert v1.source == f"runs:/{model_run}/model"
    assert v1.aliases == []

    v2 = client.create_model_version(name, f"runs:/{model_run}/model", run_id=model_run, tags={"t": "x"})
    assert v2.version == "2"
    assert v2.tags == {"t": "x"}

    got = client.get_model_version(name, "2")
    assert (got.version, got.run_id, got.tags) == ("2", model_run, {"t": "x"})

    client.update_model_version(name, "2", description="v two")
    assert client.get_model_version(name, "2").description == "v two"
    client.set_model_version_tag(name, "2", "k", "v")
    client.delete_model_version_tag(name, "2", "t")
    assert client.get_model_version(name, "2").tags == {"k": "v"}

    # Aliases
    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version(name, "1").aliases == ["champion"]
    assert client.get_registered_model(name).aliases == {"champion": "1", "challenger": "2"}
    client.set_registered_model_alias(name, "champion", "2")  # move
    mv = client.get_model_version_by_alias(name, "champion")
    assert mv.version == "2"
    assert sorted(mv.aliases) == ["challenger", "champion"]
    assert client.get_model_version(name, "1").aliases == []
    client.delete_registered_model_alias(name, "challenger")
    assert client.get_registered_model(name).aliases == {"champion": "2"}
    # MLflow answers INVALID_PARAMETER_VALUE ("alias ... not found"); not-found is acceptable too.
    with raises_mlflow(("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")):
        client.get_model_version_by_alias(name, "challenger")
    for reserved in ("latest", "v1", "V7"):
        with raises_mlflow("INVALID_PARAMETER_VALUE"):
            client.set_registered_model_alias(name, reserved, "1")
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.set_registered_model_alias(name, "bad alias!", "1")
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.set_registered_model_alias(name, "ghost", "99")

    # Stages (deprecated, still served)
    client.transition_model_version_stage(name, "1", "Production")
    mv2 = client.transition_model_version_stage(name, "2", "Production", archive_existing_versions=True)
    assert mv2.current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Archived"
    latest = client.get_latest_versions(name, stages=["Production"])
    assert [(m.version, m.current_stage) for m in latest] == [("2", "Production")]
    all_latest = client.get_latest_versions(name)
    assert sorted((m.version, m.current_stage) for m in all_latest) == [("1", "Archived"), ("2", "Production")]
    assert client.get_latest_versions(name, stages=["Staging"]) == []
    assert sorted((m.version, m.current_stage) for m in client.get_registered_model(name).latest_versions) == [
        ("1", "Archived"),
        ("2", "Production"),
    ]
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.transition_model_version_stage(name, "1", "Bogus")

    # Download URI resolves to where the artifacts are
    uri = client.get_model_version_download_uri(name, "1")
    run_root = client.get_run(model_run).info.artifact_uri
    # MLflow hands back the runs:/ source unchanged; resolving it to the artifact location is fine too.
    assert uri in (f"{run_root}/model", f"runs:/{model_run}/model"), (uri, run_root)

    # Delete a version: aliases on it go away, numbering never reuses it
    client.delete_model_version(name, "2")
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version(name, "2")
    assert client.get_registered_model(name).aliases == {}
    v3 = client.create_model_version(name, f"runs:/{model_run}/model", run_id=model_run)
    assert v3.version == "3"

    client.delete_registered_model(name)
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_model_version(name, "1")


def test_create_version_resolves_run_id_from_runs_uri(client, model_run):
    """A `runs:/<id>/...` source without run_id: MLflow refuses it (INVALID_PARAMETER_VALUE, "The run_id
    request parameter must identify the resource"); a server may instead fill in run_id. Never anything else."""
    name = unique("resolve")
    client.create_registered_model(name)
    try:
        mv = client.create_model_version(name, f"runs:/{model_run}/model")
    except mlflow.exceptions.MlflowException as e:
        assert e.error_code == "INVALID_PARAMETER_VALUE", e
        return
    assert mv.version == "1"
    assert mv.run_id == model_run
    assert client.get_model_version(name, "1").run_id == model_run


def test_runs_source_must_match_run_id(client, model_run, experiment_id):
    name = unique("mismatch")
    client.create_registered_model(name)
    other = client.create_run(experiment_id).info.run_id
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.create_model_version(name, f"runs:/{model_run}/model", run_id=other)


def test_register_model_fluent(client, model_run):
    name = unique("fluent")
    mv = mlflow.register_model(f"runs:/{model_run}/model", name)
    assert (mv.name, mv.version, mv.run_id) == (name, "1", model_run)
    # registering again adds a version to the existing model
    mv2 = mlflow.register_model(f"runs:/{model_run}/model", name, tags={"a": "b"})
    assert mv2.version == "2"
    assert client.get_model_version(name, "2").tags == {"a": "b"}


def test_load_artifacts_via_models_uri(client, model_run, tmp_path):
    name = unique("dl")
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{model_run}/model", run_id=model_run)
    client.set_registered_model_alias(name, "prod", "1")
    for uri in (f"models:/{name}/1", f"models:/{name}@prod"):
        local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / uri.replace("/", "_"))))
        # the client may add its own `registered_model_meta` file
        assert {"MLmodel", "weights.bin"} <= {p.name for p in local.iterdir()}
        assert (local / "weights.bin").read_bytes() == b"\x00\x01\x02"


def test_search_registered_models(client, api):
    prefix = unique("srm")
    names = [f"{prefix}-{i}" for i in range(7)]
    for i, n in enumerate(names):
        client.create_registered_model(n, tags={"grp": "even" if i % 2 == 0 else "odd"})

    # exact name: the client injects the prompt-tag filter
    got = client.search_registered_models(filter_string=f"name='{names[3]}'")
    assert [m.name for m in got] == [names[3]]
    got = mlflow.search_registered_models(filter_string=f"name = '{names[4]}'")
    assert [m.name for m in got] == [names[4]]

    got = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'", order_by=["name DESC"])
    assert [m.name for m in got] == list(reversed(names))
    got = client.search_registered_models(filter_string=f"name ILIKE '{prefix.upper()}%' AND tags.grp = 'odd'")
    assert sorted(m.name for m in got) == names[1::2]

    # pagination
    seen, token = [], None
    for _ in range(10):
        page = client.search_registered_models(
            filter_string=f"name LIKE '{prefix}%'", max_results=3, order_by=["name ASC"], page_token=token
        )
        seen.extend(m.name for m in page)
        token = page.token
        if not token:
            break
    assert seen == names

    # prompts are excluded by the client-side filter; a model tagged as a prompt must not appear
    prompt_like = f"{prefix}-prompt"
    # the client refuses to create prompts as models, so go through the REST API
    r = api.post(
        "registered-models/create",
        {"name": prompt_like, "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]},
    )
    assert r.status_code == 200, r.text
    got = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'")
    assert prompt_like not in [m.name for m in got]
    assert len(got) == len(names)


def test_search_model_versions(client, model_run, experiment_id):
    name = unique("smv")
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, f"runs:/{model_run}/model", run_id=model_run)
    with mlflow.start_run() as other:
        pass
    client.create_model_version(name, f"runs:/{other.info.run_id}/model", run_id=other.info.run_id)

    got = client.search_model_versions(f"name='{name}'")
    assert sorted(int(m.version) for m in got) == [1, 2, 3, 4]
    assert all(m.name == name for m in got)

    got = client.search_model_versions(f"run_id='{model_run}'")
    assert sorted((m.name, m.version) for m in got) == [(name, "1"), (name, "2"), (name, "3")]

    got = client.search_model_versions(f"name='{name}' AND run_id='{other.info.run_id}'")
    assert [m.version for m in got] == ["4"]

    got = client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"], max_results=2)
    assert [m.version for m in got] == ["4", "3"]
    assert got.token

    got = mlflow.search_model_versions(filter_string=f"name = '{name}' AND version_number > 2")
    assert sorted(m.version for m in got) == ["3", "4"]


def test_delete_alias_via_raw_delete_with_body(api, client, model_run):
    """DELETE registered-models/alias carries a JSON body; the HTTP stack must not drop it."""
    name = unique("alias")
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{model_run}/model", run_id=model_run)
    client.set_registered_model_alias(name, "a1", "1")
    r = api.delete("registered-models/alias", {"name": name, "alias": "a1"})
    assert r.status_code == 200, r.text
    assert client.get_registered_model(name).aliases == {}
    # GET registered-models/alias is get-by-alias
    client.set_registered_model_alias(name, "a2", "1")
    r = api.get("registered-models/alias", {"name": name, "alias": "a2"})
    assert r.status_code == 200, r.text
    assert r.json()["model_version"]["version"] == "1"
    assert r.json()["model_version"]["aliases"] == ["a2"]


def test_registry_search_ordering_and_tags(client, model_run):
    prefix = unique("ord")
    names = [f"{prefix}-{i}" for i in range(3)]
    for n in names:
        client.create_registered_model(n)
        time.sleep(0.01)
    time.sleep(0.01)
    client.update_registered_model(names[0], description="touched last")
    got = client.search_registered_models(
        filter_string=f"name LIKE '{prefix}%'", order_by=["last_updated_timestamp DESC"]
    )
    assert [m.name for m in got][0] == names[0]
    # MLflow's "timestamp" order key means last_updated_timestamp as well
    got = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'", order_by=["timestamp ASC"])
    assert [m.name for m in got] == [names[1], names[2], names[0]]

    client.create_model_version(names[1], f"runs:/{model_run}/model", run_id=model_run, tags={"env": "prod"})
    client.create_model_version(names[1], f"runs:/{model_run}/model", run_id=model_run, tags={"env": "dev"})
    got = client.search_model_versions(f"name = '{names[1]}' AND tags.env = 'prod'")
    assert [m.version for m in got] == ["1"]
    got = client.search_model_versions(f"name = '{names[1]}'", order_by=["version_number ASC"])
    assert [m.version for m in got] == ["1", "2"]
    # latest_versions reflects deletions
    client.delete_model_version(names[1], "2")
    assert [m.version for m in client.get_registered_model(names[1]).latest_versions] == ["1"]
