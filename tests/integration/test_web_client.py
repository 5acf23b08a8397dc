"""The original web client, scripted (issue #21): what the seed-era Next.js app does against
`HYDROX_LEGACY_CLIENT_AUTH=1`, in its order, with its headers and `Origin: http://localhost:3000`:
CORS preflight, connect by wallet address alone (the user created and funded once), balances,
a market buy, positions, open orders, history, the vault list, and the first frame of each
stream it subscribes (`ticker`, `trade.<S>`, `kline.1h.<S>`). Legacy mode stays narrow: no
session token from an unsigned connect, no API keys, no start on a public address."""
import json
import time
import unittest
from decimal import Decimal as D

from harness import INTERNAL_HEADER, Stack, wait_until
from trading_client import OPERATOR_TOKEN, TRADING_ENV, Trading, api_key, new_user
from ws_client import WsClient

SYM = "BTC_USDM_PERP"
ORIGIN = "http://localhost:3000"
ADDRESS = ("addr_test1qpdwryatu622vp6nrcs0shvrtzk7nfr55n69438pt6tzmg0g4rwcmvvnlvlsctqa7h9egcsvmp47g0jwq4fel3n"
           "ckx6snneegf")


def clear_of_the_hour(margin=20):
    """Waits past the next hour when it is less than `margin` s away: a 1h bar compared with REST
    must not close in the middle of a test."""
    left = 3600 - time.time() % 3600
    if left < margin:
        time.sleep(left + 1)


def legacy_env():
    return {"gateway": {"HYDROX_LEGACY_CLIENT_AUTH": "1", "CORS_ALLOWED_ORIGINS": ORIGIN},
            "trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"},
            "market": {"INDEX_FEED": "none"},
            "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN, "HYDROX_LEGACY_CLIENT_AUTH": "1"},
            "vault": {"OPERATOR_TOKEN": OPERATOR_TOKEN}}


class LegacyWebClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack("webclient", extra_env=legacy_env(), own_redis=True).start_all()  # its own REST caches
        cls.t = Trading(cls.stack.ports["trading"])
        cls.t.mark(SYM, "97000")
        # A maker on the book, so that the client's market buy fills.
        cls.maker = new_user()
        cls.t.deposit(cls.maker, "1000000")
        r = cls.t.place(cls.maker, side="Sell", price="97100", amount="1")
        assert r.status == 201, r.body

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def browser(self, method, path, user=None, body=None):
        """A call as the browser makes it: the page's Origin, the client's own X-User-ID, never
        the internal token (the harness would add it next to X-User-ID)."""
        headers = {"Origin": ORIGIN, INTERNAL_HEADER: None}
        if user:
            headers["X-User-ID"] = user
        r = self.stack.call(method, path, body=body, headers=headers)
        self.assertEqual(r.header("Access-Control-Allow-Origin"), ORIGIN, (path, r.status, r.body))
        return r

    def test_the_client_connects_funds_trades_and_streams(self):
        clear_of_the_hour()
        # 1. Preflight of a call with the client's headers.
        pre = self.stack.call("OPTIONS", "/api/v1/positions", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-user-id,content-type"})
        self.assertEqual(pre.status, 204, pre.body)
        allowed = {h.strip().lower() for h in pre.header("Access-Control-Allow-Headers").split(",")}
        self.assertTrue({"x-user-id", "content-type"} <= allowed, allowed)
        self.assertEqual(pre.header("Access-Control-Allow-Origin"), ORIGIN)

        # 2. Connect by address alone: the user is created and funded (FAUCET_AMOUNT) once.
        r = self.browser("POST", "/api/v1/auth/connect", body={"wallet_address": ADDRESS})
        self.assertEqual(r.status, 200, r.body)
        who = r.json()
        self.assertEqual((who["wallet_address"], who["status"]), (ADDRESS, "connected"))
        self.assertNotIn("token", who)  # an unsigned connect never yields a session
        user = who["user_id"]
        again = self.browser("POST", "/api/v1/auth/connect", body={"wallet_address": ADDRESS}).json()
        self.assertEqual(again["user_id"], user)

        # 3. Balances: funded by the faucet, once.
        def usdm():
            r = self.browser("GET", "/api/v1/balances", user=user)
            self.assertEqual(r.status, 200, r.body)
            return r.json()[0]
        wait_until(lambda: D(str(usdm()["total"])) == D("10000"), 5, what="the faucet's 10,000 USDM")
        b = usdm()
        self.assertEqual(b["asset"], "USDM")
        for field in ("available", "locked", "total"):
            self.assertIsInstance(b[field], (int, float), field)

        # 4. A market buy, as the client sends it.
        r = self.browser("POST", "/api/v1/orders", user=user, body={
            "symbol": SYM, "side": "Buy", "type": "Market", "amount": "0.5", "leverage": 10,
            "time_in_force": "GTC", "reduce_only": False})
        self.assertEqual(r.status, 201, r.body)
        order_id = r.json()["id"]

        # 5. Positions: one Long row with its entry and liquidation price.
        r = self.browser("GET", "/api/v1/positions", user=user)
        self.assertEqual(r.status, 200, r.body)
        [p] = r.json()
        self.assertEqual((p["symbol"], p["side"], D(str(p["size"])), D(str(p["entry_price"]))),
                         (SYM, "Long", D("0.5"), D("97100")))
        self.assertGreater(p["liquidation_price"], 0)
        self.assertLess(p["liquidation_price"], 97100)

        # 6. Open orders (a resting bid), then history: the market order with the time in force
        # it executed with.
        r = self.browser("POST", "/api/v1/orders", user=user, body={
            "symbol": SYM, "side": "Buy", "type": "Limit", "price": "90000", "amount": "0.01",
            "leverage": 10, "time_in_force": "GTC", "reduce_only": False})
        self.assertEqual(r.status, 201, r.body)
        resting = r.json()["id"]
        r = self.browser("GET", "/api/v1/orders", user=user)
        self.assertEqual([o["id"] for o in r.json()], [resting])
        r = self.browser("GET", "/api/v1/orders/history", user=user)
        self.assertEqual(r.status, 200, r.body)
        [done] = [o for o in r.json() if o["id"] == order_id]
        self.assertEqual((done["type"], done["status"], done["time_in_force"]), ("Market", "Filled", "IOC"))

        # 7. The vault list (the client sends X-User-ID there too).
        r = self.browser("GET", "/api/v1/vaults", user=user)
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(r.json())

        # 8. Streams: the first frame of each is a snapshot of the contract's shape.
        c = WsClient(self.stack.gateway_port, headers={"Origin": ORIGIN})
        try:
            for i, stream in enumerate(["ticker", f"trade.{SYM}", f"kline.1h.{SYM}"]):
                c.send_json({"method": "SUBSCRIBE", "params": [stream], "id": i + 1})
                self.assertEqual(c.recv_json(), {"id": i + 1, "result": "ok"})
                first = c.recv_json()
                self.assertEqual((first["channel"], first.get("snapshot")), (stream, True), first)
                data = first["data"]
                if stream == "ticker":
                    self.assertIsInstance(data, dict, first)  # one market's ticker per message
                    self.assertIn(data["symbol"], [m["symbol"] for m in self.stack.get("/api/v1/markets").json()])
                    for field in ("last_price", "price_change_percent", "mark_price", "high_24h", "volume_24h"):
                        self.assertIn(field, data)
                    # The other markets follow, one message each, at the same seq.
                    markets = len(self.stack.get("/api/v1/markets").json())
                    rest = [c.recv_json() for _ in range(markets - 1)]
                    self.assertEqual({m["data"]["symbol"] for m in rest} | {data["symbol"]},
                                     {m["symbol"] for m in self.stack.get("/api/v1/markets").json()})
                    self.assertTrue(all(m["seq"] == first["seq"] and m["snapshot"] for m in rest), rest)
                    c.send_json({"method": "UNSUBSCRIBE", "params": ["ticker"], "id": 99})
                    self.drain_until_ack(c, 99)
                elif stream.startswith("trade."):
                    self.assertIsInstance(data, list)
                    self.assertEqual({t["price"] for t in data}, {97100})
                    # The same trades as REST, field for field (time in whole seconds, floored).
                    rest = self.stack.get(f"/api/v1/markets/{SYM}/trades?limit={len(data)}").json()
                    fields = ("id", "price", "amount", "side", "time")
                    self.assertEqual([[t[f] for f in fields] for t in data], [[t[f] for f in fields] for t in rest])
                else:
                    # The stored current bar, the same values as REST's newest 1h bar.
                    self.assertIsNotNone(data, first)
                    bars = self.stack.get(f"/api/v1/markets/{SYM}/klines?interval=1h&limit=1").json()
                    self.assertEqual([data["t"], data["o"], data["h"], data["l"], data["c"], data["v"]],
                                     [bars[-1]["time"], bars[-1]["open"], bars[-1]["high"], bars[-1]["low"],
                                      bars[-1]["close"], bars[-1]["volume"]])
                    self.assertIs(data["x"], False)
        finally:
            c.close()

    def drain_until_ack(self, c, ack_id):
        deadline = time.time() + 5
        while time.time() < deadline:
            m = c.recv_json()
            if m.get("id") == ack_id:
                return m
        self.fail("no acknowledgement")

    def test_no_api_keys_and_no_session_in_legacy_mode(self):
        r = self.browser("POST", "/api/v1/auth/connect",
                         body={"wallet_address": "0x" + "ab" * 20})
        self.assertEqual(r.status, 200, r.body)
        user = r.json()["user_id"]
        r = self.browser("POST", "/api/v1/users/api-keys", user=user, body={"scope": "trade", "label": "x"})
        self.assertEqual(r.status, 403, r.body)
        # A malformed address is still a 400 naming the field.
        r = self.browser("POST", "/api/v1/auth/connect", body={"wallet_address": "addr_test1nope"})
        self.assertEqual((r.status, r.json()["error"].get("field")), (400, "wallet_address"), r.body)


class LegacySwitches(unittest.TestCase):
    """What legacy mode does not open: an address-only connect without the mode (whatever header a
    client sends), with the gateway's mode but not the user service's, and a client X-User-ID from
    a request that names another host (DNS rebinding) or was forwarded."""

    def test_the_mode_takes_both_switches_and_a_local_client(self):
        env = legacy_env()
        env["user"].pop("HYDROX_LEGACY_CLIENT_AUTH")  # the gateway's switch only
        stack = Stack("legacyoff", extra_env=env, own_redis=True).start_all()
        try:
            body = {"wallet_address": ADDRESS}
            forged = {"X-Legacy-Client-Auth": "1", INTERNAL_HEADER: None}
            r = stack.call("POST", "/api/v1/auth/connect", body=body, headers=forged)
            self.assertEqual((r.status, r.json()["error"].get("field")), (400, "chain"), r.body)
            # Straight to the user service, with the mark but without the internal token: stripped.
            from harness import request
            r = request(stack.ports["user"], "POST", "/api/v1/auth/connect", body=body, headers=forged)
            self.assertEqual(r.status, 400, r.body)
            # The gateway's legacy identity needs a local client: another Host, or a forwarded
            # request, is not believed.
            t = Trading(stack.ports["trading"])
            user = new_user()
            t.deposit(user, "100")
            ok = stack.call("GET", "/api/v1/balances", headers={"X-User-ID": user, INTERNAL_HEADER: None})
            self.assertEqual(ok.status, 200, ok.body)
            for extra in ({"Host": "rebound.example:8080"}, {"X-Forwarded-For": "203.0.113.9"},
                          {"Forwarded": "for=203.0.113.9"}):
                r = stack.call("GET", "/api/v1/balances",
                               headers={"X-User-ID": user, INTERNAL_HEADER: None, **extra})
                self.assertEqual(r.status, 401, (extra, r.body))
        finally:
            stack.close()

    def test_no_address_only_connect_without_legacy_mode(self):
        env = legacy_env()
        env.pop("gateway")
        env["user"].pop("HYDROX_LEGACY_CLIENT_AUTH")
        stack = Stack("legacynone", extra_env=env, services=["user", "gateway"], own_redis=True)
        try:
            stack.start("user")
            stack.start("gateway")
            r = stack.call("POST", "/api/v1/auth/connect", body={"wallet_address": ADDRESS},
                           headers={"X-Legacy-Client-Auth": "1", "Origin": ORIGIN})
            self.assertEqual((r.status, r.json()["error"].get("field")), (400, "chain"), r.body)
            pre = stack.call("OPTIONS", "/api/v1/positions", headers={
                "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x-user-id"})
            self.assertNotIn("x-user-id", pre.header("Access-Control-Allow-Headers").lower())
        finally:
            stack.close()


class KlineStreamFromStoredBar(unittest.TestCase):
    """A kline subscription starts from the stored bar, and trades after it keep the stream's bar
    equal to REST's (open, high, low, volume mid-interval), in normal mode."""

    def test_snapshot_and_updates_equal_rest(self):
        clear_of_the_hour()
        env = legacy_env()
        env.pop("gateway")
        stack = Stack("klinestream", extra_env=env, services=["trading", "market", "gateway"], own_redis=True)
        try:
            for s in ("trading", "market", "gateway"):
                stack.start(s)
            t = Trading(stack.ports["trading"])
            t.mark(SYM, "97000")
            a, b = new_user(), new_user()
            t.deposit(a, "1000000")
            t.deposit(b, "1000000")
            # Trades before anyone watches: the stream must start from them.
            for price, amount in (("97000", "0.02"), ("97300", "0.01"), ("96800", "0.03")):
                self.assertEqual(t.place(a, side="Sell", price=price, amount=amount).status, 201)
                self.assertEqual(t.place(b, side="Buy", price=price, amount=amount).status, 201)

            def rest_bar():
                bars = stack.get(f"/api/v1/markets/{SYM}/klines?interval=1h&limit=1").json()
                return [bars[-1][k] for k in ("time", "open", "high", "low", "close", "volume")]

            c = WsClient(stack.gateway_port)
            c.send_json({"method": "SUBSCRIBE", "params": [f"kline.1h.{SYM}"], "id": 1})
            self.assertEqual(c.recv_json()["result"], "ok")
            snap = c.recv_json()
            self.assertTrue(snap["snapshot"])
            as_list = lambda d: [d["t"], d["o"], d["h"], d["l"], d["c"], d["v"]]
            self.assertEqual(as_list(snap["data"]), rest_bar())
            self.assertEqual(snap["data"]["o"], 97000)
            # One more trade: the update is the bar REST shows after it (volume counted once).
            self.assertEqual(t.place(a, side="Sell", price="97500", amount="0.05").status, 201)
            self.assertEqual(t.place(b, side="Buy", price="97500", amount="0.05").status, 201)
            update = c.recv_json()
            self.assertEqual(update["seq"], snap["seq"] + 1)
            stack.get("/health")
            wait_until(lambda: rest_bar()[5] == update["data"]["v"], 6, what="REST klines after the trade")
            self.assertEqual(as_list(update["data"]), rest_bar())
            self.assertEqual(D(str(update["data"]["v"])), D("0.11"))
            c.close()
            # The other public streams agree with REST as well: `ticker.<S>` carries REST's ticker
            # object, `mark.<S>` its mark price (nothing moves now: the index feed is off).
            c = WsClient(stack.gateway_port)
            c.send_json({"method": "SUBSCRIBE", "params": [f"ticker.{SYM}", f"mark.{SYM}"], "id": 2})
            self.assertEqual(c.recv_json()["result"], "ok")
            first = {}
            while len(first) < 2:
                m = c.recv_json()
                first.setdefault(m["channel"], m)
            c.close()
            self.assertTrue(all(m.get("snapshot") for m in first.values()), first)
            rest = lambda: stack.get(f"/api/v1/markets/{SYM}/ticker").json()
            wait_until(lambda: rest() == first[f"ticker.{SYM}"]["data"], 5,
                       what="REST's ticker to equal the stream's (REST is cached up to 1 s)")
            self.assertEqual(first[f"mark.{SYM}"]["data"]["mark_price"], rest()["mark_price"])
        finally:
            stack.close()


class FlipStartsANewPosition(unittest.TestCase):
    """A flip closes the position and opens a new one: its own created_at, realized PnL from
    zero; an isolated position shows its maintenance margin."""

    def test_flip_and_reopen(self):
        stack = Stack("flip", extra_env={"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}}, services=["trading"])
        try:
            stack.start("trading")
            t = Trading(stack.ports["trading"])
            t.mark(SYM, "97000")
            a, b = new_user(), new_user()
            t.deposit(a, "100000")
            t.deposit(b, "100000")

            def position():
                r = t.call(a, "GET", "/api/v1/positions")
                self.assertEqual(r.status, 200, r.body)
                return (r.json() or [None])[0]

            self.assertEqual(t.place(b, side="Sell", price="97000", amount="0.5").status, 201)
            self.assertEqual(t.place(a, side="Buy", price="97000", amount="0.5").status, 201)
            long = position()
            time.sleep(0.05)  # the flip's time differs from the open's
            self.assertEqual(t.place(b, side="Buy", price="98000", amount="1").status, 201)
            self.assertEqual(t.place(a, side="Sell", price="98000", amount="1").status, 201)
            short = position()
            self.assertEqual((short["side"], short["size"], short["realized_pnl"]), ("Short", 0.5, 0))
            self.assertGreater(short["created_at"], long["created_at"])
            fills = t.call(a, "GET", "/api/v1/fills").json()
            self.assertEqual(D(str(fills[0]["realized_pnl"])), D("500"))  # paid, with the old position
            # An isolated position shows its maintenance margin: |size| x mark / (2 x 40).
            self.assertEqual(t.place(b, side="Sell", price="97000", amount="0.2", symbol=SYM).status, 201)
            c = new_user()
            t.deposit(c, "100000")
            r = t.place(c, side="Buy", price="97000", amount="0.2", margin_mode="isolated", leverage=10)
            self.assertEqual(r.status, 201, r.body)
            [p] = t.call(c, "GET", "/api/v1/positions").json()
            self.assertEqual((p["margin_mode"], D(str(p["maintenance_margin"]))), ("isolated", D("242.5")))
        finally:
            stack.close()


class MarketMakerStops(unittest.TestCase):
    """The development market maker quotes through the gateway, and on SIGTERM takes its quotes
    off the book and exits 0 at once (supervisord's stop; it used to ignore the signal)."""

    def test_sigterm_cancels_the_quotes_and_exits(self):
        import os
        import signal
        import subprocess
        from harness import BIN_DIR
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "market": {"INDEX_FEED": "simulated"},
               "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN}}
        stack = Stack("mm", extra_env=env, services=["trading", "market", "user", "gateway"], own_redis=True)
        mm = None
        try:
            for s in ("trading", "market", "user", "gateway"):
                stack.start(s)
            t = Trading(stack.ports["trading"])
            maker = new_user()
            t.deposit(maker, "1000000")
            for m in stack.get("/api/v1/markets").json():
                t.mark(m["symbol"], str(m["index_price"] or 1000))
            key = api_key(stack.ports["user"], maker)
            mm = subprocess.Popen([os.path.join(BIN_DIR, "hydrox-market-maker")],
                                  env={**os.environ, "GATEWAY_URL": f"http://127.0.0.1:{stack.gateway_port}",
                                       "MM_API_KEY": key, "MM_SYMBOLS": SYM, "MM_LEVELS": "2", "MM_REQUOTE_MS": "60000",
                                       "LOG_LEVEL": "warn"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda: len(t.call(maker, "GET", "/api/v1/orders").json()) == 4, 15, what="four quotes")
            started = time.time()
            mm.send_signal(signal.SIGTERM)
            self.assertEqual(mm.wait(timeout=5), 0)
            self.assertLess(time.time() - started, 3)
            self.assertEqual(t.call(maker, "GET", "/api/v1/orders").json(), [])
        finally:
            if mm and mm.poll() is None:
                mm.kill()
            stack.close()


class LegacyModeRefusesAPublicListener(unittest.TestCase):
    def test_legacy_mode_needs_loopback_or_an_explicit_public_flag(self):
        stack = Stack("legacypublic", extra_env={"gateway": {"HYDROX_LEGACY_CLIENT_AUTH": "1",
                                                               "LISTEN_ADDRESS": "0.0.0.0"}},
                      services=["gateway"])
        try:
            for address in ("0.0.0.0", "::"):
                stack.extra_env["gateway"]["LISTEN_ADDRESS"] = address
                p = stack.start("gateway", wait=False)
                self.assertEqual(p.wait(timeout=10), 1, address)
            with open(f"{stack.log_dir}/gateway.log", encoding="utf-8") as f:
                self.assertIn("HYDROX_LEGACY_CLIENT_AUTH_PUBLIC", f.read())
            stack.extra_env["gateway"]["LISTEN_ADDRESS"] = "0.0.0.0"
            stack.extra_env["gateway"]["HYDROX_LEGACY_CLIENT_AUTH_PUBLIC"] = "1"
            p = stack.start("gateway")
            self.assertIsNone(p.poll())  # started and serving (its services are not there: 503)
            self.assertEqual(stack.get("/health").status, 503)
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
