"""Great Expectations side of bench/data.sh: validates and profiles a Parquet file with GE's
pandas engine and writes per-rule results and timings as JSON.

The expectations are not written here: they are read from the same kiln.toml that Kiln reads
(`[[data.NAME.expect]]` tables) and each is turned into the equivalent GE 1.x expectation, so
both tools check exactly the same rules with the same parameters.

Usage (the venv is bench/out/venv-ge, made by bench/data.sh from bench/requirements-data.txt):
    python bench/data_ge.py --config bench/data/kiln.toml --dataset flights \
        --parquet bench/out/flights-3m.parquet --out ge.json [--reps 2] [--profile-reps 1]

What is timed (wall clock, time.perf_counter, in this one process):
- import:   `import great_expectations` (once; not part of any figure);
- setup:    ephemeral data context, pandas datasource, dataframe asset, whole-dataframe batch
            definition, suite of expectations (once; not part of any figure);
- read:     pandas.read_parquet of the file (pyarrow engine), every repetition;
- validate: get_batch(dataframe) + batch.validate(suite, result_format=BASIC): GE's one
            validation call for all rules (BASIC = success, counts and up to 20 example values
            per rule, like Kiln's counts + 5 examples; GE's default SUMMARY would also tally the
            unexpected values and is slower);
- profile:  GE 1.x has no profiler any more (UserConfigurableProfiler and the Data Assistants
            were removed in 1.0). The closest equivalent is computing, through GE's own metric
            engine (Validator.compute_metrics, the path GE's experimental metric_repository uses
            for GX Cloud's "descriptive metrics"), the per-column metrics such a profile holds:
            row count, column types, per column null count and distinct count, for numeric
            columns min/max/mean/standard deviation, quantiles 0.01/0.05/0.25/0.5/0.75/0.95/0.99
            (exact, pandas "nearest") and a 20-bin equal-width histogram, for timestamps min/max,
            for text columns the full value counts (most frequent first). All metrics are
            resolved in one compute_metrics call, then the histogram counts (which need the bin
            edges) in a second one. Kiln's profile computes more than this (t-digest and
            HyperLogLog sketches, timestamp moments and histograms), so the comparison favours GE.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import statistics
import sys
import time
import tomllib
import warnings

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[data_ge {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# Kiln type names → the pandas dtype names GE's expect_column_values_to_be_of_type compares with.
GE_TYPE = {
    "int": "int64",
    "float": "float64",
    "bool": "bool",
    "string": "str",
    "categorical": "str",
    "date": "datetime64[us]",
    "timestamp": "datetime64[us]",
}

QUANTILES = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
BINS = 20


def to_ge(gx, i: int, e: dict):
    """One `[[data.NAME.expect]]` table → (GE expectation, description of the mapping)."""
    e = dict(e)
    rule = e.pop("rule")
    e.pop("name", None)
    mostly = e.pop("mostly", None)
    kw = {"meta": {"kiln_index": i}}
    if mostly is not None:
        kw["mostly"] = mostly
    ex = gx.expectations
    rule = rule.removeprefix("expect_")  # GE names are accepted by Kiln too; map the short ones
    if rule in ("column_set", "table_columns_to_match_set"):
        return ex.ExpectTableColumnsToMatchSet(
            column_set=e["columns"], exact_match=e.get("exact", True), **kw
        )
    if rule in ("row_count", "table_row_count_to_be_between"):
        return ex.ExpectTableRowCountToBeBetween(
            min_value=e.get("min"), max_value=e.get("max"), **kw
        )
    if rule in ("not_null", "column_values_to_not_be_null"):
        return ex.ExpectColumnValuesToNotBeNull(column=e["column"], **kw)
    if rule in ("between", "column_values_to_be_between"):
        return ex.ExpectColumnValuesToBeBetween(
            column=e["column"],
            min_value=e.get("min"),
            max_value=e.get("max"),
            strict_min=e.get("strict_min", False),
            strict_max=e.get("strict_max", False),
            **kw,
        )
    if rule in ("in_set", "column_values_to_be_in_set"):
        return ex.ExpectColumnValuesToBeInSet(column=e["column"], value_set=e["values"], **kw)
    if rule in ("unique", "column_values_to_be_unique"):
        return ex.ExpectColumnValuesToBeUnique(column=e["column"], **kw)
    if rule in ("regex", "column_values_to_match_regex"):
        return ex.ExpectColumnValuesToMatchRegex(column=e["column"], regex=e["pattern"], **kw)
    if rule in ("value_lengths", "column_value_lengths_to_be_between"):
        return ex.ExpectColumnValueLengthsToBeBetween(
            column=e["column"], min_value=e.get("min"), max_value=e.get("max"), **kw
        )
    if rule in ("type", "column_values_to_be_of_type"):
        return ex.ExpectColumnValuesToBeOfType(column=e["column"], type_=GE_TYPE[e["type"]], **kw)
    if rule in ("mean_between", "column_mean_to_be_between"):
        return ex.ExpectColumnMeanToBeBetween(
            column=e["column"], min_value=e.get("min"), max_value=e.get("max"), **kw
        )
    if rule in ("quantile_between", "column_quantile_values_to_be_between"):
        return ex.ExpectColumnQuantileValuesToBeBetween(
            column=e["column"],
            quantile_ranges={
                "quantiles": [e["quantile"]],
                "value_ranges": [[e.get("min"), e.get("max")]],
            },
            **kw,
        )
    raise SystemExit(f"data_ge.py: rule `{rule}` has no Great Expectations mapping here")


def kiln_name(e: dict) -> str:
    """The name Kiln shows for a rule: `name`, else `rule(column)`, else `rule`."""
    if e.get("name"):
        return e["name"]
    return f"{e['rule']}({e['column']})" if "column" in e else e["rule"]


def jsonable(v):
    """GE result values (numpy scalars, timestamps, NaN) → plain JSON."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [jsonable(x) for x in v]
    if hasattr(v, "item") and not hasattr(v, "__len__"):  # numpy scalar
        return jsonable(v.item())
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "tolist"):
        return jsonable(v.tolist())
    return str(v)


