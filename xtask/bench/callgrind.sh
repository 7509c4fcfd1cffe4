#!/usr/bin/env bash
# Instruction counts per request of one authd endpoint, with callgrind: repeatable on a
# noisy shared machine where wall-clock profiles are not. Run after `cargo xtask bench`
# (it uses the binary, database, Redis keys and tokens that run left behind):
#
#   bash xtask/bench/callgrind.sh /v1/me            # memory hits (memory+redis+postgres)
#   bash xtask/bench/callgrind.sh /health/live      # the ceiling
#   MEMORY=false bash xtask/bench/callgrind.sh /v1/me   # Redis hits (the me/redis point)
#   bash xtask/bench/callgrind.sh /bench/baseline/redis # its baseline (one fred GET)
#
# Prints total instructions / requests, and writes target/bench/callgrind.<name>.out
# for `callgrind_annotate --inclusive=yes`. TOKENS=FILE picks the tokens (a short file of
# the hottest ones keeps a memory tier warm at callgrind speed). BIN=PATH measures another
# build (an `--against` one: target/bench/against/authd-<commit>); NAME=SUFFIX keeps its
# output apart.
set -euo pipefail
cd "$(dirname "$0")/../.."

path="${1:-/v1/me}"
name="$(echo "$path" | tr '/' '_' | sed 's/^_//')"
[ "${MEMORY:-true}" = true ] || name="$name.nomemory"
[ -z "${NAME:-}" ] || name="$name.$NAME"
bin="${BIN:-target/bench/authd}"
out="target/bench/callgrind.$name.out"
port="${PORT:-18181}"
db="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
db="${db%/*}/authd_bench"
redis="${REDIS_URL:-redis://127.0.0.1:6379}"
tokens="${TOKENS:-target/bench/sessions.txt}" # the tokens of the data last seeded

env -u DATABASE_URL -u REDIS_URL RUST_LOG="${LOG:-warn}" \
  AUTHD_SERVER__LISTEN="127.0.0.1:$port" AUTHD_SERVER__WORKERS=1 \
  DATABASE_URL="$db" REDIS_URL="$redis" AUTHD_REDIS__KEY_PREFIX=authd-bench: \
  AUTHD_MEMORY__ENABLED="${MEMORY:-true}" AUTHD_MEMORY__MAX_ENTRIES=100000 AUTHD_MAIL__DIR=target/bench/mail \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
  "$bin" >target/bench/callgrind.$name.log 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT

for _ in $(seq 1 240); do
  curl -fs "http://127.0.0.1:$port/health/ready" | grep -q '"status":"ok"' && break
  sleep 1
done
# The tokens must belong to the data in the database (a `--scale` run leaves its last size
# there: TOKENS=target/bench/sessions-1000000.txt). Stop before thousands of 401s would be
# measured, and before authd's guessing detection blocks 127.0.0.1 for them.
token="$(awk '!/^#/ {print; exit}' "$tokens")"
status="$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: session=$token" "http://127.0.0.1:$port/v1/me")"
if [ "$status" != 200 ]; then
  echo "the first token of $tokens answers $status on /v1/me: tokens and database disagree (set TOKENS)" >&2
  exit 1
fi
# Warm the memory tier, then count only the measured requests.
wrk -t1 -c4 -d5s -s xtask/bench/zipf.lua "http://127.0.0.1:$port$path" -- "$tokens" >/dev/null
callgrind_control -i on "$pid" >/dev/null
result="$(wrk -t1 -c4 -d20s -s xtask/bench/zipf.lua "http://127.0.0.1:$port$path" -- "$tokens")"
echo "$result" >"target/bench/callgrind.$name.wrk"
callgrind_control -i off "$pid" >/dev/null
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
trap - EXIT

requests="$(echo "$result" | grep BENCHJSON | sed 's/.*"requests":\([0-9]*\).*/\1/')"
# The dump's `totals:` line (its `summary:` stays 0 when counting starts mid-run).
total="$(awk '/^totals:/ {print $2; exit}' "$out")"
echo "$path: $requests requests, $total instructions, $((total / requests)) instructions/request"
