#!/usr/bin/env bash
# The API contract check: schemathesis (`--checks all`, fixed seed, bounded examples,
# every phase including the stateful one) against a built authd (release unless CONTRACT_AUTHD names another; CI passes its
# dev-profile binary) serving its own
# /openapi.json, twice:
#   1. embedded defaults: SQLite in a temporary folder, memory tier, no Redis, no admin
#      token (the admin API answers 404, as documented);
#   2. PostgreSQL (a fresh database) + Redis (a unique key prefix) with an admin token
#      and a real session cookie, made through the API: register, verification link from
#      the mail folder, verify, log in.
# Ends non-zero on any failure; prints the number of generated cases of each run.
#
# Usage: bash xtask/contract/run.sh        (from anywhere; CI calls it from .ci/run)
# Env:   DATABASE_URL (postgres://postgres@127.0.0.1:5432/test), REDIS_URL
#        (redis://127.0.0.1:6379), CONTRACT_MAX_EXAMPLES (default 100), CONTRACT_SEED.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"

PG_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS="${REDIS_URL:-redis://127.0.0.1:6379}"
# authd reads these conventional names too: each run says what it uses through AUTHD_*.
unset DATABASE_URL REDIS_URL
MAX_EXAMPLES="${CONTRACT_MAX_EXAMPLES:-100}"
SEED="${CONTRACT_SEED:-20240612}"
SCHEMATHESIS_VERSION=4.32.5
VENV="$ROOT/target/schemathesis-venv"
AUTHD="${CONTRACT_AUTHD:-$ROOT/target/release/authd}"