def stats(xs: list[float]) -> dict:
    return {"best": min(xs), "median": statistics.median(xs), "all": xs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--parquet", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=2, help="timed read+validate repetitions")
    ap.add_argument("--profile-reps", type=int, default=1, help="timed read+profile repetitions")
    ap.add_argument("--result-format", default="BASIC")
    args = ap.parse_args()

    with open(args.config, "rb") as f:
        cfg = tomllib.load(f)
    rules = cfg["data"][args.dataset]["expect"]

    warnings.filterwarnings("ignore")
    t = time.perf_counter()
    import great_expectations as gx
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    t_import = time.perf_counter() - t
    # Keep GE's own logging quiet (warnings about optional back ends).
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    log(f"great_expectations {gx.__version__}, pandas {pd.__version__}, pyarrow {pa.__version__}, "
        f"numpy {np.__version__}; import {t_import:.2f} s")

    t = time.perf_counter()
    context = gx.get_context(mode="ephemeral")
    # No tqdm bar per metric graph (they cost a little and clutter the log).
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(name="bench")
    asset = source.add_dataframe_asset(name=args.dataset)
    batch_def = asset.add_batch_definition_whole_dataframe("all")
    suite = gx.ExpectationSuite(
        name=f"{args.dataset}_suite", expectations=[to_ge(gx, i, e) for i, e in enumerate(rules)]
    )
    t_setup = time.perf_counter() - t
    log(f"{len(rules)} expectations; setup {t_setup:.2f} s")

    # ---------------------------------------------------------------- validation
    read_s, validate_s, total_s = [], [], []
    result = None
    rows = None
    for rep in range(args.reps):
        t = time.perf_counter()
        df = pd.read_parquet(args.parquet)
        t_read = time.perf_counter() - t
        rows = len(df)
        t = time.perf_counter()
        batch = batch_def.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(suite, result_format=args.result_format)
        t_val = time.perf_counter() - t
        read_s.append(t_read)
        validate_s.append(t_val)
        total_s.append(t_read + t_val)
        log(f"validation rep {rep + 1}/{args.reps}: read {t_read:.2f} s, validate {t_val:.2f} s, "
            f"success {result.success}")
        del batch, df

    by_index = {}
    for r in result.results:
        i = (r.expectation_config.meta or {}).get("kiln_index")
        by_index[i] = r
    rule_results = []
    for i, e in enumerate(rules):
        r = by_index.get(i)
        res = dict(r.result or {}) if r is not None else {}
        exc = (r.exception_info or {}) if r is not None else {}
        if exc and not exc.get("raised_exception"):
            exc = {}
        rule_results.append(
            {
                "name": kiln_name(e),
                "rule": e["rule"],
                "ge_expectation": r.expectation_config.type if r is not None else None,
                "success": bool(r.success) if r is not None else False,
                "unexpected_count": jsonable(res.get("unexpected_count")),
                "element_count": jsonable(res.get("element_count")),
                "missing_count": jsonable(res.get("missing_count")),
                "unexpected_percent": jsonable(res.get("unexpected_percent")),
                "observed_value": jsonable(res.get("observed_value")),
                "partial_unexpected_list": jsonable((res.get("partial_unexpected_list") or [])[:5]),
                "exception": jsonable(exc.get("exception_message")) if exc else None,
            }
        )

    # ---------------------------------------------------------------- profiling equivalent
    from great_expectations.validator.metric_configuration import MetricConfiguration

    prof_read_s, prof_s, prof_total_s = [], [], []
    profile = None
    for rep in range(args.profile_reps):
        t = time.perf_counter()
        df = pd.read_parquet(args.parquet)
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        batch_request = batch_def.build_batch_request(batch_parameters={"dataframe": df})
        validator = context.get_validator(batch_request=batch_request)
        table = {"batch_id": validator.active_batch.id}
        col_types = validator.get_metric(
            MetricConfiguration("table.column_types", metric_domain_kwargs=table,
                                metric_value_kwargs={"include_nested": False})
        )
        configs = [
            MetricConfiguration("table.row_count", metric_domain_kwargs=table),
            MetricConfiguration("table.columns", metric_domain_kwargs=table),
        ]
        plan = {}
        for c in col_types:
            name, dtype = c["name"], c["type"]
            dom = {"batch_id": table["batch_id"], "column": name}
            kind = (
                "numeric" if pd.api.types.is_numeric_dtype(dtype)
                else "timestamp" if pd.api.types.is_datetime64_any_dtype(dtype)
                else "text"
            )
            metrics = [
                ("null_count", "column_values.null.count", None),
                ("distinct_count", "column.distinct_values.count", None),
            ]
            if kind in ("numeric", "timestamp"):
                metrics += [("min", "column.min", None), ("max", "column.max", None)]
            if kind == "numeric":
                metrics += [
                    ("mean", "column.mean", None),
                    ("std", "column.standard_deviation", None),
                    ("quantiles", "column.quantile_values",
                     {"quantiles": QUANTILES, "allow_relative_error": False}),
                    ("histogram_edges", "column.partition",
                     {"bins": "uniform", "n_bins": BINS, "allow_relative_error": False}),
                ]
            if kind == "text":
                metrics += [("value_counts", "column.value_counts", {"sort": "count", "collate": None})]
            plan[name] = {"type": str(dtype), "kind": kind, "metrics": []}
            for label, metric, value_kwargs in metrics:
                mc = MetricConfiguration(metric, metric_domain_kwargs=dom, metric_value_kwargs=value_kwargs)
                configs.append(mc)
                plan[name]["metrics"].append((label, mc))
        computed, aborted = validator.compute_metrics(configs, runtime_configuration={"catch_exceptions": False})
        # Histogram counts need the bin edges computed above: a second call, as GE's own
        # expectations that use histograms do.
        hist_configs = []
        for name, p in plan.items():
            for label, mc in list(p["metrics"]):
                if label == "histogram_edges" and computed.get(mc.id) is not None:
                    hc = MetricConfiguration(
                        "column.histogram",
                        metric_domain_kwargs=mc.metric_domain_kwargs,
                        metric_value_kwargs={"bins": tuple(computed[mc.id])},
                    )
                    hist_configs.append(hc)
                    p["metrics"].append(("histogram_counts", hc))
        if hist_configs:
            more, more_aborted = validator.compute_metrics(
                hist_configs, runtime_configuration={"catch_exceptions": False}
            )
            computed.update(more)
            aborted.update(more_aborted)
        configs += hist_configs
        t_prof = time.perf_counter() - t
        prof_read_s.append(t_read)
        prof_s.append(t_prof)
        prof_total_s.append(t_read + t_prof)
        log(f"profile rep {rep + 1}/{args.profile_reps}: read {t_read:.2f} s, metrics {t_prof:.2f} s "
            f"({len(configs)} metrics, {len(aborted)} aborted)")
        profile = {
            "rows": jsonable(computed[configs[0].id]),
            "columns": {},
            "aborted": [str(k) for k in aborted],
        }
        for name, p in plan.items():
            out = {"type": p["type"], "kind": p["kind"]}
            for label, mc in p["metrics"]:
                v = computed.get(mc.id)
                if label == "value_counts" and v is not None:
                    out["distinct_values"] = int(len(v))
                    v = {str(k): int(n) for k, n in list(v.items())[:10]}
                    label = "top10"
                elif label == "quantiles" and v is not None:
                    v = dict(zip([str(q) for q in QUANTILES], jsonable(v)))
                out[label] = jsonable(v)
            profile["columns"][name] = out
        del validator, df

    out = {
        "tool": "great_expectations",
        "versions": {
            "great_expectations": gx.__version__,
            "pandas": pd.__version__,
            "pyarrow": pa.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "dataset": args.dataset,
        "parquet": args.parquet,
        "rows": rows,
        "result_format": args.result_format,
        "success": bool(result.success),
        "rules": rule_results,
        "timings_s": {
            "import": t_import,
            "setup": t_setup,
            "read": stats(read_s),
            "validate": stats(validate_s),
            "read_validate": stats(total_s),
            "profile_read": stats(prof_read_s) if prof_s else None,
            "profile": stats(prof_s) if prof_s else None,
            "read_profile": stats(prof_total_s) if prof_s else None,
            "process": time.perf_counter() - T0,
        },
        "profile_what": (
            "GE 1.x has no profiler (removed in 1.0); this is GE's metric engine "
            "(Validator.compute_metrics) computing the metrics a column profile holds: "
            "row count, column types, per column null count and distinct count; numeric: min, max, "
            "mean, std, quantiles " + "/".join(str(q) for q in QUANTILES) + " (exact, nearest) and a "
            f"{BINS}-bin equal-width histogram (column.partition + column.histogram, a second "
            "compute_metrics call); timestamp: min, max; text: full value counts (top 10 kept)"
        ),
        "profile": profile,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
