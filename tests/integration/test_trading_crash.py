"""Crash safety (issue #4): clients place orders concurrently, the trading service is killed with
SIGKILL at a random moment, and after the restart every acknowledged order exists in a state that
legally follows the acknowledged one, no client_order_id appears twice, positions sum to zero per
market and USDM is conserved to the last unit. Repeated for several kill moments."""
import json
import os
import random
import signal
import subprocess
import time
import unittest
import uuid
from decimal import Decimal as D

from acked_orders import OrderLoad, check_acknowledged, sql
from harness import Stack
from trading_client import TRADING_ENV, Trading


class CrashSafety(unittest.TestCase):
    def setUp(self):
        # Snapshots every few hundred commands: restarts load one and replay the journal after it.
        self.stack = Stack("crash", extra_env={"trading": {**TRADING_ENV, "SNAPSHOT_EVERY_COMMANDS": "300"}},
                           services=["trading"])
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


# Every table the projector writes (pipeline/rows.cpp), each row as its text.
READ_TABLES = ["orders", "trades", "fills", "ledger", "positions", "balances", "marks", "klines_1m",
               "funding_rates", "funding_payments", "liquidations", "vault_transactions"]


def read_tables(stack, wait_projected=True):
    return {t: [r[0] for r in sql(stack, f"SELECT x::text FROM {t} x ORDER BY 1", wait_projected)]
            for t in READ_TABLES}


def projected_up_to_the_journal(stack):
    (watermark, journal), = sql(stack, "SELECT (SELECT command_no FROM projector_watermark),"
                                       " (SELECT coalesce(max(command_no), 0) FROM engine_journal)", False)
    return int(watermark), int(journal)


class ProjectorRebuild(unittest.TestCase):
    """Journal-first (issue 22): the read tables are a projection of the journal. After a run with
    kills at full rate, every read table equals, row for row, the same tables rebuilt from the
    journal alone (emptied, watermark 0, trading restarted: recovery projects every command)."""

    def test_read_tables_equal_a_rebuild_from_the_journal_after_kills(self):
        stack = Stack("rebuild", extra_env={"trading": {**TRADING_ENV, "SNAPSHOT_EVERY_COMMANDS": "300",
                                                        "MARK_FROM_INDEX": "0"}},
                      services=["trading"])
        self.addCleanup(stack.close)
        stack.start("trading")
        t = Trading(stack.ports["trading"])
        t.mark("BTC_USDM_PERP", "97000")
        users = [str(uuid.uuid4()) for _ in range(10)]
        for u in users:
            t.deposit(u, "100000")
        acked = []
        # KILL_ROUNDS: bench/crash_rebuild.sh runs 10 (make test: 3).
        rounds = int(os.environ.get("KILL_ROUNDS", "3"))
        clients = int(os.environ.get("KILL_CLIENTS", "6"))
        rng = random.Random(11)
        for round_no in range(rounds):
            kill_after = 0.2 + rng.random() * 0.8
            load = OrderLoad(t.port, users, seed=100 + round_no, clients=clients).start()
            time.sleep(kill_after)
            stack.procs["trading"].send_signal(signal.SIGKILL)
            stack.procs["trading"].wait()
            load.stop()
            acked += load.acked
            stack.start("trading")
            # Recovery projected what the killed process had acknowledged and not written: every
            # acknowledged order is in the read tables before the service answers anyone.
            watermark, journal = projected_up_to_the_journal(stack)
            self.assertEqual(watermark, journal, f"round {round_no}: the projector is behind after recovery")
            check_acknowledged(self, stack, t, acked, D(100000) * len(users))
            print(f"round {round_no}: killed after {kill_after:.2f}s, {len(load.acked)} acknowledged orders "
                  f"({len(load.acked) / kill_after:.0f}/s), journal at command {journal}", flush=True)
        self.assertGreater(len(acked), 100, "the clients placed too few orders to mean anything")
        # Positions opened, flipped and closed, and a mark move, after the last restart.
        a, b = users[0], users[1]
        t.call(a, "DELETE", "/api/v1/orders")
        t.call(b, "DELETE", "/api/v1/orders")
        for side_a, amount in [("Buy", "0.01"), ("Sell", "0.02"), ("Buy", "0.01")]:
            side_b = "Sell" if side_a == "Buy" else "Buy"
            self.assertEqual(t.place(b, side=side_b, price="97000", amount=amount).status, 201)
            r = t.place(a, side=side_a, price="97000", amount=amount, time_in_force="IOC")
            self.assertEqual(r.status, 201, r.body)
        t.mark("BTC_USDM_PERP", "97100")
        deadline = time.monotonic() + 10
        while projected_up_to_the_journal(stack)[0] < projected_up_to_the_journal(stack)[1]:
            self.assertLess(time.monotonic(), deadline, "the projector did not catch up")
            time.sleep(0.05)
        projected = read_tables(stack)
        self.assertGreater(len(projected["fills"]), 50)
        self.assertTrue(projected["positions"])

        stack.stop("trading")
        sql(stack, "TRUNCATE " + ", ".join(READ_TABLES) + "; UPDATE projector_watermark SET command_no = 0, last_seq = 0;"
                   " SELECT 1", False)
        self.assertEqual(read_tables(stack, False)["orders"], [])
        stack.start("trading")
        watermark, journal = projected_up_to_the_journal(stack)
        self.assertEqual(watermark, journal)
        rebuilt = read_tables(stack)
        for table in READ_TABLES:
            self.assertEqual(len(rebuilt[table]), len(projected[table]), table)
            for row_a, row_b in zip(projected[table], rebuilt[table]):
                self.assertEqual(row_a, row_b, table)


