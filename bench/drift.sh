#!/usr/bin/env bash
# Drift benchmark: Kiln vs Evidently (evidently==0.7.23, DataDriftPreset) comparing the same
# 1,000,000-row × 20-column current Parquet file with the same reference, on the same machine,
# one after the other. Kiln compares against the reference's profile (what a model package
# carries); Evidently needs the raw reference rows. Prints a table (seconds, the ratio, the
# target: Kiln < 1 s), both tools' per-column methods, values and verdicts side by side, and
# writes it all to bench/out/drift-<stamp>.md.
#
# Usage (from anywhere):
#   bench/drift.sh                                   # full run, release Kiln (built if missing)
#   KILN_BIN=target/debug/kiln bench/drift.sh        # plumbing check (debug timings mean nothing)
#   BENCH_DRIFT_ROWS=100000 bench/drift.sh           # a smaller data set
#
# Environment (defaults in brackets):
#   KILN_BIN              Kiln binary [target/release/kiln; built with cargo if missing and unset]
#   BENCH_DRIFT_ROWS      rows of each file [1000000]
#   BENCH_KILN_RUNS       timed Kiln runs [5]
#   BENCH_KILN_WARMUP     untimed Kiln runs before them [1]
#   BENCH_EVIDENTLY_RUNS  timed Evidently runs [1] (one takes ~1.5 min on 2 cores)
#
# Data: bench/drift/gen.py writes reference.parquet and current.parquet from a fixed seed into
# bench/out/drift/ROWS/ on first use (10 float, 4 int and 6 text columns; the current file moves
# 6 columns, nudges one by 0.02 standard deviations and leaves 13 alone). The reference profile
# is written once with `kiln data profile reference --source reference.parquet --out …` through
# bench/drift/kiln.toml.
#
# Needs: python3.11 (a venv is created at bench/out/venv-drift from bench/drift/requirements.txt
# on first use, ~1 min). A full run takes ~2-3 min on 2 cores, nearly all of it Evidently.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KILN_BIN_SET=${KILN_BIN+x}
KILN_BIN=${KILN_BIN:-target/release/kiln}
ROWS=${BENCH_DRIFT_ROWS:-1000000}
KILN_RUNS=${BENCH_KILN_RUNS:-5}
KILN_WARMUP=${BENCH_KILN_WARMUP:-1}
EV_RUNS=${BENCH_EVIDENTLY_RUNS:-1}

OUT=bench/out
VENV=$OUT/venv-drift
DATA=$OUT/drift/$ROWS
REQS=bench/drift/requirements.txt

if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c "import evidently, pyarrow" 2>/dev/null; then
  echo "== creating $VENV from $REQS"
  python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$REQS"
fi
PY=$VENV/bin/python

if [[ ! -f $DATA/reference.parquet || ! -f $DATA/current.parquet ]]; then
  echo "== generating $ROWS rows × 20 columns into $DATA"
  "$PY" bench/drift/gen.py "$DATA" "$ROWS"
fi

if [[ ! -x $KILN_BIN ]]; then
  if [[ -n $KILN_BIN_SET ]]; then
    echo "KILN_BIN=$KILN_BIN is not an executable" >&2
    exit 1
  fi
  echo "== building the release binary (cargo build --release -p kiln; 20+ min from clean on 2 cores)"
  cargo build --release -p kiln
fi
if ! "$KILN_BIN" data drift --help >/dev/null 2>&1; then
  echo "$KILN_BIN has no \`kiln data drift\`; rebuild it" >&2
  exit 1
fi

PROFILE=$DATA/reference.profile.json
if [[ ! -f $PROFILE || $PROFILE -ot $DATA/reference.parquet ]]; then
  echo "== profiling the reference"
  KILN_LOG=warn "$KILN_BIN" data profile reference --config bench/drift/kiln.toml --data-dir "$DATA/state" \
    --source "$DATA/reference.parquet" --out "$PROFILE" >/dev/null
fi

echo "== timing Kiln ($KILN_RUNS runs) and Evidently ($EV_RUNS run)"
KILN_LOG=warn "$PY" bench/drift/run.py "$KILN_BIN" "$DATA" "$OUT" "$KILN_RUNS" "$KILN_WARMUP" "$EV_RUNS"
