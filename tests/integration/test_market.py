"""Market data against real PostgreSQL and Redis (issue #5, REST part): every shape with exact
values from a scripted sequence of fills, the Redis cache and its fallback, the index feed."""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from decimal import Decimal as D

from harness import Stack, free_port, read_infra, redis_conf, redis_url, request, wait_until
from trading_client import TRADING_ENV, Trading, loads_exact, new_user

INTERVALS = ["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"]


class MarketData(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "market": {"INDEX_FEED": "none"}}
        cls.stack = Stack("mkt", extra_env=env, services=["trading", "market"])
        cls.stack.start("trading")
        cls.stack.start("market")
        cls.t = Trading(cls.stack.ports["trading"])
        cls.m = cls.stack.ports["market"]
        cls.t.mark("BTC_USDM_PERP", "97000")
        a, b = new_user(), new_user()
        cls.t.deposit(a, "100000")
        cls.t.deposit(b, "100000")
        # Scripted fills: 0.004 @ 97,000, 0.006 @ 97,000 and 0.002 @ 97,100 (B buys), then A buys
        # 0.003 @ 96,950 from B's resting sell.
        cls.t.place(a, side="Sell", price="97000", amount="0.01")
        cls.t.place(a, side="Sell", price="97100", amount="0.005")
        cls.t.place(b, side="Buy", price="97000", amount="0.004")
        cls.t.place(b, side="Buy", price="97100", amount="0.008")
        cls.t.place(b, side="Sell", price="96950", amount="0.003")
        cls.t.place(a, side="Buy", price="96950", amount="0.003")
        cls.t.place(a, side="Buy", price="96000", amount="0.002")   # rests: a bid in the book
        # Market's REST data reads the read tables, which trading writes behind its acknowledgements
        # (journal first): these tests check their figures, so they start once every fill is in.
        cls.stack.wait_projected()

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def get(self, path):
        r = request(self.m, "GET", path)
        return r, (loads_exact(r.body) if r.body else None)

    def test_markets_list_every_market_with_its_rules(self):
        r, body = self.get("/api/v1/markets")
        self.assertEqual(r.status, 200)
        self.assertEqual([m["symbol"] for m in body], ["BTC_USDM_PERP", "ETH_USDM_PERP", "SOL_USDM_PERP", "ADA_USDM_PERP"])
        btc = body[0]
        self.assertEqual((btc["tick_size"], btc["lot_size"], btc["min_notional"], btc["max_leverage"]),
                         (D("0.1"), D("0.001"), D("10"), 40))
        for field in ["last_price", "price_change", "price_change_percent", "high_24h", "low_24h", "volume_24h",
                      "quote_volume_24h", "mark_price", "index_price", "funding_rate", "next_funding_time", "open_interest"]:
            self.assertIn(field, btc)

    def test_ticker_has_exact_24h_figures_from_the_fills(self):
        r, t = self.get("/api/v1/markets/BTC_USDM_PERP/ticker")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(t["symbol"], "BTC_USDM_PERP")
        self.assertEqual(t["last_price"], D("96950"))
        self.assertEqual(t["high_24h"], D("97100"))
        self.assertEqual(t["low_24h"], D("96950"))
        self.assertEqual(t["volume_24h"], D("0.015"))          # 0.004 + 0.006 + 0.002 + 0.003
        self.assertEqual(t["quote_volume_24h"], D("1455.05"))  # 388 + 582 + 194.2 + 290.85
        self.assertEqual(t["price_change"], D("-50"))          # 96,950 - 97,000 (first open)
        self.assertEqual(t["price_change_percent"], D("-0.05"))
        self.assertEqual(t["mark_price"], D("97000"))
        self.assertEqual(t["open_interest"], D("0.009"))       # B long 0.012 - 0.003

    def test_klines_in_every_interval(self):
        for interval in INTERVALS:
            r, bars = self.get(f"/api/v1/markets/BTC_USDM_PERP/klines?interval={interval}")
            self.assertEqual(r.status, 200, (interval, r.body))
            self.assertGreaterEqual(len(bars), 1, interval)
            last = bars[-1]
            if len(bars) == 1:  # all fills in one bar of this interval
                self.assertEqual((last["open"], last["high"], last["low"], last["close"], last["volume"]),
                                 (D("97000"), D("97100"), D("96950"), D("96950"), D("0.015")), interval)
            self.assertEqual(sorted(b["time"] for b in bars), [b["time"] for b in bars])  # ascending
        r, bars = self.get("/api/v1/markets/BTC_USDM_PERP/klines")  # default 1h
        self.assertEqual(bars[-1]["time"] % 3600, 0)
        now = int(time.time())
        r, bars = self.get(f"/api/v1/markets/BTC_USDM_PERP/klines?interval=1m&start={now - 3600}&end={now + 60}&limit=5")
        self.assertEqual(r.status, 200)
        self.assertTrue(bars)
        r, none = self.get(f"/api/v1/markets/BTC_USDM_PERP/klines?interval=1m&start=0&end=1000")
        self.assertEqual(none, [])

    def test_bad_kline_requests_name_the_field(self):
        for query, field in [("interval=2m", "interval"), ("interval=1H", "interval"), ("start=abc", "start"),
                             ("start=10&end=5", "start"), ("limit=0", "limit"), ("limit=1001", "limit"),
                             ("end=-1", "end"), ("foo=1", "foo")]:
            r, body = self.get(f"/api/v1/markets/BTC_USDM_PERP/klines?{query}")
            self.assertEqual(r.status, 400, query)
            self.assertEqual(body["error"]["field"], field, query)

    def test_klines_and_funding_history_page_with_the_cursor(self):
        # (Issue 23: every list pages the same way.) Bars and settled intervals of another market,
        # written as the projector would, a minute and an hour apart.
        import subprocess
        base = (int(time.time()) // 3600 - 48) * 3600
        rows = ", ".join(f"(3, to_timestamp({base + 60 * i}), 100, 101, 99, 100.5, 1, 100, 1, {i + 1}, {i + 1})"
                         for i in range(7))
        funding = ", ".join(f"(3, to_timestamp({base + 3600 * i}), 0.0001, 0.0008, 100, 100, 0, 0, 0, 0, {i + 1})"
                            for i in range(5))
        subprocess.run(["psql", self.stack.database_url, "-qc",
                        "INSERT INTO klines_1m (market_id, bucket, open, high, low, close, volume, quote_volume, trades,"
                        f" first_seq, last_seq) VALUES {rows};"
                        "INSERT INTO funding_rates (market_id, time, rate, rate_8h, index_price, mark_price, paid, received,"
                        f" to_insurance, positions, seq) VALUES {funding}"], check=True)
        sym = "SOL_USDM_PERP"
        want = [base + 60 * i for i in range(7)]
        # Backwards from the newest: X-Next-Cursor is `before` of the next page.
        got, query = [], f"interval=1m&limit=3&end={base + 3600}"
        while True:
            r, bars = self.get(f"/api/v1/markets/{sym}/klines?{query}")
            self.assertEqual(r.status, 200, r.body)
            got = [b["time"] for b in bars] + got
            cursor = r.header("X-Next-Cursor")
            if not cursor:
                break
            self.assertEqual(int(cursor), bars[0]["time"])
            query = f"interval=1m&limit=3&before={cursor}"
        self.assertEqual(got, want)
        # Forwards from `start`: X-Next-Cursor is the next `start`.
        got, query = [], f"interval=1m&limit=3&start={base}"
        for _ in range(5):
            r, bars = self.get(f"/api/v1/markets/{sym}/klines?{query}")
            got += [b["time"] for b in bars]
            cursor = r.header("X-Next-Cursor")
            if not cursor:
                break
            query = f"interval=1m&limit=3&start={cursor}"
        self.assertEqual(got, want)
        r, body = self.get(f"/api/v1/markets/{sym}/klines?before=5&end=6")
        self.assertEqual((r.status, body["error"]["field"]), (400, "before"))
        # Funding history, newest first, two at a time.
        got, query = [], "limit=2"
        while True:
            r, page = self.get(f"/api/v1/markets/{sym}/funding?{query}")
            self.assertEqual(r.status, 200, r.body)
            got += [f["time"] for f in page]
            cursor = r.header("X-Next-Cursor")
            if not cursor:
                break
            query = f"limit=2&before={cursor}"
        self.assertEqual(got, [base + 3600 * i for i in reversed(range(5))])

    def test_trades_newest_first_with_taker_side_and_cursor(self):
        r, trades = self.get("/api/v1/markets/BTC_USDM_PERP/trades")
        self.assertEqual([(x["price"], x["amount"], x["side"]) for x in trades],
                         [(D("96950"), D("0.003"), "Buy"), (D("97100"), D("0.002"), "Buy"),
                          (D("97000"), D("0.006"), "Buy"), (D("97000"), D("0.004"), "Buy")])
        r, page = self.get("/api/v1/markets/BTC_USDM_PERP/trades?limit=2")
        self.assertEqual(len(page), 2)
        cursor = r.header("X-Next-Cursor")
        r, rest = self.get(f"/api/v1/markets/BTC_USDM_PERP/trades?limit=2&before={cursor}")
        self.assertEqual([x["id"] for x in page + rest], [x["id"] for x in trades])

    def test_orderbook_comes_from_the_engine_with_its_sequence(self):
        r, book = self.get("/api/v1/markets/BTC_USDM_PERP/orderbook?depth=10")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(book["bids"], [[D("96000"), D("0.002")]])
        self.assertEqual(book["asks"], [[D("97100"), D("0.003")]])
        self.assertGreater(book["seq"], 0)

    def test_unknown_symbol_is_404_on_every_route(self):
        for route in ["ticker", "klines", "trades", "orderbook", "funding"]:
            r, body = self.get(f"/api/v1/markets/DOGE_USDM_PERP/{route}")
            self.assertEqual(r.status, 404, route)
            self.assertEqual(body["error"]["code"], "NOT_FOUND")

    def test_ticker_cache_is_never_older_than_its_ttl(self):
        self.get("/api/v1/markets/ETH_USDM_PERP/ticker")
        r, _ = self.get("/api/v1/markets/ETH_USDM_PERP/ticker")
        self.assertEqual(r.header("X-Cache"), "hit")
        u, v = new_user(), new_user()
        self.t.deposit(u, "100000")
        self.t.deposit(v, "100000")
        self.t.mark("ETH_USDM_PERP", "3650")
        self.t.place(u, symbol="ETH_USDM_PERP", side="Sell", price="3650", amount="0.1")
        self.t.place(v, symbol="ETH_USDM_PERP", side="Buy", price="3650", amount="0.1")
        t0 = time.monotonic()
        wait_until(lambda: self.get("/api/v1/markets/ETH_USDM_PERP/ticker")[1]["volume_24h"] == D("0.1"), 2.0,
                   what="the trade in the ticker")
        self.assertLess(time.monotonic() - t0, 1.5)


class MarketWithoutRedis(unittest.TestCase):
    """Redis down: market answers from PostgreSQL and stays up."""

    def test_answers_from_postgres_when_redis_is_down(self):
        tmp = tempfile.mkdtemp()
        port = free_port()
        read_infra()  # (the password every test Redis has)
        subprocess.run(["redis-server", "-"], input=redis_conf(port, f"{tmp}/r.pid"), check=True)
        wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG", 5)
        stack = Stack("mnr", extra_env={"*": {"REDIS_URL": redis_url(port)}, "market": {"INDEX_FEED": "none"},
                                        "trading": TRADING_ENV}, services=["trading", "market"])
        try:
            stack.start("trading")
            stack.start("market")
            m = stack.ports["market"]
            self.assertEqual(request(m, "GET", "/api/v1/markets/BTC_USDM_PERP/ticker").status, 200)
            with open(f"{tmp}/r.pid") as f:
                os.kill(int(f.read()), signal.SIGTERM)
            wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode != 0, 5)
            time.sleep(1.1)  # past the ticker's TTL: the in-memory copy from before has expired
            for path in ["/api/v1/markets", "/api/v1/markets/BTC_USDM_PERP/ticker",
                         "/api/v1/markets/BTC_USDM_PERP/klines?interval=1m", "/api/v1/markets/BTC_USDM_PERP/trades"]:
                t0 = time.monotonic()
                r = request(m, "GET", path)
                self.assertEqual(r.status, 200, (path, r.body))
                if "/trades" not in path:  # trades are not cached
                    self.assertEqual(r.header("X-Cache"), "bypass", path)
                self.assertLess(time.monotonic() - t0, 2.0, path)
        finally:
            stack.close()
            shutil.rmtree(tmp, ignore_errors=True)


class IndexFeed(unittest.TestCase):
    def test_simulated_index_moves_trading_marks(self):
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "1"},
               "market": {"INDEX_FEED": "simulated", "INDEX_FEED_PERIOD_MS": "100"}}
        stack = Stack("idx", extra_env=env, services=["trading", "market"], own_redis=True)
        try:
            stack.start("trading")
            stack.start("market")
            tp = stack.ports["trading"]
            marks = set()

            def moved():
                r = request(tp, "GET", "/internal/v1/orderbook?symbol=BTC_USDM_PERP")
                marks.add(loads_exact(r.body)["mark_price"])
                return len(marks) >= 3

            wait_until(moved, 10, interval=0.1, what="three different marks")
            r = request(stack.ports["market"], "GET", "/api/v1/markets/BTC_USDM_PERP/ticker")
            self.assertGreater(loads_exact(r.body)["index_price"], 0)
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
