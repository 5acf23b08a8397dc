"""Crash safety (issue #4): clients place orders concurrently, the trading service is killed with
SIGKILL at a random moment, and after the restart every acknowledged order exists in a state that
legally follows the acknowledged one, no client_order_id appears twice, positions sum to zero per
market and USDM is conserved to the last unit. Repeated for several kill moments."""
import random
import signal
import time
import unittest
import uuid
from decimal import Decimal as D

from acked_orders import OrderLoad, check_acknowledged
from harness import Stack
from trading_client import TRADING_ENV, Trading


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

    def test_acknowledged_orders_survive_sigkill(self):
        all_acked = []
        for round_no, kill_after in enumerate([0.4, 1.1, 0.05 + random.random()]):
            load = OrderLoad(self.t.port, self.users, seed=round_no).start()
            time.sleep(kill_after)
            self.stack.procs["trading"].send_signal(signal.SIGKILL)
            self.stack.procs["trading"].wait()
            load.stop()
            acked = load.acked
            t0 = time.monotonic()
            self.stack.start("trading")
            restart_s = time.monotonic() - t0
            all_acked += acked
            self.check(all_acked)
            print(f"round {round_no}: killed after {kill_after:.2f}s, {len(acked)} acknowledged orders, "
                  f"restart to listening {restart_s:.2f}s", flush=True)
        self.assertGreater(len(all_acked), 100, "the clients placed too few orders to mean anything")

    def check(self, acked):
        check_acknowledged(self, self.stack, self.t, acked, self.deposited)
        # A retried client_order_id after the restart returns the original order.
        if acked:
            user, coid, oid, *_ = acked[0]
            r = self.t.place(user, side="Buy", price="96500", amount="0.001", client_order_id=coid)
            self.assertEqual((r.status, r.json()["id"]), (200, oid))


if __name__ == "__main__":
    unittest.main()
