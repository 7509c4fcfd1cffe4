#!/usr/bin/env bash
# Instructions per call of the Redis tier's reads (docs/benchmarks.md goal B3/B6), client and server,
# with callgrind: the cache-redis criterion bench `validate` (group `redis`) in
# criterion's profile mode, against a private redis-server that runs under callgrind
# too. Repeatable on a noisy shared machine where wall-clock figures are not.
#
#   bash xtask/bench/callgrind-redis.sh                  # every function of the group
#   bash xtask/bench/callgrind-redis.sh store_get_hit    # some of them
#   COUNT=exists bash xtask/bench/callgrind-redis.sh     # a layout whose reads sent one EXISTS
#
# Per function, two runs (SHORT=2 and LONG=8 seconds of --profile-time): the bench binary
# under callgrind (the client: the whole process), and the server's instructions between
# `callgrind_control -z`/`-i on` and `-i off`/`-d` around it. Calls are the server's
# `INFO commandstats` count (after CONFIG RESETSTAT) of the command a call sends exactly
# once: `mget` for the session reads (COUNT overrides it, COUNT_<function> for one
# function), `get` for raw_fred_get. Per call is (long - short) / (calls long - calls
# short), so process start, connecting and the bench's setup cancel out; an unmeasured
# run first has the server compile the store's scripts, which it does only once.
# serverCron (10 a second; under callgrind mostly jemalloc statistics, about 1.2M
# instructions a second) grows with wall time, not calls: `server` leaves it out (totals
# minus serverCron inclusive), `+cron` keeps it. The long run should make a few thousand
# calls more than the short one (a warning says when not). Needs redis-server, redis-cli,
# valgrind and jq; PORT (default 16390, else the next free one) is the server's port.
# Writes target/bench/callgrind-redis/ (out files, logs, commandstats of every run).
set -euo pipefail
cd "$(dirname "$0")/../.."

short="${SHORT:-2}"
long="${LONG:-8}"
dir="$PWD/target/bench/callgrind-redis" # absolute: redis-server changes directory
if [ "$#" -gt 0 ]; then
  functions=("$@")
else
  functions=(store_get_hit tiered_get_hit store_get_with_user_hit tiered_get_with_user_hit raw_fred_get)
fi
mkdir -p "$dir"
rm -f "$dir"/*.out "$dir"/*.out.* "$dir"/*.stats "$dir"/*.log

# The command each call of a function sends exactly once.
count_command() {
  local override="COUNT_$1"
  if [ -n "${!override:-}" ]; then
    echo "${!override}"
  elif [ "$1" = raw_fred_get ]; then
    echo get
  else
    echo "${COUNT:-mget}"
  fi
}

# The bench executable, from cargo's JSON (several crates have a bench named `validate`).
bin="$(cargo bench -p cache-redis --bench validate --no-run --message-format=json |
  jq -r 'select(.reason == "compiler-artifact" and .target.name == "validate"
      and (.manifest_path | endswith("/cache-redis/Cargo.toml"))) | .executable // empty' |
  tail -n 1)"
[ -x "$bin" ] || { echo "no cache-redis validate bench executable" >&2; exit 1; }

port="${PORT:-16390}"
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
cli=(redis-cli -h 127.0.0.1 -p "$port")
base="$dir/server.out"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$base" \
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
  >"$dir/server.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  "${cli[@]}" ping 2>/dev/null | grep -q PONG && break
  sleep 0.5
done
"${cli[@]}" ping | grep -q PONG
# One unmeasured run first: the bench's setup loads the store's scripts, and the server
# compiles them only the first time (SCRIPT LOAD of a cached script is cheap), which
# would otherwise land in the first measured run alone and skew its subtraction.
REDIS_URL="redis://127.0.0.1:$port" \
  "$bin" --bench --profile-time 1 --exact redis/raw_fred_get >"$dir/warmup.log" 2>&1

# Total instructions of one callgrind out file: `totals:`, the sum of the costs in it
# (a dump's `summary:` stays 0 when instrumentation was switched on at run time).
total() { awk '/^totals:/ { print $2; exit }' "$1"; }
# Inclusive instructions of one function (0 when it never ran).
inclusive() {
  { callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null || true; } |
    awk -v fn="$2" '$0 ~ ":" fn " " { gsub(",", "", $1); print $1; found = 1; exit }
      END { if (!found) print 0 }'
}

dumps=0
declare -A client_ir server_ir cron_ir calls
for fn in "${functions[@]}"; do
  cmd="$(count_command "$fn")"
  for t in "$short" "$long"; do
    run="$fn.${t}s"
    "${cli[@]}" config resetstat >/dev/null
    callgrind_control -z "$server" >/dev/null 2>&1
    callgrind_control -i on "$server" >/dev/null 2>&1
    REDIS_URL="redis://127.0.0.1:$port" \
      valgrind --tool=callgrind --callgrind-out-file="$dir/$run.client.out" \
      "$bin" --bench --profile-time "$t" --exact "redis/$fn" >"$dir/$run.log" 2>&1
    callgrind_control -i off "$server" >/dev/null 2>&1
    callgrind_control -d "$run" "$server" >/dev/null 2>&1
    dumps=$((dumps + 1))
    # callgrind numbers the dumps it is asked for: .1, .2, ...
    mv "$base.$dumps" "$dir/$run.server.out"
    "${cli[@]}" info commandstats >"$dir/$run.stats"
    n="$(tr -d '\r' <"$dir/$run.stats" | sed -n "s/^cmdstat_$cmd:calls=\([0-9]*\),.*/\1/p")"
    [ -n "$n" ] || { echo "$run: no $cmd calls on the server (see $dir/$run.stats)" >&2; exit 1; }
    calls[$run]="$n"
    client_ir[$run]="$(total "$dir/$run.client.out")"
    server_ir[$run]="$(total "$dir/$run.server.out")"
    cron_ir[$run]="$(inclusive "$dir/$run.server.out" serverCron)"
    sent="$(tr -d '\r' <"$dir/$run.stats" | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1=\2/p' | tr '\n' ' ')"
    echo "raw $run: $cmd calls ${calls[$run]}, client ${client_ir[$run]} Ir, server ${server_ir[$run]} Ir (serverCron ${cron_ir[$run]}); commands: $sent"
  done
done

echo
printf '%-26s %7s %11s %11s %11s %11s\n' function calls client/call server/call +cron/call sum/call
for fn in "${functions[@]}"; do
  s="$fn.${short}s" l="$fn.${long}s"
  awk -v fn="$fn" -v cs="${calls[$s]}" -v cl="${calls[$l]}" \
    -v ks="${client_ir[$s]}" -v kl="${client_ir[$l]}" \
    -v ss="${server_ir[$s]}" -v sl="${server_ir[$l]}" \
    -v rs="${cron_ir[$s]}" -v rl="${cron_ir[$l]}" 'BEGIN {
      n = cl - cs
      if (n <= 0) { printf "%-26s the long run made no more calls than the short one\n", fn; exit }
      c = (kl - ks) / n; v = (sl - rl - ss + rs) / n; w = (sl - ss) / n
      printf "%-26s %7d %11.0f %11.0f %11.0f %11.0f\n", fn, n, c, v, w, c + v
      if (n < 2000) printf "warning: %s: only %d more calls in the long run; figures are noisy\n", fn, n > "/dev/stderr"
    }'
done
