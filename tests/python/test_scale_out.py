"""Kiln beyond one machine, end to end: metadata in PostgreSQL, artifacts and the prediction
log in an S3-compatible object store (moto's server, from PyPI, pinned in requirements.txt).

The real `kiln` binary runs the whole loop on the bundled nycflights13 data with
`KILN_STORE=postgres://…` (a fresh database) and `KILN_ARTIFACTS=s3://BUCKET/PREFIX`:

1. `kiln data validate` and `kiln train`: the run is tracked in PostgreSQL, the package is
   stored in the bucket, the version is registered;
2. `kiln server` on the same stores runs the release gates; `kiln release` moves `champion`;
3. `kiln serve --model delay=delay@champion --prediction-log s3://… --monitor` loads the
   version from the registry and the package from S3, answers real predictions and, stopped
   with SIGTERM, flushes the log as Parquet into the bucket;
4. `kiln feedback import` stores labels; `kiln monitor report` reads the log back from S3 and
   reports realised metrics;
5. `kiln lineage delay@champion` answers from PostgreSQL.

Nothing is written under the test's data dir except local scratch (the feature build cache,
package staging and quarantine files; see docs/operations.md). The assertions look into the
bucket with boto3 and into the database with psql, not only at kiln's own answers.

Skipped when PostgreSQL is unreachable, unless KILN_REQUIRE_PG=1 (CI), where that fails.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import boto3
import pytest
import requests

from kilnproc import (
    KILN_BIN,
    REPO,
    _free_port,
    create_pg_database,
    drop_pg_database,
    postgres_unavailable_reason,
)

BUCKET = "kiln-scale-out"
ARTIFACTS = f"s3://{BUCKET}/artifacts"
PREDLOG = f"s3://{BUCKET}/predlog"
ADMIN = "scale-out-admin"

TRAIN = """
[train.delay]
features = "delay"
algorithm = "gbdt"
register = "delay"
[train.delay.params]
num_rounds = 20
num_leaves = 15
seed = 7

[release.delay]
purpose = "Warn travellers that a flight from New York is likely to arrive late."

[release.delay.aliases.champion]
validated_data = true
compatible_inputs = true
latency = { p99_ms = 500.0, rows = 1, iterations = 20 }

[[release.delay.aliases.champion.metrics]]
metric = "test_auc"
min = 0.55

[deploy.delay]
model = "delay@champion"
slo = { p99_ms = 500, availability = 99 }

[monitor.delay]
interval = "500ms"
drift = { every = "500ms", rows = 100, min_rows = 50, window = "10m" }
alerts = [
  { name = "Slow", when = "p99_ms > 5000", for = "0s", severity = "ticket" },
]
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pg_store():
    """A fresh PostgreSQL database as a kiln store URL; dropped afterwards."""
    reason = postgres_unavailable_reason()
    if reason:
        if os.environ.get("KILN_REQUIRE_PG") == "1":
            pytest.fail(f"KILN_REQUIRE_PG=1 but PostgreSQL is unavailable: {reason}")
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3-compatible server (moto's) on 127.0.0.1 with an empty bucket: (url, boto3 client)."""
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
                proc.kill()
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
    try:
        yield url, client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def tracking():
    """This module drives the kiln binary on its own stores: the suite's shared tracking
    server (conftest's autouse fixture, one per backend) is not wanted here."""
    yield None


def project(dir: Path) -> Path:
    """The repository's kiln.toml with its project, data and features (sources by absolute
    path), and this test's training, release, deploy and monitor sections."""
    wanted = ("[project]", "[data.", "[[data.", "[features.", "[[features.")
    kept, keep = [], True
    for line in (REPO / "kiln.toml").read_text().splitlines():
        t = line.lstrip()
        if t.startswith("["):
            keep = t.startswith(wanted)
        if keep:
            kept.append(line)
    text = "\n".join(kept).replace('source = "data/', f'source = "{REPO}/data/')
    path = dir / "kiln.toml"
    path.write_text(text + "\n" + TRAIN)
    return path


class Kiln:
    """Runs `kiln` in the project directory with both stores given by environment only."""

    def __init__(self, dir: Path, store: str, s3_url: str):
        self.dir = dir
        self.data_dir = dir / "local"  # scratch only: the stores are PostgreSQL and S3
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KILN_", "AWS_")) or k == "KILN_REQUIRE_PG"
        }
        self.env.update(
            {
                "KILN_STORE": store,
                "KILN_ARTIFACTS": ARTIFACTS,
                "KILN_DATA_DIR": str(self.data_dir),
                "KILN_CONFIG": str(dir / "kiln.toml"),
                "KILN_LOG": "warn",
                "NO_COLOR": "1",
                # object_store's AmazonS3Builder::from_env reads these.
                "AWS_ENDPOINT": s3_url,
                "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_REGION": "us-east-1",
            }
        )

    def run(self, *args: str, code: int = 0, timeout: float = 300) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [str(KILN_BIN), *args],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert r.returncode == code, (
            f"kiln {' '.join(args)} exited {r.returncode}, expected {code}\n"
            f"stdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
        )
        return r

    def json(self, *args: str, code: int = 0):
        return json.loads(self.run(*args, code=code).stdout)

    def start(self, *args: str) -> "Process":
        return Process(self, list(args))


