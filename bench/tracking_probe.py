#!/usr/bin/env python3
"""Helper for bench/tracking.sh: seeding, latency probes, cold start, RSS, report.

Run with the benchmark venv's python (bench/out/venv/bin/python). Every
subcommand talks only to 127.0.0.1. Timed requests use a raw keep-alive
http.client connection without Accept-Encoding (so neither server compresses
and client overhead is as small as Python allows); seeding uses requests.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import http.client
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

API = "/api/2.0/mlflow"


# --------------------------------------------------------------------------- utils


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def die(msg: str) -> None:
    print(f"tracking_probe: {msg}", file=sys.stderr)
    sys.exit(1)


class Client:
    """Minimal HTTP/1.1 client for timed requests (TCP_NODELAY, no Accept-Encoding).

    keep_alive=False opens a new connection per request (`Connection: close`), and the
    timing then includes connect. That is the default for the latency figures: MLflow's
    uvicorn writes response headers and body as two segments without TCP_NODELAY, so on a
    reused connection each response's tail waits for the client's delayed ACK (~40 ms).
    A fresh connection avoids that stall and costs well under a millisecond on loopback.
    """

    def __init__(self, port: int, timeout: float = 600.0, keep_alive: bool = True):
        self.port = port
        self.timeout = timeout
        self.keep_alive = keep_alive
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        return self.conn

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes, float]:
        """Returns (status, raw body, seconds from send (or connect) to last body byte)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if not self.keep_alive:
            headers["Connection"] = "close"
        for attempt in (0, 1):
            t0 = time.perf_counter()
            conn = self._connect()
            try:
                if conn.sock is None:
                    conn.connect()
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                dt = time.perf_counter() - t0
                if not self.keep_alive or resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self.conn = None
                return resp.status, raw, dt
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def api(session: requests.Session, base: str, method: str, endpoint: str, body=None, params=None):
    url = f"{base}{API}/{endpoint}"
    for attempt in range(5):
        try:
            if method == "GET":
                r = session.get(url, params=params, timeout=600)
            else:
                r = session.post(url, json=body, timeout=600)
        except requests.ConnectionError:
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
            continue
        if r.status_code == 200:
            return r.json()
        # SQLite "database is locked" under concurrent writers surfaces as 5xx on MLflow.
        if r.status_code >= 500 and attempt < 4:
            time.sleep(0.2 * (attempt + 1))
            continue
        die(f"{method} {endpoint} -> HTTP {r.status_code}: {r.text[:500]}")
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- seed


def seed_values(i: int, n: int) -> tuple[list[dict], list[dict]]:
    """Deterministic per-run metrics/params; m1 is a permutation of k/n so ordering by m1 is total."""
    m1 = ((i * 7919) % n) / n
    m2 = ((i * 104729 + 13) % n) / n
    metrics = [
        {"key": "m1", "value": m1, "timestamp": 1_700_000_000_000 + i, "step": 0},
        {"key": "m2", "value": m2, "timestamp": 1_700_000_000_000 + i, "step": 0},
        {"key": "m3", "value": float(i), "timestamp": 1_700_000_000_000 + i, "step": 0},
    ]
    params = [{"key": "p1", "value": f"a{i % 10}"}, {"key": "p2", "value": f"b{i % 7}"}]
    return metrics, params


