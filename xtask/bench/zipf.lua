-- wrk script of `cargo xtask bench`: every request carries the session cookie of one of
-- the seeded sessions, drawn from a Zipf(s) distribution over them (rank 1 = first token
-- of the file), so a few sessions are hot and the rest form a long tail.
--
-- wrk ... -s xtask/bench/zipf.lua URL -- TOKENS_FILE [COOKIE_NAME] [S] [DELAY_MS]
-- TOKENS_FILE: one token a line; lines starting with '#' are skipped. It holds secrets:
-- nothing here ever prints a token. DELAY_MS > 0 makes each connection wait that long
-- between requests: a fixed offered load of about CONNECTIONS * 1000 / DELAY_MS req/s
-- (for latencies well below DELAY_MS), for comparing latencies at the same load.
-- S = 0 sweeps instead: each thread requests every token in file order, from an offset
-- of its own (the warm-up that loads every session into the memory tier).
-- `done` prints one line "BENCHJSON {...}" with the run's figures (latencies in us).

local tokens, cdf, requests_by_rank = {}, {}, {}
local n, cookie = 0, "session"
local sweep, cursor = false, 0
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

function init(args)
  local file = args[1]
  cookie = args[2] or "session"
  local s = tonumber(args[3] or "1.0")
  local delay_ms = tonumber(args[4] or "0")
  if delay_ms > 0 then
    -- Defined only when wanted: wrk arms a timer per request once `delay` exists.
    delay = function() return delay_ms end
  end
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
  for line in io.lines(file) do
    if #line > 0 and line:sub(1, 1) ~= "#" then
      n = n + 1
      tokens[n] = line
    end
  end
  assert(n > 0, "no tokens in " .. file)
  if s == 0 then
    sweep = true
    -- Threads start half the file apart (the bench runs 2): together they cover every
    -- token in n/2 requests each.
    cursor = ((thread_id or 0) * math.floor(n / 2)) % n
    return
  end
  local sum = 0
  for i = 1, n do
    sum = sum + 1 / (i ^ s)
    cdf[i] = sum
  end
  for i = 1, n do
    cdf[i] = cdf[i] / sum
  end
end

-- The smallest rank whose cumulative probability reaches u.
local function rank(u)
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

function request()
  local r
  if sweep then
    cursor = cursor % n + 1
    r = cursor
  else
    r = rank(math.random())
  end
  local req = requests_by_rank[r]
  if req == nil then
    req = wrk.format(nil, nil, { ["Cookie"] = cookie .. "=" .. tokens[r] })
    requests_by_rank[r] = req
  end
  return req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status,
    e.timeout))
end