class Process:
    """A long-running `kiln server` / `kiln serve` on port 0; its URL from the first stdout line."""

    def __init__(self, kiln: Kiln, args: list[str]):
        self.log_path = kiln.dir / f"{args[0]}.log"
        self.log = open(self.log_path, "ab")
        env = dict(kiln.env, KILN_LOG="info")
        self.proc = subprocess.Popen(
            [str(KILN_BIN), *args, "--host", "127.0.0.1", "--port", "0"],
            cwd=kiln.dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
        )
        first: list[bytes] = []

        def pump() -> None:
            first.append(self.proc.stdout.readline())
            for chunk in iter(self.proc.stdout.readline, b""):
                self.log.write(chunk)
                self.log.flush()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 120
        while not first:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"kiln {' '.join(args)} did not start:\n{self.tail()}")
            time.sleep(0.05)
        line = first[0].decode(errors="replace").strip()
        assert line.startswith("Listening on "), f"{line!r}\n{self.tail()}"
        self.url = line[len("Listening on "):].rstrip("/")

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM (a graceful stop) and wait; SIGKILL if it hangs. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"ignored SIGTERM for {timeout}s:\n{self.tail()}")
        return self.proc.returncode

    def tail(self, n: int = 40) -> str:
        self.log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def keys(s3, prefix: str) -> dict[str, int]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out


