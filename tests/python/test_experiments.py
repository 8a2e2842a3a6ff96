"""Experiments through the official MLflow client: create, get, search, update, delete, restore, tags."""

from __future__ import annotations

import time
import uuid

import mlflow
import pytest
from mlflow.entities import ViewType

from helpers import raises_mlflow, unique


def test_default_experiment_exists(client):
    exp = client.get_experiment("0")
    assert exp.experiment_id == "0"
    assert exp.name == "Default"
    assert exp.lifecycle_stage == "active"
    by_name = client.get_experiment_by_name("Default")
    assert by_name is not None and by_name.experiment_id == "0"


def test_set_experiment_creates_and_reuses(client):
    name = unique("setexp")
    assert client.get_experiment_by_name(name) is None
    before_ms = int(time.time() * 1000) - 5000
    exp = mlflow.set_experiment(name)
    assert exp.name == name
    assert exp.lifecycle_stage == "active"
    assert exp.experiment_id and exp.experiment_id != "0"
    assert isinstance(exp.experiment_id, str)
    assert exp.artifact_location, "artifact_location must be set by the server"
    assert exp.creation_time is not None and exp.creation_time >= before_ms
    assert exp.last_update_time is not None and exp.last_update_time >= exp.creation_time

    # Second call finds the existing experiment instead of creating one.
    again = mlflow.set_experiment(name)
    assert again.experiment_id == exp.experiment_id

    by_id = client.get_experiment(exp.experiment_id)
    assert by_id.name == name
    assert by_id.artifact_location == exp.artifact_location
    by_name = client.get_experiment_by_name(name)
    assert by_name.experiment_id == exp.experiment_id

    # set_experiment(experiment_id=...) also works and activates it for runs.
    via_id = mlflow.set_experiment(experiment_id=exp.experiment_id)
    assert via_id.name == name
    with mlflow.start_run() as run:
        assert run.info.experiment_id == exp.experiment_id


def test_create_experiment_with_tags_and_artifact_location(client):
    name = unique("created")
    exp_id = client.create_experiment(name, tags={"team": "ml", "owner": "alice"})
    assert isinstance(exp_id, str) and exp_id
    exp = client.get_experiment(exp_id)
    assert exp.name == name
    assert exp.tags == {"team": "ml", "owner": "alice"}


def test_get_missing_experiment(client):
    assert client.get_experiment_by_name(unique("nope")) is None
    assert mlflow.get_experiment_by_name(unique("nope")) is None
    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.get_experiment("987654321")


def test_create_duplicate_raises(client):
    name = unique("dup")
    client.create_experiment(name)
    with raises_mlflow("RESOURCE_ALREADY_EXISTS"):
        client.create_experiment(name)


def test_create_invalid_name(client):
    with raises_mlflow("INVALID_PARAMETER_VALUE"):
        client.create_experiment("")


def test_search_filter_order_and_pagination(client):
    prefix = f"srch{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}-{i:02d}" for i in range(12)]
    ids = {}
    for i, n in enumerate(names):
        ids[n] = client.create_experiment(n, tags={"team": "a" if i % 3 == 0 else "b", "idx": str(i)})
    # An experiment that must never match the prefix filter.
    client.create_experiment(f"other{prefix}")

    found = client.search_experiments(filter_string=f"name LIKE '{prefix}%'", max_results=1000)
    assert sorted(e.name for e in found) == names

    asc = client.search_experiments(filter_string=f"name LIKE '{prefix}%'", order_by=["name ASC"])
    assert [e.name for e in asc] == names
    desc = client.search_experiments(filter_string=f"name LIKE '{prefix}%'", order_by=["name DESC"])
    assert [e.name for e in desc] == list(reversed(names))

    # creation_time ordering with experiment_id as a tiebreaker must be consistent with creation order.
    by_time = client.search_experiments(
        filter_string=f"name LIKE '{prefix}%'", order_by=["creation_time DESC", "experiment_id DESC"]
    )
    times = [e.creation_time for e in by_time]
    assert times == sorted(times, reverse=True)

    team_a = client.search_experiments(
        filter_string=f"name LIKE '{prefix}%' AND tags.team = 'a'", order_by=["name ASC"]
    )
    assert [e.name for e in team_a] == [n for i, n in enumerate(names) if i % 3 == 0]
    assert all(e.tags["team"] == "a" for e in team_a)

    team_not_a = client.search_experiments(filter_string=f"name LIKE '{prefix}%' AND tags.team != 'a'")
    assert sorted(e.name for e in team_not_a) == [n for i, n in enumerate(names) if i % 3 != 0]

    exact = client.search_experiments(filter_string=f"name = '{names[5]}'")
    assert [e.experiment_id for e in exact] == [ids[names[5]]]

    ilike = client.search_experiments(filter_string=f"name ILIKE '{prefix.upper()}-0%'")
    assert sorted(e.name for e in ilike) == names[:10]

    # Pagination: pages of 5 until exhausted, each experiment exactly once, order respected.
    seen = []
    token = None
    pages = 0
    while True:
        page = client.search_experiments(
            filter_string=f"name LIKE '{prefix}%'", order_by=["name ASC"], max_results=5, page_token=token
        )
        pages += 1
        assert len(page) <= 5
        seen.extend(e.name for e in page)
        token = page.token
        if not token:
            break
        assert pages < 10, "pagination does not terminate"
    assert seen == names
    assert pages == 3


