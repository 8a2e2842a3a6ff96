#!/usr/bin/env python3
"""Helper for bench/serve.sh: free ports, readiness, cold start, memory, answer checks and
wrk / predict_bench result collection. Run with the benchmark venv's python; it talks only to
127.0.0.1. bench/serve/report.py turns what it writes into the Markdown report.

    probe.py freeport
    probe.py wait --port P --path /ping [--pid PID] [--timeout 180]
    probe.py coldstart --server NAME --path /ping --reps N --log FILE --out coldstart.json \
        [--pidfile F] -- CMD ARG...          ({port} in CMD is replaced by a free port)
    probe.py rss --pid PID --server NAME --label L --out mem.json
    probe.py check --server NAME --port P --proto invocations|oip --work WORK --out checks.json
    probe.py wrk-result --wrk-output F --server NAME --proto P --rows N --conns C --threads T \
        --round R --out wrk.json
    probe.py predict-result --jsonl F --label L --out predict.json
    probe.py latency --server NAME --proto P --port P --path /invocations --bodies F \
        [--seconds 10] --out latency.json
    probe.py pingpong [--seconds 10] --out env.json
    probe.py kiln-metrics --port P --save F          (Kiln's /metrics sums and counts, as JSON)
    probe.py kiln-metrics-delta --before F --after G --key K --out kiln_metrics.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path


def die(msg: str) -> None:
    print(f"serve probe: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def update_json(path: str, key, value) -> None:
    """results[key] = value in a JSON object file (created if missing)."""
    p = Path(path)
    results = json.loads(p.read_text()) if p.exists() else {}
    if isinstance(key, tuple):
        results.setdefault(key[0], {})[key[1]] = value
    else:
        results[key] = value
    p.write_text(json.dumps(results, indent=1))


# --------------------------------------------------------------------------- readiness / cold start


def ready_once(port: int, path: str, timeout: float) -> bool:
    """One attempt: connect, GET path, True on HTTP 200. Refused / reset -> False."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
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
            die(f"server pid {a.pid} exited before {a.path} answered 200")
        if ready_once(a.port, a.path, 30.0):
            return
        time.sleep(0.02)
    die(f"{a.path} on port {a.port} not 200 after {a.timeout} s")


SPAWNED: set[subprocess.Popen] = set()


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    end = time.monotonic() + grace  # the group's other processes (uvicorn workers)
    while time.monotonic() < end:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def on_sigterm(*_) -> None:
    for proc in list(SPAWNED):
        stop_group(proc, grace=5.0)
    os._exit(143)


def cmd_coldstart(a) -> None:
    """Spawn the server a.reps times; each time measure fork/exec -> first HTTP 200 on a.path.

    A new connection attempt every a.poll_ms for the first a.fast_window seconds, every
    a.slow_poll_ms after that (a slow Python start is not slowed further by the poller).
    """
    signal.signal(signal.SIGTERM, on_sigterm)
    samples = []
    log = open(a.log, "ab")
    for k in range(a.reps):
        port = free_port()
        argv = [x.replace("{port}", str(port)) for x in a.server_cmd]
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=a.cwd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        SPAWNED.add(proc)
        if a.pidfile:
            Path(a.pidfile).write_text(f"{proc.pid}\n")
        try:
            attempts = 0
            while True:
                attempts += 1
                if ready_once(port, a.path, 60.0):
                    break
                if proc.poll() is not None:
                    die(f"cold start: {a.server} exited with {proc.returncode} (see {a.log})")
                elapsed = time.perf_counter() - t0
                if elapsed > a.timeout:
                    die(f"cold start: {a.server} not ready after {a.timeout} s (see {a.log})")
                time.sleep(a.poll_ms / 1000.0 if elapsed < a.fast_window else a.slow_poll_ms / 1000.0)
            ms = (time.perf_counter() - t0) * 1000.0
        finally:
            stop_group(proc)
            SPAWNED.discard(proc)
            if a.pidfile:
                Path(a.pidfile).unlink(missing_ok=True)
        print(f"  {a.server} cold start {k + 1}/{a.reps}: {ms:.1f} ms ({attempts} attempts)", file=sys.stderr)
        samples.append(ms)
        time.sleep(0.2)
    update_json(a.out, a.server, {
        "samples_ms": [round(x, 2) for x in samples], "best_ms": min(samples),
        "median_ms": statistics.median(samples), "path": a.path, "poll_ms": a.poll_ms,
        "slow_poll_ms": a.slow_poll_ms, "fast_window_s": a.fast_window,
        "cmd": " ".join(a.server_cmd),
    })


