#!/usr/bin/env bash
# Prediction benchmark: Kiln (kiln-onnx) vs onnxruntime serving the same scikit-learn ONNX models
# on the same rows, same machine, one after the other in the same run. For each model and batch
# size (1 and 1024 by default) it prints rows/s for both, the ratio (> 1× means Kiln is faster)
# and the target (Kiln ≥ onnxruntime), and writes it all to bench/out/predict-<stamp>.md.
#
# Usage (from anywhere):
#   bench/predict.sh                                     # full run (builds the Kiln side if missing)
#   BENCH_REPEATS=3 BENCH_MIN_SECONDS=0.2 bench/predict.sh   # quicker run
#   BENCH_MODELS="gb_classifier:breast_cancer" bench/predict.sh
#
# Environment (defaults in brackets):
#   BENCH_MODELS       model:data pairs from tests/fixtures/onnx/ (model.onnx, data/data.json)
#                      ["gb_classifier:breast_cancer rf_classifier:breast_cancer"]
#   BENCH_BATCHES      batch sizes, comma-separated [1,1024]
#   BENCH_REPEATS      timed runs per figure in each round [5]
#   BENCH_ROUNDS       rounds, each timing Kiln then onnxruntime on every model, so that both
#                      see the same machine load; the best over all rounds is reported [2]
#   BENCH_MIN_SECONDS  length of one timed run [0.5]
#   BENCH_THREADS      onnxruntime's intra_op_num_threads; Kiln predicts on one thread [1]
#   KILN_PREDICT_BIN   Kiln's bench binary [$CARGO_TARGET_DIR/release/examples/predict_bench,
#                      built with `cargo build --release -p kiln-onnx --example predict_bench`
#                      if missing and unset]
#
# Kiln side: crates/kiln-onnx/examples/predict_bench.rs loads the .onnx file with
# `kiln_onnx::load` and times `Predictor::predict` on pre-built batches (the tree ensembles
# compile into Kiln's own executor). onnxruntime side: bench/predict/ort_bench.py times
# `InferenceSession.run(None, feeds)` the same way through onnxruntime's Python API (so batch 1
# includes Python's per-call overhead, as a Python server would pay it). Both take the data
# file's rows without missing values (569 for breast_cancer) and cycle through them: batch 1
# walks them one at a time, batch 1024 repeats them. Figures are the best of BENCH_ROUNDS ×
# BENCH_REPEATS runs, by the wall clock; the report also gives rows per second of CPU time (the
# process's user + system time), which a busy machine disturbs less. The target is on wall-clock
# rows/s.
#
# Needs: python3 (a venv is created at bench/out/venv-predict from bench/requirements-predict.txt
# on first use), cargo (first run: a release build of kiln-onnx with tract, ~5-10 min on 2
# cores, and ~8 min to relink after a change, thin LTO). Raw JSON results go to
# bench/out/predict-<stamp>/. A run takes ~1 min.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

MODELS=${BENCH_MODELS:-gb_classifier:breast_cancer rf_classifier:breast_cancer}
BATCHES=${BENCH_BATCHES:-1,1024}
REPEATS=${BENCH_REPEATS:-5}
ROUNDS=${BENCH_ROUNDS:-2}
MIN_SECONDS=${BENCH_MIN_SECONDS:-0.5}
THREADS=${BENCH_THREADS:-1}
KILN_BIN_SET=${KILN_PREDICT_BIN+x}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KILN_BIN=${KILN_PREDICT_BIN:-$TARGET_DIR/release/examples/predict_bench}

FIXTURES=tests/fixtures/onnx
OUT=bench/out
VENV=$OUT/venv-predict
REQS=bench/requirements-predict.txt
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$OUT/predict-$STAMP
REPORT=$OUT/predict-$STAMP.md

log() { printf '[predict %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
  log "ERROR: $*"
  exit 1
}

on_exit() {
  local rc=$?
  trap - EXIT
  if ((rc != 0)); then
    log "failed (exit $rc); logs and partial results in $WORK"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_venv() {
  local stamp=$VENV/.requirements.sha256 want
  want=$(sha256sum "$REQS" | cut -d' ' -f1)
  if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return
  fi
  log "creating $VENV and installing $REQS (takes a minute)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -r "$REQS"
  echo "$want" >"$stamp"
}

ensure_kiln() {
  if [[ ! -x $KILN_BIN ]]; then
    [[ -z $KILN_BIN_SET ]] || fail "KILN_PREDICT_BIN=$KILN_BIN does not exist"
    log "building $KILN_BIN (cargo build --release -p kiln-onnx --example predict_bench)"
    cargo build --release -p kiln-onnx --example predict_bench
  fi
  [[ -x $KILN_BIN ]] || fail "$KILN_BIN was not built (is CARGO_TARGET_DIR the one cargo used?)"
}

mkdir -p "$OUT" "$WORK"
ensure_venv
ensure_kiln
PY=$VENV/bin/python

log "results and logs: $WORK"
log "machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

common=(--batches "$BATCHES" --repeats "$REPEATS" --min-seconds "$MIN_SECONDS")
RESULTS=()
for round in $(seq 1 "$ROUNDS"); do
  for pair in $MODELS; do
    model=${pair%%:*}
    data=${pair#*:}
    onnx=$FIXTURES/$model.onnx
    json=$FIXTURES/data/$data.json
    [[ -f $onnx ]] || fail "no model $onnx"
    [[ -f $json ]] || fail "no data $json"
    log "round $round/$ROUNDS, $model: Kiln"
    "$KILN_BIN" --model "$onnx" --data "$json" "${common[@]}" >"$WORK/$model-kiln-$round.jsonl"
    log "round $round/$ROUNDS, $model: onnxruntime ($THREADS intra-op thread(s))"
    "$PY" bench/predict/ort_bench.py --model "$onnx" --data "$json" --threads "$THREADS" "${common[@]}" \
      >"$WORK/$model-ort-$round.jsonl"
    RESULTS+=("$WORK/$model-kiln-$round.jsonl" "$WORK/$model-ort-$round.jsonl")
  done
done

ORT_VERSION=$("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)')
"$PY" - "$WORK/meta.json" <<PY
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "cores": $(nproc),
    "load_start": "$LOAD_START",
    "load_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "kiln_bin": "${KILN_BIN#"$ROOT"/}",
    "ort_version": "$ORT_VERSION",
    "threads": $THREADS,
    "repeats": $REPEATS,
    "rounds": $ROUNDS,
    "min_seconds": $MIN_SECONDS,
}, open(sys.argv[1], "w"), indent=1)
PY

set +e
"$PY" bench/predict/report.py --meta "$WORK/meta.json" "${RESULTS[@]}" >"$REPORT"
met=$?
set -e
cat "$REPORT"
log "report: $REPORT"
if ((met != 0)); then
  log "target missed: Kiln is slower than onnxruntime somewhere (see the table)"
fi