def log_lines(stack, service, msg, **fields):
    """The JSON log records of `service` whose msg is `msg` (and with these fields), oldest first."""
    out = []
    with open(os.path.join(stack.log_dir, f"{service}.log"), encoding="utf-8", errors="replace") as f:
        for line in f:
            if f'"msg":"{msg}"' in line:
                record = json.loads(line)
                if all(record.get(k) == v for k, v in fields.items()):
                    out.append(record)
    return out


class Snapshots(unittest.TestCase):
    """A restart loads the newest engine snapshot and replays only the journal after it; an
    unusable snapshot is skipped for a full replay; either way the state is the acknowledged one."""

    def test_restart_from_snapshot_then_from_the_whole_journal_gives_the_same_state(self):
        # Marks pinned (no index feed): nothing but this test's commands changes the state.
        # Parts of 4 KiB: every snapshot is stored in several rows.
        stack = Stack("snap", extra_env={"trading": {**TRADING_ENV, "SNAPSHOT_EVERY_COMMANDS": "100",
                                                     "SNAPSHOT_PART_BYTES": "4096", "MARK_FROM_INDEX": "0"}},
                      services=["trading"])
        self.addCleanup(stack.close)
        stack.start("trading")
        t = Trading(stack.ports["trading"])
        t.mark("BTC_USDM_PERP", "97000")
        users = [str(uuid.uuid4()) for _ in range(6)]
        for u in users:
            t.deposit(u, "100000")
        rng = random.Random(5)
        placed = []
        for i in range(260):
            u = users[i % len(users)]
            side = "Buy" if i % 2 else "Sell"
            price = str(97000 + rng.randint(-5, 5) * 10)
            r = t.place(u, side=side, price=price, amount="0.001", client_order_id=f"snap-{i}")
            self.assertEqual(r.status, 201, r.body)
            placed.append((u, f"snap-{i}", r.json()["id"]))
        wait = time.monotonic() + 10
        while not log_lines(stack, "trading", "engine snapshot stored") and time.monotonic() < wait:
            time.sleep(0.1)
        stored = log_lines(stack, "trading", "engine snapshot stored")
        self.assertTrue(stored, "no snapshot stored")
        self.assertGreater(int(stored[-1]["parts"]), 2)
        for i in range(260, 300):  # commands after the snapshot: the tail a restart replays
            r = t.place(users[i % len(users)], side="Buy", price="96000", amount="0.001", client_order_id=f"snap-{i}")
            self.assertEqual(r.status, 201, r.body)

        def restart():
            before = t.invariants()
            self.assertTrue(before["ok"], before)
            balances = {u: t.call(u, "GET", "/api/v1/balances").body for u in users}
            stack.procs["trading"].send_signal(signal.SIGKILL)
            stack.procs["trading"].wait()
            stack.start("trading")
            after = t.invariants()
            self.assertEqual(after["state_hash"], before["state_hash"])
            self.assertEqual(after["resting_orders"], before["resting_orders"])
            for u in users:
                self.assertEqual(json.loads(t.call(u, "GET", "/api/v1/balances").body), json.loads(balances[u]))
            # client_order_id dedupe holds across the restart, for orders on both sides of the snapshot.
            for u, coid, oid in (placed[0], placed[150], placed[-1]):
                r = t.place(u, side="Buy", price="96500", amount="0.001", client_order_id=coid)
                self.assertEqual((r.status, r.json()["id"]), (200, oid))

        restart()
        loaded = log_lines(stack, "trading", "engine snapshot loaded", engine="primary")
        self.assertEqual(len(loaded), 1)
        replayed = log_lines(stack, "trading", "journal replayed", engine="primary")[-1]
        self.assertEqual(replayed["after_snapshot"], loaded[0]["command_no"])
        self.assertGreaterEqual(int(loaded[0]["command_no"]), int(stored[0]["command_no"]))
        self.assertLess(int(replayed["commands"]), 100 + 50)  # only the tail, not the ~310 commands in all
        self.assertGreater(int(replayed["commands"]), 0)

        db = ["psql", "-h", "127.0.0.1", "-p", stack.infra["PGPORT"], "-U", "postgres", "-d", stack.db_name, "-qAtc"]
        sql = lambda q: subprocess.run(db + [q], check=True, capture_output=True, text=True).stdout.split()
        kept = sql("SELECT command_no FROM engine_snapshots ORDER BY command_no")
        self.assertEqual(len(kept), 2, "the newest two are kept")
        older, newest = kept

        # The newest snapshot with a part missing: the one before it is loaded, and the journal after it.
        sql(f"DELETE FROM engine_snapshot_parts WHERE command_no = {newest} AND part = 1")
        restart()
        skipped = log_lines(stack, "trading", "engine snapshot unusable; trying the one before", engine="primary")
        self.assertEqual([(r["command_no"], r["reason"][:10]) for r in skipped], [(newest, "part 1 of ")])
        loaded = log_lines(stack, "trading", "engine snapshot loaded", engine="primary")
        self.assertEqual(loaded[-1]["command_no"], older)
        self.assertEqual(log_lines(stack, "trading", "journal replayed", engine="primary")[-1]["after_snapshot"], older)

        # Both altered (one byte of their last part): the whole journal is replayed, same state.
        wait = time.monotonic() + 10  # first the follower stores one after its own recovery
        while sql("SELECT max(command_no) FROM engine_snapshots") == [newest] and time.monotonic() < wait:
            time.sleep(0.1)
        sql("UPDATE engine_snapshot_parts p SET bytes = set_byte(bytes, length(bytes) - 1, (get_byte(bytes, length(bytes) - 1) + 1) % 256)"
            " WHERE part = (SELECT max(part) FROM engine_snapshot_parts q WHERE q.command_no = p.command_no)")
        restart()
        # The newest (the follower's, after the previous start) is altered; the one before it is
        # the one still missing a part.
        skipped = log_lines(stack, "trading", "engine snapshot unusable; trying the one before", engine="primary")
        self.assertIn("altered", skipped[-1]["reason"])
        unusable = log_lines(stack, "trading", "engine snapshot unusable; replaying the whole journal", engine="primary")
        self.assertEqual([r["command_no"] for r in unusable], [newest])
        self.assertEqual(log_lines(stack, "trading", "journal replayed", engine="primary")[-1]["after_snapshot"], "0")

if __name__ == "__main__":
    unittest.main()
