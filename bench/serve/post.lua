-- wrk script for bench/serve.sh: POST JSON bodies read from a file, one body per line, cycling.
-- Usage: wrk ... -s bench/serve/post.lua URL -- PATH [BODIES_FILE]
--   PATH         e.g. /invocations or /v2/models/gb/infer
--   BODIES_FILE  one complete JSON request body per line (bench/serve/prepare.py writes them);
--                without it every request is `GET PATH`
-- Every request is formatted once in init(), so request() only hands out a prebuilt string and
-- wrk's own CPU use stays low (it shares the machine's cores with the server under test).
-- Each wrk thread starts at a different body (its thread number), then walks them in order.
-- done() prints one machine-readable line, "WRKJSON {...}", with the latency percentiles
-- (microseconds) that bench/serve/probe.py reads.

local next_tid = 0
function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

local reqs, n, i

function init(args)
  local path = assert(args[1], "path argument missing")
  local file = args[2]
  local headers = { ["Content-Type"] = "application/json" }
  reqs = {}
  if file == nil then -- no bodies: GET PATH (the HTTP floor: a route that does no work)
    reqs[1] = wrk.format("GET", path)
    n, i = 1, 0
    return
  end
  for line in io.lines(file) do
    if #line > 0 then
      reqs[#reqs + 1] = wrk.format("POST", path, headers, line)
    end
  end
  n = #reqs
  assert(n > 0, "no bodies in " .. file)
  i = ((tid or 1) - 1) % n
end

function request()
  i = i % n + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_p999_us":%d,' ..
    '"lat_mean_us":%.1f,"lat_stdev_us":%.1f,"lat_min_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.stdev, latency.min, latency.max))
end
