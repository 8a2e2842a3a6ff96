"""bench/drift.sh's timing and report: runs `kiln data drift` (against a profile JSON, and
against the raw reference file) and Evidently's DataDriftPreset on the same two Parquet files,
compares their per-column verdicts, prints a table and writes it to OUT/drift-<stamp>.md.

Usage: python run.py KILN_BIN DATA_DIR OUT_DIR KILN_RUNS KILN_WARMUP EVIDENTLY_RUNS
"""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_timed(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stderr}")
    return elapsed, p.stdout


def kiln_times(cmd, runs, warmup):
    for _ in range(warmup):
        run_timed(cmd)
    times, out = [], None
    for _ in range(runs):
        t, out = run_timed(cmd)
        times.append(t)
    return times, json.loads(out)


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def main():
    kiln, data, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    runs, warmup, ev_runs = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    ref, cur, prof = data / "reference.parquet", data / "current.parquet", data / "reference.profile.json"
    load_start = os.getloadavg()[0]

    cmd_profile = [kiln, "data", "drift", "--reference", str(prof), str(cur), "--json"]
    cmd_raw = [kiln, "data", "drift", "--reference", str(ref), str(cur), "--json"]
    k_times, k_report = kiln_times(cmd_profile, runs, warmup)
    kiln_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    r_times, _ = kiln_times(cmd_raw, max(1, runs // 2), 0)

    ev_cmd = [sys.executable, str(HERE / "evidently_drift.py"), str(ref), str(cur)]
    ev = []
    for _ in range(ev_runs):
        _, o = run_timed(ev_cmd)
        ev.append(json.loads(o))
    ev_best = min(ev, key=lambda e: e["read_seconds"] + e["report_seconds"])
    ev_total = ev_best["read_seconds"] + ev_best["report_seconds"]
    load_end = os.getloadavg()[0]

    k_best, k_median = min(k_times), statistics.median(k_times)
    r_best = min(r_times)
    target_met = "yes" if k_best < 1.0 else "no"
    rows, cols = ev_best["rows"][1], len(ev_best["columns"])

    kcols = {c["column"]: c for c in k_report["columns"]}
    lines = []
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"## Drift: Kiln vs Evidently 0.7.23 — {stamp}")
    lines.append("")
    lines.append(
        f"- **Command:** `KILN_BIN={kiln} bash bench/drift.sh` (data from `bench/drift/gen.py`, "
        f"{rows:,} rows × {cols} columns in each of reference.parquet and current.parquet)."
    )
    lines.append(f"- **Machine:** {machine()}; load average {load_start:.2f} at the start, {load_end:.2f} at the end.")
    lines.append(
        f"- **Kiln:** `kiln data drift --reference reference.profile.json current.parquet --json`, whole "
        f"process (start, read the profile and the Parquet file, profile the 20 columns against the "
        f"reference, compare, print), best and median of {runs} runs after {warmup} warm-up; peak RSS "
        f"{kiln_rss:.0f} MiB."
    )
    lines.append(
        f"- **Evidently:** `Report([DataDriftPreset()])` on pandas frames, best of {ev_runs}; reading both "
        f"Parquet files counted ({ev_best['read_seconds']:.2f} s), `import evidently` not "
        f"({ev_best['import_seconds']:.2f} s). Evidently needs the raw reference rows; Kiln needs only "
        f"the reference's profile."
    )
    lines.append("")
    lines.append("| figure | Kiln | Evidently | Kiln advantage | target | met |")
    lines.append("| --- | ---: | ---: | ---: | --- | --- |")
    lines.append(
        f"| drift, {rows:,} × {cols}, against a profile: seconds (best) | {k_best:.3f} | {ev_total:.2f} | "
        f"{ev_total / k_best:.0f}× | Kiln < 1 s | {target_met} |"
    )
    lines.append(f"| same, median | {k_median:.3f} | — | — | — | — |")
    lines.append(
        f"| drift against the raw reference file (Kiln profiles it too): seconds (best) | {r_best:.3f} | "
        f"{ev_total:.2f} | {ev_total / r_best:.0f}× | — | — |"
    )
    lines.append("")
    lines.append("Per column (both tools' default methods):")
    lines.append("")
    lines.append("| column | Kiln method | Kiln value | Kiln drift | Evidently method | Evidently value | Evidently drift |")
    lines.append("| --- | --- | ---: | --- | --- | ---: | --- |")
    agree = 0
    for name, e in ev_best["columns"].items():
        k = kcols.get(name)
        if k is None:
            lines.append(f"| {name} | — | — | — | {e['method']} | {e['value']:.4f} | {e['drifted']} |")
            continue
        agree += k["drifted"] == e["drifted"]
        lines.append(
            f"| {name} | {k['method']} | {k['statistic']:.4f} | {k['drifted']} | {e['method']} | "
            f"{e['value']:.4f} | {e['drifted']} |"
        )
    lines.append("")
    lines.append(
        f"Verdicts agree on {agree} of {len(ev_best['columns'])} columns; share of drifted columns: "
        f"Kiln {k_report['share_drifted']:.2f}, Evidently {ev_best['share_drifted']:.2f}."
    )
    text = "\n".join(lines) + "\n"
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"drift-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.md"
    path.write_text(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