def cmd_seed(a) -> None:
    base = f"http://127.0.0.1:{a.port}"
    s = requests.Session()
    t_start = time.perf_counter()

    def create_experiment(name: str) -> str:
        return api(s, base, "POST", "experiments/create", {"name": name})["experiment_id"]

    def create_run(sess, exp: str, name: str, start: int) -> str:
        body = {"experiment_id": exp, "run_name": name, "start_time": start}
        return api(sess, base, "POST", "runs/create", body)["run"]["info"]["run_id"]

    exp_search = create_experiment("bench-search" + a.name_suffix)
    exp_write = create_experiment("bench-write" + a.name_suffix)
    metric_run = create_run(s, exp_write, "log-metric-target", 1_700_000_000_000)
    batch_run = create_run(s, exp_write, "log-batch-target", 1_700_000_000_001)
    history_run = create_run(s, exp_write, "history-target", 1_700_000_000_002)

    # History: a.history points of key "hist", distinct steps, 1000 per log-batch.
    for lo in range(0, a.history, 1000):
        ms = [
            {"key": "hist", "value": (k % 1000) / 7.0, "timestamp": 1_700_000_000_000 + k, "step": k}
            for k in range(lo, min(lo + 1000, a.history))
        ]
        api(s, base, "POST", "runs/log-batch", {"run_id": history_run, "metrics": ms})

    # Search corpus: a.runs runs in exp_search, each with 3 metrics + 2 params.
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return local.s

    def one(i: int) -> None:
        sess = session()
        rid = create_run(sess, exp_search, f"run{i:05d}", 1_700_000_000_000 + i)
        metrics, params = seed_values(i, a.runs)
        api(sess, base, "POST", "runs/log-batch", {"run_id": rid, "metrics": metrics, "params": params})

    done = 0
    with cf.ThreadPoolExecutor(max_workers=a.concurrency) as pool:
        for fut in cf.as_completed([pool.submit(one, i) for i in range(a.runs)]):
            fut.result()
            done += 1
            if done % 2000 == 0:
                print(f"  seeded {done}/{a.runs} runs ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr)

    elapsed = time.perf_counter() - t_start
    out = {
        "experiment_id": exp_search,
        "metric_run": metric_run,
        "batch_run": batch_run,
        "history_run": history_run,
        "seed_seconds": round(elapsed, 2),
    }
    Path(a.out).write_text(json.dumps(out, indent=2))
    for k, v in out.items():
        print(f"{k.upper()}={shlex.quote(str(v))}")


# --------------------------------------------------------------------------- reads


SEARCH_QUERIES = {
    # name -> (filter, max_results)
    "search_m1_1000": ("metrics.m1 > 0.5", 1000),
    "search_m1_100": ("metrics.m1 > 0.5", 100),
    "search_p1_1000": ("params.p1 = 'a3'", 1000),
}


def search_body(exp: str, flt: str, max_results: int, page_token: str | None = None) -> dict:
    b = {"experiment_ids": [exp], "filter": flt, "order_by": ["metrics.m1 DESC"], "max_results": max_results}
    if page_token:
        b["page_token"] = page_token
    return b


def run_signature(runs: list[dict]) -> tuple[list[str], str]:
    """Ordered run names plus a hash of (name, metrics, params) that must match across servers."""
    names, norm = [], []
    for r in runs:
        info, data = r.get("info", {}), r.get("data", {})
        name = info.get("run_name") or next(
            (t["value"] for t in data.get("tags", []) if t["key"] == "mlflow.runName"), ""
        )
        names.append(name)
        metrics = sorted((m["key"], float(m["value"])) for m in data.get("metrics", []))
        params = sorted((p["key"], p["value"]) for p in data.get("params", []))
        norm.append([name, metrics, params])
    return names, hashlib.sha256(json.dumps(norm).encode()).hexdigest()[:16]


def timed(client: Client, method: str, path: str, body, reps: int, warmup: int) -> tuple[list[float], bytes]:
    samples, raw = [], b""
    for k in range(warmup + reps):
        status, raw, dt = client.request(method, path, body)
        if status != 200:
            die(f"{method} {path} -> HTTP {status}: {raw[:300]!r}")
        if k >= warmup:
            samples.append(dt * 1000.0)
    return samples, raw


def summarize(samples: list[float]) -> dict:
    s = sorted(samples)
    return {
        "median_ms": statistics.median(s),
        "min_ms": s[0],
        "p90_ms": s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))],
        "reps": len(s),
    }


