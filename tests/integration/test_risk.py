"""Mark price, funding and liquidation through the running services (issue #7, perp-rules
"Liquidation", "Funding", "Mark and index price"), against real PostgreSQL and a private Redis
that carries the index feed this test controls."""
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import unittest
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal as D

from harness import Stack, request, wait_until
from trading_client import TRADING_ENV, Trading, loads_exact, new_user

INSURANCE = "00000000-0000-7000-8000-000000000002"
PROTOCOL_VAULT = "00000000-0000-7000-8000-000000000003"
BTC = "BTC_USDM_PERP"


class IndexFeed:
    """Publishes index samples on the stack's private Redis, as market's feed would."""

    def __init__(self, port, symbol=BTC):
        self.port, self.symbol = port, symbol
        self.price = None
        self.sock = socket.create_connection(("127.0.0.1", port))
        if os.environ.get("REDISCLI_AUTH"):  # every test Redis has a password (harness.read_infra)
            pw = os.environ["REDISCLI_AUTH"].encode()
            self.sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw))
            assert self.sock.recv(64).startswith(b"+OK"), "AUTH refused"
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def publish(self, price, time_ms=None):
        body = json.dumps({"symbol": self.symbol, "price": str(price),
                           "time_ms": int(time.time() * 1000) if time_ms is None else time_ms, "source": "test"})
        parts = [b"PUBLISH", f"hydrox:index:{self.symbol}".encode(), body.encode()]
        frame = b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        with self.lock:
            self.sock.sendall(frame)
            self.sock.recv(64)

    def _run(self):
        while self.running:
            if self.price is not None:
                self.publish(self.price)
            time.sleep(0.1)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def openapi_check(path, method, resp):
    """The answer against docs/openapi.yaml (the routes this issue added or changed)."""
    import os
    import yaml
    from harness import SOURCE_DIR
    from test_openapi import check
    with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
        check(yaml.safe_load(f), path, method, resp)


def psql(stack, query):
    stack.wait_projected()  # the read tables are written behind the acknowledgement
    out = subprocess.run(["psql", stack.database_url, "-Atc", query], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def risk_stack(name, **trading_env):
    env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "1", "MARK_INTERVAL_MS": "100", **trading_env},
           "market": {"INDEX_FEED": "none"}}
    stack = Stack(name, extra_env=env, services=["trading", "market"], own_redis=True)
    stack.start("trading")
    stack.start("market")
    return stack


def book_mark(t):
    r = request(t.port, "GET", f"/internal/v1/orderbook?symbol={BTC}")
    return loads_exact(r.body)["mark_price"]


def position(t, user):
    r = t.call(user, "GET", "/api/v1/positions")
    assert r.status == 200, r.body
    ps = [p for p in loads_exact(r.body) if p["symbol"] == BTC]
    return ps[0] if ps else None


class LiquidationWorkedExample(unittest.TestCase):
    """perp-rules: long 0.5 BTC at 97,000, 10x, max 40x: liquidation price 88,405.06."""

    @classmethod
    def setUpClass(cls):
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}}
        cls.stack = Stack("liq", extra_env=env, services=["trading"])
        cls.stack.start("trading")
        cls.t = Trading(cls.stack.ports["trading"])

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def test_liquidated_exactly_below_the_liquidation_price_and_backstopped(self):
        t = self.t
        t.mark(BTC, "97000")
        t.deposit(PROTOCOL_VAULT, "1000000")
        t.deposit(INSURANCE, "10000")
        a, b = new_user(), new_user()
        t.deposit(a, "4874.25")  # 4,850 of margin after the 24.25 taker fee
        t.deposit(b, "100000")
        self.assertEqual(t.place(b, side="Sell", price="97000", amount="0.5").status, 201)
        r = t.place(a, side="Buy", price="97000", amount="0.5", leverage=10)
        self.assertEqual(r.json()["status"], "Filled", r.body)
        p = position(t, a)
        self.assertEqual(p["liquidation_price"], D("88405.1"))  # 88,405.06 rounded up to the tick
        self.assertEqual(p["margin"], D("4850"))

        t.mark(BTC, "88405.1")
        self.assertIsNotNone(position(t, a), "above the liquidation price nothing happens")
        t.mark(BTC, "88405")
        self.assertIsNone(position(t, a), "below it the position is gone in the same step")
        bal = loads_exact(t.call(a, "GET", "/api/v1/balances").body)[0]
        self.assertEqual(bal["total"], D("0"))
        r = t.call(a, "GET", "/api/v1/fills")
        openapi_check("/api/v1/fills", "GET", r)
        fills = loads_exact(r.body)
        self.assertEqual(fills[0]["liquidation"], "BACKSTOP")
        self.assertEqual(fills[0]["price"], D("88405"))
        self.assertEqual(fills[1]["liquidation"], None)
        # The protocol vault holds the position now; the invariants hold.
        vault = position(t, PROTOCOL_VAULT)
        self.assertEqual((vault["side"], vault["size"]), ("Long", D("0.5")))
        inv = t.invariants()
        self.assertTrue(inv["ok"], inv)
        # The liquidation is on record, and the insurance fund is public.
        row = psql(self.stack, f"SELECT stage, account_value < maintenance_margin FROM liquidations WHERE user_id = '{a}'")
        self.assertEqual(row, "BACKSTOP|t")
        r = request(t.port, "GET", "/api/v1/insurance")
        self.assertEqual(r.status, 200)
        openapi_check("/api/v1/insurance", "GET", r)
        self.assertEqual(loads_exact(r.body)["balance"], D("10000"))


