"""The market lifecycle (issue 24), through the gateway and hydrox-admin: a market halted
(CANCEL_ONLY: orders refused with MARKET_HALTED, cancels and closes allowed, the mark paused),
resumed, its fees and maximum leverage changed (a cut that would leave a position below
maintenance refused), then delisted at a final price: every order cancelled, every position
settled at that price with its PnL in the balance, the market read-only for good, across a
restart. Each step visible in GET /markets and on the market.<SYMBOL> WebSocket stream; the
engine's invariants after each step."""
import os
import signal
import unittest
import uuid
from decimal import Decimal as D

import yaml

from harness import SOURCE_DIR, Stack, wait_until
from test_openapi import check
from test_withdrawals import admin
from trading_client import OPERATOR_TOKEN, TRADING_ENV, Trading, loads_exact
from ws_client import WsClient

SYM = "SOL_USDM_PERP"


class MarketLifecycle(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "market": {"INDEX_FEED": "none"},
               "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN}}
        self.stack = Stack("life", extra_env=env).start_all()
        self.t = Trading(self.stack.ports["trading"])
        self.t.mark(SYM, "180")

    def tearDown(self):
        self.stack.close()

    def ok(self):
        self.assertTrue(self.t.invariants()["ok"])

    def market(self):
        r = self.stack.get("/api/v1/markets")
        self.assertEqual(r.status, 200, r.body)
        return next(m for m in loads_exact(r.body) if m["symbol"] == SYM), r

    def next_market_message(self, ws):
        while True:
            m = ws.recv_json()
            if m.get("channel") == f"market.{SYM}":
                return m

    def test_halt_resume_params_and_delist(self):
        t = self.t
        a, b, c, d = (str(uuid.uuid4()) for _ in range(4))
        for u in (a, b, c):
            t.deposit(u, "10000")
        t.deposit(d, "100")  # a thin account: long 5 (900) at 10x
        self.assertEqual(t.place(b, symbol=SYM, side="Sell", price="180", amount="10").status, 201)
        self.assertEqual(t.place(a, symbol=SYM, side="Buy", price="180", amount="10").status, 201)  # a long 10, b short 10
        self.assertEqual(t.place(c, symbol=SYM, side="Sell", price="180", amount="5").status, 201)
        self.assertEqual(t.place(d, symbol=SYM, side="Buy", price="180", amount="5", leverage=10).status, 201)
        bid = t.place(c, symbol=SYM, side="Buy", price="179", amount="4")  # could open: goes at the halt
        self.assertEqual(bid.status, 201, bid.body)
        closing = [t.place(b, symbol=SYM, side="Buy", price=p, amount=q, reduce_only=True) for p, q in (("179.5", "2"), ("178", "1"))]
        self.assertEqual([r.status for r in closing], [201, 201])
        ws = WsClient(self.stack.gateway_port)
        ws.send_json({"method": "SUBSCRIBE", "params": [f"market.{SYM}"], "id": 1})
        self.assertEqual(ws.recv_json(), {"id": 1, "result": "ok"})
        snap = self.next_market_message(ws)
        self.assertEqual((snap["type"], snap["snapshot"], snap["data"]["status"]), ("market", True, "ACTIVE"))

        # Halt: CANCEL_ONLY.
        code, out = admin(self.stack, "market", "status", SYM, "HALTED")
        self.assertEqual((code, out["status"]), (0, "HALTED"), out)
        msg = self.next_market_message(ws)
        self.assertEqual((msg["data"]["status"], msg["seq"]), ("HALTED", snap["seq"] + 1))
        wait_until(lambda: self.market()[0]["status"] == "HALTED", 5, what="GET /markets HALTED")
        check(self.doc, "/api/v1/markets", "GET", self.market()[1])
        r = t.place(a, symbol=SYM, side="Buy", price="180", amount="1")
        self.assertEqual((r.status, r.json()["error"]["code"]), (422, "MARKET_HALTED"), r.body)
        # The order that could open a position is gone; the reduce-only ones stay.
        gone = loads_exact(t.call(c, "GET", f"/api/v1/orders/{bid.json()['id']}").body)
        self.assertEqual((gone["status"], gone["cancel_reason"]), ("Cancelled", "MARKET_HALTED"))
        # A close passes (reduce-only, against b's reduce-only bid), and so does a cancel.
        close = t.place(a, symbol=SYM, side="Sell", type="Market", amount="2", reduce_only=True)
        self.assertEqual((close.status, close.json()["status"]), (201, "Filled"), close.body)
        self.assertEqual(t.call(b, "DELETE", f"/api/v1/orders/{closing[1].json()['id']}").status, 200)
        t.mark(SYM, "170")  # the mark is paused: refused by the engine, the mark stays
        self.assertEqual(loads_exact(t.call(a, "GET", "/api/v1/positions").body)[0]["mark_price"], D("180"))
        self.ok()

        # Resume.
        self.assertEqual(admin(self.stack, "market", "status", SYM, "ACTIVE")[1]["status"], "ACTIVE")
        self.assertEqual(self.next_market_message(ws)["data"]["status"], "ACTIVE")
        self.assertEqual(t.place(c, symbol=SYM, side="Buy", price="178", amount="1").status, 201)

        # Parameters: a leverage cut the positions cannot carry is refused; fees and a safe cut pass.
        code, out = admin(self.stack, "market", "params", SYM, "0.0001", "0.0004", "2")  # d: maintenance 225
        self.assertEqual((code, out["error"]["code"]), (1, "MARKET_PARAM_UNSAFE"), out)
        code, out = admin(self.stack, "market", "params", SYM, "0.0001", "0.0004", "10")
        self.assertEqual((code, out["max_leverage"], out["taker_fee"]), (0, 10, D("0.0004")), out)
        msg = self.next_market_message(ws)
        self.assertEqual((msg["data"]["max_leverage"], msg["data"]["taker_fee_rate"]), (10, 0.0004))
        wait_until(lambda: self.market()[0]["max_leverage"] == 10, 5, what="GET /markets max_leverage 10")
        self.assertEqual(self.market()[0]["taker_fee_rate"], D("0.0004"))
        r = t.place(a, symbol=SYM, side="Buy", price="180", amount="1", leverage=20)
        self.assertEqual((r.status, r.json()["error"]["code"]), (400, "INVALID_LEVERAGE"), r.body)
        self.ok()

        # Delist at 190: orders cancelled, each position settled at 190 against its entry (a long
        # 8: +80, b short 8, c short 5, d long 5: +50).
        users = (a, b, c, d)
        before = {u: loads_exact(t.call(u, "GET", "/api/v1/balances").body)[0]["collateral"] for u in users}
        pos = {u: loads_exact(t.call(u, "GET", "/api/v1/positions").body) for u in users}
        self.assertEqual([len(pos[u]) for u in users], [1, 1, 1, 1])
        code, out = admin(self.stack, "market", "status", SYM, "DELISTED", "190")
        self.assertEqual((code, out["status"], out["final_price"]), (0, "DELISTED", D("190")), out)
        msg = self.next_market_message(ws)
        self.assertEqual((msg["data"]["status"], msg["data"]["final_price"]), ("DELISTED", 190))
        for u in users:
            self.assertEqual(loads_exact(t.call(u, "GET", "/api/v1/positions").body), [])
            self.assertEqual(loads_exact(t.call(u, "GET", "/api/v1/orders").body), [])
        after = {u: loads_exact(t.call(u, "GET", "/api/v1/balances").body)[0]["collateral"] for u in users}
        for u in users:
            p = pos[u][0]
            size = p["size"] if p["side"] == "Long" else -p["size"]
            # The PnL at the final price against the entry, exactly (and the isolated margin: none here).
            self.assertEqual(after[u] - before[u], size * (D("190") - p["entry_price"]), u)
        settlements = [x for x in loads_exact(t.call(b, "GET", "/api/v1/ledger?kind=SETTLEMENT").body)]
        self.assertEqual(len(settlements), 1)
        self.assertEqual(settlements[0]["amount"], after[b] - before[b])
        wait_until(lambda: self.market()[0]["status"] == "DELISTED", 5, what="GET /markets DELISTED")
        self.assertEqual(self.market()[0]["final_price"], D("190"))
        r = t.place(a, symbol=SYM, side="Buy", price="190", amount="1")
        self.assertEqual((r.status, r.json()["error"]["code"]), (422, "MARKET_DELISTED"), r.body)
        code, out = admin(self.stack, "market", "status", SYM, "ACTIVE")
        self.assertEqual((code, out["error"]["code"]), (1, "MARKET_DELISTED"))
        # The other markets trade on.
        t.mark("BTC_USDM_PERP", "97000")
        self.assertEqual(t.place(a, symbol="BTC_USDM_PERP", side="Buy", price="96000", amount="0.01").status, 201)
        self.ok()
        ws.close()

        # Across a crash: the journal replays it delisted, settled, read-only.
        self.stack.stop("trading", sig=signal.SIGKILL)
        self.stack.start("trading")
        r = t.place(a, symbol=SYM, side="Sell", price="190", amount="1")
        self.assertEqual((r.status, r.json()["error"]["code"]), (422, "MARKET_DELISTED"), r.body)
        self.assertEqual({u: loads_exact(t.call(u, "GET", "/api/v1/balances").body)[0]["collateral"] for u in users},
                         after)
        self.ok()


if __name__ == "__main__":
    unittest.main()
