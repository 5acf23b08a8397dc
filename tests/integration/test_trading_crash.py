"""Crash safety (issue #4): clients place orders concurrently, the trading service is killed with
SIGKILL at a random moment, and after the restart every acknowledged order exists in a state that
legally follows the acknowledged one, no client_order_id appears twice, positions sum to zero per
market and USDM is conserved to the last unit. Repeated for several kill moments."""
import random
import signal
import subprocess
import threading
import time
import unittest
import uuid
from decimal import Decimal as D

from harness import Stack, request, wait_until
from trading_client import TRADING_ENV, Trading

# What an acknowledged status may become later (fills and self-trade cancels continue).
LEGAL_NEXT = {
    "Open": {"Open", "PartiallyFilled", "Filled", "Cancelled"},
    "PartiallyFilled": {"PartiallyFilled", "Filled", "Cancelled"},
    "Filled": {"Filled"},
    "Cancelled": {"Cancelled"},
}


class CrashSafety(unittest.TestCase):
    def setUp(self):
        self.stack = Stack("crash", extra_env={"trading": TRADING_ENV}, services=["trading"])
        self.stack.start("trading")
        self.t = Trading(self.stack.ports["trading"])
        self.t.mark("BTC_USDM_PERP", "97000")
        self.users = [str(uuid.uuid4()) for _ in range(12)]
        self.deposited = D(0)
        for u in self.users:
            self.t.deposit(u, "100000")
            self.deposited += D("100000")

    def tearDown(self):
        self.stack.close()

    def sql(self, query):
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", self.stack.infra["PGPORT"], "-U", "postgres",
                              "-d", self.stack.db_name, "-At", "-F", "|", "-c", query],
                             capture_output=True, text=True, check=True).stdout
        return [line.split("|") for line in out.splitlines() if line]

    def run_clients(self, acked, stop, seed):
        rng = random.Random(seed)

        def client(n):
            while not stop.is_set():
                user = rng.choice(self.users)
                coid = f"c{seed}-{n}-{uuid.uuid4().hex[:12]}"
                body = {"symbol": "BTC_USDM_PERP", "type": "Limit", "side": rng.choice(["Buy", "Sell"]),
                        "price": str(96500 + rng.randint(0, 10) * 100), "amount": str(D(rng.randint(1, 10)) / 1000),
                        "client_order_id": coid, "time_in_force": rng.choice(["GTC", "GTC", "IOC"])}
                try:
                    r = request(self.t.port, "POST", "/api/v1/orders", body=body,
                                headers={"X-User-ID": user, "Content-Type": "application/json"}, timeout=5)
                except OSError:
                    continue  # the service is gone: this request was never acknowledged
                if r.status == 201:
                    j = r.json()
                    acked.append((user, coid, j["id"], j["status"], D(str(j["filled"]))))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for th in threads:
            th.start()
        return threads

    def test_acknowledged_orders_survive_sigkill(self):
        all_acked = []
        for round_no, kill_after in enumerate([0.4, 1.1, 0.05 + random.random()]):
            acked, stop = [], threading.Event()
            threads = self.run_clients(acked, stop, seed=round_no)
            time.sleep(kill_after)
            self.stack.procs["trading"].send_signal(signal.SIGKILL)
            self.stack.procs["trading"].wait()
            stop.set()
            for th in threads:
                th.join()
            t0 = time.monotonic()
            self.stack.start("trading")
            restart_s = time.monotonic() - t0
            all_acked += acked
            self.check(all_acked)
            print(f"round {round_no}: killed after {kill_after:.2f}s, {len(acked)} acknowledged orders, "
                  f"restart to listening {restart_s:.2f}s", flush=True)
        self.assertGreater(len(all_acked), 100, "the clients placed too few orders to mean anything")

    def check(self, acked):
        rows = {r[0]: r for r in self.sql("SELECT id, status, filled::text, client_order_id, user_id FROM orders")}
        for user, coid, oid, status, filled in acked:
            self.assertIn(oid, rows, f"acknowledged order {oid} lost")
            _, now_status, now_filled, now_coid, now_user = rows[oid]
            self.assertIn(now_status, LEGAL_NEXT[status], (oid, status, now_status))
            self.assertGreaterEqual(D(now_filled), filled, oid)
            self.assertEqual((now_coid, now_user), (coid, user))
        dupes = self.sql("SELECT user_id, client_order_id FROM orders WHERE client_order_id IS NOT NULL"
                         " GROUP BY 1, 2 HAVING count(*) > 1")
        self.assertEqual(dupes, [])
        # The engine after replay: Σ positions = 0, Σ collateral - Σ cost = net deposits, no negative user.
        inv = self.t.invariants()
        self.assertTrue(inv["ok"], inv)
        self.assertEqual(D(str(inv["net_deposits"])), self.deposited)
        # The read tables agree with the engine: positions sum to zero, balances sum to deposits
        # plus the open positions' cost difference (checked by the engine above).
        net = self.sql("SELECT coalesce(sum(size), 0)::text FROM positions WHERE market_id = 1")
        self.assertEqual(D(net[0][0]), D(0))
        # A retried client_order_id after the restart returns the original order.
        if acked:
            user, coid, oid, _, _ = acked[0]
            r = self.t.place(user, side="Buy", price="96500", amount="0.001", client_order_id=coid)
            self.assertEqual((r.status, r.json()["id"]), (200, oid))


if __name__ == "__main__":
    unittest.main()
