#!/usr/bin/env python3
"""Turns the JSON files bench/serve.sh collects into its Markdown report.

    report.py --dir WORK > report.md

Reads WORK/{meta,model,coldstart,mem,checks,wrk,predict,latency,env,floor,kiln_metrics}.json. Exits 0 when every target is
met, 3 when some target is missed or could not be measured (the report says which).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

NAMES = {"kiln": "Kiln", "mlflow": "MLflow", "fastapi": "FastAPI+ORT"}
PROTO = {"invocations": "/invocations", "oip": "OIP v2 /infer"}

T_MLFLOW = 20.0     # Kiln throughput ≥ 20× mlflow models serve's
T_FASTAPI = 5.0     # ≥ 5× FastAPI + uvicorn + onnxruntime's
T_P99_MS = 1.0      # p99 ≤ 1 ms, 1-row requests, 1 connection
T_INPROC = 0.80     # 100-row rows/s ≥ 80% of the in-process predictor's
T_COLD_MS = 200.0   # cold start < 200 ms
T_RSS_MB = 50.0     # RSS < 50 MB with one model loaded


def load(d: Path, name: str, default):
    p = d / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else default


def num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def ms(us: float | None) -> str:
    if us is None:
        return "—"
    v = us / 1000.0
    return f"{v:.3f}" if v < 10 else f"{v:,.1f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b


def xfmt(r: float | None) -> str:
    return "—" if r is None else (f"{r:,.1f}×" if r < 100 else f"{r:,.0f}×")


def yn(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    d = Path(a.dir)
    meta = load(d, "meta", {})
    model = load(d, "model", {})
    cold = load(d, "coldstart", {})
    mem = load(d, "mem", {})
    checks = load(d, "checks", {})
    wrk = load(d, "wrk", [])
    predict = load(d, "predict", {})
    rawlat = load(d, "latency", {})
    env = load(d, "env", {})
    floor = load(d, "floor", [])
    kmet = load(d, "kiln_metrics", {})

    # Best over rounds for each figure (highest throughput; its own latencies go with it).
    best: dict[tuple, dict] = {}
    rounds: dict[tuple, list] = {}
    for r in wrk:
        k = (r["server"], r["proto"], r["rows"], r["conns"])
        rounds.setdefault(k, []).append(r["req_per_s"])
        if k not in best or r["req_per_s"] > best[k]["req_per_s"]:
            best[k] = r

    def fig(server, proto, rows, conns):
        return best.get((server, proto, rows, conns))

    out: list[str] = []
    w = out.append
    w(f"# Serving benchmark: Kiln vs `mlflow models serve` and FastAPI + onnxruntime — {meta.get('date', '?')}")
    w("")
    w(f"- **Command:** `{meta.get('command', 'bash bench/serve.sh')}`")
    w(f"- **Machine:** {meta.get('cores', '?')} cores ({meta.get('cpu', '?')}), {meta.get('mem_gib', '?')} GiB RAM; "
      f"load average {meta.get('load_start', '?')} at the start, {meta.get('load_end', '?')} at the end. "
      "The load generator (wrk) runs on the same cores as the server under test: every figure is "
      "server + client sharing them.")
    w(f"- **Model:** `{meta.get('model', model.get('file', '?'))}` — {model.get('producer', 'skl2onnx')} export of a "
      f"GradientBoostingClassifier, {model.get('trees', '?')} trees, input `X` FP32 [-1, 30], outputs "
      f"`label` INT64 and `probabilities` FP32 [-1, 2]; rows: the {model.get('clean_rows', '?')} "
      "breast_cancer rows without missing values.")
    w(f"- **Kiln:** `{meta.get('kiln_cmd', '?')}` ({meta.get('kiln_profile', '?')} build, {meta.get('kiln_build', '?')}); "
      f"flags beyond host/port/model: {meta.get('kiln_args') or 'none (defaults: one inference thread and one HTTP worker per core, max batch 256 rows, no queue delay)'}.")
    w(f"- **MLflow:** `{meta.get('mlflow_cmd', '?')}` (mlflow {meta.get('mlflow_version', '?')}, onnx flavour "
      f"from `mlflow.onnx.save_model` of the same file, onnxruntime {meta.get('ort_version', '?')} with "
      f"MLflow's default session options; {meta.get('mlflow_workers_note', '?')}).")
    w(f"- **FastAPI+ORT:** `{meta.get('fastapi_cmd', '?')}` (fastapi {meta.get('fastapi_version', '?')}, "
      f"uvicorn {meta.get('uvicorn_version', '?')} with uvloop + httptools, onnxruntime "
      f"{meta.get('ort_version', '?')}, {meta.get('ort_threads', '?')} intra-op thread per worker; "
      "`bench/serve/fastapi_app.py`).")
    w(f"- **Load:** {meta.get('wrk_version', 'wrk')}, {meta.get('warmup', '?')} s warm-up then {meta.get('duration', '?')} s "
      "measured per figure, keep-alive connections, 1 wrk thread for 1 connection and 2 threads otherwise; "
      "each request body is one of the prepared bodies in turn (569 distinct 1-row bodies, 16 distinct "
      "100-row ones), the same bodies for every server. The servers run side by side and each figure "
      "is measured on all of them back to back (Kiln, Kiln OIP, MLflow, FastAPI), so they see the "
      f"same machine load; {meta.get('rounds', 1)} round(s), best round reported.")
    w("")

    # ------------------------------------------------------------------ main table
    w("## Throughput and latency")
    w("")
    w("| server | endpoint | conns | rows/req | req/s | rows/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    order = sorted(best, key=lambda k: (k[2], k[3], ["kiln", "mlflow", "fastapi"].index(k[0]) if k[0] in NAMES else 9,
                                        k[1] != "invocations"))
    for k in order:
        r = best[k]
        w(f"| {NAMES.get(k[0], k[0])} | {PROTO.get(k[1], k[1])} | {k[3]} | {k[2]} | {num(r['req_per_s'])} | "
          f"{num(r['rows_per_s'])} | {ms(r['lat_p50_us'])} | {ms(r['lat_p90_us'])} | {ms(r['lat_p99_us'])} | "
          f"{ms(r['lat_p999_us'])} | {ms(r['lat_max_us'])} | {r['error_count']} |")
    w("")
    w("Latency percentiles are wrk's, which corrects for coordinated omission: after the run, every "
      "latency longer than the mean interval between requests on a connection (runtime ÷ "
      "requests per connection, ~70 µs for Kiln at 1 connection) adds synthetic samples for the "
      "requests that would have been sent meanwhile. At 1 connection and ~15,000 req/s one stall "
      "of 100 ms in 10 s thus becomes ~1,400 samples between 0 and 100 ms, i.e. ~1% of the "
      "total, enough to set p99 on its own. The diagnostic section below gives the latencies as "
      "measured, and the machine check how often this VM stalls by itself.")
    w("")

    # ------------------------------------------------------------------ ratios
    targets: list[tuple[str, str, str, bool | None]] = []
    w("## Kiln vs the anchors (same /invocations body, req/s)")
    w("")
    w(f"| conns | rows/req | Kiln | MLflow | FastAPI+ORT | Kiln/MLflow | ≥ {T_MLFLOW:.0f}× | Kiln/FastAPI | ≥ {T_FASTAPI:.0f}× |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    min_m = min_f = None
    all_m = all_f = True
    any_m = any_f = False
    for rows in sorted({k[2] for k in best}):
        for conns in sorted({k[3] for k in best}):
            k_ = fig("kiln", "invocations", rows, conns)
            m_ = fig("mlflow", "invocations", rows, conns)
            f_ = fig("fastapi", "invocations", rows, conns)
            if not k_:
                continue
            rm = ratio(k_["req_per_s"], m_ and m_["req_per_s"])
            rf = ratio(k_["req_per_s"], f_ and f_["req_per_s"])
            okm = None if rm is None else rm >= T_MLFLOW
            okf = None if rf is None else rf >= T_FASTAPI
            if rm is not None:
                any_m = True
                all_m &= okm
                min_m = rm if min_m is None else min(min_m, rm)
            if rf is not None:
                any_f = True
                all_f &= okf
                min_f = rf if min_f is None else min(min_f, rf)
            w(f"| {conns} | {rows} | {num(k_['req_per_s'])} | {num(m_ and m_['req_per_s'])} | "
              f"{num(f_ and f_['req_per_s'])} | {xfmt(rm)} | {yn(okm)} | {xfmt(rf)} | {yn(okf)} |")
    w("")
    targets.append((f"throughput ≥ {T_MLFLOW:.0f}× MLflow's, every figure above", f"lowest {xfmt(min_m)}",
                    f"≥ {T_MLFLOW:.0f}×", all_m if any_m else None))
    targets.append((f"throughput ≥ {T_FASTAPI:.0f}× FastAPI+ORT's, every figure above", f"lowest {xfmt(min_f)}",
                    f"≥ {T_FASTAPI:.0f}×", all_f if any_f else None))

    # ------------------------------------------------------------------ other targets
    k1 = fig("kiln", "invocations", 1, 1)
    p99 = k1 and k1["lat_p99_us"] / 1000.0
    targets.append(("p99, 1-row /invocations requests, 1 connection", "—" if p99 is None else f"{p99:.3f} ms",
                    f"≤ {T_P99_MS:g} ms", None if p99 is None else p99 <= T_P99_MS))
    rl = rawlat.get("kiln invocations")
    if rl:
        targets.append(("p99, the same requests from a sequential Python client, latencies as measured "
                        f"(diagnostic; {rl['stalls_over_10ms']} stall(s) > 10 ms, max {rl['max_ms']:.1f} ms)",
                        f"{rl['p99_ms']:.3f} ms", f"≤ {T_P99_MS:g} ms", rl["p99_ms"] <= T_P99_MS))
    k1o = fig("kiln", "oip", 1, 1)
    if k1o:
        p = k1o["lat_p99_us"] / 1000.0
        targets.append(("p99, 1-row OIP v2 requests, 1 connection (same target, diagnostic)", f"{p:.3f} ms",
                        f"≤ {T_P99_MS:g} ms", p <= T_P99_MS))

    inproc = {}
    for label, lines in predict.items():
        for r in lines:
            b = r["batch"]
            inproc[b] = max(inproc.get(b, 0.0), r["best_rows_per_s"])
    k100 = [r for k, r in best.items() if k[0] == "kiln" and k[1] == "invocations" and k[2] == 100]
    k100o = [r for k, r in best.items() if k[0] == "kiln" and k[1] == "oip" and k[2] == 100]
    srv100 = max(k100, key=lambda r: r["rows_per_s"]) if k100 else None
    srv100o = max(k100o, key=lambda r: r["rows_per_s"]) if k100o else None
    ip100 = inproc.get(100)
    r100 = ratio(srv100 and srv100["rows_per_s"], ip100)
    targets.append(("100-row rows/s, best Kiln /invocations figure ÷ in-process predictor at batch 100 (one thread)",
                    "—" if r100 is None else
                    f"{r100 * 100:.0f}% ({num(srv100['rows_per_s'])} at {srv100['conns']} conn vs {num(ip100)})",
                    f"≥ {T_INPROC * 100:.0f}%", None if r100 is None else r100 >= T_INPROC))
    r100o = ratio(srv100o and srv100o["rows_per_s"], ip100)
    if r100o is not None:
        targets.append(("the same with OIP v2 bodies (diagnostic)",
                        f"{r100o * 100:.0f}% ({num(srv100o['rows_per_s'])} at {srv100o['conns']} conn)",
                        f"≥ {T_INPROC * 100:.0f}%", r100o >= T_INPROC))

    kc = cold.get("kiln")
    targets.append(("cold start: spawn → first 200 on /v2/health/ready, best of "
                    f"{len(kc['samples_ms']) if kc else '?'} (median in brackets)",
                    "—" if not kc else f"{kc['best_ms']:.1f} ms ({kc['median_ms']:.1f})",
                    f"< {T_COLD_MS:.0f} ms", None if not kc else kc["best_ms"] < T_COLD_MS))
    km = mem.get("kiln", {}).get("after_warmup")
    targets.append(("RSS with one model loaded, after warm-up (VmRSS)",
                    "—" if not km else f"{km['rss_mb']:.1f} MB", f"< {T_RSS_MB:.0f} MB",
                    None if not km else km["rss_mb"] < T_RSS_MB))

    w("## Targets")
    w("")
    w("| target | Kiln | wanted | met |")
    w("| --- | ---: | --- | --- |")
    for name, val, want, ok in targets:
        w(f"| {name} | {val} | {want} | {yn(ok)} |")
    w("")

    # ------------------------------------------------------------------ cold start, memory
    w("## Cold start and memory")
    w("")
    w("| server | cold start best ms | median ms | runs | RSS after warm-up MB | RSS after all load MB | peak RSS MB (Σ VmHWM) | PSS after load MB | processes |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in ["kiln", "mlflow", "fastapi"]:
        c = cold.get(s)
        mw = mem.get(s, {}).get("after_warmup")
        ml = mem.get(s, {}).get("after_load")
        if not c and not mw:
            continue
        w(f"| {NAMES[s]} | {num(c and c['best_ms'], 1)} | {num(c and c['median_ms'], 1)} | "
          f"{len(c['samples_ms']) if c else '—'} | {num(mw and mw['rss_mb'], 1)} | {num(ml and ml['rss_mb'], 1)} | "
          f"{num(ml and ml['hwm_mb'], 1)} | {num(ml and ml['pss_mb'], 1)} | {(ml or mw or {}).get('processes', '—')} |")
    w("")
    w("Cold start: from just before fork/exec to the first HTTP 200 on the readiness route "
      "(Kiln `/v2/health/ready`, MLflow and FastAPI `/ping`, which answer once the model is loaded), "
      "a new connection attempt every 0.5 ms for the first 2 s and every 5 ms after that. For "
      "uvicorn with 2 workers the first worker to come up answers. Memory: VmRSS (and Pss) summed "
      "over the server process and all its descendants (MLflow: the `mlflow` CLI process and its "
      "uvicorn child; FastAPI: uvicorn's supervisor, its workers and multiprocessing's resource "
      "tracker); \"after warm-up\" is after the answer checks and a warm-up of every request kind, "
      "\"after all load\" at the end.")
    w("")

    # ------------------------------------------------------------------ Kiln's accounting, floor
    if kmet:
        w("## Where Kiln's time goes (its own /metrics, per measured figure)")
        w("")
        w("Deltas of Kiln's histograms over each measured run: *request* is received → answered "
          "inside the server, *queue* the wait for an inference thread, *compute* the predictor "
          "call of the batch the request joined, *batch rows* the rows of that call (several "
          "requests batched together when it exceeds the request's rows). What is neither queue "
          "nor compute is decoding the JSON body, encoding the answer and the hand-offs between "
          "threads; what wrk sees beyond *request* is HTTP, the kernel and wrk itself.")
        w("")
        w("| endpoint | conns | rows/req | requests | request µs | queue µs | compute µs | other µs | batch rows | wrk mean µs |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key, m in kmet.items():
            proto, rows, conns, rnd = key.split()
            r = next((x for x in wrk if x["server"] == "kiln" and x["proto"] == proto and str(x["rows"]) == rows
                      and str(x["conns"]) == conns and str(x["round"]) == rnd), None)
            other = m["request_us"] - m["queue_us"] - m["compute_us"]
            w(f"| {PROTO.get(proto, proto)} | {conns} | {rows} | {num(m['requests'])} | {m['request_us']:.0f} | "
              f"{m['queue_us']:.0f} | {m['compute_us']:.0f} | {other:.0f} | {m['batch_rows']:.1f} | "
              f"{num(r and r['lat_mean_us'])} |")
        w("")
    if floor:
        w("## HTTP floor (diagnostic)")
        w("")
        w("GET on each server's readiness route (no model work, tiny answer), 1 connection, 1 wrk "
          "thread: what the HTTP stack, the kernel and wrk cost per request on this machine. It bounds "
          "the 1-row ratios: at 1 connection Kiln cannot exceed its floor's req/s however fast it "
          "predicts.")
        w("")
        w("| server | route | req/s | p50 ms | p99 ms | 1-row /invocations req/s at 1 conn (share of floor) |")
        w("| --- | --- | ---: | ---: | ---: | ---: |")
        for r in floor:
            one = fig(r["server"], "invocations", 1, 1)
            share = f" ({one['req_per_s'] / r['req_per_s'] * 100:.0f}%)" if one else ""
            route = "/v2/health/ready" if r["server"] == "kiln" else "/ping"
            w(f"| {NAMES.get(r['server'], r['server'])} | {route} | {num(r['req_per_s'])} | {ms(r['lat_p50_us'])} | "
              f"{ms(r['lat_p99_us'])} | {num(one and one['req_per_s'])}{share} |")
        w("")

    # ------------------------------------------------------------------ raw latency, machine
    if rawlat or env:
        w("## Latency as measured, 1-row requests, 1 connection (diagnostic)")
        w("")
    if rawlat:
        w("A sequential Python client (raw socket, keep-alive, TCP_NODELAY) sends the 1-row bodies "
          "one after another to each server in turn, after the wrk figures; every latency is "
          "recorded as measured, without wrk's correction. The client's own overhead (~20–30 µs "
          "per request) is included for every server alike.")
        w("")
        w("| server | endpoint | req/s | p50 ms | p99 ms | p99.9 ms | max ms | stalls > 10 ms (s into the run: ms) |")
        w("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for key, r in rawlat.items():
            srv, _, proto = key.partition(" ")
            st = ", ".join(f"{t:g}: {v:g}" for t, v in r["stalls"]) or "none"
            if r["stalls_over_10ms"] > len(r["stalls"]):
                st += ", …"
            w(f"| {NAMES.get(srv, srv)} | {PROTO.get(proto, proto)} | {num(r['req_per_s'])} | {r['p50_ms']:.3f} | "
              f"{r['p99_ms']:.3f} | {r['p999_ms']:.3f} | {r['max_ms']:.1f} | {st} |")
        w("")
    pp = env.get("pingpong")
    if pp:
        c, s_ = pp["cross_cpu"], pp["same_cpu"]
        w(f"Machine check before the servers started: two processes bouncing a byte through pipes, "
          f"pinned to different CPUs: {c['round_trips']:,} round trips in {c['seconds']:g} s, p50 "
          f"{c['p50_us']:.0f} µs, max {c['max_ms']:.1f} ms, {c['over_10ms']} over 10 ms; on the same CPU: "
          f"p50 {s_['p50_us']:.0f} µs, max {s_['max_ms']:.1f} ms, {s_['over_10ms']} over 10 ms. On this VM, "
          "waking a thread on the other (idle) vCPU occasionally waits ~100 ms for the host to run that "
          "vCPU; any server whose request path hands work between threads (Kiln: HTTP worker → "
          "inference thread → HTTP worker) is exposed to it, and so is wrk → server.")
        w("")

    # ------------------------------------------------------------------ in-process
    if predict:
        w("## In-process predictor (Kiln, no HTTP)")
        w("")
        w("`predict_bench` (crates/kiln-onnx/examples) times `Predictor::predict` on the same rows "
          "on **one thread**, no HTTP and no JSON. The server, by contrast, runs with its default "
          "inference threads (one per core, so 2) and HTTP workers, and shares the two cores with "
          "wrk. The target compares the server's best 100-row rows/s with the single-thread "
          "in-process figure as measured; it is not scaled by the core count.")
        w("")
        w("| batch | run | rows/s, wall clock (best) | rows per CPU-second (best) |")
        w("| ---: | --- | ---: | ---: |")
        for label, lines in predict.items():
            for r in lines:
                w(f"| {r['batch']} | {label} load phase | {num(r['best_rows_per_s'])} | "
                  f"{num(r.get('best_rows_per_cpu_s'))} |")
        w("")

    # ------------------------------------------------------------------ checks
    w("## Checks")
    w("")
    for key, c in checks.items():
        srv, _, path = key.partition(" ")
        w(f"- {NAMES.get(srv, srv)} `{path}`: {c['rows']} rows of answers compared with onnxruntime's "
          f"(labels equal, probabilities within 1e-5; largest difference {c['max_abs_diff']:.2g}): "
          f"{'ok' if c['ok'] else 'FAILED: ' + '; '.join(c['problems'])}")
    errs = [r for r in wrk if r["error_count"]]
    if errs:
        for r in errs:
            w(f"- **errors** in {NAMES.get(r['server'], r['server'])} {PROTO.get(r['proto'])} {r['rows']} row(s) × "
              f"{r['conns']} conn (round {r['round']}): {r['errors']} (status = non-2xx answers)")
    else:
        w("- wrk saw no errors (connect, read, write, timeout, non-2xx) in any measured run.")
    if any(len(v) > 1 for v in rounds.values()):
        w("- req/s of every round: " + "; ".join(
            f"{NAMES.get(k[0], k[0])} {k[1]} {k[2]}r×{k[3]}c: " + ", ".join(num(x) for x in v)
            for k, v in rounds.items()))
    w("")
    met = all(t[3] is True for t in targets)
    print("\n".join(out))
    return 0 if met else 3


if __name__ == "__main__":
    sys.exit(main())
