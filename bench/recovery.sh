#!/usr/bin/env bash
# Recovery time with 1,000,000 open orders (issue #9): a journal of 1,000 deposits and 1,000,000
# resting limit orders (1,000 per account, none crossing) is written straight into
# engine_journal, in exactly the form trading's persister writes it (SQL generate_series, so the
# set-up takes seconds, not the hours of placing them through HTTP); then trading is started and
# timed from exec to answering /health (it rebuilds the engine by replaying the journal before it
# listens), three times with snapshots off. Then the same with snapshots on: the first start
# replays and stores a snapshot, the next two load it (and replay nothing after it). The
# invariants route confirms the 1,000,000 resting orders and the same state hash each way.
# CANCELLED=1: each order is cancelled right after it is placed (2 × ORDERS commands of history,
# no resting order): what a snapshot saves when the history is much longer than the state.
#   bench/recovery.sh [ORDERS]
. "$(dirname "$0")/lib.sh"
orders=${1:-1000000}
start_infra
tp=$(port)
start_trading() {
  PORT=$tp OPERATOR_TOKEN=bench MARK_FROM_INDEX=0 LOG_LEVEL=info SNAPSHOT_EVERY_COMMANDS=${SNAPSHOTS:-0} ${RECOVERY_WRAP:-} "$bin/hydrox-trading" 2>>"$work/trading.log" >>"$work/trading.log" &
  trading=$!
}
wait_health() { for _ in $(seq 1 2000); do curl -sf -o /dev/null "http://127.0.0.1:$tp/health" && return 0; sleep 0.01; done; return 1; }

# A first start writes the initial marks and the protocol vault (commands 1-5); then the mark.
start_trading; wait_health
curl -sf -XPOST "http://127.0.0.1:$tp/internal/v1/marks" -H 'Authorization: Bearer bench' -d '{"symbol":"BTC_USDM_PERP","mark_price":"97000"}' >/dev/null
kill -TERM $trading; wait $trading || true
base=$(psql "$DATABASE_URL" -qtAc "SELECT max(command_no) FROM engine_journal")
seq0=$(psql "$DATABASE_URL" -qtAc "SELECT max(first_seq + event_count) FROM engine_journal")
steps=1; events=3  # commands and events per order
[ "${CANCELLED:-0}" = 1 ] && steps=2 && events=5
echo "== writing the journal: 1,000 deposits and $orders resting orders after command $base"
t0=$(date +%s.%N)
psql "$DATABASE_URL" -q <<SQL
INSERT INTO engine_journal (command_no, kind, payload, first_seq, event_count)
SELECT $base + a, 'deposit',
       jsonb_build_object('t', 'deposit', 'ts', 1795000000000 + a, 'amount', 100000000000,
                          'user', '00000000-0000-4000-8000-' || lpad(to_hex(a), 12, '0')),
       $seq0 + a - 1, 1
FROM generate_series(1, 1000) a;
-- Order i belongs to account 1 + i % 1000; even i sell above the mark, odd i buy below it, on
-- 2,000 price levels a side (tick 0.1); resting, it makes 3 events. With CANCELLED=1 each order's
-- place (k = 0) is followed by its cancel (k = 1, 2 events).
INSERT INTO engine_journal (command_no, kind, payload, first_seq, event_count)
SELECT $base + 1000 + $steps * i + k + 1, CASE k WHEN 0 THEN 'place' ELSE 'cancel' END,
       CASE k WHEN 0 THEN
         jsonb_build_object('t', 'place', 'ts', 1795000100000 + i,
                            'id', '10000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'),
                            'user', '00000000-0000-4000-8000-' || lpad(to_hex(1 + i % 1000), 12, '0'),
                            'market', 1, 'type', 'Limit', 'tif', 'GTC', 'qty', 1 + i % 3,
                            'side', CASE WHEN i % 2 = 0 THEN 'Sell' ELSE 'Buy' END,
                            'price', CASE WHEN i % 2 = 0 THEN 975000 + (i / 2) % 2000 ELSE 965000 - (i / 2) % 2000 END,
                            'leverage', 0, 'reduce_only', false, 'slippage_bps', 0, 'client_order_id', 'r' || i)
       ELSE
         jsonb_build_object('t', 'cancel', 'ts', 1795000100000 + i,
                            'id', '10000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'),
                            'user', '00000000-0000-4000-8000-' || lpad(to_hex(1 + i % 1000), 12, '0'))
       END,
       $seq0 + 1000 + $events * i + 3 * k, 3 - k
FROM generate_series(0, $orders - 1) i, generate_series(0, $steps - 1) k;
SQL
t1=$(date +%s.%N)
echo "journal written in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s; $(psql "$DATABASE_URL" -qtAc "SELECT count(*) FROM engine_journal") commands"
timed_start() {
  s=$(date +%s.%N)
  start_trading
  wait_health || { echo "trading did not come up"; tail -5 "$work/trading.log"; exit 1; }
  e=$(date +%s.%N)
  echo "run $1: exec to /health answering: $(python3 -c "print(f'{$e - $s:.2f}')") s"
  grep -E '"(engine snapshot loaded|journal replayed|engine recovered)"' "$work/trading.log" | tail -3
}
for run in 1 2 3; do
  timed_start "$run (snapshots off)"
  [ $run = 3 ] && curl -s "http://127.0.0.1:$tp/internal/v1/invariants" -H 'Authorization: Bearer bench' && echo
  kill -TERM $trading; wait $trading || true
done
SNAPSHOTS=1000  # any journal of this bench is long enough for one (small ORDERS too)
for run in 4 5 6; do
  timed_start "$run (snapshots on)"
  if [ $run = 4 ]; then
    # The follower engine recovers on its own thread, then stores the snapshot.
    for _ in $(seq 1 3000); do grep -q '"engine snapshot stored"' "$work/trading.log" && break; sleep 0.1; done
    grep -E '"engine":"follower"|"engine snapshot (stored|not stored)"|follower' "$work/trading.log" | tail -4 || true
  fi
  [ $run = 6 ] && curl -s "http://127.0.0.1:$tp/internal/v1/invariants" -H 'Authorization: Bearer bench' && echo
  kill -TERM $trading; wait $trading || true
done
