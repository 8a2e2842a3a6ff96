-- wrk script: POST /api/2.0/mlflow/runs/log-metric, one metric per request.
-- Usage: wrk ... -s bench/lua/log_metric.lua URL -- RUN_ID METRIC_KEY [close]
-- With "close" every request says `Connection: close`, so wrk opens a new connection per request.
-- Every request carries a distinct step and timestamp (per-thread counter), so the
-- server cannot deduplicate anything.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

setup = common.setup
done = common.done

local run_id, key, counter
local path = "/api/2.0/mlflow/runs/log-metric"
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  run_id = assert(args[1], "run id argument missing")
  key = assert(args[2], "metric key argument missing")
  if args[3] == "close" then headers["Connection"] = "close" end
  counter = tid * 1000000000
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"run_id":"%s","key":"%s","value":%d.5,"timestamp":%d,"step":%d}',
    run_id, key, counter % 1000, 1700000000000 + counter, counter)
  return wrk.format("POST", path, headers, body)
end
