"""Dataset versions recorded by `kiln data` are MLflow run inputs that the stock client sees."""

from __future__ import annotations

import hashlib
import json
import subprocess

from mlflow.tracking import MlflowClient

from helpers import unique
from kilnproc import KILN_BIN, REPO

WEATHER = REPO / "data" / "nycflights13" / "weather.csv"


def kiln_data(server, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(KILN_BIN), "data", *args, "--config", str(REPO / "kiln.toml"), "--data-dir", str(server.data_dir)]
    if server.store_url:
        cmd += ["--store", server.store_url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_registered_dataset_is_an_input_of_the_run(server):
    client = MlflowClient(server.url)
    exp = client.create_experiment(unique("datasets"))
    run = client.create_run(exp)
    out = kiln_data(server, "register", "weather", "--run-id", run.info.run_id)
    assert out.returncode == 0, out.stderr
    digest = hashlib.sha256(WEATHER.read_bytes()).hexdigest()
    assert digest in out.stdout

    got = client.get_run(run.info.run_id)
    inputs = got.inputs.dataset_inputs
    assert len(inputs) == 1
    d = inputs[0].dataset
    assert d.name == "weather"
    assert d.digest == digest
    assert d.source_type == "local"
    assert json.loads(d.source)["uri"].endswith("data/nycflights13/weather.csv")
    cols = {c["name"]: c["type"] for c in json.loads(d.schema)["mlflow_colspec"]}
    assert cols["temp"] == "double"
    assert cols["origin"] == "string"
    assert cols["time_hour"] == "datetime"
    assert cols["year"] == "long"
    assert json.loads(d.profile)["num_rows"] == 26115
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"

    # MLflow's search grammar finds the run by the dataset's digest.
    found = client.search_runs([exp], filter_string=f"datasets.digest = '{digest}'")
    assert [r.info.run_id for r in found] == [run.info.run_id]

    # Registering the same bytes again adds no version; `kiln data versions` lists it.
    again = kiln_data(server, "register", "weather")
    assert again.returncode == 0, again.stderr
    versions = kiln_data(server, "versions", "weather", "--json")
    assert versions.returncode == 0, versions.stderr
    listed = json.loads(versions.stdout)
    assert [v["digest"] for v in listed] == [digest]
    assert listed[0]["rows"] == 26115
    assert listed[0]["profiled"] is True


def test_register_to_an_unknown_run_fails_with_the_mlflow_error(server):
    out = kiln_data(server, "register", "weather", "--run-id", "0" * 32)
    assert out.returncode == 2
    assert "0" * 32 in out.stderr
