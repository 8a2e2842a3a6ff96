-- wrk script: POST /api/2.0/mlflow/runs/log-batch with N metrics per request (default 1000).
-- Usage: wrk ... -s bench/lua/log_batch.lua URL -- RUN_ID METRIC_KEY [N [close]]
-- With "close" every request says `Connection: close`, so wrk opens a new connection per request.
-- Metric i of request number c (per-thread counter) has step = timestamp = c*1000 + i,
-- so steps are distinct within a request and across requests and threads.
-- The body is built once as a template with "@" where the counter goes; per request a
-- single gsub (C code) fills it in, keeping wrk's CPU use low.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

setup = common.setup
done = common.done

local template, counter
local path = "/api/2.0/mlflow/runs/log-batch"
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local run_id = assert(args[1], "run id argument missing")
  local key = assert(args[2], "metric key argument missing")
  local n = tonumber(args[3] or "1000")
  assert(n >= 1 and n <= 1000, "N must be 1..1000")
  local parts = {}
  for i = 0, n - 1 do
    parts[#parts + 1] = string.format(
      '{"key":"%s","value":%d.25,"timestamp":@%03d,"step":@%03d}', key, i, i, i)
  end
  template = '{"run_id":"' .. run_id .. '","metrics":[' .. table.concat(parts, ",") .. ']}'
  if args[4] == "close" then headers["Connection"] = "close" end
  counter = tid * 100000000
end

function request()
  counter = counter + 1
  local body = template:gsub("@", tostring(counter))
  return wrk.format("POST", path, headers, body)
end