class CrossLiquidationPrice(unittest.TestCase):
    """Issue #21: a cross position's liquidation price is where the engine liquidates it, whatever
    the current mark, with a second position in another market: one tick inside it nothing
    happens, one tick beyond it the position goes (issue's example: long 0.5 at 97,000 on 10,000
    USDM showed 75,974.7 at mark 99,000 and 96,974.7 at mark 78,000)."""

    def test_the_shown_price_is_the_engines_at_every_mark_with_two_positions(self):
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}}
        stack = Stack("crossliq", extra_env=env, services=["trading"])
        try:
            stack.start("trading")
            t = Trading(stack.ports["trading"])
            t.mark(BTC, "97000")
            t.mark("ETH_USDM_PERP", "3000")
            t.deposit(PROTOCOL_VAULT, "10000000")
            t.deposit(INSURANCE, "10000")
            a, b = new_user(), new_user()
            t.deposit(a, "10000")
            t.deposit(b, "1000000")
            self.assertEqual(t.place(b, side="Sell", price="97000", amount="0.5").status, 201)
            self.assertEqual(t.place(a, side="Buy", price="97000", amount="0.5", leverage=10).json()["status"], "Filled")
            tick = D("0.1")

            def liq():
                return position(t, a)["liquidation_price"]

            first = liq()
            self.assertGreater(first, D("70000"))
            for mark in ("99000", "90000", "80000", str(first + tick), "97000"):
                t.mark(BTC, mark)
                self.assertEqual(liq(), first, f"at mark {mark}")
            # A second position (a short in ETH) that loses when ETH rises moves it, exactly.
            self.assertEqual(t.place(b, side="Buy", price="3000", amount="2", symbol="ETH_USDM_PERP").status, 201)
            r = t.place(a, side="Sell", price="3000", amount="2", symbol="ETH_USDM_PERP", leverage=10)
            self.assertEqual(r.json()["status"], "Filled", r.body)
            t.mark("ETH_USDM_PERP", "3400")
            second = liq()
            self.assertGreater(second, first)
            for mark in ("95000", str(second + 5 * tick)):
                t.mark(BTC, mark)
                self.assertEqual(liq(), second, f"at mark {mark}")
            t.mark(BTC, str(second + tick))
            self.assertIsNotNone(position(t, a), "one tick inside the price nothing happens")
            t.mark(BTC, str(second))
            self.assertIsNotNone(position(t, a), "at the price nothing happens")
            t.mark(BTC, str(second - tick))
            self.assertIsNone(position(t, a), "one tick beyond it the position is liquidated")
            self.assertTrue(t.invariants()["ok"])
        finally:
            stack.close()