log() { printf '[contract %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# --- schemathesis, pinned, in a virtualenv under target/ ---------------------------------
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    log "installing python3-venv"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [[ -z "${CONTRACT_AUTHD:-}" ]]; then
  log "building authd (release)"
  cargo build --release -p authd --bin authd
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/authd-contract.XXXXXX")"
PID=""
DB=""
PREFIX=""
cleanup() {
  if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [[ -n "$DB" ]]; then psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; fi
  if [[ -n "$PREFIX" ]]; then
    redis-cli -u "$REDIS" --scan --pattern "${PREFIX}*" | xargs -r -n 500 redis-cli -u "$REDIS" DEL >/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The abuse limits stay on (the code paths that count and answer 429 run), but every
# limit and detector threshold is far above what one run sends, so that no operation is
# refused for the run's own volume and no detector blocks 127.0.0.1 half way through
# (which would turn every later answer into 403 ip_blocked).
abuse_out_of_the_way() {
  local n=1000000
  export AUTHD_ABUSE__ENABLED=true
  for key in LOGIN_PER_ADDRESS LOGIN_PER_ACCOUNT LOGIN_PER_ADDRESS_ACCOUNT REGISTER_PER_ADDRESS \
             RESEND_PER_ADDRESS RESEND_PER_ACCOUNT FORGOT_PER_ADDRESS FORGOT_PER_ACCOUNT \
             RESET_PER_ADDRESS ADMIN_PER_ADDRESS STUFFING_ACCOUNTS GUESSING_TOKENS; do
    export "AUTHD_ABUSE__$key=$n"
  done
}

# start_authd NAME: starts authd with the AUTHD_* environment on a free loopback port.
start_authd() {
  local name="$1"
  PORT="$(free_port)"
  export AUTHD_SERVER__LISTEN="127.0.0.1:$PORT"
  export AUTHD_PUBLIC_BASE_URL="http://127.0.0.1:$PORT"
  export AUTHD_SERVER__OPS_LISTEN=off
  export AUTHD_SERVER__WORKERS=2
  export AUTHD_MAIL__TRANSPORT=file
  export AUTHD_MAIL__DIR="$WORK/$name/mail"
  export RUST_LOG="${CONTRACT_LOG:-warn}"
  mkdir -p "$WORK/$name"
  "$AUTHD" >"$WORK/$name/authd.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$PORT/health/ready" >/dev/null 2>&1; then
      log "$name: authd up on 127.0.0.1:$PORT"
      return 0
    fi
    if ! kill -0 "$PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  log "$name: authd did not start:"; cat "$WORK/$name/authd.log"; exit 1
}

stop_authd() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}

# A verified account and its password, made through the API; sets CONTRACT_EMAIL,
# CONTRACT_PASSWORD and checks that logging in sets the cookie.
make_account() {
  local name="$1" base="http://127.0.0.1:$PORT"
  export CONTRACT_EMAIL="contract-$name-$$@example.com"
  export CONTRACT_PASSWORD="contract run password $$ $RANDOM$RANDOM"
  curl -fsS -o /dev/null -H 'content-type: application/json' \
    -d "{\"name\":\"Contract\",\"email\":\"$CONTRACT_EMAIL\",\"password\":\"$CONTRACT_PASSWORD\"}" \
    "$base/v1/auth/register"
  local token=""
  for _ in $(seq 1 100); do
    token="$(grep -rhoE 'verify-email#token=[A-Za-z0-9_-]{43}' "$AUTHD_MAIL__DIR" 2>/dev/null | head -n 1 | cut -d= -f2 || true)"
    [[ -n "$token" ]] && break
    sleep 0.1
  done
  [[ -n "$token" ]] || { log "no verification mail arrived"; ls -la "$AUTHD_MAIL__DIR" || true; exit 1; }
  curl -fsS -o /dev/null -H 'content-type: application/json' -d "{\"token\":\"$token\"}" \
    "$base/v1/auth/verify-email"
  local jar="$WORK/$name/cookies"
  curl -fsS -o /dev/null -c "$jar" -H 'content-type: application/json' \
    -d "{\"email\":\"$CONTRACT_EMAIL\",\"password\":\"$CONTRACT_PASSWORD\"}" "$base/v1/auth/login"
  grep -q "$CONTRACT_COOKIE" "$jar" || { log "login set no $CONTRACT_COOKIE cookie"; exit 1; }
  log "$name: verified account $CONTRACT_EMAIL logged in (cookie $CONTRACT_COOKIE)"
}

# run_schemathesis NAME: the run itself; prints schemathesis' summary.
run_schemathesis() {
  local name="$1" started=$SECONDS
  local out="$WORK/$name/schemathesis.txt"
  set +e
  # The run's values, substituted rather than read from the environment: schemathesis
  # does not expand variables in every field (a cookie name, say).
  sed -e "s|@EMAIL@|$CONTRACT_EMAIL|" -e "s|@PASSWORD@|$CONTRACT_PASSWORD|" \
      -e "s|@COOKIE@|$CONTRACT_COOKIE|" -e "s|@ADMIN_TOKEN@|$CONTRACT_ADMIN_TOKEN|" \
      "$ROOT/xtask/contract/schemathesis.toml" >"$WORK/$name/schemathesis.toml"
  # From the run's folder: schemathesis keeps caches (.schemathesis/) in its working
  # directory, which must not be the repository. No example database: with the fixed
  # seed each run generates the same cases. One worker: with two, Python 3.11's
  # ast.parse raced inside hypothesis ("AST constructor recursion depth mismatch").
  (cd "$WORK/$name" && "$VENV/bin/schemathesis" --config-file "$WORK/$name/schemathesis.toml" \
    run "http://127.0.0.1:$PORT/openapi.json" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --generation-database none \
    --workers 1 \
    --request-timeout 10 \
    --no-color \
    --report junit --report-junit-path "$WORK/$name/junit.xml") \
    2>&1 | tee "$out"
  local status=${PIPESTATUS[0]}
  set -e
  log "$name: schemathesis exit $status in $((SECONDS - started))s; $(grep -E '[0-9]+ generated' "$out" | tail -n 1 | sed 's/^ *//')"
  if [[ $status -ne 0 ]]; then
    log "$name: authd log tail:"; tail -n 40 "$WORK/$name/authd.log"
    return "$status"
  fi
}

abuse_out_of_the_way
TOTAL_START=$SECONDS

# --- 1. embedded defaults ---------------------------------------------------------------
export AUTHD_DATABASE__URL="sqlite://$WORK/embedded/authd.db"
export CONTRACT_COOKIE=session
export CONTRACT_ADMIN_TOKEN="no-admin-token-is-configured"
start_authd embedded
make_account embedded
run_schemathesis embedded
stop_authd

# --- 2. PostgreSQL + Redis, admin token -------------------------------------------------
DB="authd_contract_$$"
psql -q "$PG_URL" -c "CREATE DATABASE $DB" >/dev/null
export AUTHD_DATABASE__URL="${PG_URL%/*}/$DB"
PREFIX="contract$$:"
export AUTHD_REDIS__URL="$REDIS"
export AUTHD_REDIS__KEY_PREFIX="$PREFIX"
export CONTRACT_ADMIN_TOKEN="contract-admin-token-$$-$RANDOM$RANDOM-0123456789abcdef"
export AUTHD_ADMIN__TOKEN="$CONTRACT_ADMIN_TOKEN"
start_authd full
make_account full
run_schemathesis full
stop_authd

log "both runs passed in $((SECONDS - TOTAL_START))s"
