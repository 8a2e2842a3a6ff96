"""Helpers for bench/data.sh (standard library only).

    bench.py time --runs N --warmup W --out FILE --stdout FILE [--ok-codes 0,1] -- CMD...
        Runs CMD W times untimed, then N times timed (wall clock from spawn to exit, stdout
        captured to FILE, stderr kept in FILE.stderr); writes {"cmd", "runs": [seconds...],
        "codes": [...], "best", "median"} to --out. Fails when CMD exits with a code outside
        --ok-codes.

    bench.py report --meta FILE --ge FILE [--kiln-validate FILE --kiln-validate-times FILE
                    --kiln-profile FILE --kiln-profile-times FILE]
        Prints the Markdown report: the figures table (rows/s for both tools, ratio, target),
        the per-rule results of both tools side by side, any disagreement between them, the
        profiles side by side, and how the figures were taken.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

TARGET_RATIO = 20.0
TARGET_VALIDATE_S = 2.0


# ---------------------------------------------------------------- time
def cmd_time(a: argparse.Namespace) -> None:
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    ok = {int(c) for c in a.ok_codes.split(",")}
    runs, codes = [], []
    for i in range(a.warmup + a.runs):
        with open(a.stdout, "wb") as out, open(a.stdout + ".stderr", "wb") as err:
            t = time.perf_counter()
            p = subprocess.run(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            dt = time.perf_counter() - t
        if p.returncode not in ok:
            sys.stderr.write(open(a.stdout + ".stderr", errors="replace").read()[-3000:])
            sys.exit(f"bench.py time: {' '.join(cmd)} exited with {p.returncode}")
        if i >= a.warmup:
            runs.append(dt)
            codes.append(p.returncode)
    res = {
        "cmd": cmd,
        "warmup": a.warmup,
        "runs": runs,
        "codes": codes,
        "best": min(runs),
        "median": statistics.median(runs),
    }
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)


# ---------------------------------------------------------------- report
def fmt(x, digits=3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x == int(x) and abs(x) < 1e15:
            return f"{int(x):,}"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if abs(x) >= 100:
            return f"{x:,.1f}"
        return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return str(x)


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def rate(rows, s):
    return rows / s if s else None


def close(a, b, rel=1e-6) -> bool:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


def observed_scalar(v):
    """GE's observed_value for quantiles is {"quantiles": [...], "values": [...]}."""
    if isinstance(v, dict) and "values" in v and len(v["values"]) == 1:
        return v["values"][0]
    return v


def load(path):
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def find_columns(profile):
    """Kiln's profile JSON → {column: {stat: value}} (shape tolerant: list or map of columns)."""
    if not isinstance(profile, dict):
        return {}
    cols = profile.get("columns")
    out = {}
    if isinstance(cols, list):
        for c in cols:
            if isinstance(c, dict) and "name" in c:
                out[c["name"]] = c
    elif isinstance(cols, dict):
        out = {k: v for k, v in cols.items() if isinstance(v, dict)}
    return out


