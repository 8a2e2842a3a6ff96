#!/usr/bin/env bash
# Prediction log benchmark: serving throughput of `kiln serve` on the 100-tree
# GradientBoostingClassifier fixture (tests/fixtures/onnx/gb_classifier.onnx, 30 float inputs)
# with the prediction log off and at 100% sampling (`--prediction-log DIR`, default flush
# settings), under wrk at 1 and 16 connections with 1-row requests (the bodies bench/serve.sh
# sends, through its wrk script bench/serve/post.lua). Prints req/s each way and the loss
# ((off - on) / off; target ≤ 5%), and, for the logged runs, what the log did (records,
# drops, files, rows written at shutdown). A benchmark to run by hand, not a test.
#
# Usage (from anywhere):
#   bench/predlog.sh                               # ~6 min; builds Kiln if missing
#   BENCH_DURATION=5 BENCH_ROUNDS=1 bench/predlog.sh   # quicker
#
# Environment (defaults in brackets):
#   KILN_BIN         Kiln binary [$CARGO_TARGET_DIR/release/kiln, else target/release/kiln;
#                    built with `cargo build --release --locked -p kiln` if missing and unset]
#   BENCH_DURATION   measured seconds per figure [10]
#   BENCH_WARMUP     wrk warm-up seconds before each figure [3]
#   BENCH_CONNS      connection counts ["1 16"]
#   BENCH_PROTOS     "invocations" and/or "oip" ["invocations oip"]
#   BENCH_ROUNDS     rounds; off and on alternate within a round, the best round of each is
#                    reported (the machine may be shared) [3]
#   BENCH_KILN_ARGS  extra `kiln serve` flags for both modes [none]
#   BENCH_LOG_ARGS   extra flags for the logged mode (e.g. "--log-sample 0.1") [none]
#
# Needs: wrk (Debian package; installed with apt-get if missing), python3 (standard library
# only: it writes the request bodies and reads the results), cargo if the binary is missing.
# Servers are stopped on exit (also on Ctrl-C). Everything goes to bench/out/predlog-<stamp>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KILN_BIN_SET=${KILN_BIN+x}
KILN_BIN=${KILN_BIN:-$TARGET_DIR/release/kiln}
DURATION=${BENCH_DURATION:-10}
DURATION=${DURATION%s}
WARMUP=${BENCH_WARMUP:-3}
WARMUP=${WARMUP%s}
CONNS=${BENCH_CONNS:-1 16}
PROTOS=${BENCH_PROTOS:-invocations oip}
ROUNDS=${BENCH_ROUNDS:-3}
KILN_ARGS=${BENCH_KILN_ARGS:-}
LOG_ARGS=${BENCH_LOG_ARGS:-}

MODEL=$ROOT/tests/fixtures/onnx/gb_classifier.onnx
DATA=$ROOT/tests/fixtures/onnx/data/breast_cancer.json
LUA=$ROOT/bench/serve/post.lua
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$ROOT/bench/out/predlog-$STAMP
RESULTS=$WORK/results.jsonl

log() { printf '[predlog %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
  log "ERROR: $*"
  exit 1
}

