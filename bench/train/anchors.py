"""Python side of bench/train.sh.

`export BUILD_DIR OUT_DIR` reads a Kiln feature build (features.parquet + build.json) and writes
the train and test splits as little-endian float32 arrays (row-major) for Kiln's trainer, plus
meta.json. The same arrays are what the anchors train on, so all three see identical data.

`run OUT_DIR PARAMS_JSON REPEATS` trains LightGBM and scikit-learn's HistGradientBoosting on
them with the same rounds, leaves, learning rate, minimum leaf size, bins and L2 penalty, times
the fit (dataset construction and binning included, as Kiln's fit includes them), predicts the
test split and prints one JSON line per tool.
"""

import json
import os
import sys
import time

import numpy as np


def export(build_dir, out_dir):
    import pyarrow.parquet as pq

    build = json.load(open(os.path.join(build_dir, "build.json")))
    table = pq.read_table(os.path.join(build_dir, "features.parquet"))
    features = build["features"]
    label = build["label"]
    split = np.asarray(table.column("_split").to_pylist())
    cols = []
    for f in features:
        c = table.column(f).to_numpy(zero_copy_only=False)
        cols.append(np.asarray(c, dtype=np.float32))
    x = np.stack(cols, axis=1)
    y = np.asarray(table.column(label).to_numpy(zero_copy_only=False), dtype=np.float32)
    os.makedirs(out_dir, exist_ok=True)
    meta = {"cols": len(features), "features": features}
    for name in ("train", "test"):
        m = split == name
        np.ascontiguousarray(x[m]).astype("<f4").tofile(os.path.join(out_dir, f"{name}_x.f32"))
        np.ascontiguousarray(y[m]).astype("<f4").tofile(os.path.join(out_dir, f"{name}_y.f32"))
        meta[f"{name}_rows"] = int(m.sum())
    json.dump(meta, open(os.path.join(out_dir, "meta.json"), "w"))
    print(json.dumps(meta))


def load(out_dir, name, cols):
    x = np.fromfile(os.path.join(out_dir, f"{name}_x.f32"), dtype="<f4").reshape(-1, cols)
    y = np.fromfile(os.path.join(out_dir, f"{name}_y.f32"), dtype="<f4")
    return x, y


def auc(y, p):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def log_loss(y, p):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def run(out_dir, params, repeats):
    meta = json.load(open(os.path.join(out_dir, "meta.json")))
    cols = meta["cols"]
    tx, ty = load(out_dir, "train", cols)
    sx, sy = load(out_dir, "test", cols)
    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))

    import lightgbm as lgb

    lgb_params = {
        "objective": "binary",
        "learning_rate": params["learning_rate"],
        "num_leaves": params["num_leaves"],
        "min_data_in_leaf": params["min_data_in_leaf"],
        "min_sum_hessian_in_leaf": params.get("min_sum_hessian_in_leaf", 1e-3),
        "lambda_l2": params.get("lambda_l2", 0.0),
        "max_bin": params["max_bin"],
        "num_threads": threads,
        "seed": params.get("seed", 0),
        "deterministic": True,
        "verbosity": -1,
    }
    best, booster = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        ds = lgb.Dataset(tx, label=ty, params={"max_bin": params["max_bin"], "verbosity": -1})
        booster = lgb.train(lgb_params, ds, num_boost_round=params["num_rounds"])
        best = min(best, time.perf_counter() - t)
    t = time.perf_counter()
    p = booster.predict(sx)
    pred = time.perf_counter() - t
    print(json.dumps({"tool": "lightgbm", "version": lgb.__version__, "fit_seconds": best,
                      "predict_seconds": pred, "test_auc": auc(sy, p),
                      "train_log_loss": log_loss(ty, booster.predict(tx)),
                      "trees": booster.num_trees(), "threads": threads}))
    sys.stdout.flush()

    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier

    best, model = float("inf"), None
    for _ in range(repeats):
        model = HistGradientBoostingClassifier(
            max_iter=params["num_rounds"],
            learning_rate=params["learning_rate"],
            max_leaf_nodes=params["num_leaves"],
            min_samples_leaf=params["min_data_in_leaf"],
            l2_regularization=params.get("lambda_l2", 0.0),
            max_bins=params["max_bin"],
            early_stopping=False,
            random_state=params.get("seed", 0),
        )
        t = time.perf_counter()
        model.fit(tx, ty)
        best = min(best, time.perf_counter() - t)
    t = time.perf_counter()
    p = model.predict_proba(sx)[:, 1]
    pred = time.perf_counter() - t
    print(json.dumps({"tool": "sklearn-hgb", "version": sklearn.__version__, "fit_seconds": best,
                      "predict_seconds": pred, "test_auc": auc(sy, p),
                      "train_log_loss": log_loss(ty, model.predict_proba(tx)[:, 1]),
                      "trees": int(model.n_iter_), "threads": threads}))


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "run":
        run(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}: expected export or run")
