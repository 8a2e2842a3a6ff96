"""Evidently's side of bench/drift.sh: DataDriftPreset on the reference and current Parquet
files, every column, Evidently's default methods. Prints one JSON object: seconds to read the
files, seconds to run the report, and each column's method, value and verdict.

Usage: python evidently_drift.py REFERENCE.parquet CURRENT.parquet
"""

import json
import re
import sys
import time
import warnings

warnings.filterwarnings("ignore")

t_import = time.perf_counter()
import pandas as pd  # noqa: E402
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

imported = time.perf_counter() - t_import


def main():
    ref_path, cur_path = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    t1 = time.perf_counter()
    numerical = [c for c in ref.columns if c[0] in "ni"]
    categorical = [c for c in ref.columns if c[0] == "c"]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    result = snapshot.dict()
    t2 = time.perf_counter()
    columns = {}
    share = None
    for m in result["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift"):
            method, threshold, value = cfg["method"], cfg["threshold"], m["value"]
            p_value = "p_value" in method
            drifted = value < threshold if p_value else value >= threshold
            columns[cfg["column"]] = {
                "method": method,
                "value": value,
                "threshold": threshold,
                "drifted": bool(drifted),
            }
        elif re.match(r"DriftedColumnsCount", m.get("metric_name", "")):
            share = m["value"]["share"]
    print(
        json.dumps(
            {
                "import_seconds": imported,
                "read_seconds": t1 - t0,
                "report_seconds": t2 - t1,
                "rows": [len(ref), len(cur)],
                "share_drifted": share,
                "columns": columns,
            }
        )
    )


if __name__ == "__main__":
    main()
