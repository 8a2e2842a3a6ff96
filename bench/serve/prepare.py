#!/usr/bin/env python3
"""Set-up for bench/serve.sh: checks the model, writes the MLflow model directory and the
request bodies every server is sent.

    prepare.py --model gb_classifier.onnx --data breast_cancer.json --expected gb_classifier.json \
        --out WORK [--trees 100] [--bodies-100 16]

Writes into WORK:
- `mlflow-model/`: `mlflow.onnx.save_model` of the same .onnx file (no signature, default
  session options: what `mlflow models serve` is given);
- `bodies/invocations-{1,100}.txt` and `bodies/oip-{1,100}.txt`: one JSON request body per line.
  1-row bodies walk the data file's clean rows one at a time (569 bodies for breast_cancer);
  100-row bodies take 100 consecutive rows from offsets 0, 100, 200, … wrapping around.
  /invocations bodies are `{"inputs": [[30 floats], …]}` (MLflow's tensor input, accepted by
  all three servers); OIP v2 bodies are `{"inputs": [{"name": "X", "datatype": "FP32",
  "shape": [N, 30], "data": [flat]}]}`. Values are written as the shortest decimal that reads
  back as the same float32 (what a client serialising float32 data sends);
- `expected.json`: onnxruntime's outputs for those rows (from the fixture's JSON), so that
  probe.py can check each server's answers;
- `model.json`: what was checked about the model (trees, inputs, outputs, opsets).

The fixture must be a skl2onnx TreeEnsembleClassifier with --trees trees (the issue's 100-tree
GradientBoostingClassifier); anything else stops the benchmark.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx


def die(msg: str) -> None:
    print(f"prepare: {msg}", file=sys.stderr)
    sys.exit(1)


def f32(v: float) -> str:
    # Shortest decimal that parses back to the same float32 ("17.99", "0.0").
    return np.format_float_positional(np.float32(v), unique=True, trim="0")


def check_model(path: Path, trees: int) -> dict:
    m = onnx.load(str(path))
    ops = [f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in m.graph.node]
    ens = [n for n in m.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(ens) != 1:
        die(f"{path}: expected one TreeEnsembleClassifier, found ops {ops}")
    attrs = {a.name: a for a in ens[0].attribute}
    n_trees = len(set(attrs["nodes_treeids"].ints))
    if n_trees != trees:
        die(f"{path}: {n_trees} trees, the benchmark wants {trees} "
            "(regenerate the fixture with scripts/onnx_fixtures.py)")

    def io(vs):
        out = []
        for v in vs:
            t = v.type.tensor_type
            out.append({"name": v.name, "elem_type": onnx.TensorProto.DataType.Name(t.elem_type),
                        "shape": [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]})
        return out

    inputs, outputs = io(m.graph.input), io(m.graph.output)
    if len(inputs) != 1 or inputs[0]["elem_type"] != "FLOAT" or inputs[0]["shape"] != [-1, 30]:
        die(f"{path}: expected one FLOAT [-1, 30] input, found {inputs}")
    return {
        "file": str(path),
        "bytes": path.stat().st_size,
        "trees": n_trees,
        "ops": ops,
        "inputs": inputs,
        "outputs": outputs,
        "opsets": {o.domain or "ai.onnx": o.version for o in m.opset_import},
        "producer": f"{m.producer_name} {m.producer_version}",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--expected", required=True, help="the fixture's JSON with onnxruntime's outputs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--bodies-100", type=int, default=16, help="how many distinct 100-row bodies")
    a = ap.parse_args()

    model = Path(a.model).resolve()
    out = Path(a.out)
    info = check_model(model, a.trees)

    data = json.loads(Path(a.data).read_text())
    t = data["tensors"][0]
    cols = t["shape"][1]
    clean = int(data["clean_rows"])
    flat = t["data"][: clean * cols]
    if any(v is None for v in flat):
        die("clean rows hold missing values")
    rows = [[f32(v) for v in flat[i * cols:(i + 1) * cols]] for i in range(clean)]
    # Every string must read back as exactly the fixture's float32.
    back = np.array([[float(s) for s in r] for r in rows], dtype=np.float32)
    if not np.array_equal(back, np.array(flat, dtype=np.float32).reshape(clean, cols)):
        die("float32 formatting does not round-trip")

    exp = json.loads(Path(a.expected).read_text())
    outs = {o["name"]: o for o in exp["outputs"]}
    label = outs["label"]["data"][:clean]
    pw = outs["probabilities"]["shape"][1]
    prob = outs["probabilities"]["data"][: clean * pw]
    prob = [prob[i * pw:(i + 1) * pw] for i in range(clean)]

    bodies = out / "bodies"
    bodies.mkdir(parents=True, exist_ok=True)

    def inv(idx: list[int]) -> str:
        return '{"inputs":[' + ",".join("[" + ",".join(rows[i]) + "]" for i in idx) + "]}"

    def oip(idx: list[int]) -> str:
        data_s = ",".join(",".join(rows[i]) for i in idx)
        return ('{"inputs":[{"name":"X","datatype":"FP32","shape":[%d,%d],"data":[%s]}]}'
                % (len(idx), cols, data_s))

    sets = {
        1: [[i] for i in range(clean)],
        100: [[(k * 100 + j) % clean for j in range(100)] for k in range(a.bodies_100)],
    }
    expected: dict = {"bodies": {}}
    for n, idxs in sets.items():
        for proto, fn in (("invocations", inv), ("oip", oip)):
            path = bodies / f"{proto}-{n}.txt"
            with open(path, "w") as f:
                for idx in idxs:
                    f.write(fn(idx) + "\n")
            sizes = [len(fn(idx)) for idx in idxs[:4]]
            expected["bodies"][f"{proto}-{n}"] = {
                "file": str(path), "count": len(idxs), "rows": n,
                "bytes_first": sizes[0],
            }
        # Expected outputs for the first two bodies of each size (what probe.py check sends).
        expected[f"rows-{n}"] = [
            {"label": [label[i] for i in idx], "probabilities": [prob[i] for i in idx]} for idx in idxs[:2]
        ]
    (out / "expected.json").write_text(json.dumps(expected))

    import mlflow.onnx  # slow import; only now

    mdir = out / "mlflow-model"
    if mdir.exists():
        shutil.rmtree(mdir)
    mlflow.onnx.save_model(onnx.load(str(model)), str(mdir))
    info["mlflow_model"] = str(mdir)
    info["clean_rows"] = clean
    (out / "model.json").write_text(json.dumps(info, indent=1))
    print(f"prepare: {model.name}: {info['trees']} trees, ops {info['ops']}; {clean} rows; "
          f"bodies in {bodies}; MLflow model in {mdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