# --------------------------------------------------------------------------- memory


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
    """VmRSS, VmHWM and Pss summed over the process and all its descendants."""
    kids = proc_children()
    todo, pids = [pid], []
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(kids.get(p, []))
    rss = hwm = pss = 0
    procs = []
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text().splitlines()
            name = next((ln.split(None, 1)[1] for ln in status if ln.startswith("Name:")), "?")
            r = next((int(ln.split()[1]) for ln in status if ln.startswith("VmRSS:")), 0)
            h = next((int(ln.split()[1]) for ln in status if ln.startswith("VmHWM:")), 0)
            s = next((int(ln.split()[1]) for ln in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
                      if ln.startswith("Pss:")), 0)
        except (OSError, StopIteration):
            continue
        rss, hwm, pss = rss + r, hwm + h, pss + s
        procs.append({"pid": p, "name": name.strip(), "rss_mb": round(r / 1024.0, 1)})
    return {"rss_mb": rss / 1024.0, "hwm_mb": hwm / 1024.0, "pss_mb": pss / 1024.0,
            "processes": len(procs), "per_process": procs}


def cmd_rss(a) -> None:
    m = tree_memory(a.pid)
    update_json(a.out, (a.server, a.label), m)
    print(f"  {a.server} {a.label}: RSS {m['rss_mb']:.1f} MB (peak {m['hwm_mb']:.1f}), "
          f"PSS {m['pss_mb']:.1f} MB over {m['processes']} process(es)", file=sys.stderr)


# --------------------------------------------------------------------------- answer checks


def post(port: int, path: str, body: str) -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", path, body=body.encode(), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, {"raw": data[:500].decode(errors="replace")}


