#!/usr/bin/env bash
# Tracking benchmark: Kiln vs MLflow's own server (mlflow==3.17.2, SQLite backend), same load,
# same machine, one after the other. Prints a table (each figure for both servers, the ratio with
# > 1× meaning Kiln is better, and the target) and writes it to bench/out/tracking-<stamp>.md.
#
# Usage (from anywhere):
#   bench/tracking.sh                         # full run, release Kiln (built if missing)
#   KILN_BIN=target/debug/kiln bench/tracking.sh
#   BENCH_RUNS=1000 BENCH_DURATION=3 BENCH_REPS=5 bench/tracking.sh   # quick smoke run
#
# Environment (defaults in brackets):
#   KILN_BIN            Kiln binary [target/release/kiln; built with cargo if missing and unset]
#   BENCH_SERVERS       which servers to run ["kiln mlflow"]
#   BENCH_DURATION      measured seconds per throughput figure [10]
#   BENCH_WARMUP        wrk warm-up seconds before each figure [3]
#   BENCH_METRIC_CONNS  log-metric client counts ["1 8"]
#   BENCH_BATCH_CONNS   log-batch client counts ["1 4"]
#   BENCH_BATCH_SIZE    metrics per log-batch request [1000]
#   BENCH_CLOSE_CONNS   log-metric client counts also run with `Connection: close` (informational;
#                       empty to skip) ["1"]
#   BENCH_RUNS          runs seeded for runs/search [10000]
#   BENCH_HISTORY       points in the get-history metric [10000]
#   BENCH_SEED_CONC     concurrent seeding clients [8]
#   BENCH_REPS          timed repetitions per latency figure [20]
#   BENCH_READ_WARMUP   untimed repetitions before them [2]
#   BENCH_COLD_KILN     measured Kiln restarts [5]    BENCH_COLD_MLFLOW  measured MLflow restarts [3]
#   BENCH_IDLE          idle seconds after setup before sampling RSS [5]
#   BENCH_KEEP_DATA     1 keeps the servers' data dirs [0]
#
# Needs: python3 (a venv is created at bench/out/venv from bench/requirements.txt on first use),
# wrk (Debian package; installed with apt-get if missing). Only 127.0.0.1 is used; every server
# started is stopped on exit (its whole process group). Per-run JSON results and server logs
# go to bench/out/tracking-<stamp>/. A full run takes ~15-20 min on 2 cores, most of it
# MLflow: seeding its 10,000 runs (~5-8 min), its search latencies and its ~12 s cold starts.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KILN_BIN_SET=${KILN_BIN+x}
KILN_BIN=${KILN_BIN:-target/release/kiln}
BENCH_SERVERS=${BENCH_SERVERS:-kiln mlflow}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
METRIC_CONNS=${BENCH_METRIC_CONNS:-1 8}
BATCH_CONNS=${BENCH_BATCH_CONNS:-1 4}
BATCH_SIZE=${BENCH_BATCH_SIZE:-1000}
CLOSE_CONNS=${BENCH_CLOSE_CONNS-1}
RUNS=${BENCH_RUNS:-10000}
HISTORY=${BENCH_HISTORY:-10000}
SEED_CONC=${BENCH_SEED_CONC:-8}
REPS=${BENCH_REPS:-20}
READ_WARMUP=${BENCH_READ_WARMUP:-2}
COLD_KILN=${BENCH_COLD_KILN:-5}
COLD_MLFLOW=${BENCH_COLD_MLFLOW:-3}
IDLE=${BENCH_IDLE:-5}
KEEP_DATA=${BENCH_KEEP_DATA:-0}
POLL_MS=0.5
SLOW_POLL_MS=5
FAST_WINDOW=2
# Above this many stored points the post-run dedup check (a full get-history) is skipped.
MAX_CHECK_POINTS=2000000

OUT=bench/out
VENV=$OUT/venv
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$OUT/tracking-$STAMP
DATA=$WORK/data
REPORT=$OUT/tracking-$STAMP.md
PROBE=bench/tracking_probe.py

