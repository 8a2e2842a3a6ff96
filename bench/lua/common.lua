-- Shared wrk helpers for bench/tracking.sh (loaded with dofile from the scripts beside it).
-- Each wrk thread gets its own id via setup(), so counters (and hence steps and
-- timestamps) never collide between threads; connections of one thread share its counter.

local M = {}

local next_tid = 0
function M.setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

-- done() runs in the main Lua state after the run: print one machine-readable line.
function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"lat_p50_us":%d,"lat_p99_us":%d,"lat_mean_us":%.1f,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end

return M
