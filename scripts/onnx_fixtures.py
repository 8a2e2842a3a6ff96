#!/usr/bin/env python3
"""Generates tests/fixtures/onnx/: scikit-learn models exported by skl2onnx, the rows they are
scored on and onnxruntime's outputs for those rows. kiln-onnx's conformance test
(crates/kiln-onnx/tests/it/) loads every model and compares its outputs with onnxruntime's.

Usage (from the repository root; the versions are pinned, the output is deterministic):

    python3.11 -m venv /tmp/venv-onnx-fixtures
    /tmp/venv-onnx-fixtures/bin/pip install -r scripts/onnx-fixtures-requirements.txt
    /tmp/venv-onnx-fixtures/bin/python scripts/onnx_fixtures.py          # writes tests/fixtures/onnx/
    /tmp/venv-onnx-fixtures/bin/python scripts/onnx_fixtures.py --out DIR

Layout of the output folder:

    manifest.json            generator versions and the list of fixtures
    data/<dataset>.json      input rows: {"tensors": [tensor...], "clean_rows": N}; rows past
                             clean_rows carry missing values (NaN, written as null)
    <fixture>.onnx           the exported model
    <fixture>.json           {"model", "inputs" (a data file), "rows" (how many of its rows),
                             "backend" (what Kiln should run it with), "outputs": [tensor...]}

A tensor is {"name", "datatype" (OIP: FP32, FP64, INT64, BYTES), "shape", "data" (flat,
row-major)}. FP32 values are written as the exact decimal of the float32 (so they parse back
bit for bit through f64), NaN as null. onnxruntime runs with one intra-op and one inter-op
thread, so its tree ensembles add trees in order. An output that onnxruntime returns as a
sequence of maps (ZipMap) is stored as the [N, classes] probability matrix it wraps, columns in
the order of ZipMap's class labels, with "zipmap": true: that is what Kiln serves for it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import skl2onnx
import sklearn
from onnx import helper
from skl2onnx import to_onnx
from skl2onnx.common import tree_ensemble as skl2onnx_tree_ensemble
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

ROOT = Path(__file__).resolve().parent.parent
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}

# skl2onnx 1.20.0 cannot export HistGradientBoosting*: scikit-learn's tree nodes hold numpy
# uint32 child ids that onnx.helper refuses as INTS. Cast them to int on the way in.
_add_node = skl2onnx_tree_ensemble.add_node


def _add_node_with_python_ints(attr_pairs, is_classifier, tree_id, tree_weight, node_id,
                               feature_id, mode, value, true_child_id, false_child_id, *args,
                               **kwargs):
    if "nodes_missing_value_tracks_true" in kwargs:
        kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
    return _add_node(attr_pairs, is_classifier, int(tree_id), tree_weight, int(node_id),
                     int(feature_id), mode, value, int(true_child_id), int(false_child_id),
                     *args, **kwargs)


skl2onnx_tree_ensemble.add_node = _add_node_with_python_ints


# ---------------------------------------------------------------------------------------------
# JSON encoding


def _num(v: float) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def tensor_json(name: str, arr: np.ndarray) -> dict:
    arr = np.asarray(arr)
    if arr.dtype == np.float32:
        datatype, data = "FP32", [_num(v) for v in arr.ravel()]
    elif arr.dtype == np.float64:
        datatype, data = "FP64", [_num(v) for v in arr.ravel()]
    elif arr.dtype == np.int64:
        datatype, data = "INT64", [int(v) for v in arr.ravel()]
    elif arr.dtype == np.int32:
        datatype, data = "INT32", [int(v) for v in arr.ravel()]
    elif arr.dtype == np.bool_:
        datatype, data = "BOOL", [bool(v) for v in arr.ravel()]
    elif arr.dtype.kind in ("U", "O", "S"):
        datatype, data = "BYTES", [str(v) for v in arr.ravel()]
    else:
        raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": data}


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    path.write_text(text + "\n")


# ---------------------------------------------------------------------------------------------
# Data


def with_missing_rows(x: np.ndarray, n: int, seed: int, columns=None) -> np.ndarray:
    """x plus n copies of its rows with 1..3 of `columns` (all by default) set to NaN."""
    rng = np.random.default_rng(seed)
    columns = list(range(x.shape[1])) if columns is None else list(columns)
    extra = x[rng.choice(x.shape[0], size=n, replace=False)].copy()
    for row in extra:
        k = int(rng.integers(1, min(3, len(columns)) + 1))
        row[rng.choice(columns, size=k, replace=False)] = np.nan
    # One row with every column missing.
    extra[0, columns] = np.nan
    return np.concatenate([x, extra]).astype(x.dtype)


class Dataset:
    def __init__(self, name: str, x: np.ndarray, clean_rows: int, input_name: str = "X"):
        self.name = name
        self.x = x
        self.clean_rows = clean_rows
        self.input_name = input_name

    def feeds(self, rows: int) -> dict:
        return {self.input_name: self.x[:rows]}


def datasets():
    bc = load_breast_cancer()
    iris = load_iris()
    diab = load_diabetes()
    raw = load_diabetes(scaled=False)
    x_bc = bc.data.astype(np.float32)
    x_iris = iris.data.astype(np.float32)
    x_diab = diab.data.astype(np.float32)
    # sex (1/2), age decade (2..7), then bmi, bp, s1..s6 unscaled.
    x_mixed = np.concatenate(
        [raw.data[:, [1]], np.floor(raw.data[:, [0]] / 10), raw.data[:, 2:]], axis=1
    ).astype(np.float32)
    d = {
        "breast_cancer": Dataset("breast_cancer", with_missing_rows(x_bc, 24, 1), len(x_bc)),
        "iris": Dataset("iris", with_missing_rows(x_iris, 8, 2), len(x_iris)),
        "diabetes": Dataset("diabetes", with_missing_rows(x_diab, 12, 3), len(x_diab)),
        "diabetes_f64": Dataset(
            "diabetes_f64", with_missing_rows(diab.data.astype(np.float64), 12, 3), len(x_diab)
        ),
        "diabetes_mixed": Dataset(
            "diabetes_mixed", with_missing_rows(x_mixed, 12, 4, columns=range(2, 10)), len(x_mixed)
        ),
    }
    targets = {
        "breast_cancer": bc.target,
        "iris": iris.target,
        "iris_names": iris.target_names[iris.target],
        "diabetes": diab.target,
    }
    return d, targets


# ---------------------------------------------------------------------------------------------
# Fixtures


def run_onnxruntime(onx: onnx.ModelProto, feeds: dict) -> list[dict]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onx.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    results = sess.run(None, feeds)
    zipmap_labels = {}
    for node in onx.graph.node:
        if node.op_type == "ZipMap":
            for a in node.attribute:
                if a.name in ("classlabels_int64s", "classlabels_strings"):
                    zipmap_labels[node.output[0]] = list(helper.get_attribute_value(a))
    outputs = []
    for name, value in zip(names, results):
        if name in zipmap_labels:
            keys = [k.decode() if isinstance(k, bytes) else k for k in zipmap_labels[name]]
            matrix = np.array([[row[k] for k in keys] for row in value], dtype=np.float32)
            t = tensor_json(name, matrix)
            t["zipmap"] = True
            outputs.append(t)
        else:
            outputs.append(tensor_json(name, np.asarray(value)))
    return outputs


def export(model, sample: np.ndarray, options=None, initial_types=None) -> onnx.ModelProto:
    if initial_types is not None:
        return to_onnx(model, initial_types=initial_types, options=options,
                       target_opset=TARGET_OPSET)
    return to_onnx(model, sample[:1], options=options, target_opset=TARGET_OPSET)


def no_zipmap(model) -> dict:
    return {id(model): {"zipmap": False}}


def fixture_specs(d, t):
    """(name, dataset, fit -> (onnx model), rows: 'all' | 'clean', backend, note)."""
    bc, iris, diab, diab64, mixed = (d[k] for k in
                                     ("breast_cancer", "iris", "diabetes", "diabetes_f64",
                                      "diabetes_mixed"))
    xb, xi, xd = bc.x[: bc.clean_rows], iris.x[: iris.clean_rows], diab.x[: diab.clean_rows]
    yb, yi, yd = t["breast_cancer"], t["iris"], t["diabetes"]

    def logreg_binary():
        m = LogisticRegression(max_iter=10000).fit(xb, yb)
        return export(m, xb, no_zipmap(m))

    def logreg_binary_zipmap():
        m = LogisticRegression(max_iter=10000).fit(xb, yb)
        return export(m, xb)

    def logreg_multiclass():
        m = LogisticRegression(max_iter=10000).fit(xi, yi)
        return export(m, xi, no_zipmap(m))

    def scaler_logreg():
        lr = LogisticRegression(max_iter=10000)
        m = make_pipeline(StandardScaler(), lr).fit(xb, yb)
        return export(m, xb, no_zipmap(lr))

    def rf_classifier():
        m = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0).fit(xb, yb)
        return export(m, xb, no_zipmap(m))

    def rf_classifier_strings_zipmap():
        m = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)
        m.fit(xi, t["iris_names"])
        return export(m, xi)

    def rf_regressor():
        m = RandomForestRegressor(n_estimators=40, max_depth=8, min_samples_leaf=3,
                                  random_state=0).fit(xd, yd)
        return export(m, xd)

    def gb_classifier():
        m = GradientBoostingClassifier(n_estimators=100, random_state=0).fit(xb, yb)
        return export(m, xb, no_zipmap(m))

    def gb_multiclass():
        m = GradientBoostingClassifier(n_estimators=50, random_state=0).fit(xi, yi)
        return export(m, xi, no_zipmap(m))

    def gb_regressor():
        m = GradientBoostingRegressor(n_estimators=100, random_state=0).fit(xd, yd)
        return export(m, xd)

    def gb_regressor_double():
        x = diab64.x[: diab64.clean_rows]
        m = GradientBoostingRegressor(n_estimators=50, random_state=0).fit(x, yd)
        onx = export(m, x, initial_types=[("X", DoubleTensorType([None, x.shape[1]]))])
        # skl2onnx declares the output double; TreeEnsembleRegressor (ai.onnx.ml 3) only has a
        # float output and onnxruntime refuses the model as exported. Declare it float.
        onx.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        return onx

    def gb_regressor_as_tensor():
        """The float64 model with the exact float64 thresholds, leaf values and base value of
        scikit-learn in the `*_as_tensor` attributes (ai.onnx.ml 3): skl2onnx 1.20 writes float32
        lists even for a float64 input."""
        x = diab64.x[: diab64.clean_rows]
        m = GradientBoostingRegressor(n_estimators=50, random_state=0).fit(x, yd)
        onx = gb_regressor_double()
        node = onx.graph.node[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        trees = [m.estimators_[i][0].tree_ for i in range(m.n_estimators_)]
        thresholds = [
            float(trees[t].threshold[n]) if mode == b"BRANCH_LEQ" else 0.0
            for t, n, mode in zip(attrs["nodes_treeids"], attrs["nodes_nodeids"],
                                  attrs["nodes_modes"])
        ]
        weights = [
            float(trees[t].value[n].ravel()[0]) * m.learning_rate
            for t, n in zip(attrs["target_treeids"], attrs["target_nodeids"])
        ]
        base = [float(m.init_.constant_.ravel()[0])]
        keep = [a for a in node.attribute
                if a.name not in ("nodes_values", "target_weights", "base_values",
                                  "nodes_hitrates")]
        del node.attribute[:]
        node.attribute.extend(keep)
        for name, values in (("nodes_values_as_tensor", thresholds),
                             ("target_weights_as_tensor", weights),
                             ("base_values_as_tensor", base)):
            node.attribute.append(helper.make_attribute(
                name, onnx.numpy_helper.from_array(np.array(values, dtype=np.float64))))
        for op in onx.opset_import:
            if op.domain == "ai.onnx.ml":
                op.version = 3
        return onx

    def hgb_classifier_missing():
        rng = np.random.default_rng(5)
        x = xb.copy()
        x[rng.random(x.shape) < 0.1] = np.nan  # trained with missing values
        m = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(x, yb)
        return export(m, xb, no_zipmap(m))

    def linear_regression():
        return export(LinearRegression().fit(xd, yd), xd)

    def ridge():
        return export(Ridge(alpha=0.5).fit(xd, yd), xd)

    def onehot_ridge():
        x = mixed.x[: mixed.clean_rows]
        ct = ColumnTransformer([
            ("cat", OneHotEncoder(handle_unknown="ignore"), [0, 1]),
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), list(range(2, 10))),
        ])
        m = make_pipeline(ct, Ridge(alpha=1.0)).fit(x, yd)
        return export(m, x)

    def mlp_classifier():
        mlp = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3000, random_state=0)
        m = make_pipeline(StandardScaler(), mlp).fit(xi, yi)
        return export(m, xi, no_zipmap(mlp))

    def mlp_regressor():
        m = MLPRegressor(hidden_layer_sizes=(32, 16), max_iter=3000, random_state=0)
        m.fit(xd, yd)
        return export(m, xd)

    return [
        ("logreg_binary", bc, logreg_binary, "all", "native",
         "LogisticRegression, breast_cancer: LinearClassifier, two intercepts, LOGISTIC"),
        ("logreg_binary_zipmap", bc, logreg_binary_zipmap, "all", "native",
         "the same with ZipMap kept: Kiln serves the probability tensor under ZipMap's output"),
        ("logreg_multiclass", iris, logreg_multiclass, "all", "native",
         "LogisticRegression, iris: LinearClassifier (SOFTMAX) + Normalizer L1"),
        ("scaler_logreg", bc, scaler_logreg, "all", "native",
         "StandardScaler + LogisticRegression: Scaler + LinearClassifier"),
        ("rf_classifier", bc, rf_classifier, "all", "native",
         "RandomForestClassifier, binary: one weight column, leaf probabilities / n_trees"),
        ("rf_classifier_strings_zipmap", iris, rf_classifier_strings_zipmap, "all", "native",
         "RandomForestClassifier on string labels, ZipMap with string keys"),
        ("rf_regressor", diab, rf_regressor, "all", "native",
         "RandomForestRegressor: TreeEnsembleRegressor, AVERAGE"),
        ("gb_classifier", bc, gb_classifier, "all", "native",
         "GradientBoostingClassifier, binary: one base value, LOGISTIC, mixed-sign weights"),
        ("gb_multiclass", iris, gb_multiclass, "all", "native",
         "GradientBoostingClassifier, 3 classes: SOFTMAX"),
        ("gb_regressor", diab, gb_regressor, "all", "native",
         "GradientBoostingRegressor: TreeEnsembleRegressor, SUM, base value"),
        ("gb_regressor_double", diab64, gb_regressor_double, "all", "native",
         "the same on float64 input (float attributes compared as float64)"),
        ("gb_regressor_as_tensor", diab64, gb_regressor_as_tensor, "all", "native",
         "the same with float64 *_as_tensor thresholds, weights and base value"),
        ("hgb_classifier_missing", bc, hgb_classifier_missing, "all", "native",
         "HistGradientBoostingClassifier trained with missing values: "
         "nodes_missing_value_tracks_true"),
        ("linear_regression", diab, linear_regression, "all", "native",
         "LinearRegression: LinearRegressor"),
        ("ridge", diab, ridge, "all", "native", "Ridge: LinearRegressor"),
        ("onehot_ridge", mixed, onehot_ridge, "all", "native",
         "ColumnTransformer(OneHotEncoder, SimpleImputer + StandardScaler) + Ridge: "
         "ArrayFeatureExtractor, Gather, Cast, OneHotEncoder, Imputer, Scaler, Concat, Reshape"),
        ("mlp_classifier", iris, mlp_classifier, "clean", "tract",
         "StandardScaler + MLPClassifier: MatMul/Add/Relu/Softmax/ArgMax through tract "
         "(Scaler rewritten to Sub/Mul for it)"),
        ("mlp_regressor", diab, mlp_regressor, "clean", "tract",
         "MLPRegressor: MatMul/Add/Relu through tract"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "onnx")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    import warnings

    warnings.filterwarnings("ignore")
    d, t = datasets()
    for ds in d.values():
        write_json(out / "data" / f"{ds.name}.json", {
            "tensors": [tensor_json(ds.input_name, ds.x)],
            "clean_rows": ds.clean_rows,
        })

    listed = []
    for name, ds, build, rows_kind, backend, note in fixture_specs(d, t):
        onx = build()
        onx.producer_name = "skl2onnx"
        onx.doc_string = ""
        # skl2onnx lists the opsets in set order (varies between runs) and sometimes twice.
        opsets = {}
        for o in onx.opset_import:
            opsets[o.domain] = max(o.version, opsets.get(o.domain, 0))
        del onx.opset_import[:]
        onx.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(opsets.items()))
        (out / f"{name}.onnx").write_bytes(onx.SerializeToString())
        rows = ds.x.shape[0] if rows_kind == "all" else ds.clean_rows
        outputs = run_onnxruntime(onx, ds.feeds(rows))
        ops = sorted({(n.domain or "ai.onnx") + ":" + n.op_type for n in onx.graph.node})
        write_json(out / f"{name}.json", {
            "model": f"{name}.onnx",
            "inputs": f"data/{ds.name}.json",
            "rows": rows,
            "backend": backend,
            "note": note,
            "ops": ops,
            "outputs": outputs,
        })
        listed.append(name)
        size = (out / f"{name}.onnx").stat().st_size
        print(f"{name:32s} {rows:4d} rows  {size / 1024:8.1f} KiB  {', '.join(ops)}")

    write_json(out / "manifest.json", {
        "generator": "scripts/onnx_fixtures.py",
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "skl2onnx": skl2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
        "target_opset": TARGET_OPSET,
        "fixtures": listed,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
