"""The trading API traders and bots expect (issue 23): look up and cancel by client id, amend with
the queue priority rules, batches (one journaled unit, all or nothing after SIGKILL), the dead
man's switch (fires once, across a restart), leverage and margin mode per market. Every answer is
checked for its status and code and against docs/openapi.yaml; the engine's invariants after each
scenario."""
import os
import random
import signal
import threading
import time
import unittest
from decimal import Decimal as D

import yaml

from harness import SOURCE_DIR, Stack, wait_until
from test_openapi import check
from trading_client import TRADING_ENV, Trading, api_key, loads_exact, new_user

SYM = "BTC_USDM_PERP"


def load_doc():
    with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


class TradingApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = load_doc()
        cls.stack = Stack("tapi", extra_env={"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}},
                          services=["trading"])
        cls.stack.start("trading")
        cls.t = Trading(cls.stack.ports["trading"])
        cls.t.mark(SYM, "97000")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def expect(self, status, r, path, method, code=None):
        self.assertEqual(r.status, status, r.body)
        if code:
            self.assertEqual(r.json()["error"]["code"], code, r.body)
        check(self.doc, path, method, r)
        return r

    def funded(self, amount="100000"):
        u = new_user()
        self.t.deposit(u, amount)
        return u

    def order_by_id(self, user, oid):
        r = self.t.call(user, "GET", f"/api/v1/orders/{oid}")
        self.assertEqual(r.status, 200, r.body)
        return loads_exact(r.body)

    def test_look_up_and_cancel_by_client_id(self):
        t = self.t
        a, b = self.funded(), self.funded()
        placed = t.place(a, side="Buy", price="96000", amount="0.01", client_order_id="bot-1.a")
        self.assertEqual(placed.status, 201, placed.body)
        path = "/api/v1/orders/by-client-id/{client_order_id}"
        r = self.expect(200, t.call(a, "GET", "/api/v1/orders/by-client-id/bot-1.a"), path, "GET")
        self.assertEqual((r.json()["id"], r.json()["status"]), (placed.json()["id"], "Open"))
        # Nobody else's: B has no such order, and cannot cancel A's.
        self.expect(404, t.call(b, "GET", "/api/v1/orders/by-client-id/bot-1.a"), path, "GET", "NOT_FOUND")
        self.expect(404, t.call(b, "DELETE", "/api/v1/orders/by-client-id/bot-1.a"), path, "DELETE", "NOT_FOUND")
        self.expect(400, t.call(a, "GET", "/api/v1/orders/by-client-id/has%20space"), path, "GET", "INVALID_FIELD")
        r = self.expect(200, t.call(a, "DELETE", "/api/v1/orders/by-client-id/bot-1.a"), path, "DELETE")
        self.assertEqual(r.json(), {"status": "cancelled", "id": placed.json()["id"], "client_order_id": "bot-1.a"})
        # Historical now: still found, cancelled by the user; a second cancel finds nothing open.
        r = self.expect(200, t.call(a, "GET", "/api/v1/orders/by-client-id/bot-1.a"), path, "GET")
        self.assertEqual((r.json()["status"], r.json()["cancel_reason"]), ("Cancelled", "USER"))
        self.expect(404, t.call(a, "DELETE", "/api/v1/orders/by-client-id/bot-1.a"), path, "DELETE", "NOT_FOUND")
        self.assertTrue(t.invariants()["ok"])

    def test_amend_keeps_priority_only_when_reduced_and_is_atomic(self):
        t = self.t
        a, b, c = self.funded(), self.funded(), self.funded()
        path = "/api/v1/orders/{id}"
        first = t.place(a, side="Sell", price="97100", amount="0.01").json()["id"]
        second = t.place(b, side="Sell", price="97100", amount="0.01").json()["id"]
        # A reduced: keeps its place ahead of B.
        r = self.expect(200, t.call(a, "PATCH", f"/api/v1/orders/{first}", {"symbol": SYM, "amount": "0.006"}),
                        path, "PATCH")
        self.assertEqual((r.json()["kept_priority"], r.json()["amount"], r.json()["remaining"]),
                         (True, 0.006, 0.006))
        self.assertEqual(t.place(c, side="Buy", price="97100", amount="0.006").json()["status"], "Filled")
        self.assertEqual(self.order_by_id(a, first)["status"], "Filled")
        self.assertEqual(self.order_by_id(b, second)["filled"], D("0"))
        # B grows: it goes behind A's next order at that price.
        third = t.place(a, side="Sell", price="97100", amount="0.01").json()["id"]
        r = self.expect(200, t.call(b, "PATCH", f"/api/v1/orders/{second}", {"symbol": SYM, "amount": "0.02"}),
                        path, "PATCH")
        self.assertFalse(r.json()["kept_priority"])
        t.place(c, side="Buy", price="97100", amount="0.01")
        self.assertEqual(self.order_by_id(a, third)["status"], "Filled")
        row = self.order_by_id(b, second)
        self.assertEqual((row["status"], row["amount"], row["filled"]), ("Open", D("0.02"), D("0")))
        # Repriced across the book: it matches at once, as a taker.
        bid = t.place(c, side="Buy", price="96900", amount="0.02").json()["id"]
        r = self.expect(200, t.call(b, "PATCH", f"/api/v1/orders/{second}", {"symbol": SYM, "price": "96900"}),
                        path, "PATCH")
        self.assertEqual((r.json()["status"], r.json()["kept_priority"]), ("Filled", False))
        self.assertEqual(self.order_by_id(c, bid)["status"], "Filled")
        row = self.order_by_id(b, second)
        self.assertEqual((row["price"], row["average_price"]), (D("96900"), D("96900")))
        # Refused amends change nothing.
        small = self.funded("2000")
        resting = t.place(small, side="Buy", price="96000", amount="0.1").json()["id"]  # ~960 USDM at 10x
        before = self.order_by_id(small, resting)
        for body, status, code in [
            ({"symbol": SYM, "amount": "1"}, 422, "INSUFFICIENT_MARGIN"),
            ({"symbol": SYM, "price": "96000", "amount": "0.1"}, 400, "NOTHING_TO_AMEND"),
            ({"symbol": SYM, "price": "200000"}, 422, "PRICE_OUT_OF_BAND"),
            ({"symbol": SYM, "price": "96000.05"}, 400, "TOO_MANY_DECIMALS"),
            ({"symbol": SYM}, 400, "MISSING_FIELD"),
            ({"symbol": "ETH_USDM_PERP", "amount": "0.05"}, 404, "NOT_FOUND"),
            ({"symbol": SYM, "amount": "0.05", "extra": 1}, 400, "UNKNOWN_FIELD"),
        ]:
            self.expect(status, t.call(small, "PATCH", f"/api/v1/orders/{resting}", body), path, "PATCH", code)
        self.expect(404, t.call(a, "PATCH", f"/api/v1/orders/{resting}", {"symbol": SYM, "amount": "0.05"}),
                    path, "PATCH", "NOT_FOUND")
        after = self.order_by_id(small, resting)
        self.assertEqual((after["price"], after["amount"], after["status"]), (before["price"], before["amount"], "Open"))
        # Post-only repriced across the book: refused like a new one; the order stays.
        po = t.place(a, side="Sell", price="98000", amount="0.01", time_in_force="PostOnly").json()["id"]
        t.place(c, side="Buy", price="96950", amount="0.01")
        self.expect(422, t.call(a, "PATCH", f"/api/v1/orders/{po}", {"symbol": SYM, "price": "96900"}), path,
                    "PATCH", "POST_ONLY_WOULD_CROSS")
        self.assertEqual(self.order_by_id(a, po)["price"], D("98000"))
        # A held stop is not amendable.
        stop = t.place(a, side="Sell", type="StopMarket", trigger_price="90000", amount="0.01").json()["id"]
        self.expect(422, t.call(a, "PATCH", f"/api/v1/orders/{stop}", {"symbol": SYM, "amount": "0.005"}), path,
                    "PATCH", "ORDER_NOT_AMENDABLE")
        self.assertTrue(t.invariants()["ok"])

    def test_batches_answer_each_item_on_its_own(self):
        t = self.t
        a = self.funded("5000")
        path = "/api/v1/orders/batch"
        orders = [
            {"symbol": SYM, "side": "Buy", "type": "Limit", "price": "95000", "amount": "0.01", "client_order_id": "bt-1"},
            {"symbol": SYM, "side": "Up", "type": "Limit", "price": "95000", "amount": "0.01"},
            {"symbol": SYM, "side": "Buy", "type": "Limit", "price": "95000", "amount": "5"},
            {"symbol": SYM, "side": "Buy", "type": "Limit", "price": "95000", "amount": "0.01", "client_order_id": "bt-1"},
            {"symbol": SYM, "side": "Buy", "type": "Limit", "price": "95100", "amount": "0.01", "client_order_id": "bt-2"},
        ]
        r = self.expect(200, t.call(a, "POST", path, {"orders": orders}), path, "POST")
        items = r.json()
        self.assertEqual(len(items), 5)
        self.assertEqual(items[0]["status"], "Open")
        self.assertEqual((items[1]["error"]["code"], items[1]["error"]["field"]), ("INVALID_FIELD", "side"))
        self.assertEqual(items[2]["error"]["code"], "INSUFFICIENT_MARGIN")
        self.assertEqual(items[3]["error"]["code"], "DUPLICATE_CLIENT_ORDER_ID")
        self.assertEqual(items[4]["status"], "Open")
        open_ids = {o["id"] for o in t.call(a, "GET", "/api/v1/orders").json()}
        self.assertEqual(open_ids, {items[0]["id"], items[4]["id"]})
        self.expect(400, t.call(a, "POST", path, {"orders": orders * 5}), path, "POST", "INVALID_FIELD")
        self.expect(400, t.call(a, "POST", path, {"orders": []}), path, "POST", "INVALID_FIELD")
        self.expect(400, t.call(a, "POST", path, {"orders": orders, "x": 1}), path, "POST", "UNKNOWN_FIELD")
        # Cancels: by id and by client id, one unknown, one malformed; each answered in order.
        r = self.expect(200, t.call(a, "DELETE", path, {"ids": [items[0]["id"], new_user(), "nope"],
                                                        "client_order_ids": ["bt-2", "bt-9"]}), path, "DELETE")
        got = r.json()
        self.assertEqual(got[0], {"status": "cancelled", "id": items[0]["id"]})
        self.assertEqual([g.get("error", {}).get("code") for g in got], [None, "NOT_FOUND", "NOT_FOUND", None, "NOT_FOUND"])
        self.assertEqual(got[3], {"status": "cancelled", "id": items[4]["id"], "client_order_id": "bt-2"})
        self.assertEqual(t.call(a, "GET", "/api/v1/orders").json(), [])
        self.expect(400, t.call(a, "DELETE", path, {"ids": [new_user()] * 51}), path, "DELETE", "INVALID_FIELD")
        self.assertTrue(t.invariants()["ok"])

    def test_leverage_and_margin_mode_per_market(self):
        t = self.t
        a = self.funded("3000")
        path = "/api/v1/positions/leverage"
        r = self.expect(200, t.call(a, "POST", path, {"symbol": SYM, "leverage": 5}), path, "POST")
        self.assertEqual(r.json(), {"symbol": SYM, "leverage": 5, "margin_mode": "cross"})
        r = self.expect(200, t.call(a, "POST", path, {"symbol": SYM, "margin_mode": "isolated"}), path, "POST")
        self.assertEqual(r.json(), {"symbol": SYM, "leverage": 5, "margin_mode": "isolated"})
        # Orders inherit it.
        oid = t.place(a, side="Buy", price="96000", amount="0.1").json()["id"]  # 9,600 USDM: 1,920 at 5x
        self.assertEqual(self.order_by_id(a, oid)["leverage"], 5)
        self.expect(422, t.call(a, "POST", path, {"symbol": SYM, "margin_mode": "cross"}), path, "POST",
                    "MARGIN_MODE_LOCKED")
        # Lower leverage raises an open position's margin: refused when the account cannot carry it
        # (resting orders keep the leverage they were placed with, and their reserve).
        b, c = self.funded("3000"), self.funded()
        t.place(c, side="Sell", price="97000", amount="0.1")
        self.assertEqual(t.place(b, side="Buy", price="97000", amount="0.1").json()["status"], "Filled")
        self.expect(422, t.call(b, "POST", path, {"symbol": SYM, "leverage": 2}), path, "POST", "INSUFFICIENT_MARGIN")
        self.expect(200, t.call(b, "POST", path, {"symbol": SYM, "leverage": 4}), path, "POST")
        self.expect(400, t.call(a, "POST", path, {"symbol": SYM, "leverage": 0}), path, "POST", "INVALID_FIELD")
        self.expect(400, t.call(a, "POST", path, {"symbol": SYM}), path, "POST", "MISSING_FIELD")
        self.expect(400, t.call(a, "POST", path, {"symbol": "NOPE", "leverage": 3}), path, "POST", "INVALID_FIELD")
        self.assertEqual(self.order_by_id(a, oid)["status"], "Open")
        self.assertTrue(t.invariants()["ok"])


    def test_isolated_margin_in_and_out_moves_the_liquidation_price(self):
        t = self.t
        a, b = self.funded("3000"), self.funded()
        t.call(a, "POST", "/api/v1/positions/leverage", {"symbol": SYM, "margin_mode": "isolated", "leverage": 10})
        t.place(b, side="Sell", price="97000", amount="0.1")
        self.assertEqual(t.place(a, side="Buy", price="97000", amount="0.1").json()["status"], "Filled")
        pos = t.call(a, "GET", "/api/v1/positions").json()[0]
        path = "/api/v1/positions/{id}/margin"
        url = f"/api/v1/positions/{pos['id']}/margin"
        r = self.expect(200, t.call(a, "POST", url, {"amount": "+500"}), path, "POST")
        self.assertEqual((r.json()["amount"], r.json()["isolated_margin"]), (500, pos["margin"] + 500))
        after = t.call(a, "GET", "/api/v1/positions").json()[0]
        self.assertLess(after["liquidation_price"], pos["liquidation_price"])  # further away for a long
        r = self.expect(200, t.call(a, "POST", url, {"amount": "-500"}), path, "POST")
        self.assertEqual(t.call(a, "GET", "/api/v1/positions").json()[0]["liquidation_price"], pos["liquidation_price"])
        self.expect(422, t.call(a, "POST", url, {"amount": "-1"}), path, "POST", "INSUFFICIENT_MARGIN")
        self.expect(422, t.call(a, "POST", url, {"amount": 100000}), path, "POST", "INSUFFICIENT_MARGIN")
        self.expect(400, t.call(a, "POST", url, {"amount": "0"}), path, "POST", "INVALID_FIELD")
        self.expect(400, t.call(a, "POST", url, {"amount": "1.0000001"}), path, "POST", "INVALID_FIELD")
        # B's position is cross; nobody can reach A's by its id.
        bpos = t.call(b, "GET", "/api/v1/positions").json()[0]
        self.expect(422, t.call(b, "POST", f"/api/v1/positions/{bpos['id']}/margin", {"amount": "10"}), path, "POST",
                    "POSITION_NOT_ISOLATED")
        self.expect(404, t.call(b, "POST", url, {"amount": "10"}), path, "POST", "NOT_FOUND")
        self.assertTrue(t.invariants()["ok"])


    def test_position_take_profit_and_stop_loss(self):
        t = self.t
        t.mark(SYM, "97000")
        a, b, c = self.funded(), self.funded(), self.funded()
        t.place(b, side="Sell", price="97000", amount="0.1")
        self.assertEqual(t.place(a, side="Buy", price="97000", amount="0.1").json()["status"], "Filled")
        pid = t.call(a, "GET", "/api/v1/positions").json()[0]["id"]
        path, url = "/api/v1/positions/{id}/tpsl", f"/api/v1/positions/{pid}/tpsl"
        # Refused as a whole: a long's stop-loss above the mark; more than the position.
        self.expect(422, t.call(a, "POST", url, {"take_profit": "99000", "stop_loss": "98000"}), path, "POST",
                    "WOULD_TRIGGER_IMMEDIATELY")
        self.expect(422, t.call(a, "POST", url, {"take_profit": "99000", "amount": "0.2"}), path, "POST",
                    "REDUCE_ONLY_WOULD_INCREASE")
        self.expect(400, t.call(a, "POST", url, {}), path, "POST", "MISSING_FIELD")
        self.expect(400, t.call(a, "POST", url, {"take_profit": "99000", "trigger_by": "index"}), path, "POST",
                    "INVALID_FIELD")
        self.expect(404, t.call(c, "POST", url, {"take_profit": "99000"}), path, "POST", "NOT_FOUND")
        self.assertEqual(t.call(a, "GET", "/api/v1/orders").json(), [])
        r = self.expect(201, t.call(a, "POST", url, {"take_profit": "99000", "stop_loss": "95000"}), path, "POST")
        tp, sl = r.json()["take_profit_order_id"], r.json()["stop_loss_order_id"]
        held = {o["id"]: o for o in t.call(a, "GET", "/api/v1/orders").json()}
        self.assertEqual((held[tp]["type"], held[tp]["status"], held[tp]["reduce_only"], held[tp]["position_tpsl"],
                          held[tp]["trigger_by"], held[tp]["amount"]),
                         ("TakeProfitMarket", "Untriggered", True, True, "mark", 0.1))
        self.assertEqual((held[sl]["type"], held[sl]["trigger_price"]), ("StopMarket", 95000))
        # The take-profit fires into C's bid; the stop-loss is cancelled by it; the position is gone.
        t.place(c, side="Buy", price="98900", amount="0.1")
        t.mark(SYM, "99000")
        self.assertEqual(t.call(a, "GET", "/api/v1/positions").json(), [])
        self.assertEqual((self.order_by_id(a, tp)["status"], self.order_by_id(a, sl)["cancel_reason"]),
                         ("Filled", "ONE_CANCELS_OTHER"))
        # A partial pair on a new short, on the last price; the position closed by hand takes both.
        t.mark(SYM, "97000")
        t.place(b, side="Buy", price="97000", amount="0.1")
        self.assertEqual(t.place(a, side="Sell", price="97000", amount="0.1").json()["status"], "Filled")
        pid = t.call(a, "GET", "/api/v1/positions").json()[0]["id"]
        r = self.expect(201, t.call(a, "POST", f"/api/v1/positions/{pid}/tpsl",
                                    {"take_profit": "95000", "stop_loss": "99000", "amount": "0.04",
                                     "trigger_by": "last"}), path, "POST")
        ids = [r.json()["take_profit_order_id"], r.json()["stop_loss_order_id"]]
        self.assertEqual({self.order_by_id(a, i)["amount"] for i in ids}, {D("0.04")})
        self.assertEqual({self.order_by_id(a, i)["trigger_by"] for i in ids}, {"last"})
        t.place(c, side="Sell", price="97000", amount="0.1")
        self.assertEqual(t.place(a, side="Buy", price="97000", amount="0.1", time_in_force="IOC").json()["status"],
                         "Filled")
        self.assertEqual([self.order_by_id(a, i)["cancel_reason"] for i in ids], ["POSITION_CLOSED"] * 2)
        self.assertTrue(t.invariants()["ok"])

    def test_a_stop_on_the_last_price_fires_on_a_trade_not_on_the_mark(self):
        t = self.t
        t.mark(SYM, "97000")
        a, b, c = self.funded(), self.funded(), self.funded()
        t.place(b, side="Sell", price="97000", amount="0.1")
        t.place(a, side="Buy", price="97000", amount="0.1")
        r = t.place(a, side="Sell", type="StopMarket", trigger_price="96500", amount="0.1", reduce_only=True,
                    trigger_by="last")
        self.expect(201, r, "/api/v1/orders", "POST")
        stop = r.json()["id"]
        self.expect(400, t.place(a, side="Sell", price="96000", amount="0.1", trigger_by="last"), "/api/v1/orders",
                    "POST", "INVALID_FIELD")
        t.place(c, side="Buy", price="96400", amount="0.2")
        t.mark(SYM, "96000")  # the mark passes it: nothing
        self.assertEqual(self.order_by_id(a, stop)["status"], "Untriggered")
        t.place(b, side="Sell", price="96400", amount="0.01", time_in_force="IOC")  # a trade at 96,400
        row = self.order_by_id(a, stop)
        self.assertEqual((row["status"], row["average_price"]), ("Filled", D("96400")))
        t.mark(SYM, "97000")
        self.assertTrue(t.invariants()["ok"])


class DeadMansSwitch(unittest.TestCase):
    """POST /orders/cancel-all-after: renewed, it holds; not renewed, it cancels everything once,
    with cancel_reason CANCEL_ALL_AFTER; a deadline passed while trading was down fires at restart."""

    @classmethod
    def setUpClass(cls):
        cls.doc = load_doc()
        cls.stack = Stack("dms", extra_env={"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}},
                          services=["trading"])
        cls.stack.start("trading")
        cls.t = Trading(cls.stack.ports["trading"])
        cls.t.mark(SYM, "97000")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def arm(self, user, ms):
        path = "/api/v1/orders/cancel-all-after"
        r = self.t.call(user, "POST", path, {"timeout_ms": ms})
        self.assertEqual(r.status, 200, r.body)
        check(self.doc, path, "POST", r)
        return r.json()

    def reasons(self, user):
        hist = self.t.call(user, "GET", "/api/v1/orders/history?limit=1000").json()
        return sorted(o["cancel_reason"] for o in hist)

    def test_fires_once_unless_renewed(self):
        t = self.t
        a, b = new_user(), new_user()
        t.deposit(a, "10000")
        t.deposit(b, "10000")
        before = int(time.time() * 1000)
        state = self.arm(a, 1500)
        self.assertEqual(state["status"], "armed")
        self.assertGreaterEqual(state["deadline_ms"], before + 1500)
        for price in ("95000", "95100"):
            t.place(a, side="Buy", price=price, amount="0.01")
        t.place(b, side="Buy", price="95000", amount="0.01")
        # Renewed every 0.5 s for 2.5 s: nothing is cancelled.
        for _ in range(5):
            time.sleep(0.5)
            self.arm(a, 1500)
        self.assertEqual(len(t.call(a, "GET", "/api/v1/orders").json()), 2)
        wait_until(lambda: t.call(a, "GET", "/api/v1/orders").json() == [], 5, what="the switch to fire")
        self.assertEqual(self.reasons(a), ["CANCEL_ALL_AFTER", "CANCEL_ALL_AFTER"])
        self.assertEqual(len(t.call(b, "GET", "/api/v1/orders").json()), 1)  # nobody else's
        # Once: an order placed afterwards stays.
        t.place(a, side="Buy", price="95000", amount="0.01")
        time.sleep(2.0)
        self.assertEqual(len(t.call(a, "GET", "/api/v1/orders").json()), 1)
        # Off: 0 disarms it.
        self.arm(a, 1000)
        self.assertEqual(self.arm(a, 0), {"status": "off", "deadline_ms": 0, "deadline": None})
        time.sleep(1.5)
        self.assertEqual(len(t.call(a, "GET", "/api/v1/orders").json()), 1)
        for bad in (999, -1, 86_400_001, "1000", None):
            r = t.call(a, "POST", "/api/v1/orders/cancel-all-after", {"timeout_ms": bad})
            self.assertEqual(r.status, 400, r.body)
            check(self.doc, "/api/v1/orders/cancel-all-after", "POST", r)
        self.assertTrue(t.invariants()["ok"])

    def test_a_deadline_passed_while_down_fires_at_restart_once(self):
        t = self.t
        a = new_user()
        t.deposit(a, "10000")
        t.place(a, side="Buy", price="95000", amount="0.01")
        self.arm(a, 1500)
        self.stack.stop("trading", sig=signal.SIGKILL)
        time.sleep(2.0)
        self.stack.start("trading")
        wait_until(lambda: t.call(a, "GET", "/api/v1/orders").json() == [], 5, what="the switch to fire after restart")
        self.assertEqual(self.reasons(a), ["CANCEL_ALL_AFTER"])
        # It fired once: restarting again (replaying the journal) cancels nothing new.
        t.place(a, side="Buy", price="95000", amount="0.01")
        self.stack.stop("trading")
        self.stack.start("trading")
        time.sleep(0.5)
        self.assertEqual(len(t.call(a, "GET", "/api/v1/orders").json()), 1)
        self.assertTrue(t.invariants()["ok"])


class BatchAllOrNothing(unittest.TestCase):
    """Batches of 20 orders from several clients while trading is SIGKILLed: after the restart each
    batch is there whole or not at all, and every acknowledged batch is there whole."""

    def test_batches_survive_sigkill_whole_or_not_at_all(self):
        stack = Stack("batchkill", extra_env={"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}},
                      services=["trading"])
        try:
            stack.start("trading")
            t = Trading(stack.ports["trading"])
            t.mark(SYM, "97000")
            users = [new_user() for _ in range(4)]
            for u in users:
                t.deposit(u, "100000")
            sent, acked = [], []
            lock = threading.Lock()
            stop = threading.Event()

            def client(k, user):
                n = 0
                while not stop.is_set():
                    tag = f"k{k}-{n}"
                    orders = [{"symbol": SYM, "side": "Buy", "type": "Limit", "price": "90000", "amount": "0.001",
                               "client_order_id": f"{tag}-{i}"} for i in range(20)]
                    with lock:
                        sent.append((user, tag))
                    try:
                        r = t.call(user, "POST", "/api/v1/orders/batch", {"orders": orders}, timeout=3)
                    except OSError:
                        return
                    if r.status == 200 and all(i.get("status") == "Open" for i in r.json()):
                        with lock:
                            acked.append((user, tag))
                        # Cancelled again as a batch (history keeps them: still 20 to find), so that
                        # the account stays below its open-order limit.
                        try:
                            t.call(user, "DELETE", "/api/v1/orders/batch",
                                   {"client_order_ids": [o["client_order_id"] for o in orders]}, timeout=3)
                        except OSError:
                            return
                    n += 1

            threads = [threading.Thread(target=client, args=(k, u)) for k, u in enumerate(users)]
            for th in threads:
                th.start()
            time.sleep(0.6 + random.random())
            stack.procs["trading"].send_signal(signal.SIGKILL)
            stack.procs["trading"].wait()
            stop.set()
            for th in threads:
                th.join()
            stack.start("trading")
            counts = {}
            for u in users:
                for path in ("/api/v1/orders", "/api/v1/orders/history"):
                    cursor = ""
                    while True:  # every page (X-Next-Cursor)
                        r = t.call(u, "GET", f"{path}?limit=1000{cursor}")
                        self.assertEqual(r.status, 200, r.body)
                        for o in r.json():
                            tag = o["client_order_id"].rsplit("-", 1)[0]
                            counts[(u, tag)] = counts.get((u, tag), 0) + 1
                        if not r.header("X-Next-Cursor"):
                            break
                        cursor = "&before=" + r.header("X-Next-Cursor")
            self.assertGreater(len(acked), 3, "too few batches to mean anything")
            for key in sent:
                self.assertIn(counts.get(key, 0), (0, 20), f"batch {key} is half there")
            for key in acked:
                self.assertEqual(counts.get(key, 0), 20, f"acknowledged batch {key} is missing")
            self.assertTrue(t.invariants()["ok"])
            print(f"batches sent {len(sent)}, acknowledged {len(acked)}, present "
                  f"{sum(1 for k in sent if counts.get(k) == 20)}", flush=True)
        finally:
            stack.close()


class ThroughTheGateway(unittest.TestCase):
    """The new methods and bodies pass the gateway: PATCH, DELETE with a body, the switch."""

    def test_amend_batch_cancel_and_switch_through_the_gateway(self):
        from trading_client import OPERATOR_TOKEN
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "market": {"INDEX_FEED": "none"},
               "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN}}
        stack = Stack("tapigw", extra_env=env).start_all()
        try:
            t = Trading(stack.ports["trading"])
            t.mark(SYM, "97000")
            a = new_user()
            t.deposit(a, "10000")
            auth = {"Authorization": f"Bearer {api_key(stack.ports['user'], a)}"}

            def call(method, path, body=None):
                return stack.call(method, path, body=body, headers={**auth, "Content-Type": "application/json"})

            r = call("POST", "/api/v1/orders/batch", {"orders": [
                {"symbol": SYM, "side": "Buy", "type": "Limit", "price": "95000", "amount": "0.01",
                 "client_order_id": f"gw-{i}"} for i in range(3)]})
            self.assertEqual(r.status, 200, r.body)
            ids = [i["id"] for i in r.json()]
            r = call("PATCH", f"/api/v1/orders/{ids[0]}", {"symbol": SYM, "amount": "0.005"})
            self.assertEqual((r.status, r.json().get("kept_priority")), (200, True), r.body)
            r = call("GET", "/api/v1/orders/by-client-id/gw-1")
            self.assertEqual((r.status, r.json()["id"]), (200, ids[1]), r.body)
            r = call("DELETE", "/api/v1/orders/batch", {"client_order_ids": ["gw-1", "gw-2"]})
            self.assertEqual([i.get("status") for i in r.json()], ["cancelled", "cancelled"], r.body)
            r = call("POST", "/api/v1/orders/cancel-all-after", {"timeout_ms": 1000})
            self.assertEqual((r.status, r.json()["status"]), (200, "armed"), r.body)
            wait_until(lambda: call("GET", "/api/v1/orders").json() == [], 5, what="the switch")
            r = call("POST", "/api/v1/positions/leverage", {"symbol": SYM, "leverage": 3})
            self.assertEqual((r.status, r.json()["leverage"]), (200, 3), r.body)
            # API keys page like every list (newest first, X-Next-Cursor).
            for _ in range(3):
                api_key(stack.ports["user"], a)
            got, query = [], "limit=2"
            while True:
                r = call("GET", f"/api/v1/users/api-keys?{query}")
                self.assertEqual(r.status, 200, r.body)
                got += r.json()
                if not r.header("X-Next-Cursor"):
                    break
                query = f"limit=2&before={r.header('X-Next-Cursor')}"
            self.assertEqual(len(got), 4)
            self.assertEqual(len({k["id"] for k in got}), 4)
            self.assertEqual([k["created_at"] for k in got], sorted((k["created_at"] for k in got), reverse=True))
            # A client-sent X-User-ID selects nobody: the key's user is the one amended for.
            other = new_user()
            r = stack.call("GET", "/api/v1/orders/by-client-id/gw-0", headers={**auth, "X-User-ID": other})
            self.assertEqual((r.status, r.json()["id"]), (200, ids[0]), r.body)
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
