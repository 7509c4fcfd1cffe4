-- wrk script of `cargo xtask bench`: logins of the seeded accounts
-- (`user{i}@bench.example`, i uniform over the first USERS) with their password.
--
-- wrk ... -s xtask/bench/login.lua URL/v1/auth/login -- USERS PASSWORD
-- `done` prints one line "BENCHJSON {...}" (latencies in us), like zipf.lua.

local users, password = 1, ""
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

function init(args)
  users = tonumber(args[1])
  password = args[2]
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
end

function request()
  local i = math.random(0, users - 1)
  local body = '{"email":"user' .. i .. '@bench.example","password":"' .. password .. '"}'
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
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