class Shock(unittest.TestCase):
    """1,000 leveraged accounts; the index drops 30 % in one step."""

    def test_every_account_below_maintenance_is_liquidated_in_that_step_and_money_is_conserved(self):
        stack = risk_stack("shock")
        feed = IndexFeed(stack.redis_port)
        try:
            t = Trading(stack.ports["trading"])
            feed.price = "100000"
            wait_until(lambda: book_mark(t) == D("100000"), 10, what="the mark to follow the index")
            deposits = D(0)
            whale = new_user()
            t.deposit(whale, "50000000")
            t.deposit(PROTOCOL_VAULT, "2000000")
            t.deposit(INSURANCE, "100000")
            deposits += D("50000000") + D("2000000") + D("100000")
            rng = random.Random(7)
            accounts = []
            for i in range(1000):
                lev = rng.randint(1, 25)
                margin = D(rng.randint(200, 2000))
                amount = (margin * lev / D("100000")).quantize(D("0.001"))
                accounts.append((new_user(), lev, margin, amount))
            total = sum(a[3] for a in accounts)
            r = t.place(whale, side="Sell", price="100000", amount=str(total), leverage=1)
            self.assertEqual(r.status, 201, r.body)
            whale_order = r.json()["id"]

            def open_position(acc):
                user, lev, margin, amount = acc
                t.deposit(user, str(margin + 100))  # the taker fee and some room
                r = t.place(user, side="Buy", price="100000", amount=str(amount), leverage=lev, time_in_force="IOC")
                assert r.status == 201 and r.json()["status"] == "Filled", r.body

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(open_position, accounts))
            deposits += sum(a[2] + 100 for a in accounts)
            self.assertEqual(t.call(whale, "DELETE", f"/api/v1/orders?symbol={BTC}").status, 200)  # an empty book
            self.assertIsNone(loads_exact(t.call(whale, "GET", "/api/v1/orders").body) or None, whale_order)
            self.assertTrue(t.invariants()["ok"])

            # Which accounts must go: value < maintenance at 70,000 (exact decimals, perp-rules).
            def below(acc):
                user, lev, margin, amount = acc
                fee = (amount * 100000 * D("0.0005")).quantize(D("0.000001"), rounding="ROUND_UP")
                value = margin + 100 - fee + amount * (70000 - 100000)
                mm = amount * 70000 / 80
                return value < mm
            expected = {a[0] for a in accounts if below(a)}
            self.assertGreater(len(expected), 500)
            self.assertLess(len(expected), 1000)

            feed.price = "70000"  # one step, -30 %
            wait_until(lambda: book_mark(t) == D("70000"), 10, what="the mark to follow the crash")
            liquidated = set(psql(stack, "SELECT user_id FROM liquidations").split())
            self.assertEqual(liquidated, expected)
            # All of them in the same engine step (one mark command).
            self.assertEqual(psql(stack, "SELECT count(DISTINCT time) FROM liquidations"), "1")
            stages = dict(line.split("|") for line in psql(
                stack, "SELECT stage, count(*) FROM liquidations GROUP BY stage").splitlines())
            self.assertIn("BACKSTOP", stages)
            self.assertIn("ADL", stages)  # the insurance fund ran dry on the way

            for user, *_ in accounts:
                p = position(t, user)
                self.assertEqual(p is None, user in expected, user)
            inv = t.invariants()
            self.assertTrue(inv["ok"], inv)
            self.assertGreaterEqual(D(str(inv["insurance_fund"])), 0)
            # From the database: nobody below zero, positions net to zero, USDM conserved exactly.
            self.assertEqual(psql(stack, "SELECT count(*) FROM balances WHERE collateral < 0"), "0")
            self.assertEqual(D(psql(stack, "SELECT coalesce(sum(size), 0) FROM positions WHERE market_id = 1")), 0)
            collateral = D(psql(stack, "SELECT sum(collateral) FROM balances"))
            cost = D(psql(stack, "SELECT coalesce(sum(cost), 0) FROM positions"))
            self.assertEqual(collateral - cost, deposits)
            # A liquidated account ends at exactly zero: never below, and nothing left behind.
            for user, *_ in accounts:
                if user in expected:
                    bal = loads_exact(t.call(user, "GET", "/api/v1/balances").body)[0]
                    self.assertEqual(bal["total"], 0)
        finally:
            feed.close()
            stack.close()


