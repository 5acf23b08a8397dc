"""Faults (issue #9): the active trading process killed under load while a standby waits on the
engine lock; PostgreSQL stopped and started mid-load; Redis down for 30 s. In each, nothing
acknowledged is lost, answers during the fault are quick 503s (never a hang), and the system comes
back by itself."""
import signal
import time
import unittest
import uuid
from decimal import Decimal as D

from acked_orders import OrderLoad, check_acknowledged
from harness import Stack, request, wait_until
from trading_client import TRADING_ENV, Trading

LEGACY = {"HYDROX_LEGACY_CLIENT_AUTH": "1", "RATE_LIMIT_IP_BURST": "10000000", "RATE_LIMIT_USER_BURST": "10000000"}


def fund(t, n):
    users = [str(uuid.uuid4()) for _ in range(n)]
    for u in users:
        t.deposit(u, "100000")
    return users, D(100000) * n


def log_text(stack, name):
    with open(f"{stack.log_dir}/{name}.log", encoding="utf-8", errors="replace") as f:
        return f.read()


class StandbyFailover(unittest.TestCase):
    def test_standby_takes_over_and_loses_nothing(self):
        stack = Stack("failover", extra_env={"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "gateway": LEGACY},
                      services=["trading", "gateway"])
        try:
            standby = stack.add_standby("trading")
            stack.start("trading")
            stack.start(standby, wait=False)
            wait_until(lambda: "waiting for the engine lock" in log_text(stack, standby), 10, what="the standby to wait")
            stack.start("gateway")
            active = Trading(stack.ports["trading"])
            active.mark("BTC_USDM_PERP", "97000")
            users, deposited = fund(active, 12)
            # Orders through the gateway, which knows both addresses.
            load = OrderLoad(stack.gateway_port, users, seed=7).start()
            time.sleep(1.5)
            before = len(load.acked)
            killed = time.monotonic()
            stack.procs["trading"].send_signal(signal.SIGKILL)
            stack.procs["trading"].wait()
            wait_until(lambda: any(a[5] > killed for a in list(load.acked)), 30, what="an order acknowledged by the standby")
            takeover = min(a[6] for a in list(load.acked) if a[5] > killed) - killed
            time.sleep(1.0)
            load.stop()
            print(f"takeover: {takeover:.2f} s from SIGKILL to the first order acknowledged through the gateway; "
                  f"{before} acknowledged before, {len(load.acked) - before} after; answers {load.statuses}", flush=True)
            self.assertGreater(before, 20)
            self.assertGreater(len(load.acked) - before, 20)
            self.assertNotIn(500, load.statuses)
            check_acknowledged(self, stack, Trading(stack.ports[standby]), load.acked, deposited)
            # The old active comes back as the standby of the new one: it waits, it does not write.
            stack.start("trading", wait=False)
            wait_until(lambda: log_text(stack, "trading").count("waiting for the engine lock") >= 1, 10,
                       what="the restarted process to wait as standby")
            self.assertIsNone(stack.procs["trading"].poll())
            with self.assertRaises(OSError):
                request(stack.ports["trading"], "GET", "/health", timeout=1)
            stack.procs["trading"].kill()
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