def psql(store_url: str, sql: str) -> list[list[str]]:
    """Rows of a query on the kiln database itself (not through kiln)."""
    from urllib.parse import urlparse

    u = urlparse(store_url)
    r = subprocess.run(
        ["psql", "-h", u.hostname, "-p", str(u.port or 5432), "-U", u.username or "postgres",
         "-d", u.path.lstrip("/"), "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines() if line]


def value(text: str):
    """A CSV cell as a JSON value: NA is null, numbers are numbers, the rest text."""
    if text in ("", "NA"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def flights_with_weather(inputs: list[str], months: set[int], want: int) -> list[tuple[list, bool]]:
    """`want` real flights of `months` with their origin's weather at the scheduled hour, as
    the package's raw inputs, and whether each arrived more than 15 minutes late."""
    with open(REPO / "data/nycflights13/weather.csv", newline="") as f:
        weather = {(w["origin"], w["time_hour"]): w for w in csv.DictReader(f)}
    with zipfile.ZipFile(REPO / "data/nycflights13/flights.csv.zip") as z:
        name = next(n for n in z.namelist() if n.endswith(".csv"))
        with z.open(name) as raw:
            flights = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
            candidates = [
                (fl, weather[(fl["origin"], fl["time_hour"])])
                for fl in flights
                if int(fl["month"]) in months
                and fl["arr_delay"] != "NA"
                and (fl["origin"], fl["time_hour"]) in weather
            ]
    assert len(candidates) >= want
    keys_from_flight = {"origin", "year", "month", "day", "hour", "time_hour"}
    out = []
    for k in range(want):
        fl, w = candidates[k * len(candidates) // want]
        row = [
            value(w[c]) if c in w and c not in keys_from_flight else value(fl[c])
            for c in inputs
        ]
        out.append((row, float(fl["arr_delay"]) > 15))
    return out


# --------------------------------------------------------------------------- the test


def test_whole_loop_on_postgresql_and_s3(pg_store, s3, tmp_path):
    s3_url, bucket = s3
    project(tmp_path)
    kiln = Kiln(tmp_path, pg_store, s3_url)

    # 1. Validate and train. Both datasets pass; weather's one impossible wind reading is
    # quarantined (a local file of the machine that validated) and the verdict is stored.
    report = kiln.json("data", "validate", "weather", "--json")
    assert report["success"] is True, report
    assert report["quarantined_rows"] >= 1
    assert Path(report["quarantine"]).is_file(), report["quarantine"]
    assert kiln.json("data", "validate", "flights", "--json")["success"] is True
    # A source in the bucket reads the same: same bytes, same digest, same verdict.
    bucket.upload_file(str(REPO / "data/nycflights13/weather.csv"), BUCKET, "data/weather.csv")
    remote = kiln.json(
        "data", "validate", "weather", "--source", f"s3://{BUCKET}/data/weather.csv", "--json"
    )
    assert (remote["digest"], remote["success"]) == (report["digest"], True), remote
    verdicts = psql(pg_store, "SELECT name, validation_json FROM kiln_dataset_versions ORDER BY name")
    assert {n for n, _ in verdicts} == {"flights", "weather"}, verdicts
    assert all(json.loads(v)["success"] for _, v in verdicts), verdicts

    trained = kiln.json("train", "delay", "--json")
    assert trained["registered"] == ["delay", "1"], trained
    run_id = trained["run_id"]
    assert trained["metrics"]["test_auc"] > 0.55, trained["metrics"]
    # Tracked in PostgreSQL…
    assert psql(pg_store, f"SELECT status FROM runs WHERE run_id = '{run_id}'") == [["FINISHED"]]
    assert psql(pg_store, "SELECT name, version, run_id FROM model_versions") == [["delay", "1", run_id]]
    # …and the package is in the bucket, under the run's artifacts.
    package_prefix = f"artifacts/{trained['experiment_id']}/{run_id}/artifacts/package/"
    stored = keys(bucket, package_prefix)
    assert package_prefix + "manifest.json" in stored, sorted(stored)
    manifest = json.loads(
        bucket.get_object(Bucket=BUCKET, Key=package_prefix + "manifest.json")["Body"].read()
    )
    for f in manifest["files"]:
        assert stored.get(package_prefix + f["path"]) == f["bytes"], (f, sorted(stored))
    inputs = [c["name"] for c in manifest["raw_inputs"]]
    # No artifact went to the local data dir.
    assert not (kiln.data_dir / "artifacts").exists()

    # 2. The control plane on the same stores runs the gates when champion moves.
    server = kiln.start("server", "--admin-token", ADMIN)
    try:
        conn = ["--server", server.url, "--user", "alice"]
        applied = kiln.json("release", "policy", "--apply", "--json", *conn, "--admin-token", ADMIN)
        assert applied[0]["applied"] is True, applied
        moved = kiln.json("release", "delay", "--version", "1", "--json", *conn)
        ev = moved["evaluation"]
        assert ev["outcome"] == "moved", ev
        gates = {g["gate"]: g["passed"] for g in ev["gates"]}
        assert gates.get("data") is True and gates.get("metric") is True, gates
        assert gates.get("latency") is True and gates.get("integrity") is True, gates
    finally:
        assert server.stop() == 0, server.tail()
    assert psql(pg_store, "SELECT version FROM registered_model_aliases WHERE alias = 'champion'") == [["1"]]

    # 3. The data plane: the version from the registry in PostgreSQL, its package from S3,
    # the prediction log into S3.
    serve = kiln.start(
        "serve", "--model", "delay=delay@champion",
        "--prediction-log", PREDLOG, "--log-flush-seconds", "0.5",
        "--monitor",
    )
    rows = flights_with_weather(inputs, {1, 2}, 200)
    sent: list[tuple[str, list[bool]]] = []
    try:
        meta = requests.get(f"{serve.url}/v2/models/delay", timeout=10).json()
        assert meta["versions"] == ["1"], meta
        with requests.Session() as http:
            for k in range(0, len(rows), 10):
                chunk = rows[k:k + 10]
                rid = f"scale-{k // 10}"
                r = http.post(
                    f"{serve.url}/invocations",
                    json={"dataframe_split": {"columns": inputs, "data": [r for r, _ in chunk]}},
                    headers={"x-request-id": rid},
                    timeout=30,
                )
                assert r.status_code == 200, r.text
                assert len(r.json()["predictions"]) == 10, r.text
                sent.append((rid, [late for _, late in chunk]))
        deployed = psql(pg_store, "SELECT name, version, stopped_at FROM kiln_deployments")
        assert deployed == [["delay", "1", ""]], deployed
    finally:
        code = serve.stop()
    assert code == 0, serve.tail()
    assert "prediction log closed" in serve.log_path.read_text(), serve.tail()
    # The log is flushed on the way out: Parquet files, partitioned by deployment, date, hour.
    logged = keys(bucket, "predlog/predictions/deployment=delay/")
    assert logged, f"no prediction log in the bucket:\n{serve.tail()}"
    for key in logged:
        parts = key.split("/")
        assert parts[3].startswith("date=") and parts[4].startswith("hour="), key
        assert key.endswith(".parquet"), key
        head = bucket.get_object(Bucket=BUCKET, Key=key, Range="bytes=0-3")["Body"].read()
        assert head == b"PAR1", key
    stopped = psql(pg_store, "SELECT stopped_at FROM kiln_deployments")
    assert stopped[0][0] != "", stopped

    # 4. Labels arrive; the report reads the log back from S3 and joins them.
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "\n".join(json.dumps({"request_id": rid, "label": [int(x) for x in late]}) for rid, late in sent)
    )
    out = kiln.run("feedback", "import", str(labels), "--deployment", "delay")
    assert "stored 20 labels" in out.stdout, out.stdout
    assert psql(pg_store, "SELECT count(*) FROM kiln_feedback WHERE deployment = 'delay'") == [["20"]]
    r = kiln.json("monitor", "report", "delay", "--prediction-log", PREDLOG, "--rows", "100", "--json")
    h = r["health"]
    assert h["rows"] == 200 and h["requests"] == 20, r
    assert "delay version 1" in r["reference"], r["reference"]
    assert h["feedback"]["matched_rows"] == 200, h["feedback"]
    v = h["versions"][0]
    assert v["version"] == "1" and v["realised"]["labelled"] == 200, v
    assert 0.5 < v["realised"]["metrics"]["auc"] <= 1.0, v["realised"]
    assert len(h["windows"]) == 2, h["windows"]

    # 5. Lineage from PostgreSQL (and the package's manifest from S3).
    lin = kiln.json("lineage", "delay@champion", "--json")
    assert lin["version"] == "1" and lin["run"]["id"] == run_id, lin
    assert lin["package_digest"] == trained["package_digest"], lin
    validated = {d["name"]: d["validated"] for d in lin["datasets"]}
    assert validated.get("flights") is True and validated.get("weather") is True, lin["datasets"]
    assert lin["gate_evaluations"][0]["outcome"] == "moved", lin["gate_evaluations"]
    card = kiln.run("card", "delay@champion").stdout
    assert "delay" in card and "test_auc" in card, card

    # 6. Backup and restore as docs/operations.md says: pg_dump of the store, restored into
    # another database; with the same bucket, the restored store answers the same lineage.
    dump = tmp_path / "kiln.dump"
    restored = create_pg_database()
    try:
        _pg_tool(["pg_dump", "--format=custom", "--no-owner", f"--file={dump}"], pg_store)
        _pg_tool(["pg_restore", "--no-owner", "--exit-on-error"], restored, str(dump))
        again = Kiln(tmp_path, restored, s3_url).json("lineage", "delay@champion", "--json")
        assert again == lin
    finally:
        drop_pg_database(restored)


def _pg_tool(cmd: list[str], store_url: str, *extra: str) -> None:
    from urllib.parse import urlparse

    u = urlparse(store_url)
    r = subprocess.run(
        [*cmd, "-h", u.hostname, "-p", str(u.port or 5432), "-U", u.username or "postgres",
         "-d", u.path.lstrip("/"), *extra],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, f"{cmd[0]}: {r.stderr}"