def flat(d, prefix=""):
    """Nested dict → {"a.b": v} for scalar leaves (lists of scalars kept whole)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


# stat in the GE profile → keys Kiln's profile uses for it (kiln_data::profile::ColumnProfile)
PROFILE_STATS = [
    ("null_count", ["nulls", "null_count"]),
    ("distinct_count", ["distinct", "distinct_count"]),
    ("min", ["min"]),
    ("max", ["max"]),
    ("mean", ["mean"]),
    ("std", ["std"]),
    ("quantiles.0.01", ["quantiles.0.01"]),
    ("quantiles.0.5", ["quantiles.0.5"]),
    ("quantiles.0.99", ["quantiles.0.99"]),
    ("top", ["top"]),
]


def ge_top(gc):
    t = gc.get("top10")
    if not t:
        return None
    k, n = next(iter(t.items()))
    return f"{k} ({n:,})"


def kiln_top(kc):
    t = kc.get("top_values")
    if not t:
        return None
    return f"{t[0].get('value')} ({t[0].get('count', 0):,})"


def pick(kflat, names):
    for n in names:
        if n in kflat:
            return kflat[n]
    for n in names:  # a suffix match on nested keys (e.g. "numeric.min")
        for k, v in kflat.items():
            if k.endswith("." + n) and not isinstance(v, (list, dict)):
                return v
    return None


def cmd_report(a: argparse.Namespace) -> None:
    meta = load(a.meta) or {}
    ge = load(a.ge)
    kv = load(a.kiln_validate)
    kvt = load(a.kiln_validate_times)
    kp = load(a.kiln_profile)
    kpt = load(a.kiln_profile_times)
    rows = ge["rows"]
    gt = ge["timings_s"]
    have_kiln = kvt is not None
    # Targets are judged on a release build only.
    judge = have_kiln and meta.get("kiln_profile") == "release"
    P = print

    P(f"# Data validation and profiling: Kiln vs Great Expectations {ge['versions']['great_expectations']}"
      f" — {meta.get('date', '')}")
    P()
    P(f"- **Data:** `{meta.get('parquet', ge['parquet'])}` ({fmt(rows)} rows × 5 columns; "
      f"sha256 {meta.get('sha256', '?')[:16]}…) from the npm package `vega-datasets@3.2.1`.")
    P(f"- **Rules:** the {len(ge['rules'])} `[[data.{ge['dataset']}.expect]]` tables of "
      f"`bench/data/kiln.toml`, read by Kiln as they are and turned into the equivalent GE "
      f"expectations by `bench/data_ge.py`.")
    if have_kiln:
        P(f"- **Kiln:** `{meta.get('kiln_bin', '?')}` ({meta.get('kiln_profile', '?')} build, "
          f"`{meta.get('kiln_version', '?')}`, binary built {meta.get('kiln_built', '?')}; source "
          f"tree at {meta.get('commit', '?')})"
          + ("" if meta.get("kiln_profile") == "release"
             else " — **not a release build: its timings mean nothing**"))
    else:
        P(f"- **Kiln:** `{meta.get('kiln_bin', '?')}` — **not measured**: "
          f"{meta.get('kiln_skip', 'skipped')}")
    v = ge["versions"]
    P(f"- **GE:** great_expectations {v['great_expectations']}, pandas {v['pandas']}, pyarrow "
      f"{v['pyarrow']}, numpy {v['numpy']}, Python {v['python']}; ephemeral data context, "
      f"pandas datasource, whole-dataframe batch, `result_format={ge['result_format']}`.")
    P(f"- **Machine:** {meta.get('machine', '?')}; load average at start {meta.get('load_start', '?')}, "
      f"at end {meta.get('load_end', '?')}.")
    P()

    # ---- figures
    P("| figure | Kiln | GE | Kiln advantage | target | met |")
    P("| --- | ---: | ---: | ---: | --- | --- |")
    failures = []

    def row(label, k, g, kind="rate", target=None, met=None):
        if kind == "rate":
            ratio = (k / g) if (k and g) else None
        else:
            ratio = (g / k) if (k and g) else None
        m = "—" if met is None else ("yes" if met else "**no**")
        shown = f"{ratio:.1f}×" if ratio else "—"
        P(f"| {label} | {fmt(k) if k is not None else 'n/a'} | {fmt(g)} | {shown} | "
          f"{target or '—'} | {m} |")
        return ratio

    def target_ratio(label, k, g):
        r = (k / g) if (k and g) else None
        met = None if (r is None or not judge) else r >= TARGET_RATIO
        if met is False:
            failures.append(f"{label}: {r:.1f}× < {TARGET_RATIO:g}×")
        row(label, k, g, target=f"≥ {TARGET_RATIO:g}×", met=met)

    k_best = kvt["best"] if have_kiln else None
    k_med = kvt["median"] if have_kiln else None
    target_ratio("validation: rows/s, read + validate (best)", rate(rows, k_best),
                 rate(rows, gt["read_validate"]["best"]))
    row("validation: rows/s, read + validate (median)", rate(rows, k_med),
        rate(rows, gt["read_validate"]["median"]))
    met = None if (k_best is None or not judge) else k_best < TARGET_VALIDATE_S
    if met is False:
        failures.append(f"validation wall time {fmt(k_best)} s ≥ {TARGET_VALIDATE_S:g} s")
    row("validation: seconds for all rows, read + validate (best)", k_best,
        gt["read_validate"]["best"], kind="time", target=f"Kiln < {TARGET_VALIDATE_S:g} s", met=met)
    k_inner = (kv or {}).get("elapsed_ms")
    row("validation only, data already in memory: rows/s (Kiln `elapsed_ms` of the last run; GE "
        "best `batch.validate`) (diagnostic)",
        rate(rows, k_inner / 1000) if k_inner else None, rate(rows, gt["validate"]["best"]))
    if gt.get("read_profile"):
        kp_best = kpt["best"] if kpt else None
        kp_med = kpt["median"] if kpt else None
        target_ratio("profiling: rows/s, read + profile (best)", rate(rows, kp_best),
                     rate(rows, gt["read_profile"]["best"]))
        row("profiling: rows/s, read + profile (median)", rate(rows, kp_med),
            rate(rows, gt["read_profile"]["median"]))
        row("profiling: seconds, read + profile (best)", kp_best, gt["read_profile"]["best"],
            kind="time")
    row("reading the Parquet file into memory: s (GE: pandas.read_parquet, best) (diagnostic)",
        None, gt["read"]["best"], kind="time")
    row("start-up not counted for GE: `import great_expectations` + context setup, s (diagnostic)",
        None, gt["import"] + gt["setup"], kind="time")
    P()

    # ---- per-rule results
    P("## Per-rule results")
    P()
    P("Row-level rules: failing / judged values (GE: `unexpected_count` / `element_count` − "
      "`missing_count`). Table-level rules: the observed value.")
    P()
    P("| # | rule | Kiln | Kiln result | GE expectation | GE | GE result | agree |")
    P("| ---: | --- | --- | --- | --- | --- | --- | --- |")
    kmap = {}
    if kv:
        for r in kv.get("rules", []):
            kmap[r.get("name")] = r
    mismatches = []
    for i, g in enumerate(ge["rules"]):
        k = kmap.get(g["name"])
        if k is None and kv and i < len(kv.get("rules", [])):
            k = kv["rules"][i]
        if g["unexpected_count"] is not None:
            judged = (g["element_count"] or 0) - (g["missing_count"] or 0)
            gres = f"{fmt(g['unexpected_count'])} / {fmt(judged)}"
        else:
            gres = f"observed {fmt(observed_scalar(g['observed_value']))}"
        if g["exception"]:
            gres += f" (error: {g['exception'][:80]})"
        kres, agree = "—", "—"
        if k is not None:
            if k.get("observed") is not None and not k.get("failing") and not k.get("checked"):
                kres = f"observed {fmt(k['observed'])}"
            else:
                kres = f"{fmt(k.get('failing'))} / {fmt(k.get('checked'))}"
            if k.get("error"):
                kres += f" (error: {k['error'][:80]})"
            why = []
            if bool(k.get("success")) != bool(g["success"]):
                why.append("pass/fail differs")
            if g["unexpected_count"] is not None and k.get("failing") != g["unexpected_count"]:
                why.append(f"failing {k.get('failing')} vs unexpected {g['unexpected_count']}")
            ko, go = k.get("observed"), observed_scalar(g["observed_value"])
            if (g["unexpected_count"] is None and isinstance(go, (int, float))
                    and not isinstance(go, bool) and ko is not None and not close(ko, go)):
                why.append(f"observed {ko} vs {go}")
            agree = "yes" if not why else "**no**"
            if why:
                mismatches.append((i + 1, g["name"], "; ".join(why)))
        P(f"| {i + 1} | `{g['name']}` | {fmt(k.get('success')) if k else '—'} | {kres} | "
          f"`{g['ge_expectation']}` | {fmt(g['success'])} | {gres} | {agree} |")
    P()
    if kv:
        if mismatches:
            P("**The tools disagree on these rules:**")
            P()
            P("| # | rule | difference |")
            P("| ---: | --- | --- |")
            for n, name, why in mismatches:
                P(f"| {n} | `{name}` | {why} |")
        else:
            P("Both tools agree on every rule's pass/fail, failing count and observed value.")
        P()
        P(f"Overall: Kiln {'passed' if kv.get('success') else 'failed'} "
          f"({fmt(kv.get('rows'))} rows), GE {'passed' if ge['success'] else 'failed'} "
          f"({fmt(rows)} rows).")
        P()

    # ---- profiles
    if ge.get("profile"):
        P("## Profiles")
        P()
        P(f"GE's profiling figure: {ge['profile_what']}.")
        if kp is not None:
            kcols = find_columns(kp)
            P()
            P("| column | statistic | Kiln | GE |")
            P("| --- | --- | ---: | ---: |")
            for cname, gc in ge["profile"]["columns"].items():
                kc = kcols.get(cname, {})
                kf = flat(kc)
                gf = flat(gc)
                for stat, names in PROFILE_STATS:
                    if stat == "top":
                        g, k = ge_top(gc), kiln_top(kc)
                        if g is None:
                            continue
                        P(f"| {cname} | most frequent value | {fmt(k)} | {g} |")
                        continue
                    if stat not in gf:
                        continue
                    P(f"| {cname} | {stat} | {fmt(pick(kf, names))} | {fmt(gf[stat])} |")
            P()
            P("Kiln's quantiles come from its t-digest sketch (approximate), GE's are exact; "
              "Kiln's `std` is the sample standard deviation (n − 1), as is pandas'. "
              f"Kiln's full profile JSON: `{a.kiln_profile}`; GE's: in `{a.ge}`.")
        P()

    # ---- how
    P("## How the figures are taken")
    P()
    if have_kiln:
        P(f"- Kiln: `{' '.join(kvt['cmd'])}` and the same with `profile`, each run as a whole "
          f"process (spawn → exit, so process start, reading and decoding the Parquet file, "
          f"the file's sha256, recording the dataset version in the embedded store and, for "
          f"validation, writing the quarantine CSV are all inside the time); "
          f"{kvt['warmup']} untimed warm-up run then {len(kvt['runs'])} timed runs, best and "
          f"median reported. Validation runs (s): {', '.join(fmt(x) for x in kvt['runs'])}"
          + (f"; profile runs (s): {', '.join(fmt(x) for x in kpt['runs'])}." if kpt else "."))
    P(f"- GE: one Python process (`bench/data_ge.py`); `import great_expectations` "
      f"({fmt(gt['import'])} s) and the context / datasource / suite setup ({fmt(gt['setup'])} s) "
      f"are done once and **not** counted. Each repetition times `pandas.read_parquet` and then "
      f"`get_batch` + `batch.validate(suite)`; read + validate is their sum; best and median of "
      f"{plural(len(gt['read_validate']['all']), 'repetition')} (s: "
      f"{', '.join(fmt(x) for x in gt['read_validate']['all'])}). The GE figures are therefore "
      f"in-process and favourable to GE, the Kiln figures whole-process.")
    if gt.get("read_profile"):
        P(f"- GE profiling: read + `Validator.compute_metrics` (two calls: the metrics listed "
          f"above, then the histogram counts); {plural(len(gt['read_profile']['all']), 'repetition')} (s: "
          f"{', '.join(fmt(x) for x in gt['read_profile']['all'])}).")
    P(f"- rows/s = {fmt(rows)} / seconds. **Kiln advantage** = Kiln rows/s ÷ GE rows/s (or GE "
      f"seconds ÷ Kiln seconds): above 1× means Kiln is faster.")
    P("- Both tools judge non-missing values for column rules (`not_null` judges every row) and "
      "`mostly` is the fraction of judged values that must pass; `quantile_between` "
      "judges the exact \"nearest\" quantile in both.")
    P()
    if have_kiln and not judge:
        P(f"Kiln is a {meta.get('kiln_profile', '?')} build, so the targets are not judged "
          f"(plumbing check only).")
    elif have_kiln:
        if failures:
            P("**Targets not met:** " + "; ".join(failures) + ".")
        else:
            P("Every target is met in this run.")
    else:
        P("Kiln was not measured in this run, so the targets are not judged.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd_name", required=True)
    t = sub.add_parser("time")
    t.add_argument("--runs", type=int, default=5)
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("--out", required=True)
    t.add_argument("--stdout", required=True)
    t.add_argument("--ok-codes", default="0")
    t.add_argument("cmd", nargs=argparse.REMAINDER)
    r = sub.add_parser("report")
    r.add_argument("--meta", required=True)
    r.add_argument("--ge", required=True)
    r.add_argument("--kiln-validate")
    r.add_argument("--kiln-validate-times")
    r.add_argument("--kiln-profile")
    r.add_argument("--kiln-profile-times")
    a = ap.parse_args()
    if a.cmd_name == "time":
        cmd_time(a)
    else:
        cmd_report(a)


if __name__ == "__main__":
    main()
