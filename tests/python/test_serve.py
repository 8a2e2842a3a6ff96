"""`kiln serve` (the data plane) driven by the real clients: Triton's `tritonclient[http]` over the
Open Inference Protocol v2 (JSON and the binary tensor extension), and MLflow's scoring protocol
(`/invocations`) with `requests` and payloads serialized by the MLflow client. Predictions are
checked against onnxruntime running the same ONNX file.

These tests start their own `kiln serve` process (once per module) and need no tracking server,
so they run once, not once per metadata store.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import kilnproc
from kilnproc import KILN_BIN, REPO, REFERENCE_MLFLOW

pytestmark = pytest.mark.skipif(bool(REFERENCE_MLFLOW), reason="kiln serve tests target kiln only")

MODEL = "gb"
ONNX_PATH = REPO / "tests" / "fixtures" / "onnx" / "gb_classifier.onnx"
DATA_PATH = REPO / "tests" / "fixtures" / "onnx" / "data" / "breast_cancer.json"
N_FEATURES = 30
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]
# Every client call is bounded: a request the server never answers fails the test instead of hanging it.
TIMEOUT = 10.0
ATOL = 1e-5


@pytest.fixture(autouse=True)
def tracking():
    """Overrides conftest's autouse `tracking` fixture, which would start a tracking server per
    metadata store (and parametrize every test here over the backends) for nothing."""
    yield None


# --------------------------------------------------------------------------- the server


class ServeProcess:
    """A `kiln serve` child process. Quacks like kilnproc.KilnServer where conftest's failure
    report reads it (backend, url, log_path, log_tail), so a failing test shows the serve log."""

    backend = "serve"

    def __init__(self, log_path: Path, args: list[str]):
        self.log_path = log_path
        self.cmd = [str(KILN_BIN), "serve", "--port", "0", *args]
        self.url = ""
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        if not KILN_BIN.exists():
            pytest.exit(f"kiln binary not found at {KILN_BIN} (build it with `cargo build -p kiln` or set KILN_BIN)", 2)
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("KILN_LOG", "info")
        env.setdefault("NO_COLOR", "1")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
        first: list[bytes] = []

        def drain() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            first.append(self.proc.stdout.readline())
            for chunk in iter(self.proc.stdout.readline, b""):  # never let the pipe fill up
                log.write(chunk)
                log.flush()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not first:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"kiln serve did not print its Listening line; {self.cmd}:\n{self.log_tail()}")
            time.sleep(0.02)
        line = first[0].decode(errors="replace").strip()
        prefix = "Listening on http://"
        if not line.startswith(prefix):
            self.stop()
            raise RuntimeError(f"unexpected first stdout line from kiln serve: {line!r}\n{self.log_tail()}")
        self.url = "http://" + line[len(prefix):].rstrip("/")

    @property
    def hostport(self) -> str:
        return self.url[len("http://"):]

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then wait (SIGKILL if it does not exit in time). Returns the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"kiln serve ignored SIGTERM for {timeout}s; killed")
        return proc.returncode

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    srv = ServeProcess(tmp_path_factory.mktemp("kiln-serve") / "serve.log", ["--model", f"{MODEL}={ONNX_PATH}"])
    srv.start()
    kilnproc.live_servers.append(srv)
    try:
        yield srv
    finally:
        kilnproc.live_servers.remove(srv)
        code = srv.stop()
        assert code == 0, f"kiln serve exited with {code} after SIGTERM; log {srv.log_path}:\n{srv.log_tail()}"


@pytest.fixture
def triton(serve):
    client = httpclient.InferenceServerClient(url=serve.hostport, connection_timeout=TIMEOUT, network_timeout=TIMEOUT)
    try:
        yield client
    finally:
        client.close()


# --------------------------------------------------------------------------- data and reference


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """The fixture's rows without missing values, as float32 [n, 30]."""
    tensor = json.loads(DATA_PATH.read_text())["tensors"][0]
    assert tensor["name"] == "X" and tensor["shape"][1] == N_FEATURES
    flat = [np.nan if v is None else v for v in tensor["data"]]
    x = np.asarray(flat, dtype=np.float32).reshape(tensor["shape"])
    x = x[~np.isnan(x).any(axis=1)]
    assert len(x) >= 100
    return x