log() { printf '[tracking %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup of started servers
SERVER_PIDS=()

stop_group() { # pid (== process group id, servers are started with setsid)
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "process group $pid did not stop after SIGTERM; sending SIGKILL"
  kill -KILL -- "-$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${SERVER_PIDS[@]}"; do
    stop_group "$pid"
  done
  # A cold-start server whose probe died before stopping it.
  if [[ -f $WORK/coldstart.pid ]]; then
    stop_group "$(cat "$WORK/coldstart.pid")"
    rm -f "$WORK/coldstart.pid"
  fi
  if [[ $KEEP_DATA != 1 && -d $DATA ]]; then
    rm -rf "$DATA"
  fi
  if ((rc != 0)); then
    log "failed (exit $rc); logs and partial results in $WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- prerequisites
ensure_venv() {
  local stamp=$VENV/.requirements.sha256 want
  want=$(sha256sum bench/requirements.txt | cut -d' ' -f1)
  if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return
  fi
  log "creating $VENV and installing bench/requirements.txt (takes a few minutes)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -r bench/requirements.txt
  echo "$want" >"$stamp"
}

ensure_wrk() {
  command -v wrk >/dev/null && return
  log "installing wrk (Debian package)"
  if ! apt-get install -y wrk >/dev/null 2>&1; then
    apt-get update >/dev/null
    apt-get install -y wrk >/dev/null
  fi
  command -v wrk >/dev/null || fail "wrk not available"
}

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
}

has_server() { [[ " $BENCH_SERVERS " == *" $1 "* ]]; }

mkdir -p "$OUT" "$WORK" "$DATA"
ensure_venv
PY=$VENV/bin/python
MLFLOW=$VENV/bin/mlflow
ensure_wrk
KILN_PROFILE=n/a
if has_server kiln; then ensure_kiln; fi

# Server command lines; {port} and {dir} are filled in per start.
kiln_cmd() { echo "$KILN_BIN" server --host 127.0.0.1 --port "{port}" --data-dir "{dir}"; }
mlflow_cmd() { echo "$ROOT/$MLFLOW" server --host 127.0.0.1 --port "{port}" --backend-store-uri "sqlite:///{dir}/mlflow.db"; }

"$PY" "$PROBE" meta --out "$WORK/meta.json" \
  "date=$(date -u '+%Y-%m-%d %H:%M UTC')" "kiln_bin=${KILN_BIN#"$ROOT"/}" "kiln_profile=$KILN_PROFILE" \
  "runs=$RUNS" "history=$HISTORY" "seed_conc=$SEED_CONC" "warmup=$WARMUP" "duration=$DURATION" \
  "reps=$REPS" "read_warmup=$READ_WARMUP" "poll_ms=$POLL_MS" "slow_poll_ms=$SLOW_POLL_MS" \
  "fast_window=$FAST_WINDOW" "cold_kiln=$COLD_KILN" "cold_mlflow=$COLD_MLFLOW" "idle=$IDLE" \
  "batch_size=$BATCH_SIZE" "wrk_version=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"

log "results and logs: $WORK"
log "machine: $(nproc) cores, shared by the server under test and the load generator"

# ---------------------------------------------------------------- server lifecycle
SERVER_PID=
SERVER_PORT=

start_server() { # name datadir
  local name=$1 dir=$2 cmd
  mkdir -p "$dir"
  SERVER_PORT=$("$PY" "$PROBE" freeport)
  cmd=$("${name}_cmd")
  cmd=${cmd//\{port\}/$SERVER_PORT}
  cmd=${cmd//\{dir\}/$(cd "$dir" && pwd)}
  # setsid: the server leads its own process group, so stopping it also stops MLflow's workers.
  # (cd into the data dir: MLflow's default artifact root ./mlartifacts lands there.)
  # shellcheck disable=SC2086 # word splitting of the command line is intended (no spaces in paths)
  (cd "$dir" && exec setsid $cmd) >"$WORK/$name-server.log" 2>&1 </dev/null &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  sleep 0.2
  local pgid
  pgid=$(ps -o pgid= -p "$SERVER_PID" 2>/dev/null | tr -d ' ' || true)
  [[ -z $pgid || $pgid == "$SERVER_PID" ]] || fail "$name server pid $SERVER_PID is not its process group leader ($pgid)"
  "$PY" "$PROBE" wait --port "$SERVER_PORT" --pid "$SERVER_PID" --timeout 180 ||
    fail "$name server did not become healthy; see $WORK/$name-server.log"
  log "$name server up: pid $SERVER_PID, port $SERVER_PORT"
}

stop_server() {
  stop_group "$SERVER_PID"
  local keep=() p
  for p in "${SERVER_PIDS[@]}"; do [[ $p == "$SERVER_PID" ]] || keep+=("$p"); done
  SERVER_PIDS=("${keep[@]+"${keep[@]}"}")
  SERVER_PID=
}

# ---------------------------------------------------------------- throughput (wrk)
run_wrk() { # name kind(log-metric|log-batch) conns run_id [close]
  local name=$1 kind=$2 conns=$3 run_id=$4 mode=${5:-keepalive} threads=1 script items=1 label out key
  local -a extra
  ((conns > 1)) && threads=2
  if [[ $kind == log-metric ]]; then
    script=bench/lua/log_metric.lua
    extra=()
  else
    script=bench/lua/log_batch.lua
    items=$BATCH_SIZE
    extra=("$BATCH_SIZE")
  fi
  label="$kind-c$conns"
  key="${kind//-/_}_c$conns"
  if [[ $mode == close ]]; then
    extra+=(close)
    label+="-close"
    key+="_close"
  fi
  out="$WORK/$name-wrk-$label.txt"
  local url="http://127.0.0.1:$SERVER_PORT"
  log "$name $label: ${WARMUP}s warm-up, ${DURATION}s measured ($threads wrk thread(s), $conns connection(s))"
  wrk -t"$threads" -c"$conns" -d"${WARMUP}s" --timeout 60s -s "$script" "$url" -- "$run_id" "warm_$key" "${extra[@]}" \
    >"$WORK/$name-wrk-$label-warmup.txt"
  wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 60s -s "$script" "$url" -- "$run_id" "$key" "${extra[@]}" >"$out"
  "$PY" "$PROBE" wrk-result --wrk-output "$out" --label "$label" --items "$items" \
    --connections "$conns" --threads "$threads" --out "$WORK/$name-wrk.json"
  # Dedup check: every completed request's points must be stored (in-flight ones may add more).
  local expected
  expected=$("$PY" -c "import json,sys; d=json.load(open(sys.argv[1]))[sys.argv[2]]; print(d['requests']*d['items_per_request'])" \
    "$WORK/$name-wrk.json" "$label")
  if ((expected <= MAX_CHECK_POINTS)); then
    "$PY" "$PROBE" count-history --port "$SERVER_PORT" --run-id "$run_id" --key "$key" --label "$label" \
      --out "$WORK/$name-wrk.json"
  else
    log "$name $label: $expected points, skipping the full get-history dedup check"
  fi
}

# ---------------------------------------------------------------- one server, all phases
bench_server() { # name
  local name=$1 conns
  log "=== $name ==="
  start_server "$name" "$DATA/$name"
  log "$name: seeding $RUNS runs + $HISTORY-point history ($SEED_CONC clients)"
  local seed_vars
  seed_vars=$("$PY" "$PROBE" seed --port "$SERVER_PORT" --runs "$RUNS" --history "$HISTORY" \
    --concurrency "$SEED_CONC" --out "$WORK/$name-seed.json")
  eval "$seed_vars" # EXPERIMENT_ID METRIC_RUN BATCH_RUN HISTORY_RUN SEED_SECONDS (shell-quoted)
  log "$name: seeded in ${SEED_SECONDS}s; idle ${IDLE}s"
  sleep "$IDLE"
  "$PY" "$PROBE" rss --pid "$SERVER_PID" --label idle --out "$WORK/$name-mem.json"

  log "$name: latency (runs/search, get-history), $REPS reps"
  "$PY" "$PROBE" reads --port "$SERVER_PORT" --state "$WORK/$name-seed.json" --reps "$REPS" \
    --warmup "$READ_WARMUP" --out "$WORK/$name-reads.json"

  for conns in $METRIC_CONNS; do run_wrk "$name" log-metric "$conns" "$METRIC_RUN"; done
  for conns in $BATCH_CONNS; do run_wrk "$name" log-batch "$conns" "$BATCH_RUN"; done
  # Informational: a new TCP connection per request (see the keep-alive note in the report).
  for conns in $CLOSE_CONNS; do run_wrk "$name" log-metric "$conns" "$METRIC_RUN" close; done

  "$PY" "$PROBE" rss --pid "$SERVER_PID" --label after_load --out "$WORK/$name-mem.json"
  stop_server
}

# ---------------------------------------------------------------- cold start
cold_start() { # name reps
  local name=$1 reps=$2 cmd
  cmd=$("${name}_cmd")
  log "$name: cold start, 1 fresh-dir start + $reps restarts"
  # shellcheck disable=SC2086 # the command line is split into argv on purpose
  "$PY" "$PROBE" coldstart --label "$name" --reps "$reps" --dir "$DATA/cold-$name" \
    --log "$WORK/$name-coldstart.log" --poll-ms "$POLL_MS" --slow-poll-ms "$SLOW_POLL_MS" \
    --fast-window "$FAST_WINDOW" --pidfile "$WORK/coldstart.pid" --out "$WORK/coldstart.json" -- $cmd
}

# Cold starts first, while no other server is running.
if has_server kiln; then cold_start kiln "$COLD_KILN"; fi
if has_server mlflow; then cold_start mlflow "$COLD_MLFLOW"; fi
if has_server kiln; then bench_server kiln; fi
if has_server mlflow; then bench_server mlflow; fi

"$PY" "$PROBE" report --dir "$WORK" >"$REPORT"
cp "$REPORT" "$WORK/report.md"
echo
cat "$REPORT"
log "table written to $REPORT"
