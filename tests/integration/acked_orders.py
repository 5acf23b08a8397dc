"""Order load with a record of what was acknowledged, and the check that every acknowledged order
survived (crash, failover and database-restart tests share them)."""
import random
import subprocess
import threading
import time
import uuid
from decimal import Decimal as D

from harness import request

# What an acknowledged status may become later (fills and self-trade cancels continue).
LEGAL_NEXT = {
    "Open": {"Open", "PartiallyFilled", "Filled", "Cancelled"},
    "PartiallyFilled": {"PartiallyFilled", "Filled", "Cancelled"},
    "Filled": {"Filled"},
    "Cancelled": {"Cancelled"},
}


def sql(stack, query, wait_projected=True):
    if wait_projected:
        stack.wait_projected()  # the read tables are written behind the acknowledgement
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", stack.infra["PGPORT"], "-U", "postgres",
                          "-d", stack.db_name, "-At", "-F", "|", "-c", query],
                         capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


class OrderLoad:
    """`clients` threads placing random limit orders at `port` as `users` until stopped. `acked`
    holds (user, client_order_id, id, status, filled, sent, answered) of every 201 (monotonic times); `statuses` counts every
    answer's status (0: no answer)."""

    def __init__(self, port, users, seed, clients=6, timeout=5.0, keys=None):
        self.port, self.users, self.timeout = port, users, timeout
        self.keys = keys  # user → API key: authenticate with it instead of X-User-ID
        self.acked, self.statuses, self.answers = [], {}, []  # answers: (sent, answered, status)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(seed, n)) for n in range(clients)]

    def start(self):
        for th in self.threads:
            th.start()
        return self

    def stop(self):
        self.stop_event.set()
        for th in self.threads:
            th.join()

    def _client(self, seed, n):
        rng = random.Random(seed * 1000 + n)
        while not self.stop_event.is_set():
            user = rng.choice(self.users)
            coid = f"c{seed}-{n}-{uuid.uuid4().hex[:12]}"
            body = {"symbol": "BTC_USDM_PERP", "type": "Limit", "side": rng.choice(["Buy", "Sell"]),
                    "price": str(96500 + rng.randint(0, 10) * 100), "amount": str(D(rng.randint(1, 10)) / 1000),
                    "client_order_id": coid, "time_in_force": rng.choice(["GTC", "GTC", "IOC"])}
            sent = time.monotonic()
            try:
                who = {"Authorization": f"Bearer {self.keys[user]}"} if self.keys else {"X-User-ID": user}
                r = request(self.port, "POST", "/api/v1/orders", body=body,
                            headers={**who, "Content-Type": "application/json"}, timeout=self.timeout)
                status = r.status
            except OSError:
                status = 0  # no answer: this request was never acknowledged
            with self.lock:
                self.answers.append((sent, time.monotonic(), status))
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 201:
                    j = r.json()
                    self.acked.append((user, coid, j["id"], j["status"], D(str(j["filled"])), sent, time.monotonic()))
            if status in (0, 502, 503, 504):
                time.sleep(0.02)


def check_acknowledged(tc, stack, trading, acked, deposited):
    """Every acknowledged order exists in a state that legally follows the acknowledged one, no
    client_order_id twice, the engine's invariants hold and the read tables' positions sum to 0."""
    rows = {r[0]: r for r in sql(stack, "SELECT id, status, filled::text, client_order_id, user_id FROM orders")}
    for user, coid, oid, status, filled, *_ in acked:
        tc.assertIn(oid, rows, f"acknowledged order {oid} lost")
        _, now_status, now_filled, now_coid, now_user = rows[oid]
        tc.assertIn(now_status, LEGAL_NEXT[status], (oid, status, now_status))
        tc.assertGreaterEqual(D(now_filled), filled, oid)
        tc.assertEqual((now_coid, now_user), (coid, user))
    dupes = sql(stack, "SELECT user_id, client_order_id FROM orders WHERE client_order_id IS NOT NULL"
                       " GROUP BY 1, 2 HAVING count(*) > 1")
    tc.assertEqual(dupes, [])
    # The engine after replay: Σ positions = 0, Σ collateral - Σ cost = net deposits, no negative user.
    inv = trading.invariants()
    tc.assertTrue(inv["ok"], inv)
    tc.assertEqual(D(str(inv["net_deposits"])), deposited)
    net = sql(stack, "SELECT coalesce(sum(size), 0)::text FROM positions WHERE market_id = 1")
    tc.assertEqual(D(net[0][0]), D(0))