def cmd_reads(a) -> None:
    st = json.loads(Path(a.state).read_text())
    client = Client(a.port, keep_alive=a.keep_alive)
    res: dict = {}

    # Diagnostic: /health on a reused connection vs a new connection per request.
    for name, ka in (("health_keepalive", True), ("health_close", False)):
        samples, _ = timed(Client(a.port, keep_alive=ka), "GET", "/health", None, 20, 2)
        res[name] = summarize(samples)

    # Correctness first (untimed): total matches by paging, and the first-page signature.
    for name, (flt, mr) in SEARCH_QUERIES.items():
        total, token, pages = 0, None, 0
        first_names, first_sig = [], ""
        while True:
            status, raw, _ = client.request("POST", f"{API}/runs/search", search_body(st["experiment_id"], flt, 1000, token))
            if status != 200:
                die(f"runs/search -> HTTP {status}: {raw[:300]!r}")
            j = json.loads(raw)
            runs = j.get("runs", [])
            if pages == 0:
                first_names, first_sig = run_signature(runs[:mr])
            total += len(runs)
            pages += 1
            token = j.get("next_page_token")
            if not token or pages > 100:
                break
        res[name] = {"total_matches": total, "first_page_names_head": first_names[:5], "first_page_sig": first_sig}

    # Timed search.
    for name, (flt, mr) in SEARCH_QUERIES.items():
        samples, raw = timed(client, "POST", f"{API}/runs/search", search_body(st["experiment_id"], flt, mr), a.reps, a.warmup)
        runs = json.loads(raw).get("runs", [])
        names, sig = run_signature(runs)
        res[name].update(summarize(samples))
        res[name].update({"returned": len(runs), "sig": sig, "filter": flt, "max_results": mr,
                          "bytes": len(raw), "samples_ms": [round(x, 3) for x in samples]})

    # Timed metric history.
    path = f"{API}/metrics/get-history?run_id={st['history_run']}&metric_key=hist"
    samples, raw = timed(client, "GET", path, None, a.reps, a.warmup)
    j = json.loads(raw)
    pts = j.get("metrics", [])
    steps = sorted(int(m["step"]) for m in pts)
    res["history"] = summarize(samples)
    res["history"].update({
        "returned": len(pts),
        "distinct_steps": len(set(steps)),
        "paginated": bool(j.get("next_page_token")),
        "bytes": len(raw),
        "samples_ms": [round(x, 3) for x in samples],
    })
    Path(a.out).write_text(json.dumps(res, indent=2))
    for name in ["health_keepalive", "health_close"] + list(SEARCH_QUERIES) + ["history"]:
        r = res[name]
        print(f"  {name:16s} median {r['median_ms']:9.2f} ms  returned {r.get('returned', '-')}", file=sys.stderr)


# --------------------------------------------------------------------------- wrk helpers


def cmd_wrk_result(a) -> None:
    """Parse the JSON line our Lua done() prints; store it with a label."""
    text = Path(a.wrk_output).read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        die(f"no WRKJSON line in {a.wrk_output}:\n{text}")
    j = json.loads(line[len("WRKJSON "):])
    j["rps"] = j["requests"] / (j["duration_us"] / 1e6)
    j["items_per_request"] = a.items
    j["items_per_s"] = j["rps"] * a.items
    j["connections"] = a.connections
    j["threads"] = a.threads
    results = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else {}
    results[a.label] = j
    Path(a.out).write_text(json.dumps(results, indent=2))
    errs = sum(j["errors"].values())
    print(f"  {a.label:14s} {j['rps']:10.1f} req/s  {j['items_per_s']:12.1f} items/s  "
          f"p50 {j['lat_p50_us'] / 1000:.2f} ms  errors {errs}", file=sys.stderr)
    if errs:
        print(f"tracking_probe: WARNING {a.label}: wrk errors {j['errors']}", file=sys.stderr)


def cmd_count_history(a) -> None:
    client = Client(a.port)
    status, raw, dt = client.request("GET", f"{API}/metrics/get-history?run_id={a.run_id}&metric_key={a.key}")
    if status != 200:
        die(f"get-history -> HTTP {status}: {raw[:300]!r}")
    pts = json.loads(raw).get("metrics", [])
    distinct = len({(int(m["step"]), int(m["timestamp"])) for m in pts})
    results = json.loads(Path(a.out).read_text())
    results[a.label]["stored_points"] = len(pts)
    results[a.label]["stored_distinct"] = distinct
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(f"  {a.label:14s} stored {len(pts)} points ({distinct} distinct), wrk completed "
          f"{results[a.label]['requests']}", file=sys.stderr)