class Funding(unittest.TestCase):
    def test_worked_example_and_exactly_once_across_kills(self):
        stack = risk_stack("fund", FUNDING_INTERVAL_MS="3000", FUNDING_SAMPLE_MS="200")
        feed = IndexFeed(stack.redis_port)
        try:
            t = Trading(stack.ports["trading"])
            feed.price = "10000"
            wait_until(lambda: book_mark(t) == D("10000"), 10, what="the mark to follow the index")
            maker, longer = new_user(), new_user()
            t.deposit(maker, "1000000")
            t.deposit(longer, "100000")
            # perp-rules: index 10,000, impact bid 10,100 (impact notional 10,000 USDM), asks above
            # the index: P = 1 %, F = 0.95 %; a 10 BTC long pays 118.75 per hour.
            self.assertEqual(t.place(maker, side="Buy", price="10100", amount="5").status, 201)
            self.assertEqual(t.place(maker, side="Sell", price="10200", amount="30").status, 201)
            r = t.place(longer, side="Buy", price="10200", amount="10", time_in_force="IOC")
            self.assertEqual(r.json()["status"], "Filled", r.body)

            def rows(rate=None):
                q = "SELECT extract(epoch FROM time)::bigint, rate FROM funding_rates WHERE market_id = 1"
                return [(int(a), D(b)) for a, b in (line.split("|") for line in psql(stack, q).splitlines())]

            wait_until(lambda: any(r == D("0.0011875") for _, r in rows()), 15, what="a full interval at F = 0.95 %")
            ledger = psql(stack, f"SELECT reference, delta FROM ledger WHERE user_id = '{longer}' AND reason = 'FUNDING'")
            charged = dict(line.split("|") for line in ledger.splitlines())
            full = [ts for ts, r in rows() if r == D("0.0011875")]
            for ts in full:
                ref = next(k for k in charged if k.endswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".000Z"))
                self.assertEqual(D(charged[ref]), D("-118.75"))
            # The user's own history (issue 23): each payment with its rate and the position's size,
            # and the same money in the ledger; both paginate with X-Next-Cursor.
            r = t.call(longer, "GET", "/api/v1/funding/payments")
            openapi_check("/api/v1/funding/payments", "GET", r)
            payments = loads_exact(r.body)
            full_payments = [p for p in payments if p["rate"] == D("0.0011875")]
            self.assertTrue(full_payments, payments)
            for p in full_payments:
                self.assertEqual((p["symbol"], p["amount"], p["side"], p["position_size"], p["rate_8h"]),
                                 (BTC, D("-118.75"), "Long", D("10"), D("0.0095")))
                self.assertIn(p["time"], full)
            r = t.call(longer, "GET", "/api/v1/ledger?kind=FUNDING")
            openapi_check("/api/v1/ledger", "GET", r)
            self.assertEqual(sorted(e["amount"] for e in loads_exact(r.body)), sorted(p["amount"] for p in payments))
            r = t.call(longer, "GET", "/api/v1/ledger?kind=DEPOSIT,TRADING_FEE&limit=1")
            first_page = loads_exact(r.body)
            self.assertEqual(len(first_page), 1)
            cursor = r.header("X-Next-Cursor")
            self.assertEqual(cursor, first_page[0]["id"])
            r = t.call(longer, "GET", f"/api/v1/ledger?kind=DEPOSIT,TRADING_FEE&limit=1&before={cursor}")
            second_page = loads_exact(r.body)
            self.assertEqual(len(second_page), 1)
            self.assertEqual({first_page[0]["kind"], second_page[0]["kind"]}, {"DEPOSIT", "TRADING_FEE"})
            for bad in ("kind=NOPE", "start=x", "before=1", "symbol=BTC_USDM_PERP"):
                r = t.call(longer, "GET", f"/api/v1/ledger?{bad}")
                self.assertEqual(r.status, 400, bad)
                openapi_check("/api/v1/ledger", "GET", r)
            if len(payments) > 1:
                r = t.call(longer, "GET", "/api/v1/funding/payments?limit=1")
                r2 = t.call(longer, "GET", f"/api/v1/funding/payments?limit=1&before={r.header('X-Next-Cursor')}")
                self.assertEqual(loads_exact(r2.body)[0]["id"], payments[1]["id"])
            # The history route shows it.
            r = request(stack.ports["market"], "GET", f"/api/v1/markets/{BTC}/funding")
            openapi_check("/api/v1/markets/{symbol}/funding", "GET", r)
            hist = loads_exact(r.body)
            r = request(stack.ports["market"], "GET", f"/api/v1/markets/{BTC}/funding?limit=0")
            self.assertEqual(r.status, 400)
            openapi_check("/api/v1/markets/{symbol}/funding", "GET", r)
            # The ticker shows the rate the current interval is heading for (F / 8 = 0.11875 %).
            r = request(stack.ports["market"], "GET", f"/api/v1/markets/{BTC}/ticker")
            self.assertEqual(loads_exact(r.body)["funding_rate"], D("0.0011875"))
            self.assertIn(D("0.0011875"), [h["rate"] for h in hist])
            latest = max(ts for ts, _ in rows())  # read after the route: one interval may have settled since
            self.assertIn(hist[0]["time"], (latest, latest - 3))
            self.assertEqual([h["time"] for h in hist], sorted((h["time"] for h in hist), reverse=True))

            # Kill trading just before, at and just after settlement moments.
            for offset_ms in (-300, 0, 300):
                now = time.time() * 1000
                boundary = (now // 3000 + 1) * 3000
                if boundary + offset_ms - now < 200:
                    boundary += 3000
                time.sleep((boundary + offset_ms - now) / 1000)
                stack.stop("trading", sig=signal.SIGKILL)
                time.sleep(0.5)
                stack.start("trading")
            wait_until(lambda: len(rows()) >= 2 and max(ts for ts, _ in rows()) * 1000 > time.time() * 1000 - 3000, 15,
                       what="settlement to catch up")
            time.sleep(3.5)
            settled = sorted(ts for ts, _ in rows())
            # Contiguous: every interval from the first to the last settled exactly once.
            self.assertEqual(settled, list(range(settled[0], settled[-1] + 3, 3)))
            per_interval = psql(stack, f"SELECT reference, count(*) FROM ledger WHERE user_id = '{longer}'"
                                       " AND reason = 'FUNDING' GROUP BY reference HAVING count(*) <> 1")
            self.assertEqual(per_interval, "")
            # Charged for exactly the intervals that ended while the position was open.
            opened_ms = min(int(f["time_ms"]) for f in loads_exact(t.call(longer, "GET", "/api/v1/fills").body))
            # (Settlement goes on meanwhile: compare up to the last interval read above.)
            charged_at = psql(stack, f"SELECT extract(epoch FROM time)::bigint FROM ledger WHERE user_id = '{longer}'"
                                     f" AND reason = 'FUNDING' AND time <= to_timestamp({settled[-1]}) ORDER BY time").split()
            self.assertEqual([int(x) for x in charged_at], [ts for ts in settled if ts * 1000 > opened_ms])
            # The position's funding_paid is the sum of its payments; the books balance.
            # (Both read between two settlements: retried until no settlement fell in between.)
            def agree():
                before = position(t, longer)["funding_paid"]
                paid = D(psql(stack, f"SELECT -sum(delta) FROM ledger WHERE user_id = '{longer}' AND reason = 'FUNDING'"))
                return before == paid == position(t, longer)["funding_paid"]
            wait_until(agree, 10, interval=0.2, what="funding_paid = the sum of the position's payments")
            inv = t.invariants()
            self.assertTrue(inv["ok"], inv)
        finally:
            feed.close()
            stack.close()


    def test_settlement_sees_the_positions_open_at_the_interval_end(self):
        # The periodic job runs once a minute here, so only the clock hook can settle on time: the
        # first command stamped after an interval's end settles that interval before it applies.
        stack = risk_stack("fundedge", FUNDING_INTERVAL_MS="3000", FUNDING_SAMPLE_MS="200",
                           MARK_INTERVAL_MS="60000")
        feed = IndexFeed(stack.redis_port)
        try:
            t = Trading(stack.ports["trading"])
            feed.price = "10000"
            poker = new_user()

            def poked_mark():
                t.deposit(poker, "1")  # any command runs the clock once its moment has come
                return book_mark(t) == D("10000")

            wait_until(poked_mark, 10, interval=0.2, what="the mark to follow the index")
            maker, trader = new_user(), new_user()
            t.deposit(maker, "1000000")
            t.deposit(trader, "100000")
            self.assertEqual(t.place(maker, side="Buy", price="9990", amount="20").status, 201)
            self.assertEqual(t.place(maker, side="Sell", price="10000", amount="20").status, 201)

            def just_after_boundary():
                now = time.time() * 1000
                boundary = (now // 3000 + 1) * 3000
                time.sleep((boundary + 40 - now) / 1000)
                return int(boundary // 1000)

            opened_after = just_after_boundary()
            r = t.place(trader, side="Buy", price="10000", amount="10", time_in_force="IOC")
            self.assertEqual(r.json()["status"], "Filled", r.body)
            closed_after = just_after_boundary()
            r = t.place(trader, side="Sell", price="9990", amount="10", time_in_force="IOC", reduce_only=True)
            self.assertEqual(r.json()["status"], "Filled", r.body)
            fills = loads_exact(t.call(trader, "GET", "/api/v1/fills").body)
            self.assertTrue(all(f["time_ms"] % 3000 >= 40 for f in fills), fills)
            just_after_boundary()
            t.deposit(poker, "1")

            settled = [int(x) for x in psql(stack, "SELECT extract(epoch FROM time)::bigint FROM funding_rates"
                                                   " WHERE market_id = 1 ORDER BY time").split()]
            self.assertIn(opened_after, settled)
            self.assertIn(closed_after, settled)
            charged = psql(stack, f"SELECT extract(epoch FROM time)::bigint, delta FROM ledger WHERE user_id = '{trader}'"
                                  " AND reason = 'FUNDING' ORDER BY time").splitlines()
            # Open from just after `opened_after` to just after `closed_after`: one interval ended
            # while it was open, and it pays for that one only (F = 0.01 %: 10 x 10,000 x 0.01 % / 8).
            self.assertEqual([line.split("|") for line in charged], [[str(closed_after), "-1.25"]])
            inv = t.invariants()
            self.assertTrue(inv["ok"], inv)
        finally:
            feed.close()
            stack.close()


class OracleFaults(unittest.TestCase):
    def test_stale_absurd_or_missing_index_never_liquidates(self):
        stack = risk_stack("orf", INDEX_MAX_AGE_MS="1000")
        feed = IndexFeed(stack.redis_port)
        try:
            t = Trading(stack.ports["trading"])
            feed.price = "100000"
            wait_until(lambda: book_mark(t) == D("100000"), 10, what="the mark to follow the index")
            t.deposit(PROTOCOL_VAULT, "1000000")
            a, b = new_user(), new_user()
            t.deposit(a, "1100")
            t.deposit(b, "100000")
            self.assertEqual(t.place(b, side="Sell", price="100000", amount="0.1").status, 201)
            self.assertEqual(t.place(a, side="Buy", price="100000", amount="0.1", leverage=10).json()["status"], "Filled")
            liq = position(t, a)["liquidation_price"]
            self.assertGreater(liq, 90000)
            low = "80000"  # far below the liquidation price
            feed.price = None  # the feed goes quiet
            time.sleep(0.3)
            feed.publish(low, time_ms=int(time.time() * 1000) - 5000)  # stale
            feed.publish("100", time_ms=int(time.time() * 1000))        # absurd: -99.9 %
            feed.publish("1000000", time_ms=int(time.time() * 1000) + 1)  # absurd: x10
            time.sleep(2.0)  # and now the index is missing altogether
            self.assertEqual(book_mark(t), D("100000"))
            self.assertIsNotNone(position(t, a))
            self.assertEqual(psql(stack, "SELECT count(*) FROM liquidations"), "0")
            with open(f"{stack.log_dir}/trading.log", encoding="utf-8") as f:
                self.assertIn("index sample refused", f.read())
            # A fresh, plausible sample below the liquidation price does liquidate.
            feed.price = low
            wait_until(lambda: position(t, a) is None, 10, what="the liquidation")
            self.assertTrue(t.invariants()["ok"])
        finally:
            feed.close()
            stack.close()


if __name__ == "__main__":
    unittest.main()
