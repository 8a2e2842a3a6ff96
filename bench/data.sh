#!/usr/bin/env bash
# Data benchmark: Kiln vs Great Expectations (great_expectations==1.24.1, pandas engine) validating
# and profiling the same 3,000,000-row Parquet file with the same 10 rules, same machine, one after
# the other. Prints a table (rows/s for both tools, the ratio with > 1× meaning Kiln is faster, and
# the target), both tools' per-rule results side by side, any disagreement between them, and writes
# it all to bench/out/data-<stamp>.md.
#
# Usage (from anywhere):
#   bench/data.sh                                   # full run, release Kiln (built if missing)
#   KILN_BIN=target/debug/kiln bench/data.sh        # plumbing check (debug timings mean nothing)
#   BENCH_KILN_RUNS=3 BENCH_GE_REPS=1 bench/data.sh # quicker run
#
# Environment (defaults in brackets):
#   KILN_BIN               Kiln binary [target/release/kiln; built with cargo if missing and unset]
#   BENCH_TOOLS            which tools to run ["kiln ge"]; GE always runs (its results are the
#                          reference the report is built on), so this only turns Kiln off
#   BENCH_KILN_RUNS        timed runs of each Kiln command [5]
#   BENCH_KILN_WARMUP      untimed Kiln runs before them [1]
#   BENCH_GE_REPS          timed GE read + validate repetitions [2]
#   BENCH_GE_PROFILE_REPS  timed GE read + profile repetitions [1]
#   BENCH_GE_RESULT_FORMAT GE result_format [BASIC]
#
# Data: flights-3m.parquet (3,000,000 rows × date, delay, distance, origin, destination) from the
# npm package vega-datasets@3.2.1, fetched with `npm pack` into bench/out/ on first use, checked
# against its sha256 and kept there for later runs (bench/out is not committed). The rules are the
# [[data.flights.expect]] tables of bench/data/kiln.toml: Kiln reads them as they are and
# bench/data_ge.py turns each into the equivalent GE expectation.
#
# Kiln is timed as a whole process per command (`kiln data validate flights --json`, `kiln data
# profile flights --json`), best and median of BENCH_KILN_RUNS; GE in one Python process, import and
# context setup not counted (see bench/data_ge.py). If `$KILN_BIN data validate --help` fails (a
# binary without the data commands), Kiln is skipped with a notice and only GE is measured.
#
# Needs: python3 (a venv is created at bench/out/venv-ge from bench/requirements-data.txt on first
# use), npm (first run only). Per-run JSON results, Kiln's state dir and outputs go to
# bench/out/data-<stamp>/. A full run takes ~1-2 min on 2 cores (plus ~1 min for the venv once).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KILN_BIN_SET=${KILN_BIN+x}
KILN_BIN=${KILN_BIN:-target/release/kiln}
BENCH_TOOLS=${BENCH_TOOLS:-kiln ge}
KILN_RUNS=${BENCH_KILN_RUNS:-5}
KILN_WARMUP=${BENCH_KILN_WARMUP:-1}
GE_REPS=${BENCH_GE_REPS:-2}
GE_PROFILE_REPS=${BENCH_GE_PROFILE_REPS:-1}
GE_RESULT_FORMAT=${BENCH_GE_RESULT_FORMAT:-BASIC}

DATASET=flights
NPM_PACKAGE=vega-datasets@3.2.1
NPM_TARBALL=vega-datasets-3.2.1.tgz
NPM_MEMBER=package/data/flights-3m.parquet
PARQUET_SHA256=dbeb920c90f59b6ccaff823dcc3d08f25a97fa1ce128d93f40be4e931f5900b0

OUT=bench/out
VENV=$OUT/venv-ge
REQS=bench/requirements-data.txt
CONFIG=bench/data/kiln.toml
PARQUET=$OUT/flights-3m.parquet # kiln.toml's source: ../out/flights-3m.parquet
HELPER=bench/data/bench.py
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$OUT/data-$STAMP
REPORT=$OUT/data-$STAMP.md