@pytest.fixture(scope="module")
def reference():
    """f(x) -> (label int64 [n], probabilities float32 [n, 2]) from onnxruntime on the same file."""
    sess = ort.InferenceSession(str(ONNX_PATH), providers=["CPUExecutionProvider"])

    def run(x: np.ndarray):
        label, proba = sess.run(["label", "probabilities"], {"X": np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(label), np.asarray(proba)

    return run


def assert_proba(actual, expected):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


# --------------------------------------------------------------------------- OIP v2 via tritonclient


def test_health_and_metadata(triton):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready(MODEL)
    assert not triton.is_model_ready("no-such-model")

    meta = triton.get_model_metadata(MODEL)
    assert meta["name"] == MODEL
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert set(inputs) == {"X"}
    assert inputs["X"]["datatype"] == "FP32"
    assert [int(d) for d in inputs["X"]["shape"]] == [-1, N_FEATURES]
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["probabilities"]["datatype"] == "FP32"
    assert [int(d) for d in outputs["probabilities"]["shape"]] == [-1, 2]
    assert outputs["label"]["datatype"] == "INT64"

    server_meta = triton.get_server_metadata()
    assert "binary_tensor_data" in server_meta.get("extensions", [])


def _infer(triton, x: np.ndarray, *, binary_in: bool, binary_out: bool, request_id: str, **kw):
    inp = httpclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=binary_out),
        httpclient.InferRequestedOutput("label", binary_data=binary_out),
    ]
    return triton.infer(MODEL, [inp], outputs=outs, request_id=request_id, **kw)


@pytest.mark.parametrize(
    "binary_in,binary_out",
    [(True, True), (False, False), (True, False), (False, True)],
    ids=["binary", "json", "binary-in-json-out", "json-in-binary-out"],
)
@pytest.mark.parametrize("n", [1, 50, 100])
def test_infer_matches_onnxruntime(triton, rows, reference, n, binary_in, binary_out):
    x = rows[:n]
    request_id = f"req-{n}-{int(binary_in)}{int(binary_out)}"
    result = _infer(triton, x, binary_in=binary_in, binary_out=binary_out, request_id=request_id)

    label, proba = reference(x)
    got = result.as_numpy("probabilities")
    assert got is not None, result.get_response()
    assert got.dtype == np.float32
    assert_proba(got, proba)
    got_label = result.as_numpy("label")
    assert got_label is not None and got_label.dtype == np.int64
    np.testing.assert_array_equal(got_label, label)

    response = result.get_response()
    assert response["id"] == request_id
    assert response["model_name"] == MODEL
    out_meta = {o["name"]: o for o in response["outputs"]}
    assert out_meta["probabilities"]["datatype"] == "FP32"
    assert [int(d) for d in out_meta["probabilities"]["shape"]] == [n, 2]
    # Binary outputs carry their length instead of data; JSON outputs carry the data inline.
    for o in out_meta.values():
        if binary_out:
            assert "binary_data_size" in o.get("parameters", {}) and "data" not in o, o
        else:
            assert "data" in o, o


def test_infer_selected_output_only(triton, rows, reference):
    x = rows[:10]
    inp = httpclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    result = triton.infer(MODEL, [inp], outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=True)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    assert_proba(result.as_numpy("probabilities"), reference(x)[1])


def test_infer_wrong_shape_is_refused(triton, rows):
    x = np.ascontiguousarray(rows[:5, :29])
    inp = httpclient.InferInput("X", [5, 29], "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    with pytest.raises(InferenceServerException) as info:
        triton.infer(MODEL, [inp])
    msg = str(info.value)
    assert "shape" in msg.lower() and "29" in msg, msg
    assert info.value.status() == "400", (info.value.status(), msg)


def test_infer_wrong_shape_json_raw_status(serve, rows):
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 29], "data": rows[:2, :29].ravel().tolist()}]}
    r = requests.post(f"{serve.url}/v2/models/{MODEL}/infer", json=body, timeout=TIMEOUT)
    assert r.status_code == 400, (r.status_code, r.text)
    assert "shape" in r.json()["error"].lower(), r.text


def test_infer_unknown_model(triton, rows):
    x = rows[:2]
    inp = httpclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    with pytest.raises(InferenceServerException) as info:
        triton.infer("no-such-model", [inp])
    assert info.value.status() == "404", (info.value.status(), str(info.value))
    assert "no-such-model" in str(info.value), str(info.value)
    with pytest.raises(InferenceServerException):
        triton.get_model_metadata("no-such-model")