def outputs_of(proto: str, resp: dict) -> tuple[list, list]:
    """(labels, probability rows) from an /invocations or OIP v2 answer."""
    if proto == "invocations":
        p = resp["predictions"]
        if isinstance(p, dict):
            return list(p["label"]), [list(r) for r in p["probabilities"]]
        return [r["label"] for r in p], [list(r["probabilities"]) for r in p]
    outs = {o["name"]: o for o in resp["outputs"]}
    lab = outs["label"]["data"]
    pr = outs["probabilities"]
    w = pr["shape"][1]
    flat = pr["data"]
    if flat and isinstance(flat[0], list):  # nested form
        return list(lab), [list(r) for r in flat]
    return list(lab), [flat[i * w:(i + 1) * w] for i in range(len(flat) // w)]


def cmd_check(a) -> None:
    """Send the first two 1-row and 100-row bodies; labels must equal onnxruntime's exactly,
    probabilities within 1e-5 (the fixture's tolerance)."""
    work = Path(a.work)
    exp = json.loads((work / "expected.json").read_text())
    path = "/invocations" if a.proto == "invocations" else f"/v2/models/{a.model}/infer"
    problems, rows_checked, max_diff = [], 0, 0.0
    for n in (1, 100):
        bodies = (work / "bodies" / f"{a.proto}-{n}.txt").read_text().splitlines()[:2]
        for k, (body, want) in enumerate(zip(bodies, exp[f"rows-{n}"])):
            status, resp = post(a.port, path, body)
            if status != 200:
                problems.append(f"{n}-row body {k}: HTTP {status}: {json.dumps(resp)[:300]}")
                continue
            try:
                labels, probs = outputs_of(a.proto, resp)
            except (KeyError, TypeError, IndexError) as e:
                problems.append(f"{n}-row body {k}: unexpected answer ({e!r}): {json.dumps(resp)[:300]}")
                continue
            if len(labels) != n or len(probs) != n:
                problems.append(f"{n}-row body {k}: {len(labels)} labels / {len(probs)} rows, wanted {n}")
                continue
            if [int(x) for x in labels] != [int(x) for x in want["label"]]:
                problems.append(f"{n}-row body {k}: labels differ from onnxruntime's")
            d = max(abs(float(x) - float(y)) for r, w in zip(probs, want["probabilities"]) for x, y in zip(r, w))
            max_diff = max(max_diff, d)
            if d > 1e-5:
                problems.append(f"{n}-row body {k}: probabilities differ by up to {d:.3g}")
            rows_checked += n
    ok = not problems
    update_json(a.out, f"{a.server} {path}", {"ok": ok, "rows": rows_checked, "max_abs_diff": max_diff,
                                              "problems": problems})
    print(f"  {a.server} {path}: {rows_checked} rows checked against onnxruntime's outputs, "
          f"max |Δp| {max_diff:.2g}: {'ok' if ok else 'FAILED: ' + '; '.join(problems)}", file=sys.stderr)
    if not ok:
        sys.exit(1)


# --------------------------------------------------------------------------- wrk / predict_bench results


def cmd_wrk_result(a) -> None:
    text = Path(a.wrk_output).read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        die(f"no WRKJSON line in {a.wrk_output}:\n{text}")
    r = json.loads(line[len("WRKJSON "):])
    secs = r["duration_us"] / 1e6
    r.update({
        "server": a.server, "proto": a.proto, "rows": a.rows, "conns": a.conns, "threads": a.threads,
        "round": a.round, "req_per_s": r["requests"] / secs, "rows_per_s": r["requests"] * a.rows / secs,
        "error_count": sum(r["errors"].values()),
    })
    p = Path(a.out)
    results = json.loads(p.read_text()) if p.exists() else []
    results.append(r)
    p.write_text(json.dumps(results, indent=1))
    err = f", {r['error_count']} errors {r['errors']}" if r["error_count"] else ""
    print(f"  {a.server} {a.proto} {a.rows} row(s) x {a.conns} conn: {r['req_per_s']:,.0f} req/s, "
          f"{r['rows_per_s']:,.0f} rows/s, p50 {r['lat_p50_us'] / 1000:.3f} ms, p99 "
          f"{r['lat_p99_us'] / 1000:.3f} ms, p99.9 {r['lat_p999_us'] / 1000:.3f} ms{err}", file=sys.stderr)


def cmd_predict_result(a) -> None:
    lines = [json.loads(ln) for ln in Path(a.jsonl).read_text().splitlines() if ln.startswith("{")]
    if not lines:
        die(f"no results in {a.jsonl}")
    update_json(a.out, a.label, lines)
    for r in lines:
        print(f"  in-process predictor ({a.label}), batch {r['batch']}: {r['best_rows_per_s']:,.0f} rows/s "
              f"(best of {len(r['rows_per_s'])}, one thread)", file=sys.stderr)


# --------------------------------------------------------------------------- raw latency, machine


def cmd_latency(a) -> None:
    """Sequential requests on one keep-alive connection (raw socket, TCP_NODELAY), every
    latency recorded as measured: no coordinated-omission correction (wrk corrects: one stall
    of T ms at an interval of i ms adds T/i synthetic samples). Also counts stalls > 10 ms."""
    bodies = [ln.strip().encode() for ln in Path(a.bodies).read_text().splitlines() if ln.strip()]
    reqs = [(f"POST {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\nContent-Type: application/json\r\n"
             f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
    sock = socket.create_connection(("127.0.0.1", a.port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    lat: list[float] = []
    stalls: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    end = t0 + a.seconds
    n = 0
    while True:
        t = time.perf_counter()
        if t >= end:
            break
        sock.sendall(reqs[n % len(reqs)])
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                die(f"latency: {a.server} closed the connection")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            die(f"latency: {a.server} answered {head[:60]!r}")
        length = next(int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                      if ln.lower().startswith(b"content-length:"))
        while len(rest) < length:
            rest += sock.recv(65536)
        buf = rest[length:]
        d = (time.perf_counter() - t) * 1000.0
        lat.append(d)
        if d > 10.0:
            stalls.append((round(t - t0, 3), round(d, 1)))
        n += 1
    sock.close()
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * p / 100.0))]

    r = {"requests": n, "seconds": a.seconds, "req_per_s": n / a.seconds, "p50_ms": pct(50),
         "p99_ms": pct(99), "p999_ms": pct(99.9), "max_ms": lat[-1], "stalls_over_10ms": len(stalls),
         "stalls": stalls[:10]}
    update_json(a.out, f"{a.server} {a.proto}", r)
    print(f"  {a.server} {a.proto} 1 row, 1 connection, sequential Python client: {n / a.seconds:,.0f} req/s, "
          f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, p99.9 {r['p999_ms']:.3f} ms, "
          f"max {r['max_ms']:.1f} ms, {len(stalls)} stall(s) > 10 ms", file=sys.stderr)


def cmd_pingpong(a) -> None:
    """The machine's own wake-up latency: two processes bounce a byte through pipes, first
    pinned to different CPUs, then to the same one; reports the round trips' p50 / p99.9 / max
    and those over 10 ms. (On a VM, waking a thread on another, idle vCPU can stall for as long
    as the host takes to schedule that vCPU; any server whose request path crosses threads pays
    it now and then.)"""
    results = {}
    ncpu = os.cpu_count() or 1
    for label, cpus in (("cross_cpu", (0, 1 % ncpu)), ("same_cpu", (0, 0))):
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.sched_setaffinity(0, {cpus[1]})
            while True:
                b = os.read(r1, 1)
                if b == b"q":
                    os._exit(0)
                os.write(w2, b)
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpus[0]})
        lat: list[float] = []
        slow: list[tuple[float, float]] = []
        t0 = time.perf_counter()
        end = t0 + a.seconds / 2
        while True:
            t = time.perf_counter()
            if t >= end:
                break
            os.write(w1, b"x")
            os.read(r2, 1)
            d = (time.perf_counter() - t) * 1000.0
            lat.append(d)
            if d > 10.0:
                slow.append((round(t - t0, 2), round(d, 1)))
        os.write(w1, b"q")
        os.waitpid(pid, 0)
        os.sched_setaffinity(0, old)
        for fd in (r1, w1, r2, w2):
            os.close(fd)
        lat.sort()
        results[label] = {"round_trips": len(lat), "seconds": a.seconds / 2,
                          "p50_us": lat[len(lat) // 2] * 1000.0,
                          "p999_us": lat[int(len(lat) * 0.999)] * 1000.0, "max_ms": lat[-1],
                          "over_10ms": len(slow), "slow": slow[:10]}
        print(f"  machine check, pipe ping-pong {label.replace('_', '-')}: {len(lat):,} round trips in "
              f"{a.seconds / 2:g} s, p50 {results[label]['p50_us']:.0f} us, max {lat[-1]:.1f} ms, "
              f"{len(slow)} over 10 ms", file=sys.stderr)
    update_json(a.out, "pingpong", results)


# --------------------------------------------------------------------------- Kiln's own accounting

KILN_SERIES = ("kiln_inference_request_duration_seconds", "kiln_inference_queue_duration_seconds",
               "kiln_inference_compute_duration_seconds", "kiln_inference_batch_rows")


def cmd_kiln_metrics(a) -> None:
    c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    vals: dict[str, float] = {}
    for ln in text.splitlines():
        if ln.startswith("#") or "_bucket" in ln:
            continue
        name = ln.split("{", 1)[0].split(" ", 1)[0]
        if any(name.startswith(s) for s in KILN_SERIES) and (name.endswith("_sum") or name.endswith("_count")):
            vals[name] = vals.get(name, 0.0) + float(ln.rsplit(" ", 1)[1])
    Path(a.save).write_text(json.dumps(vals))


def cmd_kiln_metrics_delta(a) -> None:
    b = json.loads(Path(a.before).read_text())
    e = json.loads(Path(a.after).read_text())
    d = {k: e.get(k, 0.0) - b.get(k, 0.0) for k in e}
    n = d.get("kiln_inference_request_duration_seconds_count", 0.0)
    if n <= 0:
        return
    r = {
        "requests": n,
        "request_us": d["kiln_inference_request_duration_seconds_sum"] / n * 1e6,
        "queue_us": d["kiln_inference_queue_duration_seconds_sum"] / n * 1e6,
        "compute_us": d["kiln_inference_compute_duration_seconds_sum"] / n * 1e6,
        "batch_rows": d["kiln_inference_batch_rows_sum"] / d["kiln_inference_batch_rows_count"],
    }
    update_json(a.out, a.key, r)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("freeport")
    p = sub.add_parser("wait")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--timeout", type=float, default=180.0)
    p = sub.add_parser("coldstart")
    p.add_argument("--server", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--log", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cwd", default=".")
    p.add_argument("--pidfile")
    p.add_argument("--poll-ms", type=float, default=0.5)
    p.add_argument("--slow-poll-ms", type=float, default=5.0)
    p.add_argument("--fast-window", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("server_cmd", nargs=argparse.REMAINDER)
    p = sub.add_parser("rss")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("check")
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--proto", choices=["invocations", "oip"], required=True)
    p.add_argument("--model", default="gb")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("wrk-result")
    p.add_argument("--wrk-output", required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--proto", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--out", required=True)
    p = sub.add_parser("predict-result")
    p.add_argument("--jsonl", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--server", required=True)
    p.add_argument("--proto", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--bodies", required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", required=True)
    p = sub.add_parser("pingpong")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", required=True)
    p = sub.add_parser("kiln-metrics")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--save", required=True)
    p = sub.add_parser("kiln-metrics-delta")
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.cmd == "freeport":
        print(free_port())
    elif a.cmd == "wait":
        cmd_wait(a)
    elif a.cmd == "coldstart":
        if a.server_cmd and a.server_cmd[0] == "--":
            a.server_cmd = a.server_cmd[1:]
        if not a.server_cmd:
            die("coldstart: no server command after --")
        cmd_coldstart(a)
    elif a.cmd == "rss":
        cmd_rss(a)
    elif a.cmd == "check":
        cmd_check(a)
    elif a.cmd == "wrk-result":
        cmd_wrk_result(a)
    elif a.cmd == "predict-result":
        cmd_predict_result(a)
    elif a.cmd == "latency":
        cmd_latency(a)
    elif a.cmd == "pingpong":
        cmd_pingpong(a)
    elif a.cmd == "kiln-metrics":
        cmd_kiln_metrics(a)
    elif a.cmd == "kiln-metrics-delta":
        cmd_kiln_metrics_delta(a)


if __name__ == "__main__":
    main()