SERVER_PID=
stop_server() { # graceful: SIGTERM to the process group, then wait (the log writes at exit)
  local pid=$SERVER_PID i
  [[ -n $pid ]] || return 0
  SERVER_PID=
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for ((i = 0; i < 600; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "server $pid did not stop after SIGTERM; sending SIGKILL"
  kill -KILL -- "-$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_server
  ((rc == 0)) || log "failed (exit $rc); logs in ${WORK#"$ROOT"/}"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- prerequisites
if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
  command -v wrk >/dev/null || fail "wrk not available"
fi
if [[ ! -x $KILN_BIN ]]; then
  [[ -z $KILN_BIN_SET ]] || fail "KILN_BIN=$KILN_BIN does not exist"
  log "building Kiln (cargo build --release --locked -p kiln; a clean build takes 20+ min on 2 cores)"
  cargo build --release --locked -p kiln
fi
[[ -x $KILN_BIN ]] || fail "$KILN_BIN was not built (is CARGO_TARGET_DIR the one cargo used?)"
mkdir -p "$WORK/bodies"

# The 1-row bodies of bench/serve/prepare.py, written with the standard library alone: each
# clean row of the fixture once, floats in the shortest decimal that reads back as the same
# float32. /invocations: {"inputs": [[30 floats]]}; OIP: {"inputs": [{"name": "X", …}]}.
python3 - "$DATA" "$WORK/bodies" <<'PY'
import json, struct, sys
data = json.load(open(sys.argv[1]))
t = data["tensors"][0]
cols, clean = t["shape"][1], int(data["clean_rows"])
def f32(v):
    x = struct.unpack("f", struct.pack("f", v))[0]
    for d in range(1, 10):
        s = "%.*g" % (d, x)
        if struct.unpack("f", struct.pack("f", float(s)))[0] == x:
            break
    if "e" in s or "E" in s:
        s = repr(float(s))
    return s if "." in s or "e" in s else s + ".0"
rows = [[f32(v) for v in t["data"][i * cols:(i + 1) * cols]] for i in range(clean)]
with open(sys.argv[2] + "/invocations-1.txt", "w") as f:
    for r in rows:
        f.write('{"inputs":[[' + ",".join(r) + "]]}\n")
with open(sys.argv[2] + "/oip-1.txt", "w") as f:
    for r in rows:
        f.write('{"inputs":[{"name":"X","datatype":"FP32","shape":[1,%d],"data":[%s]}]}\n'
                % (cols, ",".join(r)))
PY

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PORT=
start_server() { # mode round
  local mode=$1 round=$2 args=() i
  PORT=$(free_port)
  # shellcheck disable=SC2206 # the extra flags are split on purpose
  args=(serve --host 127.0.0.1 --port "$PORT" --model "gb=$MODEL" $KILN_ARGS)
  if [[ $mode == on ]]; then
    # shellcheck disable=SC2206
    args+=(--prediction-log "$WORK/log-r$round" $LOG_ARGS)
  fi
  NO_COLOR=1 KILN_LOG=info setsid "$KILN_BIN" "${args[@]}" >"$WORK/server-$mode-r$round.log" 2>&1 </dev/null &
  SERVER_PID=$!
  for ((i = 0; i < 300; i++)); do
    if curl -fs "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  fail "kiln serve ($mode) did not become ready; see $WORK/server-$mode-r$round.log"
}

url_path() { if [[ $1 == oip ]]; then echo /v2/models/gb/infer; else echo /invocations; fi; }

run_wrk() { # proto conns seconds out
  local threads=1
  (($2 > 1)) && threads=2
  wrk -t"$threads" -c"$2" -d"$3s" --timeout 10s -s "$LUA" "http://127.0.0.1:$PORT" \
    -- "$(url_path "$1")" "$WORK/bodies/$1-1.txt" >"$4"
}

metric() { curl -fs "http://127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n {print $2}'; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), shared by kiln and wrk; load average $LOAD_START"
log "binary: $KILN_BIN; results in ${WORK#"$ROOT"/}"

for round in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    start_server "$mode" "$round"
    for proto in $PROTOS; do
      for conns in $CONNS; do
        base="$WORK/wrk-$mode-$proto-c$conns-r$round"
        run_wrk "$proto" "$conns" "$WARMUP" "$base-warmup.txt"
        run_wrk "$proto" "$conns" "$DURATION" "$base.txt"
        line=$(grep '^WRKJSON ' "$base.txt" | cut -d' ' -f2-) || fail "no result in $base.txt"
        non2xx=$(awk '/Non-2xx/ {print $NF}' "$base.txt")
        printf '{"round":%d,"mode":"%s","proto":"%s","conns":%d,"non2xx":%s,"wrk":%s}\n' \
          "$round" "$mode" "$proto" "$conns" "${non2xx:-0}" "$line" >>"$RESULTS"
        log "round $round, log $mode, $proto, $conns conn: $(python3 -c "import json,sys; w=json.loads(sys.argv[1]); print('%.0f req/s' % (w['requests']/w['duration_us']*1e6))" "$line")"
      done
    done
    if [[ $mode == on ]]; then
      printf '{"round":%d,"log":{"records":%s,"dropped":%s,"flushes":%s,"flush_errors":%s,"written_before_stop":%s}}\n' \
        "$round" "$(metric kiln_predlog_records_total)" "$(metric kiln_predlog_dropped_total)" \
        "$(metric kiln_predlog_flushes_total)" "$(metric kiln_predlog_flush_errors_total)" \
        "$(metric kiln_predlog_written_total)" >>"$RESULTS"
      stop_server
      written=$(grep -o 'prediction log closed.*' "$WORK/server-on-r$round.log" | grep -o 'written=[0-9]*' | cut -d= -f2 || true)
      files=$(find "$WORK/log-r$round" -name '*.parquet' | wc -l)
      bytes=$(find "$WORK/log-r$round" -name '*.parquet' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
      printf '{"round":%d,"files":{"count":%d,"bytes":%d,"written_at_stop":%s}}\n' \
        "$round" "$files" "$bytes" "${written:-null}" >>"$RESULTS"
    else
      stop_server
    fi
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$RESULTS" "$LOAD_START" "$LOAD_END" "$KILN_BIN" "$DURATION" "$ROUNDS" <<'PY' | tee "$WORK/report.md"
import json, sys
from collections import defaultdict
path, load_start, load_end, binary, duration, rounds = sys.argv[1:]
runs, logs, files = [], {}, {}
for line in open(path):
    r = json.loads(line)
    if "wrk" in r:
        runs.append(r)
    elif "log" in r:
        logs[r["round"]] = r["log"]
    else:
        files[r["round"]] = r["files"]
best = defaultdict(float)
per_round = defaultdict(list)
bad = []
for r in runs:
    w = r["wrk"]
    rps = w["requests"] / w["duration_us"] * 1e6
    errs = sum(w["errors"].values()) + r["non2xx"]
    if errs:
        bad.append(f"round {r['round']} {r['mode']} {r['proto']} c{r['conns']}: {errs} errors")
    key = (r["proto"], r["conns"])
    best[key + (r["mode"],)] = max(best[key + (r["mode"],)], rps)
    per_round[key + (r["mode"],)].append(round(rps))
print("| protocol | connections | log off req/s | log on (100%) req/s | loss | target ≤ 5% |")
print("| --- | ---: | ---: | ---: | ---: | --- |")
worst = 0.0
for (proto, conns) in sorted({(p, c) for (p, c, _) in best}, key=lambda k: (k[0] != "invocations", k[1])):
    off, on = best[(proto, conns, "off")], best[(proto, conns, "on")]
    loss = (off - on) / off * 100 if off else float("nan")
    worst = max(worst, loss)
    print(f"| {proto} | {conns} | {off:,.0f} | {on:,.0f} | {loss:.1f}% | {'met' if loss <= 5 else 'NOT met'} |")
print()
print(f"Best of {rounds} round(s) of {duration} s each way (off and on alternate within a round); per round:")
for k in sorted(per_round):
    print(f"- {k[0]} c{k[1]} log {k[2]}: {per_round[k]} req/s")
for rnd in sorted(logs):
    l, f = logs[rnd], files.get(rnd, {})
    print(f"- round {rnd} log: {l['records']:.0f} records accepted, {l['dropped']:.0f} dropped; before the stop "
          f"{l['written_before_stop']:.0f} written in {l['flushes']:.0f} files, {l['flush_errors']:.0f} write errors; "
          f"{f.get('written_at_stop')} written at the stop; {f.get('count')} files, {f.get('bytes', 0) / 1e6:.1f} MB")
print(f"- load average at start {load_start}, at end {load_end}; binary {binary}")
for b in bad:
    print(f"- ERRORS: {b}")
sys.exit(1 if bad else 0)
PY
log "report: ${WORK#"$ROOT"/}/report.md"