# --------------------------------------------------------------------------- process tree memory


def proc_children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree_memory(pid: int) -> dict:
    kids = proc_children()
    todo, pids = [pid], []
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(kids.get(p, []))
    rss_kb = pss_kb = 0
    for p in pids:
        try:
            for ln in Path(f"/proc/{p}/status").read_text().splitlines():
                if ln.startswith("VmRSS:"):
                    rss_kb += int(ln.split()[1])
            for ln in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if ln.startswith("Pss:"):
                    pss_kb += int(ln.split()[1])
        except OSError:
            pass
    return {"rss_mb": rss_kb / 1024.0, "pss_mb": pss_kb / 1024.0, "processes": len(pids)}


def cmd_rss(a) -> None:
    m = tree_memory(a.pid)
    results = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else {}
    results[a.label] = m
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(f"  {a.label}: RSS {m['rss_mb']:.1f} MB, PSS {m['pss_mb']:.1f} MB over {m['processes']} process(es)",
          file=sys.stderr)


# --------------------------------------------------------------------------- readiness / cold start


def health_once(port: int, timeout: float) -> bool:
    """One attempt: connect, GET /health, True on HTTP 200. Refused/reset -> False."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return False
    try:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
        return buf.startswith(b"HTTP/1.1 200") or buf.startswith(b"HTTP/1.0 200")
    except OSError:
        return False
    finally:
        sock.close()


def cmd_wait(a) -> None:
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if a.pid and not Path(f"/proc/{a.pid}").exists():
            die(f"server pid {a.pid} exited before /health answered")
        if health_once(a.port, 30.0):
            return
        time.sleep(0.05)
    die(f"/health on port {a.port} not ready after {a.timeout} s")


# Servers spawned by this process and not yet stopped (stopped on SIGTERM).
SPAWNED: set[subprocess.Popen] = set()


def on_sigterm(*_) -> None:
    for proc in list(SPAWNED):
        stop_group(proc, grace=10.0)
    os._exit(143)


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> float:
    t0 = time.perf_counter()
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Reap stragglers of the group (MLflow workers) before the next start.
    end = time.monotonic() + grace
    while time.monotonic() < end:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return time.perf_counter() - t0


def cmd_coldstart(a) -> None:
    """Spawn the server (a.cmd, with {port} and {dir} substituted) a.reps+1 times.

    Start 0 uses a fresh, empty data dir (schema creation included) and is reported
    separately; starts 1..reps reuse that now-initialised dir (a restart). Timing runs
    from just before fork/exec to the first HTTP 200 on /health, polling with a new
    connection attempt every a.poll_ms.
    """
    data_dir = Path(a.dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    samples, fresh = [], None
    poll = a.poll_ms / 1000.0
    slow_poll = a.slow_poll_ms / 1000.0
    log = open(a.log, "ab")
    for k in range(a.reps + 1):
        port = free_port()
        argv = [x.replace("{port}", str(port)).replace("{dir}", str(data_dir)) for x in a.server_cmd]
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=data_dir, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        SPAWNED.add(proc)
        if a.pidfile:
            Path(a.pidfile).write_text(f"{proc.pid}\n")
        try:
            attempts = 0
            while True:
                attempts += 1
                if health_once(port, 60.0):
                    break
                if proc.poll() is not None:
                    die(f"cold start: server exited with {proc.returncode} (see {a.log})")
                elapsed = time.perf_counter() - t0
                if elapsed > a.timeout:
                    die(f"cold start: no /health after {a.timeout} s (see {a.log})")
                # Tight polling for the first seconds (resolution matters for a fast server);
                # afterwards a slower pace so the poller doesn't steal CPU from a slow starter.
                time.sleep(poll if elapsed < a.fast_window else slow_poll)
            ms = (time.perf_counter() - t0) * 1000.0
        finally:
            stop_s = stop_group(proc)
            SPAWNED.discard(proc)
            if a.pidfile:
                Path(a.pidfile).unlink(missing_ok=True)
        label = "fresh dir" if k == 0 else f"restart {k}"
        print(f"  {a.label} cold start ({label}): {ms:.1f} ms, {attempts} attempts, stop {stop_s * 1000:.0f} ms",
              file=sys.stderr)
        if k == 0:
            fresh = ms
        else:
            samples.append(ms)
    results = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else {}
    results[a.label] = {"fresh_ms": fresh, "samples_ms": [round(x, 2) for x in samples],
                        "median_ms": statistics.median(samples), "poll_ms": a.poll_ms,
                        "slow_poll_ms": a.slow_poll_ms, "fast_window_s": a.fast_window}
    Path(a.out).write_text(json.dumps(results, indent=2))


# --------------------------------------------------------------------------- meta


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cmd_meta(a) -> None:
    meta: dict = {}
    for kv in a.pairs:
        k, _, v = kv.partition("=")
        meta[k] = v
    meta["cpus"] = os.cpu_count()
    meta["load_start"] = loadavg()
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                meta["cpu_model"] = ln.split(":", 1)[1].strip()
                break
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal:"):
                meta["mem"] = f"{int(ln.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    try:
        import importlib.metadata as md
        meta["mlflow_version"] = md.version("mlflow")
    except Exception:  # noqa: BLE001
        meta["mlflow_version"] = "?"
    Path(a.out).write_text(json.dumps(meta, indent=2))


# --------------------------------------------------------------------------- report


def load(d: Path, name: str) -> dict:
    p = d / name
    return json.loads(p.read_text()) if p.exists() else {}


def cmd_report(a) -> None:
    d = Path(a.dir)
    meta = load(d, "meta.json")
    for k, v in list(meta.items()):
        if isinstance(v, str) and v.isdigit():
            meta[k] = int(v)
    servers = ["kiln", "mlflow"]
    wrk = {s: load(d, f"{s}-wrk.json") for s in servers}
    reads = {s: load(d, f"{s}-reads.json") for s in servers}
    mem = {s: load(d, f"{s}-mem.json") for s in servers}
    cold = load(d, "coldstart.json")
    seed = {s: load(d, f"{s}-seed.json") for s in servers}

    rows: list[tuple[str, str, str, str, str, str]] = []

    def fmt(v, unit_digits=1):
        if v is None:
            return "n/a"
        if v >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{unit_digits}f}" if v >= 10 else f"{v:.{max(unit_digits, 2)}f}"

    def add(label, k, m, higher_better, target_ratio=None, kiln_abs=None, digits=1):
        ratio = None
        if k is not None and m is not None and k > 0 and m > 0:
            ratio = k / m if higher_better else m / k
        parts, ok = [], True
        if target_ratio is not None:
            parts.append(f"≥ {target_ratio:g}×")
            ok = ok and ratio is not None and ratio >= target_ratio
        if kiln_abs is not None:
            op, bound, unit = kiln_abs
            parts.append(f"Kiln {op} {bound:g} {unit}")
            ok = ok and k is not None and (k < bound if op == "<" else k <= bound)
        target = " and ".join(parts) if parts else "—"
        met = "—" if not parts else ("yes" if ok else "NO")
        if parts and (k is None or (target_ratio is not None and ratio is None)):
            met = "n/a"
        rows.append((label, fmt(k, digits), fmt(m, digits), f"{ratio:.1f}×" if ratio is not None else "n/a", target, met))

    def g(dct, *path):
        for p in path:
            if not isinstance(dct, dict) or p not in dct:
                return None
            dct = dct[p]
        return dct

    def wrk_order(lbl: str) -> tuple:
        return (lbl.endswith("-close"), not lbl.startswith("log-metric"), int(lbl.split("-c")[1].split("-")[0]))

    for label in sorted({lbl for s in servers for lbl in wrk[s]}, key=wrk_order):
        w = wrk["kiln"].get(label) or wrk["mlflow"].get(label)
        close = label.endswith("-close")
        how = f"{w['connections']} conn, {w['threads']} wrk thr" + (", new connection per request" if close else "")
        if label.startswith("log-metric"):
            add(f"{label}: requests/s ({how})", g(wrk["kiln"], label, "rps"), g(wrk["mlflow"], label, "rps"),
                True, None if close else 20)
        else:
            add(f"{label}: metrics/s ({w['items_per_request']}/req, {how})",
                g(wrk["kiln"], label, "items_per_s"), g(wrk["mlflow"], label, "items_per_s"), True,
                None if close else 20)
    for q, (flt, mr) in SEARCH_QUERIES.items():
        add(f"runs/search `{flt}` order m1 DESC, max_results {mr}: median ms",
            g(reads["kiln"], q, "median_ms"), g(reads["mlflow"], q, "median_ms"), False, 20, digits=2)
    add(f"get-history {meta.get('history', '?')} points: median ms",
        g(reads["kiln"], "history", "median_ms"), g(reads["mlflow"], "history", "median_ms"), False, 20, digits=2)
    add("GET /health, reused keep-alive connection: median ms (diagnostic)",
        g(reads["kiln"], "health_keepalive", "median_ms"), g(reads["mlflow"], "health_keepalive", "median_ms"),
        False, digits=2)
    add("GET /health, new connection per request: median ms (diagnostic)",
        g(reads["kiln"], "health_close", "median_ms"), g(reads["mlflow"], "health_close", "median_ms"),
        False, digits=2)
    add("cold start to first /health 200, existing data dir: median ms",
        g(cold, "kiln", "median_ms"), g(cold, "mlflow", "median_ms"), False, None, ("<", 100, "ms"))
    add("cold start, fresh empty data dir (1 start): ms",
        g(cold, "kiln", "fresh_ms"), g(cold, "mlflow", "fresh_ms"), False)
    add("idle RSS of process tree after setup: MB",
        g(mem["kiln"], "idle", "rss_mb"), g(mem["mlflow"], "idle", "rss_mb"), False, None, ("<", 30, "MB"))
    add("idle PSS of process tree (shared pages split): MB",
        g(mem["kiln"], "idle", "pss_mb"), g(mem["mlflow"], "idle", "pss_mb"), False)
    add("RSS of process tree after all load: MB",
        g(mem["kiln"], "after_load", "rss_mb"), g(mem["mlflow"], "after_load", "rss_mb"), False)
    add("setup: seeding time, s (informational)",
        g(seed["kiln"], "seed_seconds"), g(seed["mlflow"], "seed_seconds"), False)

    checks = []
    for q in SEARCH_QUERIES:
        kt, mt = g(reads["kiln"], q, "total_matches"), g(reads["mlflow"], q, "total_matches")
        kr, mr_ = g(reads["kiln"], q, "returned"), g(reads["mlflow"], q, "returned")
        ks, ms = g(reads["kiln"], q, "sig"), g(reads["mlflow"], q, "sig")
        na = lambda v: "n/a" if v is None else v  # noqa: E731
        same = (kt == mt and kr == mr_ and ks == ms) if None not in (kt, mt) else None
        checks.append(f"- {q}: returned kiln {na(kr)} / mlflow {na(mr_)}; total matches (paged) "
                      f"kiln {na(kt)} / mlflow {na(mt)}; first page identical (run names, order, metrics, params): "
                      f"{'n/a' if same is None else ('yes' if ks == ms else 'NO')}"
                      f"{'' if same in (None, True) else '  <-- MISMATCH'}")
    for s in servers:
        h = reads[s].get("history")
        if h:
            ok = h["returned"] == meta.get("history") and h["distinct_steps"] == meta.get("history")
            checks.append(f"- {s} get-history returned {h['returned']} points ({h['distinct_steps']} distinct steps), "
                          f"expected {meta.get('history')}: {'ok' if ok else 'MISMATCH'}")
    for s in servers:
        for label, w in wrk[s].items():
            errs = sum(w["errors"].values())
            line = f"- {s} {label}: {w['requests']} requests completed, errors {errs}"
            want = w["requests"] * w["items_per_request"]
            if "stored_points" in w:
                ok = w["stored_distinct"] >= want
                line += (f"; stored points {w['stored_points']} (distinct {w['stored_distinct']}) "
                         f"{'≥' if ok else '<'} requests × metrics/request = {want}: "
                         f"{'ok, nothing deduplicated' if ok else 'MISMATCH'}")
            else:
                line += f"; dedup check skipped ({want} points is too many to fetch)"
            checks.append(line)

    out = []
    out.append(f"# Kiln vs MLflow tracking benchmark — {meta.get('date', '')}")
    out.append("")
    out.append(f"- Kiln: `{meta.get('kiln_bin')}` ({meta.get('kiln_profile')} build), "
               f"`kiln server --host 127.0.0.1 --port P --data-dir DIR` (SQLite, default settings)")
    if meta.get("kiln_profile") == "debug":
        out.append("- **WARNING: debug build of Kiln — its figures are not representative; use a release build.**")
    out.append(f"- MLflow: `mlflow=={meta.get('mlflow_version')} server --backend-store-uri sqlite:///DIR/mlflow.db` "
               f"(default artifact settings, default workers = 4 uvicorn workers)")
    out.append(f"- Machine: {meta.get('cpus')} CPU cores, {meta.get('cpu_model', '')}; {meta.get('mem', '')}. "
               f"The load generator (wrk / Python probe) runs on the same cores as the server, "
               f"so the throughput figures are for server + client sharing {meta.get('cpus')} cores.")
    out.append(f"- Load average (1/5/15 min) at start: {meta.get('load_start', '?')}, at end: {loadavg()}. "
               f"Anything else running on the machine (builds, tests) skews the figures; a load near 0 at "
               f"the start means a quiet machine.")
    out.append(f"- Servers are measured one after the other (never both running), each on a fresh data dir "
               f"with identical setup: {meta.get('runs')} runs × (3 metrics + 2 params) in one experiment via "
               f"runs/create + runs/log-batch ({meta.get('seed_conc')} concurrent clients), "
               f"and one run with {meta.get('history')} points of one metric.")
    out.append(f"- Throughput: wrk {meta.get('wrk_version', '')}, {meta.get('warmup')} s warm-up then "
               f"{meta.get('duration')} s measured per figure; every request carries distinct steps/timestamps "
               f"(Lua counter per wrk thread), log-metric to one run, log-batch to another run. "
               f"1 wrk thread for 1 connection, 2 threads otherwise.")
    out.append(f"- Latency: sequential requests from one Python client, a new connection per request "
               f"(`Connection: close`, TCP_NODELAY, no gzip), {meta.get('read_warmup')} warm-up + "
               f"{meta.get('reps')} timed reps, median reported (connect → last body byte).")
    out.append("- Keep-alive note: MLflow's uvicorn sends each response's headers and body as two TCP "
               "segments without TCP_NODELAY, so on a reused connection the body waits for the client's "
               "delayed ACK (~40 ms per request; compare the two `GET /health` diagnostic rows). wrk and "
               "MLflow's own Python client reuse connections, so the throughput rows include that stall, "
               "which dominates MLflow's 1-client figures; the `-close` rows (new connection per request) "
               "show MLflow without it. The latency rows use a new connection per request and so avoid it.")
    out.append(f"- Cold start: spawn → first HTTP 200 on /health, a new connection attempt every "
               f"{meta.get('poll_ms')} ms for the first {meta.get('fast_window')} s, every "
               f"{meta.get('slow_poll_ms')} ms after that; median of {meta.get('cold_kiln')} (Kiln) / {meta.get('cold_mlflow')} "
               f"(MLflow) restarts on an initialised data dir (+ one fresh-dir start, shown separately).")
    out.append("- Memory: sum of VmRSS (and Pss) over the server process and all its descendants from /proc, "
               f"after setup and {meta.get('idle')} s idle.")
    out.append("- **Kiln advantage** = kiln/mlflow for throughput, mlflow/kiln for latency, time and memory: "
               "> 1× means Kiln is better.")
    out.append("")
    out.append("| figure | Kiln | MLflow | Kiln advantage | target | met |")
    out.append("| --- | ---: | ---: | ---: | --- | --- |")
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    out.append("")
    out.append("Checks:")
    out.extend(checks)
    out.append("")
    print("\n".join(out))


# --------------------------------------------------------------------------- main


def main() -> None:
    # SIGTERM: stop any server this process spawned, then exit at once (a plain sys.exit
    # would wait for the seeding thread pool to drain).
    signal.signal(signal.SIGTERM, on_sigterm)
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)

    sub.add_parser("freeport")

    w = sub.add_parser("wait")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--pid", type=int, default=0)
    w.add_argument("--timeout", type=float, default=120)

    s = sub.add_parser("seed")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--runs", type=int, default=10000)
    s.add_argument("--history", type=int, default=10000)
    s.add_argument("--concurrency", type=int, default=8)
    s.add_argument("--name-suffix", default="", help="appended to experiment names (re-seeding one server)")
    s.add_argument("--out", required=True)

    r = sub.add_parser("reads")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--state", required=True)
    r.add_argument("--reps", type=int, default=20)
    r.add_argument("--warmup", type=int, default=2)
    r.add_argument("--keep-alive", action="store_true", help="reuse one connection for timed requests")
    r.add_argument("--out", required=True)

    wr = sub.add_parser("wrk-result")
    wr.add_argument("--wrk-output", required=True)
    wr.add_argument("--label", required=True)
    wr.add_argument("--items", type=int, default=1)
    wr.add_argument("--connections", type=int, required=True)
    wr.add_argument("--threads", type=int, required=True)
    wr.add_argument("--out", required=True)

    ch = sub.add_parser("count-history")
    ch.add_argument("--port", type=int, required=True)
    ch.add_argument("--run-id", required=True)
    ch.add_argument("--key", required=True)
    ch.add_argument("--label", required=True)
    ch.add_argument("--out", required=True)

    m = sub.add_parser("rss")
    m.add_argument("--pid", type=int, required=True)
    m.add_argument("--label", required=True)
    m.add_argument("--out", required=True)

    c = sub.add_parser("coldstart")
    c.add_argument("--label", required=True)
    c.add_argument("--reps", type=int, default=5)
    c.add_argument("--dir", required=True)
    c.add_argument("--log", required=True)
    c.add_argument("--poll-ms", type=float, default=0.5)
    c.add_argument("--slow-poll-ms", type=float, default=5.0)
    c.add_argument("--fast-window", type=float, default=2.0, help="seconds of --poll-ms polling before --slow-poll-ms")
    c.add_argument("--timeout", type=float, default=180)
    c.add_argument("--out", required=True)
    c.add_argument("--pidfile", help="holds the pid (= process group) of the server currently running")
    c.add_argument("server_cmd", nargs=argparse.REMAINDER, help="-- server argv with {port} and {dir}")

    me = sub.add_parser("meta")
    me.add_argument("--out", required=True)
    me.add_argument("pairs", nargs="*", help="key=value")

    rep = sub.add_parser("report")
    rep.add_argument("--dir", required=True)

    a = p.parse_args()
    if a.cmd == "freeport":
        print(free_port())
    elif a.cmd == "wait":
        cmd_wait(a)
    elif a.cmd == "seed":
        cmd_seed(a)
    elif a.cmd == "reads":
        cmd_reads(a)
    elif a.cmd == "wrk-result":
        cmd_wrk_result(a)
    elif a.cmd == "count-history":
        cmd_count_history(a)
    elif a.cmd == "rss":
        cmd_rss(a)
    elif a.cmd == "coldstart":
        if a.server_cmd and a.server_cmd[0] == "--":
            a.server_cmd = a.server_cmd[1:]
        if not a.server_cmd:
            die("coldstart: missing server command")
        cmd_coldstart(a)
    elif a.cmd == "meta":
        cmd_meta(a)
    elif a.cmd == "report":
        cmd_report(a)


if __name__ == "__main__":
    main()
