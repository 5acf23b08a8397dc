#!/usr/bin/env bash
# `make run`: the whole system on this machine. Installs what is missing, builds, starts
# PostgreSQL and Redis (data in .run/, or uses DATABASE_URL / REDIS_URL when given), applies the
# migrations, runs the five services under supervisord (which restarts a crashed one), waits for
# GET :8080/health to be green, prints the URLs, and stops everything on Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
run_dir=$root/.run
bin=$root/build/default/bin

scripts/deps.sh
cmake --preset default >/dev/null
cmake --build --preset default

"$root/scripts/stop.sh" --quiet  # a stack left running by an earlier `make run`
mkdir -p "$run_dir/logs"

skip_pg=0; skip_redis=0
[ -n "${DATABASE_URL:-}" ] && skip_pg=1
[ -n "${REDIS_URL:-}" ] && skip_redis=1
if [ $skip_pg = 0 ] || [ $skip_redis = 0 ]; then
  SKIP_PG=$skip_pg SKIP_REDIS=$skip_redis scripts/infra.sh start "$run_dir/infra" "${PG_PORT:-5432}" "${REDIS_PORT:-6379}"
  set -a; . "$run_dir/infra/env"; set +a
fi
export DATABASE_URL REDIS_URL

# The operator token guards the internal APIs (deposits, faucet, API keys); the internal token is
# what the gateway adds to every request it forwards (services believe X-User-ID only next to it).
# One of each per checkout, readable by this user only, never printed whole.
secret() {  # secret FILE: creates it (mode 0600) once, prints its content
  if [ ! -f "$1" ]; then (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1"); fi
  chmod 600 "$1"
  cat "$1"
}
[ -n "${OPERATOR_TOKEN:-}" ] || OPERATOR_TOKEN=$(secret "$run_dir/operator-token")
[ -n "${INTERNAL_TOKEN:-}" ] || INTERNAL_TOKEN=$(secret "$run_dir/internal-token")
export OPERATOR_TOKEN INTERNAL_TOKEN
FAUCET_AMOUNT=${FAUCET_AMOUNT:-10000}

echo "run: applying migrations"
"$bin/hydrox-migrate" "$root/db/migrations"

cleanup() {
  local code=$?
  trap - INT TERM EXIT
  echo
  echo "run: stopping"
  "$root/scripts/stop.sh"
  exit "$code"
}
interrupted() { trap - EXIT; (exit 0); cleanup; }
trap cleanup EXIT
trap interrupted INT TERM

conf=$run_dir/supervisord.conf
{
  cat <<CONF
[supervisord]
logfile=$run_dir/logs/supervisord.log
pidfile=$run_dir/supervisord.pid
childlogdir=$run_dir/logs
nodaemon=true

[unix_http_server]
file=$run_dir/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$run_dir/supervisor.sock
CONF
  # TRADING_STANDBY=1: a second trading process on 8092 waits on the engine lock and takes over
  # when the active one dies; every caller of trading knows both addresses.
  services="market:8081 trading:8082 vault:8083 user:8084 gateway:8080"
  trading_urls="http://127.0.0.1:8082"
  if [ "${TRADING_STANDBY:-0}" = 1 ]; then
    services="$services trading-standby:8092"
    trading_urls="http://127.0.0.1:8082,http://127.0.0.1:8092"
  fi
  # The gateway listens on every address, except in legacy client mode (HYDROX_LEGACY_CLIENT_AUTH=1:
  # a client's own X-User-ID is believed), where it listens on loopback only unless
  # HYDROX_LEGACY_CLIENT_AUTH_PUBLIC=1 says otherwise.
  gateway_address=${GATEWAY_LISTEN_ADDRESS:-0.0.0.0}
  on() { case "${1,,}" in 1|true|yes|on) return 0 ;; *) return 1 ;; esac; }  # the services' booleans
  if on "${HYDROX_LEGACY_CLIENT_AUTH:-0}" && ! on "${HYDROX_LEGACY_CLIENT_AUTH_PUBLIC:-0}"; then
    gateway_address=127.0.0.1
  fi
  # The gateway hands each WebSocket client's socket to market (no byte tunnel): the path market
  # takes them on (a Unix socket path is limited to 107 bytes).
  ws_sock=$run_dir/market-ws.sock
  [ ${#ws_sock} -lt 100 ] || ws_sock=/tmp/hydrox-market-ws-$UID.sock
  for svc in $services; do
    name=${svc%%:*}; port=${svc##*:}
    extra=
    case $name in
      market) extra=",HANDOFF_SOCKET=\"$ws_sock\"" ;;
      gateway) extra=",MARKET_WS_HANDOFF_SOCKET=\"$ws_sock\",OPS_PORT=\"${OPS_PORT:-8090}\",LISTEN_ADDRESS=\"$gateway_address\"" ;;
    esac
    cat <<CONF

[program:$name]
command=$bin/hydrox-${name%-standby}
environment=PORT="$port",DATABASE_URL="$DATABASE_URL",REDIS_URL="$REDIS_URL",MARKET_SERVICE_URL="http://127.0.0.1:8081",TRADING_SERVICE_URL="$trading_urls",VAULT_SERVICE_URL="http://127.0.0.1:8083",USER_SERVICE_URL="http://127.0.0.1:8084",LOG_LEVEL="${LOG_LEVEL:-info}",OPERATOR_TOKEN="$OPERATOR_TOKEN",INTERNAL_TOKEN="$INTERNAL_TOKEN",FAUCET_AMOUNT="$FAUCET_AMOUNT"$extra
autostart=true
autorestart=true
startsecs=1
startretries=100
stopsignal=TERM
stopwaitsecs=10
stdout_logfile=$run_dir/logs/$name.log
redirect_stderr=true
CONF
  done
  cat <<CONF

[program:market-maker]
command=bash -c 'set -a; . "$run_dir/mm.env"; exec "$bin/hydrox-market-maker"'
environment=GATEWAY_URL="http://127.0.0.1:8080",LOG_LEVEL="warn"
autostart=false
autorestart=true
startsecs=2
startretries=100
stopsignal=TERM
stdout_logfile=$run_dir/logs/market-maker.log
redirect_stderr=true
CONF
} >"$conf"
chmod 600 "$conf"  # it holds the tokens

