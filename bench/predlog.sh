#!/usr/bin/env bash
# Prediction log benchmark: serving throughput of `kiln serve` on the 100-tree
# GradientBoostingClassifier fixture (tests/fixtures/onnx/gb_classifier.onnx, 30 float inputs)
# with the prediction log off and at 100% sampling (`--prediction-log DIR`, default flush
# settings), under wrk at 1 and 16 connections with 1-row requests (the bodies bench/serve.sh
# sends, through its wrk script bench/serve/post.lua). Prints req/s each way and the loss
# ((off - on) / off; target ≤ 5%), and, for the logged runs, what the log did (records,
# drops, files, rows written at shutdown). A benchmark to run by hand, not a test.
#
# How it measures: both servers run side by side (one without the log, one with it; an idle
# server costs nothing), and for each protocol and connection count short wrk slices go to
# one and then the other, in ABBA order (off on on off, …), so that a machine whose speed
# drifts (a shared VM) affects both alike. The loss is reported per pair of neighbouring
# slices (the median of those pairs is the figure judged) and over all slices together.
#
# Usage (from anywhere):
#   bench/predlog.sh                               # ~6 min; builds Kiln if missing
#   BENCH_DURATION=3 BENCH_PAIRS=2 bench/predlog.sh   # quicker
#
# Environment (defaults in brackets):
#   KILN_BIN         Kiln binary [$CARGO_TARGET_DIR/release/kiln, else target/release/kiln;
#                    built with `cargo build --release --locked -p kiln` if missing and unset]
#   BENCH_DURATION   seconds per slice [5]
#   BENCH_WARMUP     wrk warm-up seconds on each server before a setting's slices [3]
#   BENCH_PAIRS      off/on pairs of slices per setting [8]
#   BENCH_CONNS      connection counts ["1 16"]
#   BENCH_PROTOS     "invocations" and/or "oip" ["invocations oip"]
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
DURATION=${BENCH_DURATION:-5}
DURATION=${DURATION%s}
WARMUP=${BENCH_WARMUP:-3}
WARMUP=${WARMUP%s}
CONNS=${BENCH_CONNS:-1 16}
PROTOS=${BENCH_PROTOS:-invocations oip}
PAIRS=${BENCH_PAIRS:-8}
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