def test_fluent_search_experiments(client):
    prefix = f"fl{uuid.uuid4().hex[:8]}"
    for i in range(3):
        client.create_experiment(f"{prefix}-{i}")
    found = mlflow.search_experiments(filter_string=f"name LIKE '{prefix}%'", order_by=["name"])
    assert [e.name for e in found] == [f"{prefix}-{i}" for i in range(3)]


def test_rename_experiment(client):
    old, new = unique("old"), unique("new")
    exp_id = client.create_experiment(old)
    before = client.get_experiment(exp_id)
    time.sleep(0.01)
    client.rename_experiment(exp_id, new)
    exp = client.get_experiment(exp_id)
    assert exp.name == new
    assert exp.last_update_time >= before.last_update_time
    assert client.get_experiment_by_name(old) is None
    assert client.get_experiment_by_name(new).experiment_id == exp_id


@pytest.mark.stricter_than_mlflow  # MLflow 3.17 leaks a SQL IntegrityError as BAD_REQUEST here
def test_rename_onto_existing_name(client):
    exp_id = client.create_experiment(unique("a"))
    other = unique("other")
    client.create_experiment(other)
    with raises_mlflow("RESOURCE_ALREADY_EXISTS"):
        client.rename_experiment(exp_id, other)
    assert client.get_experiment(exp_id).name != other


def test_delete_and_restore(client):
    name = unique("del")
    exp_id = client.create_experiment(name)
    client.delete_experiment(exp_id)
    exp = client.get_experiment(exp_id)
    assert exp.lifecycle_stage == "deleted"

    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY, filter_string=f"name = '{name}'")
    assert [e.experiment_id for e in deleted] == [exp_id]
    active = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, filter_string=f"name = '{name}'")
    assert list(active) == []
    all_ = client.search_experiments(view_type=ViewType.ALL, filter_string=f"name = '{name}'")
    assert [e.experiment_id for e in all_] == [exp_id]

    # A deleted experiment still reserves its name.
    with raises_mlflow("RESOURCE_ALREADY_EXISTS"):
        client.create_experiment(name)

    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    active = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, filter_string=f"name = '{name}'")
    assert [e.experiment_id for e in active] == [exp_id]

    with raises_mlflow("RESOURCE_DOES_NOT_EXIST"):
        client.delete_experiment("987654322")


def test_experiment_tags(client):
    exp_id = client.create_experiment(unique("tags"))
    client.set_experiment_tag(exp_id, "k1", "v1")
    client.set_experiment_tag(exp_id, "k2", "v2")
    client.set_experiment_tag(exp_id, "k1", "v1-updated")  # overwrite
    assert client.get_experiment(exp_id).tags == {"k1": "v1-updated", "k2": "v2"}
    client.delete_experiment_tag(exp_id, "k2")
    assert client.get_experiment(exp_id).tags == {"k1": "v1-updated"}

    # fluent set_experiment_tag(s) act on the active experiment
    mlflow.set_experiment(experiment_id=exp_id)
    mlflow.set_experiment_tags({"a": "1", "b": "2"})
    assert client.get_experiment(exp_id).tags == {"k1": "v1-updated", "a": "1", "b": "2"}


def test_experiment_name_filter_is_case_sensitive(client):
    prefix = f"case{uuid.uuid4().hex[:8]}"
    client.create_experiment(f"{prefix}-x")
    assert list(client.search_experiments(filter_string=f"name LIKE '{prefix.upper()}%'")) == []
    assert [e.name for e in client.search_experiments(filter_string=f"name ILIKE '{prefix.upper()}%'")] == [
        f"{prefix}-x"
    ]


def test_delete_experiment_hides_its_runs(client):
    exp_id = client.create_experiment(unique("cascade"))
    rid = client.create_run(exp_id).info.run_id
    client.delete_experiment(exp_id)
    assert client.get_run(rid).info.lifecycle_stage == "deleted"
    assert list(client.search_runs([exp_id], run_view_type=ViewType.ACTIVE_ONLY)) == []
    client.restore_experiment(exp_id)
    assert client.get_run(rid).info.lifecycle_stage == "active"
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [rid]


def test_experiment_tag_value_limit(client, api):
    exp_id = client.create_experiment(unique("taglimit"))
    big = "x" * 5000
    client.set_experiment_tag(exp_id, "big", big)
    assert client.get_experiment(exp_id).tags["big"] == big
    r = api.post("experiments/set-experiment-tag", {"experiment_id": exp_id, "key": "k" * 251, "value": "v"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text


def test_experiment_name_too_long(api):
    r = api.post("experiments/create", {"name": "n" * 501})
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
