"""Artifacts on an S3-compatible store: a real S3 server (moto's, from PyPI) on 127.0.0.1,
kiln started with `--artifacts s3://BUCKET/PREFIX`, and the mlflow client logging and
downloading through kiln's proxy. The objects are checked in the bucket itself."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time

import boto3
import pytest
import requests

from helpers import unique
from kilnproc import KilnServer, _free_port, create_pg_database, drop_pg_database

BUCKET = "kiln-artifacts"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    port = _free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url, timeout=1)
            break
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the S3 test server did not start")
            time.sleep(0.1)
    client = boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    yield url, client
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_kiln(server, s3_endpoint, tmp_path, monkeypatch):
    """A second kiln server, same metadata backend as the session's, artifacts on S3."""
    url, client = s3_endpoint
    for k, v in {
        "AWS_ENDPOINT": url,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    store_url = create_pg_database() if server.backend == "postgres" else None
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    srv = KilnServer(
        backend=server.backend,
        data_dir=data_dir,
        store_url=store_url,
        extra_args=["--artifacts", f"s3://{BUCKET}/kiln"],
    )
    srv.start()
    try:
        yield srv, client
    finally:
        srv.stop()
        if store_url:
            drop_pg_database(store_url)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_artifacts_round_trip_through_s3(s3_kiln, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    srv, s3 = s3_kiln
    mlflow.set_tracking_uri(srv.url)
    exp = mlflow.set_experiment(unique("s3"))
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024 + 123))  # three multipart parts
    notes = tmp_path / "notes.txt"
    notes.write_text("stored in S3\n")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big), artifact_path="model")
        mlflow.log_artifact(str(notes))
    run_id = run.info.run_id

    # The bytes are in the bucket, under the configured prefix.
    prefix = f"kiln/{exp.experiment_id}/{run_id}/artifacts/"
    keys = {
        o["Key"]: o["Size"]
        for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    }
    assert keys == {prefix + "model/weights.bin": big.stat().st_size, prefix + "notes.txt": 13}

    client = MlflowClient(tracking_uri=srv.url)
    listed = {f.path: (f.is_dir, f.file_size) for f in client.list_artifacts(run_id)}
    assert listed == {"model": (True, None), "notes.txt": (False, 13)}
    out = client.download_artifacts(run_id, "model/weights.bin", str(tmp_path / "dl"))
    with open(out, "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
    assert got == hashlib.sha256(big.read_bytes()).hexdigest()

    r = requests.delete(
        f"{srv.url}/api/2.0/mlflow-artifacts/artifacts/{exp.experiment_id}/{run_id}/artifacts/model",
        timeout=30,
    )
    assert r.status_code == 200, r.text
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
    assert left == [prefix + "notes.txt"]
