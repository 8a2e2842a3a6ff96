#!/usr/bin/env python3
"""Turns bench/predict.sh's JSON lines (Kiln's and onnxruntime's) into a Markdown table.

    report.py --meta META.json RESULTS.jsonl... > report.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meta", required=True)
    ap.add_argument("results", nargs="+")
    a = ap.parse_args()
    with open(a.meta) as f:
        meta = json.load(f)
    rows: dict[tuple[str, int], dict[str, dict]] = {}
    order: list[tuple[str, int]] = []
    for path in a.results:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                key = (os.path.splitext(os.path.basename(r["model"]))[0], r["batch"])
                if key not in rows:
                    rows[key] = {}
                    order.append(key)
                # Several rounds: keep every run, report the best.
                prev = rows[key].get(r["tool"])
                if prev is not None:
                    r["rows_per_s"] = prev["rows_per_s"] + r["rows_per_s"]
                    r["rows_per_cpu_s"] = prev.get("rows_per_cpu_s", []) + r.get("rows_per_cpu_s", [])
                r["best_rows_per_s"] = max(r["rows_per_s"])
                r["best_rows_per_cpu_s"] = max(r.get("rows_per_cpu_s") or [0.0])
                rows[key][r["tool"]] = r

    out = []
    out.append("# Prediction throughput: Kiln (kiln-onnx) vs onnxruntime\n")
    out.append(f"- date: {meta['date']}; machine: {meta['cores']} cores, load average at start "
               f"{meta['load_start']}, at end {meta['load_end']}")
    out.append(f"- Kiln: `{meta['kiln_bin']}` (release example, one thread, `kiln_onnx::load` "
               f"then `Predictor::predict`)")
    out.append(f"- onnxruntime {meta['ort_version']} through its Python API "
               f"(`InferenceSession.run`), intra_op_num_threads = {meta['threads']}, "
               "inter_op_num_threads = 1")
    out.append(f"- each figure: best of {meta['rounds']} rounds × {meta['repeats']} runs of at least "
               f"{meta['min_seconds']} s, Kiln and onnxruntime alternating; same .onnx file, same rows "
               "(the fixture's rows without missing values, cycled)")
    out.append("- rows/s by the wall clock (the target); \"per CPU s\": rows per second of the process's "
               "CPU time, less sensitive to other load on the machine\n")
    out.append("| model | backend | batch | Kiln rows/s | onnxruntime rows/s | Kiln / onnxruntime | target "
               "| Kiln per CPU s | onnxruntime per CPU s | ratio |")
    out.append("|---|---|---:|---:|---:|---:|---|---:|---:|---:|")
    failed = False
    for key in order:
        model, batch = key
        k = rows[key].get("kiln")
        o = rows[key].get("onnxruntime")
        kb = k["best_rows_per_s"] if k else None
        ob = o["best_rows_per_s"] if o else None
        ratio = kb / ob if kb and ob else None
        ok = ratio is not None and ratio >= 1.0
        failed |= not ok
        kc = k.get("best_rows_per_cpu_s") if k else None
        oc = o.get("best_rows_per_cpu_s") if o else None
        cpu = (f"{kc:,.0f} | {oc:,.0f} | {kc / oc:.2f}×" if kc and oc else "n/a | n/a | n/a")
        out.append(
            f"| {model} | {k.get('backend', '?') if k else '?'} | {batch} | "
            f"{kb:,.0f} | {ob:,.0f} | {ratio:.2f}× | {'≥ 1× met' if ok else 'MISSED (≥ 1×)'} | {cpu} |"
            if ratio is not None
            else f"| {model} | ? | {batch} | {kb} | {ob} | n/a | MISSED | {cpu} |"
        )
    out.append("")
    out.append("Per-run rows/s (Kiln; onnxruntime):\n")
    for key in order:
        k = rows[key].get("kiln", {}).get("rows_per_s", [])
        o = rows[key].get("onnxruntime", {}).get("rows_per_s", [])
        out.append(f"- {key[0]} batch {key[1]}: "
                   f"{', '.join(f'{v:,.0f}' for v in k)}; {', '.join(f'{v:,.0f}' for v in o)}")
    print("\n".join(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
