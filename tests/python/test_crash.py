"""Crash durability: every write the server acknowledged survives kill -9 (and SIGTERM) + restart.

Each test starts its own server on the same backend as the session's shared server, writes from
4 threads one metric per request, records every 200, stops the server mid-flight and restarts it
on the same data dir / database, then reads the histories back.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests
from mlflow import MlflowClient

from kilnproc import make_server

N_THREADS = 4
LOAD_SECONDS = 2.0


def _writer(base: str, run_id: str, key: str, stop: threading.Event, acked: list[int], attempted: list[int]):
    s = requests.Session()
    step = 0
    while not stop.is_set():
        attempted.append(step)
        try:
            r = s.post(
                f"{base}/api/2.0/mlflow/runs/log-metric",
                json={"run_id": run_id, "key": key, "value": float(step), "timestamp": 1_700_000_000_000 + step,
                      "step": step},
                timeout=5,
            )
        except requests.RequestException:
            return  # the server is gone
        if r.status_code == 200:
            acked.append(step)
        step += 1


def _load_then(srv, stop_server) -> tuple[str, dict[str, list[int]], dict[str, list[int]]]:
    base = srv.url
    r = requests.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": f"crash-{time.time_ns()}"}, timeout=30)
    assert r.status_code == 200, r.text
    exp_id = r.json()["experiment_id"]
    r = requests.post(f"{base}/api/2.0/mlflow/runs/create", json={"experiment_id": exp_id, "start_time": 1}, timeout=30)
    assert r.status_code == 200, r.text
    run_id = r.json()["run"]["info"]["run_id"]

    stop = threading.Event()
    acked = {f"m{t}": [] for t in range(N_THREADS)}
    attempted = {f"m{t}": [] for t in range(N_THREADS)}
    threads = [
        threading.Thread(target=_writer, args=(base, run_id, k, stop, acked[k], attempted[k]), daemon=True)
        for k in acked
    ]
    for t in threads:
        t.start()
    time.sleep(LOAD_SECONDS)
    stop_server()  # mid-flight: writers are still sending
    stop.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "writer thread hung after the server stopped"
    return run_id, acked, attempted


def _verify(url: str, run_id: str, acked: dict[str, list[int]], attempted: dict[str, list[int]]):
    c = MlflowClient(tracking_uri=url)
    run = c.get_run(run_id)
    total_acked = sum(len(v) for v in acked.values())
    print(f"crash test: {total_acked} acknowledged writes, {sum(len(v) for v in attempted.values())} attempted")
    assert total_acked >= 20, f"load generator barely ran ({total_acked} acked writes); test is meaningless"
    for key, steps in acked.items():
        hist = c.get_metric_history(run_id, key)
        stored = [m.step for m in hist]
        stored_set = set(stored)
        lost = sorted(set(steps) - stored_set)
        assert not lost, f"{key}: {len(lost)} acknowledged writes lost after restart, e.g. steps {lost[:10]}"
        phantom = stored_set - set(attempted[key])
        assert not phantom, f"{key}: steps that were never sent: {sorted(phantom)[:10]}"
        assert all(m.value == float(m.step) for m in hist), f"{key}: value/step mismatch"
        if stored:
            assert run.data.metrics[key] == float(max(stored)), (key, run.data.metrics.get(key), max(stored))


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_acknowledged_writes_survive(server, tmp_path, how):
    srv, cleanup = make_server(server.backend, tmp_path)
    try:
        srv.start()
        if how == "kill9":
            run_id, acked, attempted = _load_then(srv, srv.kill_hard)
        else:
            codes = []
            run_id, acked, attempted = _load_then(srv, lambda: codes.append(srv.stop()))
            assert codes == [0], f"clean shutdown on SIGTERM should exit 0, got {codes}"
        url = srv.start()  # same data dir (and same PostgreSQL database)
        _verify(url, run_id, acked, attempted)
        assert srv.stop() == 0
    finally:
        cleanup()
