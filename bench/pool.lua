-- wrk script for the benchmark harness (bench/wrk.py).
-- Replays a pool of pre-rendered raw HTTP/1.1 requests (format: see bench/request.py),
-- round-robin, and prints one line "BENCH_RESULT {json}" when done.
-- Arguments after "--": <pool file> <expected status> <check status in Lua: 0|1>

local pool = {}
local size = 0
local cursor = 0
local expected = 200
local threads = {}

mismatched = 0 -- global, read back by done() through thread:get()

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*a")
  file:close()
  local pos = 1
  while pos <= #data do
    local length = tonumber(data:sub(pos, pos + 9))
    size = size + 1
    pool[size] = data:sub(pos + 10, pos + 9 + length)
    pos = pos + 10 + length
  end
  expected = tonumber(args[2])
  if size == 1 then
    -- One request: let wrk send the same bytes every time without calling Lua per request.
    -- (wrk.init builds its static request with wrk.format() right after this function.)
    local only = pool[1]
    request = nil
    wrk.format = function() return only end
  end
  if args[3] == "1" then
    -- Only when the expected status is an error status: wrk's own "status" error count covers
    -- the rest, and defining response() makes wrk parse every response for Lua.
    response = function(status, headers, body)
      if status ~= expected then
        mismatched = mismatched + 1
      end
    end
  end
end

request = function()
  cursor = cursor % size + 1
  return pool[cursor]
end

function done(summary, latency, requests)
  local lua_mismatched = 0
  for _, thread in ipairs(threads) do
    lua_mismatched = lua_mismatched + (thread:get("mismatched") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f,"lua_mismatched":%d,"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, lua_mismatched,
    e.connect, e.read, e.write, e.timeout, e.status))
end
