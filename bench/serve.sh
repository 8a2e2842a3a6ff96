#!/usr/bin/env bash
# Serving benchmark: the same 100-tree GradientBoostingClassifier (skl2onnx export,
# tests/fixtures/onnx/gb_classifier.onnx, 30 float inputs) served on 127.0.0.1 by
#   - Kiln:        kiln serve --model gb=gb_classifier.onnx
#   - MLflow:      mlflow models serve (mlflow==3.17.2) of an MLflow model made with
#                  mlflow.onnx.save_model from the same file
#   - FastAPI+ORT: FastAPI + uvicorn (2 workers) + onnxruntime (bench/serve/fastapi_app.py)
# all in one run, under wrk at 1 and 16 connections with 1-row and 100-row requests on the same
# /invocations body ({"inputs": [[30 floats], ...]}); Kiln also on OIP v2 (/v2/models/gb/infer).
# Prints the table, the ratios Kiln/MLflow and Kiln/FastAPI with the targets (≥ 20× and ≥ 5×
# throughput), p99 ≤ 1 ms for 1-row requests at 1 connection, 100-row rows/s ≥ 80% of the
# in-process predictor's, cold start < 200 ms and RSS < 50 MB, and writes it all to
# bench/out/serve-<stamp>.md. A benchmark to run by hand, not a test.
#
# Usage (from anywhere):
#   bench/serve.sh                                  # full run (~8 min; builds Kiln if missing)
#   BENCH_DURATION=5s BENCH_WARMUP=2s bench/serve.sh   # quicker
#   KILN_BIN=/path/to/kiln BENCH_KILN_ARGS="--max-queue-delay-us 100" bench/serve.sh
#
# Environment (defaults in brackets):
#   KILN_BIN              Kiln binary [$CARGO_TARGET_DIR/release/kiln, else target/release/kiln;
#                         built with `cargo build --release --locked -p kiln` if missing and unset]
#   KILN_PREDICT_BIN      in-process predictor [same dir/examples/predict_bench; built with
#                         `cargo build --release --locked -p kiln-onnx --example predict_bench`]
#   BENCH_SERVERS         servers to run ["kiln mlflow fastapi"]
#   BENCH_DURATION        measured time per figure, seconds ("10" or "10s") [10]
#   BENCH_WARMUP          wrk warm-up before each measured figure, seconds [3]
#   BENCH_CONNS           connection counts ["1 16"]
#   BENCH_ROWS            rows per request ["1 100"]
#   BENCH_ROUNDS          rounds over every figure; the best round is reported [1]
#   BENCH_OIP             1: also measure Kiln on OIP v2 bodies [1]
#   BENCH_KILN_ARGS       extra `kiln serve` flags (e.g. "--inference-threads 1") [none]
#   BENCH_MLFLOW_WORKERS  `mlflow models serve --workers` [unset: MLflow's default, 1]
#   BENCH_FASTAPI_WORKERS uvicorn workers for FastAPI+ORT [2]
#   BENCH_ORT_THREADS     onnxruntime intra-op threads per FastAPI worker [1]
#   BENCH_COLD_KILN       Kiln cold starts [5]       BENCH_COLD_ANCHORS  each anchor's [3]
#   BENCH_PREDICT         1: run the in-process predictor (batches 1 and 100) before and after
#                         the load phase, for the 100-row target [1]
#   BENCH_PROBE_SECONDS   diagnostic: 1-row requests from a sequential Python client, 1 connection,
#                         latencies as measured (wrk corrects for coordinated omission) [10; 0 skips]
#   BENCH_FLOOR_SECONDS   diagnostic: each server's HTTP floor, GET on its readiness route at
#                         1 connection [5; 0 skips]
#   BENCH_PINGPONG_SECONDS  diagnostic: the machine's cross-CPU wake-up latency (pipe ping-pong,
#                         half across CPUs, half on one) before the servers start [20; 0 skips]
#
# Needs: python3.11 (a venv is created at bench/out/venv-serve from bench/requirements-serve.txt
# on first use, ~4 min), wrk (Debian package; installed with apt-get if missing), cargo if the
# Kiln binaries are missing (a clean release build takes 20+ min on 2 cores). The machine's
# cores are shared by the servers and wrk. Every server started is stopped on exit (its whole
# process group, also on Ctrl-C). Raw results, server logs and wrk output go to
# bench/out/serve-<stamp>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KILN_BIN_SET=${KILN_BIN+x}
KILN_BIN=${KILN_BIN:-$TARGET_DIR/release/kiln}
PREDICT_BIN_SET=${KILN_PREDICT_BIN+x}
PREDICT_BIN=${KILN_PREDICT_BIN:-$TARGET_DIR/release/examples/predict_bench}
SERVERS=${BENCH_SERVERS:-kiln mlflow fastapi}
DURATION=${BENCH_DURATION:-10}
DURATION=${DURATION%s}
WARMUP=${BENCH_WARMUP:-3}
WARMUP=${WARMUP%s}
CONNS=${BENCH_CONNS:-1 16}
ROWS=${BENCH_ROWS:-1 100}
ROUNDS=${BENCH_ROUNDS:-1}
OIP=${BENCH_OIP:-1}
KILN_ARGS=${BENCH_KILN_ARGS:-}
MLFLOW_WORKERS=${BENCH_MLFLOW_WORKERS:-}
FASTAPI_WORKERS=${BENCH_FASTAPI_WORKERS:-2}
ORT_THREADS=${BENCH_ORT_THREADS:-1}
COLD_KILN=${BENCH_COLD_KILN:-5}
COLD_ANCHORS=${BENCH_COLD_ANCHORS:-3}
PREDICT=${BENCH_PREDICT:-1}
PROBE_SECONDS=${BENCH_PROBE_SECONDS:-10}
FLOOR_SECONDS=${BENCH_FLOOR_SECONDS:-5}
PINGPONG_SECONDS=${BENCH_PINGPONG_SECONDS:-20}

