#!/usr/bin/env bash
# Issue 16's "one key per user" lever, measured on Redis alone: the server CPU of one
# session check's read in the layout authd uses (one MGET of four string keys in one hash
# slot: session, tombstone, fence, profile; docs/redis.md) against the per-user hash it
# would need (one HMGET of four fields of the user's hash), with a plain GET of one session
# key (actix-session's read) as the baseline. Redis's own accounting (INFO commandstats
# usec_per_call) on a private redis-server, rounds alternating, 100,000 users.
#
#   bash xtask/bench/redis-layout.sh [ROUNDS]
#
# Needs redis-server, redis-cli, redis-benchmark (Debian: redis-server, redis-tools).
set -euo pipefail
rounds=${1:-3}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "/tmp/redis-layout-$port.pid" >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
users=100000
# Sizes as seeded by cargo xtask seed: a session value about 260 bytes, a profile about 200.
awk -v n="$users" 'BEGIN {
  v = sprintf("%260s", ""); gsub(/ /, "x", v); p = sprintf("%200s", ""); gsub(/ /, "p", p);
  for (i = 0; i < n; i++) {
    k = sprintf("%012d", i);
    print "SET s:" k " " v; print "SET p:" k " " p;
    # The per-user hash: three sessions (a user with a phone, a laptop and a tablet) and
    # the profile; tombstone and fence fields absent, as they are almost always.
    print "HSET u:" k " s0 " v " s1 " v " s2 " v " p " p;
  } }' | redis-cli -p "$port" --pipe >/dev/null
declare -A total
cmds=("GET s:__rand_int__"
      "MGET s:__rand_int__ t:__rand_int__ f:__rand_int__ p:__rand_int__"
      "HMGET u:__rand_int__ s1 t1 f p")
for r in $(seq "$rounds"); do
  for c in "${cmds[@]}"; do
    redis-cli -p "$port" config resetstat >/dev/null
    redis-benchmark -p "$port" -c 32 -n 200000 -r "$users" -q $c >/dev/null 2>&1
    us=$(redis-cli -p "$port" info commandstats | grep -E '^cmdstat_(get|mget|hmget):' \
      | sed 's/.*usec_per_call=\([0-9.]*\).*/\1/')
    echo "round $r  ${c%% *}  ${us} us/call"
    total[${c%% *}]=$(echo "${total[${c%% *}]:-0} + $us" | bc -l)
  done
done
get=${total[GET]}
for name in GET MGET HMGET; do
  printf '%-6s mean %.2f us/call  ratio to GET %.2f\n' "$name" \
    "$(echo "${total[$name]} / $rounds" | bc -l)" "$(echo "${total[$name]} / $get" | bc -l)"
done
echo "memory usage: session key $(redis-cli -p "$port" memory usage s:000000000001) B," \
  "profile key $(redis-cli -p "$port" memory usage p:000000000001) B," \
  "per-user hash (3 sessions + profile) $(redis-cli -p "$port" memory usage u:000000000001) B"
