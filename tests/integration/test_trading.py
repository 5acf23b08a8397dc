"""The trading service end to end against real PostgreSQL and Redis (issue #4): exact numbers,
cancels, closes, history, fills, balances, validation of every field, idempotent operator calls."""
import json
import unittest
from decimal import Decimal as D

from harness import Stack, wait_until
from trading_client import TRADING_ENV, Trading, loads_exact, new_user


class TradingEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack("tr", extra_env={"trading": TRADING_ENV}, services=["trading"])
        cls.stack.start("trading")
        cls.t = Trading(cls.stack.ports["trading"])
        cls.t.mark("BTC_USDM_PERP", "97000")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def orders(self, user, path="/api/v1/orders"):
        r = self.t.call(user, "GET", path)
        self.assertEqual(r.status, 200, r.body)
        return loads_exact(r.body)

    def test_place_partial_fill_fill_cancel_close_history_fills_balances(self):
        t = self.t
        a, b = new_user(), new_user()
        t.deposit(a, "10000")
        t.deposit(b, "10000")
        r = t.place(a, side="Sell", price="97000", amount="0.01", time_in_force="GTC", leverage=10)
        self.assertEqual(r.status, 201, r.body)
        sell = r.json()
        self.assertEqual(sell["status"], "Open")

        r = t.place(b, side="Buy", price=97000.0, amount=0.004)
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json()["status"], "Filled")
        open_a = self.orders(a)
        self.assertEqual(len(open_a), 1)
        self.assertEqual(open_a[0]["status"], "PartiallyFilled")
        self.assertEqual(open_a[0]["filled"], D("0.004"))
        self.assertEqual(open_a[0]["amount"], D("0.01"))
        self.assertEqual(open_a[0]["price"], D("97000"))

        r = t.place(b, side="Buy", price="97100", amount="0.006")
        self.assertEqual(r.json()["status"], "Filled")
        self.assertEqual(self.orders(a), [])
        hist = self.orders(a, "/api/v1/orders/history")
        self.assertEqual([o["id"] for o in hist], [sell["id"]])
        self.assertEqual(hist[0]["status"], "Filled")
        self.assertEqual(hist[0]["average_price"], D("97000"))

        fills_b = loads_exact(t.call(b, "GET", "/api/v1/fills").body)
        self.assertEqual(len(fills_b), 2)
        self.assertEqual([f["price"] for f in fills_b], [D("97000"), D("97000")])  # maker's price
        self.assertEqual([f["amount"] for f in fills_b], [D("0.006"), D("0.004")])  # newest first
        self.assertEqual([f["fee"] for f in fills_b], [D("0.291"), D("0.194")])    # 0.05 % taker
        self.assertEqual({f["liquidity"] for f in fills_b}, {"taker"})
        fills_a = loads_exact(t.call(a, "GET", "/api/v1/fills").body)
        self.assertEqual([f["fee"] for f in fills_a], [D("0.1164"), D("0.0776")])  # 0.02 % maker

        pos_b = loads_exact(t.call(b, "GET", "/api/v1/positions").body)
        self.assertEqual(len(pos_b), 1)
        p = pos_b[0]
        self.assertEqual((p["side"], p["size"], p["entry_price"], p["mark_price"]), ("Long", D("0.01"), D("97000"), D("97000")))
        self.assertEqual(p["margin"], D("97"))          # 0.01 × 97,000 / 10
        self.assertEqual(p["unrealized_pnl"], D("0"))
        bal = loads_exact(t.call(b, "GET", "/api/v1/balances").body)[0]
        self.assertEqual(bal["asset"], "USDM")
        self.assertEqual(bal["total"], D("9999.515"))   # 10,000 - 0.194 - 0.291
        self.assertEqual(bal["locked"], D("97"))
        self.assertEqual(bal["available"], D("9902.515"))
        self.assertEqual(bal["available"] + bal["locked"], bal["total"])

        # Mark moves: unrealized PnL and balances follow at once.
        t.mark("BTC_USDM_PERP", "97500")
        p = loads_exact(t.call(b, "GET", "/api/v1/positions").body)[0]
        self.assertEqual(p["unrealized_pnl"], D("5"))   # (97,500 - 97,000) × 0.01
        self.assertEqual(p["pnl_percent"], D("5.13"))   # 5 / 97.5 × 100 = 5.128…
        t.mark("BTC_USDM_PERP", "97000")

        # Cancel: own order yes, twice no, someone else's no.
        r = t.place(a, side="Sell", price="98000", amount="0.01")
        oid = r.json()["id"]
        self.assertEqual(t.call(b, "DELETE", f"/api/v1/orders/{oid}").status, 404)
        r = t.call(a, "DELETE", f"/api/v1/orders/{oid}")
        self.assertEqual((r.status, r.json()["status"]), (200, "cancelled"))
        self.assertEqual(t.call(a, "DELETE", f"/api/v1/orders/{oid}").status, 404)
        hist = self.orders(a, "/api/v1/orders/history")
        self.assertEqual(hist[0]["status"], "Cancelled")
        self.assertEqual(hist[0]["cancel_reason"], "USER")

        # Close through the book: a reduce-only market order, realized PnL in the fill.
        t.place(a, side="Buy", price="96900", amount="0.02")
        pid = p["id"]
        self.assertEqual(t.call(a, "POST", f"/api/v1/positions/{pid}/close").status, 404)  # not A's
        r = t.call(b, "POST", f"/api/v1/positions/{pid}/close")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["status"], "closed")
        self.assertEqual(loads_exact(t.call(b, "GET", "/api/v1/positions").body), [])
        last_fill = loads_exact(t.call(b, "GET", "/api/v1/fills?limit=1").body)[0]
        self.assertEqual((last_fill["price"], last_fill["realized_pnl"]), (D("96900"), D("-1")))
        self.assertEqual(last_fill["order_id"], r.json()["order_id"])
        self.assertEqual(t.call(b, "POST", f"/api/v1/positions/{pid}/close").status, 404)

        # Cancel all for a symbol.
        t.place(a, side="Buy", price="96000", amount="0.001")
        r = t.call(a, "DELETE", "/api/v1/orders?symbol=BTC_USDM_PERP")
        self.assertEqual(r.json()["status"], "cancelled")
        self.assertGreaterEqual(r.json()["count"], 2)
        self.assertEqual(self.orders(a), [])
        inv = t.invariants()
        self.assertTrue(inv["ok"], inv)

    def test_pagination_with_cursor(self):
        t = self.t
        u = new_user()
        t.deposit(u, "100000")
        ids = [t.place(u, side="Buy", price=str(90000 + i), amount="0.001").json()["id"] for i in range(7)]
        seen = []
        cursor = None
        while True:
            path = "/api/v1/orders?limit=3" + (f"&before={cursor}" if cursor else "")
            r = t.call(u, "GET", path)
            page = r.json()
            seen += [o["id"] for o in page]
            cursor = r.header("X-Next-Cursor")
            if not cursor:
                break
        self.assertEqual(seen, list(reversed(ids)))
        self.assertEqual(t.call(u, "GET", "/api/v1/orders?limit=0").status, 400)
        self.assertEqual(t.call(u, "GET", "/api/v1/orders?limit=1001").status, 400)
        self.assertEqual(t.call(u, "GET", "/api/v1/orders?foo=1").json()["error"]["field"], "foo")
        t.call(u, "DELETE", "/api/v1/orders")

    def test_client_order_id_returns_the_original(self):
        t = self.t
        u = new_user()
        t.deposit(u, "1000")
        first = t.place(u, side="Buy", price="90000", amount="0.001", client_order_id="abc-1")
        self.assertEqual(first.status, 201)
        again = t.place(u, side="Buy", price="91000", amount="0.002", client_order_id="abc-1")
        self.assertEqual(again.status, 200, again.body)
        self.assertEqual(again.json()["id"], first.json()["id"])
        self.assertEqual(again.json()["price"], 90000)
        self.assertEqual(len(self.orders(u)), 1)

    def test_risk_rejections_are_422_with_the_engine_reason(self):
        t = self.t
        u = new_user()
        t.deposit(u, "10")
        r = t.place(u, side="Buy", price="97000", amount="0.01")
        self.assertEqual(r.status, 422, r.body)
        self.assertEqual(r.json()["error"]["code"], "INSUFFICIENT_MARGIN")
        rich = new_user()
        t.deposit(rich, "100000")
        t.place(rich, side="Sell", price="97000", amount="0.01")
        r = t.place(u, side="Buy", price="97000", amount="0.001", time_in_force="PostOnly")
        self.assertEqual(r.json()["error"]["code"], "POST_ONLY_WOULD_CROSS")
        r = t.place(u, side="Sell", price="97000", amount="0.001", reduce_only=True)
        self.assertEqual(r.json()["error"]["code"], "REDUCE_ONLY_WOULD_INCREASE")
        r = t.place(u, side="Buy", price="150000", amount="0.001")
        self.assertEqual((r.status, r.json()["error"]["code"]), (422, "PRICE_OUT_OF_BAND"))
        t.call(rich, "DELETE", "/api/v1/orders")

    def test_operator_calls_are_idempotent_and_protected(self):
        t = self.t
        u = new_user()
        first = t.deposit(u, "12.345678", key="dep-1")
        again = t.deposit(u, "12.345678", key="dep-1")
        self.assertEqual(first, again)
        self.assertEqual(D(str(first["balance"])), D("12.345678"))
        r = t.op("POST", "/internal/v1/withdrawals", {"user_id": u, "amount": "20", "idempotency_key": "w-1"})
        self.assertEqual((r.status, r.json()["error"]["code"]), (422, "INSUFFICIENT_BALANCE"))
        r = t.op("POST", "/internal/v1/withdrawals", {"user_id": u, "amount": "2.345678", "idempotency_key": "w-2"})
        self.assertEqual(D(str(r.json()["balance"])), D("10"))
        f1 = t.op("POST", "/internal/v1/faucet", {"user_id": u}).json()
        f2 = t.op("POST", "/internal/v1/faucet", {"user_id": u}).json()
        self.assertEqual(f1, f2)
        self.assertEqual(D(str(f1["balance"])), D("10010"))
        from harness import request
        r = request(t.port, "POST", "/internal/v1/deposits", body={"user_id": u, "amount": "1", "idempotency_key": "x"},
                    headers={"Authorization": "Bearer wrong"})
        self.assertEqual(r.status, 401)
        r = request(t.port, "POST", "/internal/v1/deposits", body={"user_id": u, "amount": "1", "idempotency_key": "x"})
        self.assertEqual(r.status, 401)

    def test_every_user_route_needs_a_user(self):
        for method, path in [("GET", "/api/v1/orders"), ("POST", "/api/v1/orders"), ("GET", "/api/v1/orders/history"),
                             ("DELETE", "/api/v1/orders"), ("GET", "/api/v1/fills"), ("GET", "/api/v1/positions"),
                             ("GET", "/api/v1/balances"), ("DELETE", "/api/v1/orders/" + new_user()),
                             ("POST", f"/api/v1/positions/{new_user()}/close")]:
            for header in [None, "not-a-uuid", ""]:
                r = self.t.call(header, method, path, body={})
                self.assertEqual(r.status, 401, (method, path, header, r.body))
                self.assertEqual(r.json()["error"]["code"], "UNAUTHENTICATED")


    def test_isolated_margin_position_balances_restart_and_liquidation(self):
        from acked_orders import sql
        t = self.t
        t.mark("BTC_USDM_PERP", "97000")
        a, b = new_user(), new_user()
        t.deposit(a, "10000")
        t.deposit(b, "10000")
        self.assertEqual(t.place(a, side="Sell", price="97000", amount="0.1").status, 201)
        r = t.place(b, side="Buy", price="97000", amount="0.1", leverage=10, margin_mode="isolated")
        self.assertEqual((r.status, r.json()["status"]), (201, "Filled"), r.body)

        def position():
            rows = loads_exact(t.call(b, "GET", "/api/v1/positions").body)
            return rows[0] if rows else None

        def balance():
            return loads_exact(t.call(b, "GET", "/api/v1/balances").body)[0]

        # The position holds 0.1 × 97,000 / 10 = 970 USDM out of the collateral; its liquidation
        # price comes from that margin alone (perp-rules' example scaled: 88,405.06).
        p = position()
        self.assertEqual((p["margin_mode"], p["margin"], p["leverage"]), ("isolated", D("970"), 10))
        self.assertLessEqual(abs(p["liquidation_price"] - D("88405.06")), D("0.1"))
        bal = balance()
        self.assertEqual(bal["collateral"], D("9025.15"))  # 10,000 - 970 - 4.85 taker fee
        self.assertEqual((bal["isolated_margin"], bal["locked"], bal["available"]), (D("970"), D("970"), D("9025.15")))
        self.assertEqual(bal["total"], D("9995.15"))
        self.assertEqual(bal["equity"], D("9995.15"))
        # The mode is locked while the market has the position.
        r = t.place(b, side="Buy", price="96000", amount="0.01", margin_mode="cross")
        self.assertEqual((r.status, r.json()["error"]["code"]), (422, "MARGIN_MODE_LOCKED"))
        # Rebuilt from the journal after a restart: same mode, same margin.
        self.stack.stop("trading")
        self.stack.start("trading")
        self.assertEqual((position()["margin_mode"], position()["margin"]), ("isolated", D("970")))
        # The mark falls through the liquidation price: only the 970 is lost, the collateral stays.
        t.mark("BTC_USDM_PERP", "88000")
        self.assertIsNone(position())
        bal = balance()
        self.assertEqual((bal["collateral"], bal["locked"], bal["isolated_margin"]), (D("9025.15"), D("0"), D("0")))
        # The ledger follows the collateral to the unit; the positions row keeps the mode.
        ledger = sql(self.stack, f"SELECT sum(delta), count(*) FILTER (WHERE reason = 'ISOLATED_MARGIN') FROM ledger WHERE user_id = '{b}'")
        self.assertEqual((D(ledger[0][0]), int(ledger[0][1]) >= 2), (D("9025.15"), True))
        row = sql(self.stack, f"SELECT margin_mode, isolated_margin, size FROM positions WHERE user_id = '{b}'")
        self.assertEqual((row[0][0], D(row[0][1]), D(row[0][2])), ("isolated", D("0"), D("0")))
        self.assertTrue(t.invariants()["ok"])
        t.mark("BTC_USDM_PERP", "97000")