FIXTURES=tests/fixtures/onnx
MODEL=$ROOT/$FIXTURES/gb_classifier.onnx
DATA=$ROOT/$FIXTURES/data/breast_cancer.json
EXPECTED=$ROOT/$FIXTURES/gb_classifier.json
OUT=bench/out
VENV=$ROOT/$OUT/venv-serve
REQS=bench/requirements-serve.txt
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$ROOT/$OUT/serve-$STAMP
REPORT=$OUT/serve-$STAMP.md
PROBE=bench/serve/probe.py
LUA=bench/serve/post.lua

log() { printf '[serve %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
  log "ERROR: $*"
  exit 1
}

# ---------------------------------------------------------------- cleanup of started servers
declare -A SERVER_PID=() SERVER_PORT=()

stop_group() { # pid (== process group id: servers are started with setsid)
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for ((i = 0; i < 200; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "process group $pid did not stop after SIGTERM; sending SIGKILL"
  kill -KILL -- "-$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? name
  trap - EXIT INT TERM
  for name in "${!SERVER_PID[@]}"; do
    stop_group "${SERVER_PID[$name]}"
  done
  # A cold-start server whose probe died before stopping it.
  if [[ -f $WORK/coldstart.pid ]]; then
    stop_group "$(cat "$WORK/coldstart.pid")"
    rm -f "$WORK/coldstart.pid"
  fi
  if ((rc != 0)); then
    log "failed (exit $rc); logs and partial results in ${WORK#"$ROOT"/}"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- prerequisites
ensure_venv() {
  local stamp=$VENV/.requirements.sha256 want
  want=$(sha256sum "$REQS" | cut -d' ' -f1)
  if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return
  fi
  log "creating ${VENV#"$ROOT"/} and installing $REQS (takes a few minutes)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -r "$REQS"
  echo "$want" >"$stamp"
}

ensure_wrk() {
  command -v wrk >/dev/null && return
  log "installing wrk (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y wrk >/dev/null 2>&1; then
    apt-get update >/dev/null
    apt-get install -y wrk >/dev/null
  fi
  command -v wrk >/dev/null || fail "wrk not available"
}

ensure_bin() { # path was_set description cargo-args...
  local path=$1 set=$2 what=$3
  shift 3
  if [[ ! -x $path ]]; then
    [[ -z $set ]] || fail "$what $path does not exist"
    log "building $what (cargo build $*; a clean release build takes 20+ min on 2 cores)"
    cargo build "$@"
  fi
  [[ -x $path ]] || fail "$path was not built (is CARGO_TARGET_DIR the one cargo used?)"
}

has_server() { [[ " $SERVERS " == *" $1 "* ]]; }

mkdir -p "$OUT" "$WORK" "$WORK/kiln-cwd"
ensure_venv
ensure_wrk
PY=$VENV/bin/python
if has_server kiln; then
  ensure_bin "$KILN_BIN" "$KILN_BIN_SET" "Kiln binary" --release --locked -p kiln
  KILN_BIN=$(cd "$(dirname "$KILN_BIN")" && pwd)/$(basename "$KILN_BIN")
  if ((PREDICT)); then
    ensure_bin "$PREDICT_BIN" "$PREDICT_BIN_SET" "in-process predictor" \
      --release --locked -p kiln-onnx --example predict_bench
  fi
fi
case $KILN_BIN in
  */release/* | */release-*/*) KILN_PROFILE=release ;;
  */debug/*) KILN_PROFILE=debug ;;
  *) KILN_PROFILE=unknown ;;
esac

log "results and logs: ${WORK#"$ROOT"/}"
log "machine: $(nproc) cores, shared by the servers and wrk; load average $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log "checking the model and writing the MLflow model and the request bodies"
"$PY" bench/serve/prepare.py --model "$MODEL" --data "$DATA" --expected "$EXPECTED" --out "$WORK"

# ---------------------------------------------------------------- server command lines
# server_cmd NAME PORT fills CMD (PORT may be the literal "{port}" for the cold-start probe).
server_cmd() {
  local name=$1 port=$2
  case $name in
    kiln)
      # shellcheck disable=SC2206 # BENCH_KILN_ARGS is split into flags on purpose
      CMD=("$KILN_BIN" serve --host 127.0.0.1 --port "$port" --model "gb=$MODEL" $KILN_ARGS)
      ;;
    mlflow)
      # MLflow execs `uvicorn` from PATH: the venv's bin first, as in an activated venv.
      CMD=(env "PATH=$VENV/bin:$PATH" "$VENV/bin/mlflow" models serve -m "$WORK/mlflow-model"
        --env-manager local -h 127.0.0.1 -p "$port")
      [[ -z $MLFLOW_WORKERS ]] || CMD+=(--workers "$MLFLOW_WORKERS")
      ;;
    fastapi)
      CMD=(env "SERVE_MODEL=$MODEL" "ORT_THREADS=$ORT_THREADS" "$VENV/bin/uvicorn" fastapi_app:app
        --app-dir "$ROOT/bench/serve" --workers "$FASTAPI_WORKERS" --host 127.0.0.1 --port "$port"
        --no-access-log)
      ;;
    *) fail "unknown server $name" ;;
  esac
}

ready_path() { if [[ $1 == kiln ]]; then echo /v2/health/ready; else echo /ping; fi; }

shown_cmd() { # NAME: the command line for the report, paths relative to the repository
  local s
  server_cmd "$1" P
  s="${CMD[*]}"
  s=${s//"$WORK"/\$WORK}
  s=${s//"$VENV"/bench/out/venv-serve}
  s=${s//"$ROOT"\//}
  s=${s//"PATH=bench/out/venv-serve/bin:$PATH"/PATH=bench/out/venv-serve/bin:\$PATH}
  echo "$s"
}

start_server() { # name
  local name=$1 port pid pgid
  port=$("$PY" "$PROBE" freeport)
  server_cmd "$name" "$port"
  # setsid: the server leads its own process group, so stopping it also stops its workers.
  (cd "$WORK/kiln-cwd" && exec setsid "${CMD[@]}") >"$WORK/$name-server.log" 2>&1 </dev/null &
  pid=$!
  SERVER_PID[$name]=$pid
  SERVER_PORT[$name]=$port
  sleep 0.1
  pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)
  [[ -z $pgid || $pgid == "$pid" ]] || fail "$name pid $pid is not its process group leader ($pgid)"
  "$PY" "$PROBE" wait --port "$port" --path "$(ready_path "$name")" --pid "$pid" --timeout 180 ||
    fail "$name did not become ready; see ${WORK#"$ROOT"/}/$name-server.log"
  log "$name up: pid $pid, port $port"
}

stop_server() { # name
  stop_group "${SERVER_PID[$1]}"
  unset "SERVER_PID[$1]"
}

# ---------------------------------------------------------------- meta
venv_version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
KILN_BUILD="binary written $(date -u -r "$KILN_BIN" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?'); repository HEAD at run time $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [[ -n $(git status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null) ]]; then
  KILN_BUILD+=", crates/ had uncommitted changes"
fi
if [[ -z $MLFLOW_WORKERS ]]; then
  MLFLOW_WORKERS_NOTE="MLflow's default of 1 uvicorn worker"
else
  MLFLOW_WORKERS_NOTE="$MLFLOW_WORKERS uvicorn workers"
fi
CMDLINE="bash bench/serve.sh"
for v in KILN_BIN KILN_PREDICT_BIN BENCH_SERVERS BENCH_DURATION BENCH_WARMUP BENCH_CONNS BENCH_ROWS BENCH_ROUNDS BENCH_OIP \
  BENCH_KILN_ARGS BENCH_MLFLOW_WORKERS BENCH_FASTAPI_WORKERS BENCH_ORT_THREADS BENCH_COLD_KILN \
  BENCH_COLD_ANCHORS BENCH_PREDICT BENCH_PROBE_SECONDS BENCH_FLOOR_SECONDS BENCH_PINGPONG_SECONDS; do
  if [[ $v == KILN_BIN ]]; then [[ -n $KILN_BIN_SET ]] || continue; fi
  if [[ $v == KILN_PREDICT_BIN ]]; then [[ -n $PREDICT_BIN_SET ]] || continue; fi
  if [[ -n ${!v+x} ]]; then CMDLINE="$v=\"${!v}\" $CMDLINE"; fi
done
CMDLINE=${CMDLINE//"$ROOT"\//}
write_meta() {
  "$PY" - "$WORK/meta.json" <<PY
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "command": '''$CMDLINE''',
    "cores": $(nproc),
    "cpu": '''$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')''',
    "mem_gib": round($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1048576),
    "load_start": "$LOAD_START",
    "load_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "model": "${MODEL#"$ROOT"/}",
    "kiln_cmd": '''$(shown_cmd kiln)''',
    "kiln_args": '''$KILN_ARGS''',
    "kiln_profile": "$KILN_PROFILE",
    "kiln_build": '''$KILN_BUILD''',
    "mlflow_cmd": '''$(shown_cmd mlflow)''',
    "mlflow_workers_note": "$MLFLOW_WORKERS_NOTE",
    "fastapi_cmd": '''$(shown_cmd fastapi)''',
    "mlflow_version": "$(venv_version mlflow)",
    "fastapi_version": "$(venv_version fastapi)",
    "uvicorn_version": "$(venv_version uvicorn)",
    "ort_version": "$(venv_version onnxruntime)",
    "ort_threads": $ORT_THREADS,
    "wrk_version": "wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')",
    "duration": $DURATION,
    "warmup": $WARMUP,
    "rounds": $ROUNDS,
}, open(sys.argv[1], "w"), indent=1)
PY
}
write_meta

# ---------------------------------------------------------------- machine check
if ((PINGPONG_SECONDS > 0)); then
  log "machine check: pipe ping-pong for ${PINGPONG_SECONDS}s (wake-up latency across CPUs and on one)"
  "$PY" "$PROBE" pingpong --seconds "$PINGPONG_SECONDS" --out "$WORK/env.json"
fi

# ---------------------------------------------------------------- cold starts (nothing else running)
for name in kiln fastapi mlflow; do
  has_server "$name" || continue
  reps=$COLD_ANCHORS
  [[ $name != kiln ]] || reps=$COLD_KILN
  log "$name: $reps cold start(s)"
  server_cmd "$name" "{port}"
  "$PY" "$PROBE" coldstart --server "$name" --path "$(ready_path "$name")" --reps "$reps" \
    --cwd "$WORK/kiln-cwd" --log "$WORK/$name-coldstart.log" --pidfile "$WORK/coldstart.pid" \
    --out "$WORK/coldstart.json" -- "${CMD[@]}"
done

# ---------------------------------------------------------------- in-process predictor
run_predict() { # label
  ((PREDICT)) && has_server kiln || return 0
  log "in-process predictor ($1): batches 1 and 100, one thread"
  "$PREDICT_BIN" --model "$MODEL" --data "$DATA" --batches 1,100 --repeats 5 --min-seconds 0.5 \
    >"$WORK/predict-$1.jsonl"
  "$PY" "$PROBE" predict-result --jsonl "$WORK/predict-$1.jsonl" --label "$1" --out "$WORK/predict.json"
}
run_predict before

# ---------------------------------------------------------------- start, check, warm up
# Targets: "server proto" pairs measured for every figure, in this order.
TARGETS=()
for name in kiln mlflow fastapi; do
  has_server "$name" || continue
  start_server "$name"
  TARGETS+=("$name invocations")
  if [[ $name == kiln ]] && ((OIP)); then TARGETS+=("kiln oip"); fi
done

url_path() { if [[ $1 == oip ]]; then echo /v2/models/gb/infer; else echo /invocations; fi; }

run_wrk() { # server proto rows conns seconds out
  local server=$1 proto=$2 rows=$3 conns=$4 secs=$5 out=$6 threads=1
  ((conns > 1)) && threads=2
  wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s --latency -s "$LUA" \
    "http://127.0.0.1:${SERVER_PORT[$server]}" -- "$(url_path "$proto")" "$WORK/bodies/$proto-$rows.txt" >"$out"
}

for t in "${TARGETS[@]}"; do
  read -r server proto <<<"$t"
  "$PY" "$PROBE" check --server "$server" --port "${SERVER_PORT[$server]}" --proto "$proto" --work "$WORK" \
    --out "$WORK/checks.json" || fail "$server answered wrongly on $proto (see $WORK/checks.json)"
done
for t in "${TARGETS[@]}"; do
  read -r server proto <<<"$t"
  log "$server $proto: warm-up, ${WARMUP}s per request size at 16 connections"
  for rows in $ROWS; do
    run_wrk "$server" "$proto" "$rows" 16 "$WARMUP" "$WORK/warmup-$server-$proto-$rows.txt"
  done
done
for name in "${!SERVER_PID[@]}"; do
  "$PY" "$PROBE" rss --pid "${SERVER_PID[$name]}" --server "$name" --label after_warmup --out "$WORK/mem.json"
done

# ---------------------------------------------------------------- measured figures
for round in $(seq 1 "$ROUNDS"); do
  for rows in $ROWS; do
    for conns in $CONNS; do
      threads=1
      ((conns > 1)) && threads=2
      log "round $round/$ROUNDS: $rows row(s) per request, $conns connection(s), $threads wrk thread(s)"
      for t in "${TARGETS[@]}"; do
        read -r server proto <<<"$t"
        base="$WORK/wrk-$server-$proto-r$rows-c$conns-$round"
        run_wrk "$server" "$proto" "$rows" "$conns" "$WARMUP" "$base-warmup.txt"
        # Kiln's own /metrics before and after: where its time per request goes.
        [[ $server != kiln ]] || "$PY" "$PROBE" kiln-metrics --port "${SERVER_PORT[kiln]}" --save "$base-metrics0.json"
        run_wrk "$server" "$proto" "$rows" "$conns" "$DURATION" "$base.txt"
        if [[ $server == kiln ]]; then
          "$PY" "$PROBE" kiln-metrics --port "${SERVER_PORT[kiln]}" --save "$base-metrics1.json"
          "$PY" "$PROBE" kiln-metrics-delta --before "$base-metrics0.json" --after "$base-metrics1.json" \
            --key "$proto $rows $conns $round" --out "$WORK/kiln_metrics.json"
        fi
        "$PY" "$PROBE" wrk-result --wrk-output "$base.txt" --server "$server" --proto "$proto" --rows "$rows" \
          --conns "$conns" --threads "$threads" --round "$round" --out "$WORK/wrk.json"
      done
    done
  done
done

if ((FLOOR_SECONDS > 0)); then
  # The HTTP floor: GET on the readiness route (no model work), 1 connection, same wrk settings.
  for name in "${!SERVER_PID[@]}"; do
    log "$name: HTTP floor, GET $(ready_path "$name") at 1 connection for ${FLOOR_SECONDS}s"
    base="$WORK/wrk-$name-floor"
    wrk -t1 -c1 -d"${FLOOR_SECONDS}s" --timeout 10s --latency -s "$LUA" "http://127.0.0.1:${SERVER_PORT[$name]}" \
      -- "$(ready_path "$name")" >"$base.txt"
    "$PY" "$PROBE" wrk-result --wrk-output "$base.txt" --server "$name" --proto floor --rows 0 --conns 1 \
      --threads 1 --out "$WORK/floor.json"
  done
fi

if ((PROBE_SECONDS > 0)); then
  for t in "${TARGETS[@]}"; do
    read -r server proto <<<"$t"
    "$PY" "$PROBE" latency --server "$server" --proto "$proto" --port "${SERVER_PORT[$server]}" \
      --path "$(url_path "$proto")" --bodies "$WORK/bodies/$proto-1.txt" --seconds "$PROBE_SECONDS" \
      --out "$WORK/latency.json"
  done
fi

for name in "${!SERVER_PID[@]}"; do
  "$PY" "$PROBE" rss --pid "${SERVER_PID[$name]}" --server "$name" --label after_load --out "$WORK/mem.json"
done
for name in "${!SERVER_PID[@]}"; do stop_server "$name"; done

run_predict after

# ---------------------------------------------------------------- report
write_meta # again, for the load average at the end
set +e
"$PY" bench/serve/report.py --dir "$WORK" >"$REPORT"
met=$?
set -e
cp "$REPORT" "$WORK/report.md"
echo
cat "$REPORT"
log "report: $REPORT"
if ((met != 0)); then
  log "some target is not met (see the Targets table)"
fi
