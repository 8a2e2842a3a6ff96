"""`kiln train` command steps with a real scikit-learn script: it logs through the stock MLflow
client to the tracking server Kiln starts for it, exports with skl2onnx, and Kiln packages and
registers the ONNX model it logged."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import unique
from kilnproc import KILN_BIN

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

SCRIPT = Path(__file__).resolve().parent / "scripts" / "sk_train.py"


def kiln_train(server, project: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [str(KILN_BIN), "train", name, "--json", "--config", str(project), "--data-dir", str(server.data_dir)]
    if server.store_url:
        cmd += ["--store", server.store_url]
    return subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=600)


def test_sklearn_script_is_tracked_packaged_and_registered(server, tmp_path):
    model_name = unique("sk-model")
    experiment = unique("sk-exp")
    project = tmp_path / "kiln.toml"
    project.write_text(
        textwrap.dedent(
            f"""
            [train.sk]
            command = "{sys.executable} {SCRIPT}"
            experiment = "{experiment}"
            register = "{model_name}"
            timeout = "5m"
            env = {{ SK_C = "0.25" }}
            """
        )
    )
    out = kiln_train(server, project, "sk")
    assert out.returncode == 0, out.stderr
    outcome = json.loads(out.stdout)
    run_id = outcome["run_id"]
    assert outcome["registered"] == [model_name, "1"]
    assert f"training in run {run_id}" in out.stderr  # the script's output is shown live

    client = MlflowClient(server.url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["C"] == "0.25"  # KILN env from kiln.toml reached the script
    assert run.data.metrics["test_accuracy"] > 0.9
    for k in ("cpu_seconds", "wall_seconds", "peak_rss_mb", "cost_estimate"):
        assert k in run.data.metrics, k
    assert run.data.tags["kiln.train"] == "sk"
    assert run.data.tags["kiln.package_digest"] == outcome["package_digest"]
    artifacts = {f.path for f in client.list_artifacts(run_id, "logs")}
    assert "logs/command.log" in artifacts
    log = Path(client.download_artifacts(run_id, "logs/command.log", str(tmp_path))).read_text()
    assert "test accuracy" in log

    # The registered version is the ONNX package, with the script's metrics in its manifest.
    v = client.get_model_version(model_name, "1")
    assert v.run_id == run_id
    assert v.source.endswith("/package")
    assert v.tags["kiln.format"] == "onnx"
    pkg = Path(client.download_artifacts(run_id, "package", str(tmp_path / "pkg")))
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["format"] == "onnx"
    assert manifest["metrics"]["test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])
    assert manifest["lineage"]["run_id"] == run_id
    assert [i["name"] for i in manifest["inputs"]] == ["X"]
    assert {o["name"] for o in manifest["outputs"]} >= {"label", "probabilities"}

    verify = subprocess.run(
        [str(KILN_BIN), "package", "verify", str(pkg), "--allow-unsigned"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_failing_script_fails_its_run_with_its_output(server, tmp_path):
    experiment = unique("sk-fail")
    project = tmp_path / "kiln.toml"
    project.write_text(
        textwrap.dedent(
            f"""
            [train.bad]
            command = "{sys.executable} -c 'import mlflow; mlflow.start_run(); raise SystemExit(\\"no data\\")'"
            experiment = "{experiment}"
            """
        )
    )
    out = kiln_train(server, project, "bad")
    assert out.returncode == 2
    assert "no data" in out.stderr
    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