class TriggerOrders(unittest.TestCase):
    """Stop and take-profit orders through the API: held as Untriggered, fired by the mark."""

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack("trg", extra_env={"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}}, services=["trading"])
        cls.stack.start("trading")
        cls.t = Trading(cls.stack.ports["trading"])

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def test_stop_loss_and_take_profit(self):
        import os
        import yaml
        from harness import SOURCE_DIR
        from test_openapi import check
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        t = self.t
        t.mark("BTC_USDM_PERP", "97000")
        a, b, c = new_user(), new_user(), new_user()
        for u in (a, b, c):
            t.deposit(u, "100000")
        t.place(b, side="Sell", price="97000", amount="0.1")
        self.assertEqual(t.place(a, side="Buy", price="97000", amount="0.1").json()["status"], "Filled")
        # A's stop-loss and take-profit, both reduce-only.
        sl = t.place(a, side="Sell", type="StopMarket", trigger_price="95000", amount="0.1", reduce_only=True)
        self.assertEqual(sl.status, 201, sl.body)
        check(doc, "/api/v1/orders", "POST", sl)
        self.assertEqual(sl.json()["status"], "Untriggered")
        tp = t.place(a, side="Sell", type="TakeProfitLimit", trigger_price="99000", price="99000", amount="0.1",
                     reduce_only=True)
        self.assertEqual(tp.status, 201, tp.body)
        r = t.call(a, "GET", "/api/v1/orders")
        check(doc, "/api/v1/orders", "GET", r)
        held = {o["id"]: o for o in loads_exact(r.body)}
        self.assertEqual(held[sl.json()["id"]]["status"], "Untriggered")
        self.assertEqual(held[sl.json()["id"]]["trigger_price"], D("95000"))
        self.assertEqual(held[tp.json()["id"]]["type"], "TakeProfitLimit")
        # Refusals: already past the trigger; trigger_price missing; trigger_price on a Limit order.
        r = t.place(a, side="Sell", type="StopMarket", trigger_price="98000", amount="0.1")
        self.assertEqual((r.status, r.json()["error"]["code"]), (422, "WOULD_TRIGGER_IMMEDIATELY"))
        check(doc, "/api/v1/orders", "POST", r)
        self.assertEqual(t.place(a, side="Sell", type="StopMarket", amount="0.1").json()["error"]["code"], "MISSING_FIELD")
        self.assertEqual(t.place(a, side="Sell", price="97000", trigger_price="1", amount="0.1").status, 400)
        # The mark falls through the stop: it fires into C's bid; the take-profit, left alone,
        # can no longer reduce anything when it fires later.
        t.place(c, side="Buy", price="94500", amount="0.2")
        t.mark("BTC_USDM_PERP", "95000")
        self.assertEqual(loads_exact(t.call(a, "GET", "/api/v1/positions").body), [])
        hist = {o["id"]: o for o in loads_exact(t.call(a, "GET", "/api/v1/orders/history").body)}
        self.assertEqual((hist[sl.json()["id"]]["status"], hist[sl.json()["id"]]["type"]), ("Filled", "StopMarket"))
        self.assertEqual(hist[sl.json()["id"]]["average_price"], D("94500"))
        self.assertEqual(t.call(a, "DELETE", f"/api/v1/orders/{tp.json()['id']}").status, 200)
        self.assertTrue(t.invariants()["ok"])
        # A stop survives a restart (journal replay) and still fires.
        st = t.place(b, side="Buy", type="StopMarket", trigger_price="96000", amount="0.05", reduce_only=True)
        self.assertEqual(st.status, 201, st.body)
        self.stack.stop("trading")
        self.stack.start("trading")
        t.place(c, side="Sell", price="96100", amount="0.05")
        t.mark("BTC_USDM_PERP", "96000")
        hist = {o["id"]: o for o in loads_exact(t.call(b, "GET", "/api/v1/orders/history").body)}
        self.assertEqual(hist[st.json()["id"]]["status"], "Filled")


class ReadYourWrites(unittest.TestCase):
    """Journal first (issue 22): an order is acknowledged once journaled and its rows follow. With
    the projector held (a transaction locking its watermark row), the owner's reads wait and answer
    503 after the bound, while another user's reads answer at once, even with more of the owner's
    reads waiting than the blocking pool has threads; released, the owner sees the order."""

    def test_reads_wait_for_the_callers_rows_and_nobody_elses(self):
        import subprocess
        import threading
        import time
        stack = Stack("ryw", extra_env={"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0", "BLOCKING_THREADS": "2"}},
                      services=["trading"])
        self.addCleanup(stack.close)
        stack.start("trading")
        t = Trading(stack.ports["trading"])
        t.mark("BTC_USDM_PERP", "97000")
        a, b = new_user(), new_user()
        t.deposit(a, "10000")
        t.deposit(b, "10000")
        placed_b = t.place(b, side="Buy", price="90000", amount="0.001")
        self.assertEqual(placed_b.status, 201, placed_b.body)
        stack.wait_projected()
        hold = subprocess.Popen(["psql", stack.database_url, "-qAt"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        self.addCleanup(lambda: (hold.kill(), hold.wait()))
        hold.stdin.write("BEGIN;\nSELECT 'held' FROM projector_watermark FOR UPDATE;\n")
        hold.stdin.flush()
        self.assertEqual(hold.stdout.readline().strip(), "held")

        started = time.monotonic()
        placed_a = t.place(a, side="Buy", price="90000", amount="0.002")
        self.assertEqual(placed_a.status, 201, placed_a.body)  # acknowledged: journaled, not projected
        self.assertLess(time.monotonic() - started, 2.0)
        waiting = []

        def read_a():
            t0 = time.monotonic()
            r = t.call(a, "GET", "/api/v1/orders")
            waiting.append((r.status, r.json(), time.monotonic() - t0))

        readers = [threading.Thread(target=read_a) for _ in range(4)]  # more than the pool's 2 threads
        for th in readers:
            th.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        r = t.call(b, "GET", "/api/v1/orders")
        self.assertEqual(r.status, 200, r.body)
        self.assertLess(time.monotonic() - t0, 1.0, "another user's read waited for the held projection")
        self.assertEqual([o["id"] for o in r.json()], [placed_b.json()["id"]])
        for th in readers:
            th.join()
        self.assertEqual(len(waiting), 4)
        for status, body, took in waiting:
            self.assertEqual((status, body["error"]["code"]), (503, "SERVICE_UNAVAILABLE"))
            self.assertGreater(took, 2.5)  # the bound (3 s), not at once
        hold.stdin.write("ROLLBACK;\n")
        hold.stdin.flush()
        wait_until(lambda: t.call(a, "GET", "/api/v1/orders").status == 200, 10, what="the projector to go on")
        self.assertEqual([o["id"] for o in t.call(a, "GET", "/api/v1/orders").json()], [placed_a.json()["id"]])


if __name__ == "__main__":
    unittest.main()
