"""The gateway as the only door (issue #6, the part built so far): API keys issued by the user
service resolve to their user at the gateway, a forged X-User-ID never selects anyone, read keys
cannot write, and a revoked key stops working within 1 s."""
import subprocess
import time
import unittest

from harness import Stack, request, wait_until
from trading_client import OPERATOR_TOKEN, TRADING_ENV, Trading, new_user


class GatewayAuthentication(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN},
               "market": {"INDEX_FEED": "none"}, "vault": {"OPERATOR_TOKEN": OPERATOR_TOKEN}}
        cls.stack = Stack("auth", extra_env=env).start_all()
        cls.t = Trading(cls.stack.ports["trading"])
        cls.t.mark("BTC_USDM_PERP", "97000")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def issue(self, user, scope="trade"):
        r = request(self.stack.ports["user"], "POST", "/internal/v1/api-keys",
                    body={"user_id": user, "scope": scope, "label": "test"},
                    headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        self.assertEqual(r.status, 201, r.body)
        return r.json()

    def as_key(self, key, method, path, body=None, extra=None):
        headers = {"Authorization": f"Bearer {key}", **(extra or {})}
        return self.stack.call(method, path, body=body, headers=headers)

    def test_a_key_acts_as_its_user_and_a_forged_header_changes_nothing(self):
        a, b = new_user(), new_user()
        self.t.deposit(a, "10000")
        self.t.deposit(b, "10000")
        ka = self.issue(a)["key"]
        kb = self.issue(b)["key"]
        r = self.as_key(ka, "POST", "/api/v1/orders", {"symbol": "BTC_USDM_PERP", "side": "Buy", "type": "Limit",
                                                       "price": "96000", "amount": "0.001"}, {"X-User-ID": b})
        self.assertEqual(r.status, 201, r.body)
        oid = r.json()["id"]
        mine = self.as_key(ka, "GET", "/api/v1/orders", extra={"X-User-ID": b}).json()
        self.assertEqual([o["id"] for o in mine], [oid])
        self.assertEqual(mine[0]["user_id"], a)
        self.assertEqual(self.as_key(kb, "GET", "/api/v1/orders").json(), [])
        # user_id in the query or the body is ignored by the services: it never selects a user.
        r = self.as_key(kb, "GET", f"/api/v1/orders?user_id={a}&symbol=BTC_USDM_PERP")
        self.assertEqual((r.status, r.json()), (200, []), r.body)
        r = self.as_key(kb, "POST", "/api/v1/orders", {"symbol": "BTC_USDM_PERP", "side": "Buy", "type": "Limit",
                                                      "price": "96000", "amount": "0.001", "user_id": a})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual([o["id"] for o in self.as_key(kb, "GET", "/api/v1/orders").json()], [r.json()["id"]])
        self.assertEqual(self.as_key(kb, "DELETE", f"/api/v1/orders/{r.json()['id']}").status, 200)
        self.assertEqual([o["id"] for o in self.as_key(ka, "GET", "/api/v1/orders").json()], [oid])
        # B can neither see nor cancel A's order.
        self.assertEqual(self.as_key(kb, "DELETE", f"/api/v1/orders/{oid}").status, 404)
        self.assertEqual(self.as_key(ka, "DELETE", f"/api/v1/orders/{oid}").status, 200)
        for path in ["/api/v1/orders", "/api/v1/balances", "/api/v1/positions", "/api/v1/fills", "/api/v1/users/api-keys"]:
            r = self.stack.call("GET", path, headers={"X-User-ID": a})
            self.assertEqual(r.status, 401, path)
            r = self.stack.call("GET", path, headers={"Authorization": "Bearer hxk_not-a-real-key"})
            self.assertEqual(r.status, 401, path)

    def test_every_user_route_answers_with_the_tokens_user_whatever_else_is_sent(self):
        a, b = new_user(), new_user()
        for u in (a, b):
            self.t.deposit(u, "10000")
        ka, kb = self.issue(a)["key"], self.issue(b)["key"]
        # Each has something of its own to show.
        for key, price in ((ka, "96000"), (kb, "95000")):
            r = self.as_key(key, "POST", "/api/v1/orders", {"symbol": "BTC_USDM_PERP", "side": "Buy", "type": "Limit",
                                                           "price": price, "amount": "0.001"})
            self.assertEqual(r.status, 201, r.body)
        hlp = "00000000-0000-7000-8000-0000000000a1"
        routes = ["/api/v1/orders", "/api/v1/orders/history", "/api/v1/fills", "/api/v1/positions", "/api/v1/balances",
                  "/api/v1/users/balances", "/api/v1/users/api-keys", f"/api/v1/vaults/{hlp}/user"]
        for path in routes:
            own = self.as_key(ka, "GET", path)
            self.assertEqual(own.status, 200, (path, own.body))
            theirs = self.as_key(kb, "GET", path)
            sep = "&" if "?" in path else "?"
            forged = self.as_key(ka, "GET", f"{path}{sep}user_id={b}", extra={"X-User-ID": b})
            self.assertEqual(forged.status, 200, (path, forged.body))
            self.assertEqual(forged.json(), own.json(), path)
            if path in ("/api/v1/orders", "/api/v1/users/api-keys"):
                self.assertNotEqual(own.json(), theirs.json(), path)  # the comparison can tell users apart
        # Neither can A close B's position through the gateway, whatever it sends.
        r = self.as_key(ka, "POST", "/api/v1/orders", {"symbol": "BTC_USDM_PERP", "side": "Sell", "type": "Limit",
                                                       "price": "97000", "amount": "0.001"})
        self.assertEqual(r.status, 201, r.body)
        r = self.as_key(kb, "POST", "/api/v1/orders", {"symbol": "BTC_USDM_PERP", "side": "Buy", "type": "Limit",
                                                       "price": "97000", "amount": "0.001"})
        self.assertEqual(r.json()["status"], "Filled", r.body)
        pid = self.as_key(kb, "GET", "/api/v1/positions").json()[0]["id"]
        r = self.as_key(ka, "POST", f"/api/v1/positions/{pid}/close", {"user_id": b}, extra={"X-User-ID": b})
        self.assertEqual(r.status, 404, r.body)
        self.assertEqual(len(self.as_key(kb, "GET", "/api/v1/positions").json()), 1)

    def test_read_keys_cannot_write(self):
        u = new_user()
        key = self.issue(u, scope="read")["key"]
        self.assertEqual(self.as_key(key, "GET", "/api/v1/balances").status, 200)
        r = self.as_key(key, "POST", "/api/v1/orders", {"symbol": "BTC_USDM_PERP", "side": "Buy", "type": "Limit",
                                                        "price": "96000", "amount": "0.001"})
        self.assertEqual((r.status, r.json()["error"]["code"]), (403, "FORBIDDEN"))

    def test_user_routes_match_the_document(self):
        import os
        import yaml
        from harness import SOURCE_DIR
        from test_openapi import check
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        u = new_user()
        issued = self.issue(u)
        key = issued["key"]
        check(doc, "/api/v1/users/api-keys", "GET", self.as_key(key, "GET", "/api/v1/users/api-keys"))
        check(doc, "/api/v1/users/api-keys", "GET", self.stack.call("GET", "/api/v1/users/api-keys"))
        check(doc, "/api/v1/users/profile", "GET", self.as_key(key, "GET", "/api/v1/users/profile"))
        self.t.deposit(u, "123.45")
        bal = self.as_key(key, "GET", "/api/v1/users/balances")
        self.assertEqual(bal.status, 200, bal.body)
        self.assertEqual(bal.json()[0]["account"], "trading")
        self.assertIn('"total":123.45', bal.body)
        check(doc, "/api/v1/users/balances", "GET", bal)
        check(doc, "/api/v1/users/api-keys/{id}", "DELETE", self.as_key(key, "DELETE", f"/api/v1/users/api-keys/{new_user()}"))
        check(doc, "/api/v1/users/api-keys/{id}", "DELETE", self.as_key(key, "DELETE", f"/api/v1/users/api-keys/{issued['id']}"))

    def test_revoked_key_fails_within_one_second(self):
        u = new_user()
        issued = self.issue(u)
        key = issued["key"]
        self.assertEqual(self.as_key(key, "GET", "/api/v1/balances").status, 200)
        listed = self.as_key(key, "GET", "/api/v1/users/api-keys").json()
        self.assertEqual([k["id"] for k in listed], [issued["id"]])
        self.assertNotIn("key", listed[0])  # the secret is shown once, never listed
        r = self.as_key(key, "POST", "/api/v1/users/api-keys", {"scope": "trade"})
        self.assertEqual(r.status, 403)  # a key cannot mint keys
        r = self.as_key(key, "DELETE", f"/api/v1/users/api-keys/{issued['id']}")
        self.assertEqual(r.status, 200, r.body)
        t0 = time.monotonic()
        wait_until(lambda: self.as_key(key, "GET", "/api/v1/balances").status == 401, 2.0, what="revocation")
        self.assertLess(time.monotonic() - t0, 1.5)


class RateLimits(unittest.TestCase):
    """Token buckets in Redis: a burst beyond the limit gets 429 with the headers; another user is
    unaffected; the headers come on every answer."""

    def test_burst_beyond_the_user_limit(self):
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN},
               "market": {"INDEX_FEED": "none"},
               "gateway": {"RATE_LIMIT_USER_BURST": "5", "RATE_LIMIT_USER_PER_MIN": "60",
                           "RATE_LIMIT_AUTH_IP_BURST": "3", "RATE_LIMIT_AUTH_IP_PER_MIN": "3"}}
        stack = Stack("rl", extra_env=env, own_redis=True).start_all()
        try:
            def issue(user):
                r = request(stack.ports["user"], "POST", "/internal/v1/api-keys",
                            body={"user_id": user, "scope": "trade"}, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
                return r.json()["key"]
            ka, kb = issue(new_user()), issue(new_user())
            answers = [stack.get("/api/v1/balances", headers={"Authorization": f"Bearer {ka}"}) for _ in range(7)]
            self.assertEqual([r.status for r in answers[:5]], [200] * 5)
            self.assertEqual(answers[0].header("RateLimit-Limit"), "5")
            self.assertEqual(answers[0].header("RateLimit-Remaining"), "4")
            limited = answers[5]
            self.assertEqual(limited.status, 429, limited.body)
            self.assertEqual(limited.json()["error"]["code"], "RATE_LIMITED")
            self.assertGreaterEqual(int(limited.header("Retry-After")), 1)
            self.assertEqual(limited.header("RateLimit-Remaining"), "0")
            self.assertIsNotNone(limited.header("RateLimit-Reset"))
            # Another user is unaffected.
            first_b = stack.get("/api/v1/balances", headers={"Authorization": f"Bearer {kb}"})
            self.assertEqual(first_b.status, 200)
            self.assertEqual(first_b.header("RateLimit-Remaining"), "4")
            # Redis forgets its scripts (a restart, SCRIPT FLUSH): the gateway loads the bucket
            # script again and the same bucket goes on counting.
            subprocess.run(["redis-cli", "-p", str(stack.redis_port), "SCRIPT", "FLUSH"], check=True, capture_output=True)
            again_b = stack.get("/api/v1/balances", headers={"Authorization": f"Bearer {kb}"})
            self.assertEqual(again_b.status, 200)
            self.assertEqual(again_b.header("RateLimit-Remaining"), "3")
            # Stricter limits on /auth/* (per IP).
            codes = [stack.get("/api/v1/auth/nonce").status for _ in range(5)]
            self.assertEqual(codes[3:], [429, 429])
        finally:
            stack.close()



class RateLimitsAcrossGateways(unittest.TestCase):
    """Issue 22: each gateway decides limits in memory and the budget is divided among the live
    gateways (announced in Redis): a user spread over two gateways gets the limit once, not
    twice; when one gateway goes, the other takes the whole budget again."""

    def test_two_gateways_share_one_users_budget(self):
        import os
        from harness import BIN_DIR, _live, free_port
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"},
               "gateway": {"HYDROX_LEGACY_CLIENT_AUTH": "1", "RATE_LIMIT_USER_BURST": "6",
                           "RATE_LIMIT_USER_PER_MIN": "6", "RATE_LIMIT_IP_BURST": "100000"}}
        stack = Stack("rl2", extra_env=env, services=["trading", "gateway"], own_redis=True)
        self.addCleanup(stack.close)
        stack.start("trading")
        stack.start("gateway")
        second_port = free_port(avoid={*stack.ports.values(), stack.gateway_ops_port})
        second_env = stack.env_for("gateway")
        second_env["PORT"] = str(second_port)
        second_env["OPS_PORT"] = str(free_port(avoid={*stack.ports.values(), stack.gateway_ops_port, second_port}))
        log = open(os.path.join(stack.log_dir, "gateway-b.log"), "ab")
        second = subprocess.Popen([os.path.join(BIN_DIR, "hydrox-gateway")], env=second_env, stdout=log,
                                  stderr=subprocess.STDOUT)
        _live.append(second)
        self.addCleanup(lambda: (second.kill(), second.wait(), log.close()))

        def balances(port, user):
            return request(port, "GET", "/api/v1/balances", headers={"X-User-ID": user})

        # Both gateways have seen each other once a fresh user's limit there is half the burst.
        def halved(port):
            r = balances(port, new_user())
            return r.status == 200 and r.header("RateLimit-Limit") == "3"
        wait_until(lambda: halved(stack.gateway_port) and halved(second_port), 10, what="both gateways to share")

        user = new_user()
        answers = [balances(port, user) for port in [stack.gateway_port, second_port] * 4]
        self.assertEqual([r.status for r in answers], [200] * 6 + [429] * 2, [r.body for r in answers])
        self.assertEqual(answers[0].header("RateLimit-Remaining"), "2")
        self.assertGreaterEqual(int(answers[6].header("Retry-After")), 1)
        self.assertEqual(answers[6].json()["error"]["code"], "RATE_LIMITED")
        # One gateway gone: within the liveness window the other takes the whole budget again.
        second.kill()
        second.wait()
        wait_until(lambda: balances(stack.gateway_port, new_user()).header("RateLimit-Limit") == "6", 10,
                   what="the remaining gateway to take the whole budget")
        other = new_user()
        statuses = [balances(stack.gateway_port, other).status for _ in range(7)]
        self.assertEqual(statuses, [200] * 6 + [429])

if __name__ == "__main__":
    unittest.main()