def test_sequential_requests_are_all_answered(triton, rows, reference):
    """One request at a time, as a simple client sends them: every one is answered promptly (a
    queued request must not wait for the next request to arrive)."""
    x = rows[:3]
    expected = reference(x)[1]
    slow = []
    for i in range(40):
        t0 = time.monotonic()
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        try:
            result = triton.infer(MODEL, [inp], request_id=f"seq-{i}")
        except Exception as e:  # a timeout here means the server sat on the request
            pytest.fail(f"request {i} of 40 was not answered within {TIMEOUT}s: {type(e).__name__}: {e}")
        if time.monotonic() - t0 > 2.0:
            slow.append(i)
        assert_proba(result.as_numpy("probabilities"), expected)
    assert not slow, f"requests {slow} took more than 2 s"


# --------------------------------------------------------------------------- gzip request bodies


def test_gzip_json_request_body(serve, rows, reference):
    x = rows[:20]
    body = {
        "id": "gz-1",
        "inputs": [{"name": "X", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}],
        "outputs": [{"name": "probabilities"}],
    }
    r = requests.post(
        f"{serve.url}/v2/models/{MODEL}/infer",
        data=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, (r.status_code, r.text)
    resp = r.json()
    assert resp["id"] == "gz-1"
    out = {o["name"]: o for o in resp["outputs"]}["probabilities"]
    assert_proba(np.asarray(out["data"], dtype=np.float32).reshape(out["shape"]), reference(x)[1])


def test_corrupt_gzip_body_is_a_json_client_error(serve, rows):
    """docs/serving.md: client mistakes are 4xx with `{"error": ...}` on OIP routes."""
    r = requests.post(
        f"{serve.url}/v2/models/{MODEL}/infer",
        data=b"this is not gzip",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=TIMEOUT,
    )
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    try:
        body = r.json()
    except ValueError:
        raise AssertionError(f"{r.status_code} {r.headers.get('content-type')!r} body is not JSON: {r.text[:300]!r}")
    assert "error" in body, body


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_gzip_through_tritonclient(triton, rows, reference, binary):
    x = rows[:30]
    result = _infer(
        triton, x, binary_in=binary, binary_out=binary, request_id="gz-2",
        request_compression_algorithm="gzip", response_compression_algorithm="gzip",
    )
    assert result.get_response()["id"] == "gz-2"
    assert_proba(result.as_numpy("probabilities"), reference(x)[1])


# --------------------------------------------------------------------------- MLflow scoring protocol


def _invocations(serve, body, content_type="application/json", **kw):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(f"{serve.url}/invocations", data=data, headers={"Content-Type": content_type}, timeout=TIMEOUT, **kw)


def _mlflow_payload(example) -> str:
    from mlflow.models import convert_input_example_to_serving_input

    return convert_input_example_to_serving_input(example)


def _payloads(x: np.ndarray) -> dict[str, tuple[str, str]]:
    """format -> (content type, body), serialized the way MLflow clients do where MLflow has a helper."""
    df = pd.DataFrame(x, columns=COLUMNS)
    as_lists = x.astype(np.float64).tolist()  # exact: every float32 is a float64
    return {
        "dataframe_split": ("application/json", _mlflow_payload(df)),
        "dataframe_records": (
            "application/json",
            json.dumps({"dataframe_records": [dict(zip(COLUMNS, r)) for r in as_lists]}),
        ),
        "instances": ("application/json", json.dumps({"instances": as_lists})),
        "inputs": ("application/json", _mlflow_payload(x)),
        "csv": ("text/csv", df.to_csv(index=False)),
    }


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs", "csv"])
@pytest.mark.parametrize("n", [1, 50])
def test_invocations_formats(serve, rows, reference, fmt, n):
    x = rows[:n]
    content_type, body = _payloads(x)[fmt]
    if fmt == "dataframe_split":
        assert '"dataframe_split"' in body
    if fmt == "inputs":
        assert '"inputs"' in body
    r = _invocations(serve, body, content_type)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    preds = r.json()["predictions"]
    assert isinstance(preds, list) and len(preds) == n, str(preds)[:500]
    label, proba = reference(x)
    # A two-output model answers one object per row with both outputs.
    assert all(isinstance(p, dict) and set(p) == {"label", "probabilities"} for p in preds), preds[:3]
    assert_proba(np.asarray([p["probabilities"] for p in preds], dtype=np.float32), proba)
    assert [int(p["label"]) for p in preds] == label.tolist()


def test_invocations_gzip_body(serve, rows, reference):
    x = rows[:5]
    body = gzip.compress(json.dumps({"instances": x.astype(np.float64).tolist()}).encode())
    r = requests.post(
        f"{serve.url}/invocations",
        data=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert_proba(np.asarray([p["probabilities"] for p in r.json()["predictions"]], dtype=np.float32), reference(x)[1])


def _assert_json_error(r, status: int) -> dict:
    """An error answered as documented: the status, and a JSON body declared as JSON (MLflow's
    scoring server answers its JSON errors as application/json)."""
    assert r.status_code == status, (r.status_code, r.headers.get("content-type"), r.text[:500])
    assert r.headers.get("content-type", "").startswith("application/json"), (
        f"{r.request.method} {r.request.path_url} -> {r.status_code} with Content-Type "
        f"{r.headers.get('content-type')!r}, body {r.text[:300]!r}"
    )
    return r.json()


def test_invocations_unsupported_content_type(serve, rows):
    r = _invocations(serve, "1,2,3", "text/plain")
    body = _assert_json_error(r, 415)
    assert body["error_code"] == "BAD_REQUEST" and "text/plain" in body["message"], body


def test_invocations_two_input_keys(serve, rows):
    row = rows[0].astype(np.float64).tolist()
    r = _invocations(serve, {"instances": [row], "inputs": [row]})
    body = _assert_json_error(r, 400)
    assert body["error_code"] == "BAD_REQUEST", body
    assert "instances" in body["message"] and "inputs" in body["message"], body


def test_invocations_wrong_width(serve, rows):
    r = _invocations(serve, {"instances": rows[:2, :29].astype(np.float64).tolist()})
    assert _assert_json_error(r, 400)["error_code"] == "BAD_REQUEST", r.text


@pytest.mark.parametrize("path", ["/ping", "/health", "/version"])
def test_scoring_server_probes(serve, path):
    r = requests.get(serve.url + path, timeout=TIMEOUT)
    assert r.status_code == 200, (r.status_code, r.text)
    if path == "/version":
        assert r.text.strip(), "empty /version body"


# --------------------------------------------------------------------------- versions and traffic

RF_PATH = REPO / "tests" / "fixtures" / "onnx" / "rf_classifier.onnx"


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """gb as version 1 (90% of traffic), the random forest as version 2 (10%), and a copy of gb
    as version 3 shadowing the live traffic."""
    srv = ServeProcess(
        tmp_path_factory.mktemp("kiln-serve-versions") / "serve.log",
        [
            "--model", f"{MODEL}={ONNX_PATH}",
            "--model", f"{MODEL}={RF_PATH}",
            "--model", f"{MODEL}={ONNX_PATH}",
            "--traffic", f"{MODEL}=1:90,2:10",
            "--shadow", f"{MODEL}=3",
        ],
    )
    srv.start()
    kilnproc.live_servers.append(srv)
    try:
        yield srv
    finally:
        kilnproc.live_servers.remove(srv)
        assert srv.stop() == 0


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_pins_versions_and_sees_the_split(two_versions, rows, reference, binary):
    client = httpclient.InferenceServerClient(url=two_versions.hostport, connection_timeout=TIMEOUT, network_timeout=TIMEOUT)
    try:
        meta = client.get_model_metadata(MODEL)
        assert meta["versions"] == ["1", "2", "3"]
        x = rows[:8]
        rf = ort.InferenceSession(str(RF_PATH), providers=["CPUExecutionProvider"])
        expected = {"1": reference(x)[1], "2": rf.run(["probabilities"], {"X": x})[0]}

        def infer(**kw):
            inp = httpclient.InferInput("X", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = httpclient.InferRequestedOutput("probabilities", binary_data=binary)
            return client.infer(MODEL, [inp], outputs=[out], **kw)

        # Pinned through the versioned path (tritonclient's model_version) and by header.
        for version in ["1", "2"]:
            r = infer(model_version=version)
            assert r.get_response()["model_version"] == version
            assert_proba(r.as_numpy("probabilities"), expected[version])
            r = infer(headers={"X-Kiln-Version": version})
            assert r.get_response()["model_version"] == version
            assert_proba(r.as_numpy("probabilities"), expected[version])
        # Unpinned: about 10% go to the canary, each answer right for the version that gave it.
        seen = {"1": 0, "2": 0}
        for _ in range(300):
            r = infer()
            v = r.get_response()["model_version"]
            seen[v] += 1
            assert_proba(r.as_numpy("probabilities"), expected[v])
        assert 10 <= seen["2"] <= 60, seen
    finally:
        client.close()
    # The shadow copy of gb agrees with the live gb on every row it saw.
    deadline = time.monotonic() + 10
    while True:
        t = requests.get(f"{two_versions.url}/api/kiln/serve/models/{MODEL}/traffic", timeout=TIMEOUT).json()
        stats = t["shadow_stats"].get("3", {})
        if stats.get("requests", 0) >= 300 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert t["weights"] == {"1": 90, "2": 10, "3": 0}, t
    assert stats["errors"] == 0, t
    assert stats["requests"] >= 300 and stats["rows"] >= 300 * len(rows[:8]), t


# --------------------------------------------------------------------------- the prediction log


def test_prediction_log_reads_back_in_pyarrow_pandas_and_duckdb(tmp_path, rows):
    """The files `kiln serve --prediction-log` writes (Kiln's own Parquet writer: LZ4_RAW pages,
    BYTE_STREAM_SPLIT floats, dictionary-encoded model and version) are plain Parquet to the
    readers teams point at them: pyarrow's Hive-partitioned dataset, pandas and DuckDB read the
    same rows, values and partition keys, with nothing lost across a graceful stop."""
    import duckdb
    import pyarrow.dataset as ds

    log_dir = tmp_path / "predlog"
    srv = ServeProcess(tmp_path / "serve.log", ["--model", f"{MODEL}={ONNX_PATH}", "--prediction-log", str(log_dir),
                                                "--log-flush-rows", "64"])
    srv.start()
    sent: dict[str, np.ndarray] = {}
    try:
        with requests.Session() as http:
            for k in range(60):
                batch = rows[k * 3 % len(rows):][: 1 + k % 3]
                rid = f"rid-{k:03d}"
                if k % 2:
                    body = {"inputs": [{"name": "X", "shape": list(batch.shape), "datatype": "FP32",
                                        "data": batch.ravel().tolist()}]}
                    r = http.post(f"{srv.url}/v2/models/{MODEL}/infer", json=body, headers={"x-request-id": rid},
                                  timeout=TIMEOUT)
                else:
                    r = http.post(f"{srv.url}/invocations", json={"inputs": batch.tolist()},
                                  headers={"x-request-id": rid}, timeout=TIMEOUT)
                assert r.status_code == 200, r.text
                sent[rid] = batch
    finally:
        assert srv.stop() == 0, srv.log_tail()
    files = sorted(log_dir.rglob("*.parquet"))
    assert files, f"no log files under {log_dir}"  # by row count while serving and/or at the stop
    n_rows = sum(len(b) for b in sent.values())

    table = ds.dataset(log_dir / "predictions", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == n_rows, (table.num_rows, n_rows)
    df = table.to_pandas()
    assert set(df["deployment"].astype(str)) == {MODEL}, df["deployment"].unique()
    assert set(df["model"].astype(str)) == {MODEL} and set(df["version"].astype(str)) == {"1"}
    assert df["date"].astype(str).str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    x_cols = [f"X_{j}" for j in range(N_FEATURES)]
    # The model's float32 inputs keep their type (Parquet FLOAT).
    assert all(str(df[c].dtype) == "float32" for c in x_cols), df.dtypes
    for rid, batch in sent.items():
        got = df[df["request_id"] == rid].sort_values("row")
        assert list(got["row"]) == list(range(len(batch))), (rid, got["row"])
        np.testing.assert_array_equal(got[x_cols].to_numpy(), batch.astype(np.float32), err_msg=rid)
        assert got["latency_us"].ge(0).all() and got["probabilities_1"].between(0, 1).all(), got

    # pandas on one file, DuckDB over all of them: the same rows.
    one = pd.read_parquet(files[0])
    assert len(one) > 0 and {"request_id", "row", "time", "X_0", "label"} <= set(one.columns), one.columns
    con = duckdb.connect()
    glob = str(log_dir / "predictions" / "**" / "*.parquet")
    count, ids, total_x0 = con.execute(
        f"SELECT count(*), count(DISTINCT request_id), sum(X_0) FROM read_parquet('{glob}', hive_partitioning = true)"
    ).fetchone()
    assert (count, ids) == (n_rows, len(sent)), (count, ids)
    assert total_x0 == pytest.approx(sum(float(b[:, 0].astype(np.float64).sum()) for b in sent.values()), rel=1e-12)