supervisord --silent -c "$conf" &
echo $! >"$run_dir/supervisord.launcher.pid"

echo "run: waiting for http://localhost:8080/health"
for _ in $(seq 1 120); do
  if curl -sf -o /dev/null http://127.0.0.1:8080/health; then break; fi
  sleep 0.5
done
if ! curl -sf -o /dev/null http://127.0.0.1:8080/health; then
  echo "run: the system did not become healthy; /health says:" >&2
  curl -s http://127.0.0.1:8080/health >&2 || true
  echo >&2; echo "run: logs are in $run_dir/logs" >&2
  exit 1
fi

# A live market: the protocol vault's account ("HydroX Liquidity Provider") quotes every market
# through the gateway with an API key, and a demo taker trades against it now and then.
HLP=00000000-0000-7000-8000-000000000003
TAKER=00000000-0000-4000-8000-0000000000d1
admin() { TRADING_SERVICE_URL="$trading_urls" USER_SERVICE_URL=http://127.0.0.1:8084 "$bin/hydrox-admin" "$@"; }
admin deposit $HLP 5000000 make-run-hlp-seed >/dev/null
admin deposit $TAKER 1000000 make-run-taker-seed >/dev/null
# The insurance fund starts with a float that pays liquidation shortfalls before any ADL.
admin deposit 00000000-0000-7000-8000-000000000002 250000 make-run-insurance-seed >/dev/null
key_ok() { [ -n "$1" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" http://127.0.0.1:8080/api/v1/balances)" = 200 ]; }
MM_API_KEY=""; TAKER_API_KEY=""
[ -f "$run_dir/mm.env" ] && . "$run_dir/mm.env"
new_key() { admin api-key "$1" trade "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'; }
key_ok "$MM_API_KEY" || MM_API_KEY=$(new_key $HLP market-maker)
key_ok "$TAKER_API_KEY" || TAKER_API_KEY=$(new_key $TAKER demo-taker)
printf 'MM_API_KEY=%s\nTAKER_API_KEY=%s\n' "$MM_API_KEY" "$TAKER_API_KEY" >"$run_dir/mm.env"
chmod 600 "$run_dir/mm.env"
supervisorctl -c "$conf" start market-maker >/dev/null

cat <<TXT

HydroX is up.
  API gateway    http://localhost:8080         (the only public door)
  Health         http://localhost:8080/health
  API document   http://localhost:8080/api/v1/openapi.json
  WebSocket      ws://localhost:8080/ws
  Services       market :8081, trading :8082, vault :8083, user :8084 (internal, 127.0.0.1)
  PostgreSQL     $(sed -E 's#(//[^:/@]*:)[^@]*@#\1***@#' <<<"$DATABASE_URL")   (passwords in $run_dir/infra/env, mode 0600)
  Redis          $(sed -E 's#(//[^:/@]*:)[^@]*@#\1***@#' <<<"$REDIS_URL")
  Logs           $run_dir/logs/
  Processes      supervisorctl -c $conf status

Live market: the market maker quotes every market for the protocol vault (API key in
  $run_dir/mm.env); its log is $run_dir/logs/market-maker.log.
  curl localhost:8080/api/v1/markets/BTC_USDM_PERP/orderbook
Sign in with a Cardano wallet (CIP-30) or an Ethereum wallet (EIP-4361):
  curl 'localhost:8080/api/v1/auth/nonce?wallet_address=addr1…&chain=cardano'   (or 0x…&chain=ethereum)
  Cardano: api.signData(address, hex(message)) → {signature, key}, then
  curl -XPOST localhost:8080/api/v1/auth/connect -d '{"wallet_address":"addr1…","chain":"cardano","message":"…","signature":"<COSE_Sign1 hex>","key":"<COSE_Key hex>"}'
  Ethereum: personal_sign(message), then
  curl -XPOST localhost:8080/api/v1/auth/connect -d '{"wallet_address":"0x…","chain":"ethereum","message":"…","signature":"0x…"}'
  → a session token (and 10,000 test-net USDM on the first sign-in); send it as Authorization: Bearer.
Or, for bots: an API key from the operator CLI, then fund the account:
  OPERATOR_TOKEN=\$(cat $run_dir/operator-token) build/default/bin/hydrox-admin api-key <user-uuid> trade
  OPERATOR_TOKEN=\$(cat $run_dir/operator-token) build/default/bin/hydrox-admin faucet <user-uuid>
  curl -H "Authorization: Bearer <key>" localhost:8080/api/v1/balances

Operator CLI (deposits, faucet, marks, invariants against trading's internal API):
  OPERATOR_TOKEN=\$(cat $run_dir/operator-token) build/default/bin/hydrox-admin faucet <user-uuid>
  OPERATOR_TOKEN=\$(cat $run_dir/operator-token) build/default/bin/hydrox-admin invariants
  (operator token ${OPERATOR_TOKEN:0:4}…, internal token ${INTERNAL_TOKEN:0:4}…, both mode 0600 in $run_dir)
Gateway metrics: http://127.0.0.1:${OPS_PORT:-8090}/metrics (loopback only; each service's own port has its /metrics)

Press Ctrl-C to stop everything (or run 'make stop' from another shell).
TXT
wait
