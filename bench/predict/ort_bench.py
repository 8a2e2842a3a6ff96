#!/usr/bin/env python3
"""onnxruntime's side of bench/predict.sh: times InferenceSession.run on the rows of a fixture
data file, batch after batch, the way crates/kiln-onnx/examples/predict_bench.rs times Kiln.

    ort_bench.py --model tests/fixtures/onnx/gb_classifier.onnx \\
        --data tests/fixtures/onnx/data/breast_cancer.json [--batches 1,1024] [--repeats 5] \\
        [--min-seconds 0.5] [--threads 1] [--rows N]

The rows are the data file's first `clean_rows` (no missing values), or --rows; a batch of B
takes B rows cycling through them (batch 1 walks them one at a time). The session runs on
--threads intra-op threads (one inter-op thread, sequential execution). Each repeat calls
run(None, feeds) on pre-built batches for at least --min-seconds; one JSON line per batch size
goes to stdout with the rows/s of every repeat and the best, by the wall clock and per second of
this process's CPU time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def load_rows(path: str, rows: int | None):
    with open(path) as f:
        d = json.load(f)
    t = d["tensors"][0]
    shape = t["shape"]
    n = min(rows or d.get("clean_rows", shape[0]), shape[0])
    dtype = {"FP32": np.float32, "FP64": np.float64}[t["datatype"]]
    per = int(np.prod(shape[1:]))
    values = [np.nan if v is None else v for v in t["data"][: n * per]]
    return t["name"], np.asarray(values, dtype=dtype).reshape([n, *shape[1:]])


def batch_of(x: np.ndarray, start: int, batch: int) -> np.ndarray:
    idx = (start + np.arange(batch)) % x.shape[0]
    return np.ascontiguousarray(x[idx])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--batches", default="1,1024")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-seconds", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=None)
    a = ap.parse_args()

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    name, x = load_rows(a.data, a.rows)
    n = x.shape[0]
    for batch in [int(b) for b in a.batches.split(",")]:
        count = n if batch == 1 else 1
        feeds = [{name: batch_of(x, i, batch)} for i in range(count)]
        run = sess.run

        def timed(min_seconds: float) -> tuple[float, float]:
            rows = 0
            i = 0
            start = time.perf_counter()
            cpu0 = time.process_time()
            while True:
                run(None, feeds[i % count])
                rows += batch
                i += 1
                el = time.perf_counter() - start
                if el >= min_seconds:
                    cpu = time.process_time() - cpu0
                    return rows / el, (rows / cpu if cpu > 0 else 0.0)

        timed(a.min_seconds / 5)  # warm-up
        runs = [timed(a.min_seconds) for _ in range(a.repeats)]
        rates = [r[0] for r in runs]
        cpu_rates = [r[1] for r in runs]
        print(json.dumps({
            "tool": "onnxruntime",
            "version": ort.__version__,
            "model": a.model,
            "threads": a.threads,
            "load_ms": load_ms,
            "batch": batch,
            "rows": n,
            "rows_per_s": rates,
            "best_rows_per_s": max(rates),
            "rows_per_cpu_s": cpu_rates,
            "best_rows_per_cpu_s": max(cpu_rates),
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