log() { printf '[data %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
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

# ---------------------------------------------------------------- prerequisites
ensure_data() {
  if [[ -f $PARQUET ]] && [[ $(sha256sum "$PARQUET" | cut -d' ' -f1) == "$PARQUET_SHA256" ]]; then
    return
  fi
  command -v npm >/dev/null || fail "npm is needed once to fetch $NPM_PACKAGE"
  local tmp=$OUT/npm-fetch
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if [[ ! -f $OUT/$NPM_TARBALL ]]; then
    log "fetching $NPM_PACKAGE with npm pack (~18 MB)"
    # npm checks the tarball against the registry's integrity hash.
    (cd "$tmp" && npm pack "$NPM_PACKAGE" --silent >/dev/null) || fail "npm pack $NPM_PACKAGE failed"
    mv "$tmp/$NPM_TARBALL" "$OUT/$NPM_TARBALL"
  fi
  tar -xzf "$OUT/$NPM_TARBALL" -C "$tmp" "$NPM_MEMBER" || fail "$NPM_TARBALL has no $NPM_MEMBER"
  local got
  got=$(sha256sum "$tmp/$NPM_MEMBER" | cut -d' ' -f1)
  [[ $got == "$PARQUET_SHA256" ]] || fail "$NPM_MEMBER has sha256 $got, expected $PARQUET_SHA256"
  mv "$tmp/$NPM_MEMBER" "$PARQUET"
  rm -rf "$tmp"
  log "data: $PARQUET"
}

ensure_venv() {
  local stamp=$VENV/.requirements.sha256 want
  want=$(sha256sum "$REQS" | cut -d' ' -f1)
  if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return
  fi
  log "creating $VENV and installing $REQS (takes a minute or two)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -r "$REQS"
  echo "$want" >"$stamp"
}

KILN_SKIP=
ensure_kiln() {
  if [[ ! -x $KILN_BIN ]]; then
    [[ -z $KILN_BIN_SET ]] || fail "KILN_BIN=$KILN_BIN does not exist"
    log "building $KILN_BIN (cargo build --release -p kiln --locked)"
    cargo build --release -p kiln --locked
  fi
  KILN_BIN=$(cd "$(dirname "$KILN_BIN")" && pwd)/$(basename "$KILN_BIN")
  case $KILN_BIN in
    */release/*) KILN_PROFILE=release ;;
    */debug/*) KILN_PROFILE=debug ;;
    *) KILN_PROFILE=unknown ;;
  esac
  if ! "$KILN_BIN" data validate --help >/dev/null 2>&1; then
    KILN_SKIP="\`$KILN_BIN data validate --help\` failed: this binary has no \`kiln data\` commands"
    log "SKIPPING KILN: ${KILN_SKIP}; only Great Expectations is measured"
  elif [[ $KILN_PROFILE == debug ]]; then
    log "NOTE: $KILN_BIN is a debug build; its timings mean nothing (plumbing check only)"
  fi
}

has_tool() { [[ " $BENCH_TOOLS " == *" $1 "* ]]; }

mkdir -p "$OUT" "$WORK"
ensure_data
ensure_venv
PY=$VENV/bin/python
KILN_PROFILE=n/a
if has_tool kiln; then
  ensure_kiln
else
  KILN_SKIP="BENCH_TOOLS does not include kiln"
fi

log "results and logs: $WORK"
log "machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- Great Expectations
log "Great Expectations: $GE_REPS × read + validate, $GE_PROFILE_REPS × read + profile"
"$PY" bench/data_ge.py --config "$CONFIG" --dataset "$DATASET" --parquet "$PARQUET" \
  --out "$WORK/ge.json" --reps "$GE_REPS" --profile-reps "$GE_PROFILE_REPS" \
  --result-format "$GE_RESULT_FORMAT" 2> >(tee "$WORK/ge.log" >&2)

# ---------------------------------------------------------------- Kiln
KILN_ARGS=()
if [[ -z $KILN_SKIP ]]; then
  STATE=$WORK/kiln-state
  mkdir -p "$STATE"
  common=(--config "$ROOT/$CONFIG" --data-dir "$ROOT/$STATE")
  log "Kiln: validate, $KILN_WARMUP warm-up + $KILN_RUNS timed runs"
  # Exit 1 means a rule failed, which is a result, not an error; 2 is an error.
  "$PY" "$HELPER" time --runs "$KILN_RUNS" --warmup "$KILN_WARMUP" --ok-codes 0,1 \
    --out "$WORK/kiln-validate-times.json" --stdout "$WORK/kiln-validate.json" -- \
    "$KILN_BIN" data validate "$DATASET" "${common[@]}" --json
  log "Kiln: profile, $KILN_WARMUP warm-up + $KILN_RUNS timed runs"
  "$PY" "$HELPER" time --runs "$KILN_RUNS" --warmup "$KILN_WARMUP" --ok-codes 0 \
    --out "$WORK/kiln-profile-times.json" --stdout "$WORK/kiln-profile.json" -- \
    "$KILN_BIN" data profile "$DATASET" "${common[@]}" --json
  KILN_ARGS=(--kiln-validate "$WORK/kiln-validate.json" --kiln-validate-times "$WORK/kiln-validate-times.json"
    --kiln-profile "$WORK/kiln-profile.json" --kiln-profile-times "$WORK/kiln-profile-times.json")
fi

# ---------------------------------------------------------------- report
# What exactly was measured: the binary's own version line and build time, and the source tree.
KILN_VERSION=n/a
KILN_BUILT=n/a
if [[ -z $KILN_SKIP ]]; then
  KILN_VERSION=$("$KILN_BIN" --version 2>&1 | head -1 || true)
  KILN_BUILT=$(date -u -r "$KILN_BIN" '+%Y-%m-%d %H:%M UTC')
fi
"$PY" - "$WORK/meta.json" <<PY
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "parquet": "$PARQUET",
    "sha256": "$PARQUET_SHA256",
    "kiln_bin": "${KILN_BIN#"$ROOT"/}",
    "kiln_profile": "$KILN_PROFILE",
    "kiln_version": """$KILN_VERSION""",
    "kiln_built": "$KILN_BUILT",
    "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes')",
    "kiln_skip": """$KILN_SKIP""",
    "machine": "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)",
    "load_start": "$LOAD_START",
    "load_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
}, open(sys.argv[1], "w"), indent=2)
PY
"$PY" "$HELPER" report --meta "$WORK/meta.json" --ge "$WORK/ge.json" "${KILN_ARGS[@]}" >"$REPORT"
cp "$REPORT" "$WORK/report.md"
cat "$REPORT"
log "report: $REPORT"