SERVER_PIDS=()
stop_servers() { # graceful: SIGTERM to each process group, then wait (the log writes at exit)
  local pid i
  for pid in "${SERVER_PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${SERVER_PIDS[@]}"; do
    for ((i = 0; i < 600; i++)); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 -- "-$pid" 2>/dev/null; then
      log "server $pid did not stop after SIGTERM; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done
  SERVER_PIDS=()
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_servers
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

declare -A PORT
start_server() { # mode
  local mode=$1 args=() i port
  port=$(free_port)
  PORT[$mode]=$port
  # shellcheck disable=SC2206 # the extra flags are split on purpose
  args=(serve --host 127.0.0.1 --port "$port" --model "gb=$MODEL" $KILN_ARGS)
  if [[ $mode == on ]]; then
    # shellcheck disable=SC2206
    args+=(--prediction-log "$WORK/log" $LOG_ARGS)
  fi
  NO_COLOR=1 KILN_LOG=info setsid "$KILN_BIN" "${args[@]}" >"$WORK/server-$mode.log" 2>&1 </dev/null &
  SERVER_PIDS+=($!)
  for ((i = 0; i < 300; i++)); do
    if curl -fs "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  fail "kiln serve ($mode) did not become ready; see $WORK/server-$mode.log"
}

url_path() { if [[ $1 == oip ]]; then echo /v2/models/gb/infer; else echo /invocations; fi; }

run_wrk() { # mode proto conns seconds out
  local threads=1
  (($3 > 1)) && threads=2
  wrk -t"$threads" -c"$3" -d"$4s" --timeout 10s -s "$LUA" "http://127.0.0.1:${PORT[$1]}" \
    -- "$(url_path "$2")" "$WORK/bodies/$2-1.txt" >"$5"
}

metric() { curl -fs "http://127.0.0.1:${PORT[on]}/metrics" | awk -v n="$1" '$1 == n {print $2}'; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), shared by kiln and wrk; load average $LOAD_START"
log "binary: $KILN_BIN; results in ${WORK#"$ROOT"/}"

start_server off
start_server on
for proto in $PROTOS; do
  for conns in $CONNS; do
    for mode in off on; do
      run_wrk "$mode" "$proto" "$conns" "$WARMUP" "$WORK/wrk-$mode-$proto-c$conns-warmup.txt"
    done
    for pair in $(seq 1 "$PAIRS"); do
      # ABBA: odd pairs off then on, even pairs on then off.
      order="off on"
      ((pair % 2 == 0)) && order="on off"
      for mode in $order; do
        base="$WORK/wrk-$mode-$proto-c$conns-p$pair"
        run_wrk "$mode" "$proto" "$conns" "$DURATION" "$base.txt"
        line=$(grep '^WRKJSON ' "$base.txt" | cut -d' ' -f2-) || fail "no result in $base.txt"
        non2xx=$(awk '/Non-2xx/ {print $NF}' "$base.txt")
        printf '{"pair":%d,"mode":"%s","proto":"%s","conns":%d,"non2xx":%s,"wrk":%s}\n' \
          "$pair" "$mode" "$proto" "$conns" "${non2xx:-0}" "$line" >>"$RESULTS"
        log "$proto, $conns conn, pair $pair, log $mode: $(python3 -c "import json,sys; w=json.loads(sys.argv[1]); print('%.0f req/s' % (w['requests']/w['duration_us']*1e6))" "$line")"
      done
    done
  done
done
printf '{"log":{"records":%s,"dropped":%s,"flushes":%s,"flush_errors":%s,"written_before_stop":%s}}\n' \
  "$(metric kiln_predlog_records_total)" "$(metric kiln_predlog_dropped_total)" \
  "$(metric kiln_predlog_flushes_total)" "$(metric kiln_predlog_flush_errors_total)" \
  "$(metric kiln_predlog_written_total)" >>"$RESULTS"
stop_servers
written=$(grep -o 'prediction log closed.*' "$WORK/server-on.log" | grep -o 'written=[0-9]*' | cut -d= -f2 || true)
files=$(find "$WORK/log" -name '*.parquet' | wc -l)
bytes=$(find "$WORK/log" -name '*.parquet' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
printf '{"files":{"count":%d,"bytes":%d,"written_at_stop":%s}}\n' "$files" "$bytes" "${written:-null}" >>"$RESULTS"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$RESULTS" "$LOAD_START" "$LOAD_END" "$KILN_BIN" "$DURATION" "$PAIRS" <<'PY' | tee "$WORK/report.md"
import json, statistics, sys
from collections import defaultdict
path, load_start, load_end, binary, duration, pairs = sys.argv[1:]
runs, log, files = [], {}, {}
for line in open(path):
    r = json.loads(line)
    if "wrk" in r:
        runs.append(r)
    elif "log" in r:
        log = r["log"]
    else:
        files = r["files"]
rps = defaultdict(dict)  # (proto, conns) -> {(pair, mode): req/s}
reqs = defaultdict(lambda: defaultdict(float))  # (proto, conns) -> mode -> [requests, seconds]
secs = defaultdict(lambda: defaultdict(float))
bad = []
for r in runs:
    w = r["wrk"]
    errs = sum(w["errors"].values()) + r["non2xx"]
    if errs:
        bad.append(f"pair {r['pair']} {r['mode']} {r['proto']} c{r['conns']}: {errs} errors")
    key = (r["proto"], r["conns"])
    rps[key][(r["pair"], r["mode"])] = w["requests"] / w["duration_us"] * 1e6
    reqs[key][r["mode"]] += w["requests"]
    secs[key][r["mode"]] += w["duration_us"] / 1e6
print("| protocol | conns | log off req/s | log on req/s | loss, median of pairs | loss, all slices | pairs with loss ≤ 5% | target ≤ 5% |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
detail = []
for key in sorted(rps, key=lambda k: (k[0] != "invocations", k[1])):
    v = rps[key]
    n = max(p for p, _ in v)
    losses = [(v[(p, "off")] - v[(p, "on")]) / v[(p, "off")] * 100 for p in range(1, n + 1)
              if (p, "off") in v and (p, "on") in v]
    off = reqs[key]["off"] / secs[key]["off"]
    on = reqs[key]["on"] / secs[key]["on"]
    overall = (off - on) / off * 100
    med = statistics.median(losses)
    ok = sum(1 for x in losses if x <= 5)
    print(f"| {key[0]} | {key[1]} | {off:,.0f} | {on:,.0f} | {med:.1f}% | {overall:.1f}% | {ok} of {len(losses)} | "
          f"{'met' if med <= 5 else 'NOT met'} |")
    detail.append(f"- {key[0]} c{key[1]} (off / on req/s, loss): " + " · ".join(
        f"{v[(p, 'off')]:,.0f} / {v[(p, 'on')]:,.0f} {l:+.1f}%" for p, l in zip(range(1, n + 1), losses)))
print()
print(f"{pairs} pairs of {duration} s slices per setting, ABBA order, both servers running throughout:")
print("\n".join(detail))
if log:
    print(f"- log: {log['records']:.0f} records accepted, {log['dropped']:.0f} dropped; before the stop "
          f"{log['written_before_stop']:.0f} written in {log['flushes']:.0f} files, {log['flush_errors']:.0f} write errors; "
          f"{files.get('written_at_stop')} written at the stop; {files.get('count')} files, {files.get('bytes', 0) / 1e6:.1f} MB")
print(f"- load average at start {load_start}, at end {load_end}; binary {binary}")
for b in bad:
    print(f"- ERRORS: {b}")
sys.exit(1 if bad else 0)
PY
log "report: ${WORK#"$ROOT"/}/report.md"
