"""Malformed input through the gateway (issue #9, "HTTP abuse"): every request body of the fuzz
corpora (JSON documents, order bodies, WebSocket requests: about 1,700, most of them malformed
for the route they hit) sent to every route that takes a body, authenticated. Every answer is
below 500, at least 1,000 of them are 4xx with a JSON error body, nothing is half-applied (the
invariants hold) and every service stays healthy."""
import http.client
import json
import os
import unittest

from harness import SOURCE_DIR, Stack, request
from trading_client import OPERATOR_TOKEN, TRADING_ENV, Trading, new_user

HLP = "00000000-0000-7000-8000-0000000000a1"


class MalformedBodies(unittest.TestCase):
    def test_no_body_of_the_corpus_gets_a_5xx_anywhere(self):
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN},
               "vault": {"OPERATOR_TOKEN": OPERATOR_TOKEN}, "market": {"INDEX_FEED": "none"},
               "gateway": {"RATE_LIMIT_IP_BURST": "0", "RATE_LIMIT_USER_BURST": "0", "RATE_LIMIT_AUTH_IP_BURST": "0"}}
        stack = Stack("abuse", extra_env=env).start_all()
        try:
            t = Trading(stack.ports["trading"])
            t.mark("BTC_USDM_PERP", "97000")
            user = new_user()
            t.deposit(user, "100000")
            r = request(stack.ports["user"], "POST", "/internal/v1/api-keys", body={"user_id": user, "scope": "trade"},
                        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
            key = r.json()["key"]
            bodies = []
            for target in ("json", "order", "ws"):
                folder = os.path.join(SOURCE_DIR, "fuzz", "corpus", target)
                for name in sorted(os.listdir(folder)):
                    with open(os.path.join(folder, name), "rb") as f:
                        bodies.append(f.read())
            self.assertGreater(len(bodies), 1000)
            routes = ["/api/v1/orders", "/api/v1/positions/00000000-0000-4000-8000-000000000001/close",
                      "/api/v1/vaults", f"/api/v1/vaults/{HLP}/deposit", f"/api/v1/vaults/{HLP}/withdraw",
                      "/api/v1/auth/connect", "/api/v1/users/api-keys"]
            conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=10)
            statuses = {}
            client_errors = 0
            for route in routes:
                for body in bodies:
                    conn.request("POST", route, body=body, headers={"Authorization": f"Bearer {key}",
                                                                    "Content-Type": "application/json"})
                    resp = conn.getresponse()
                    payload = resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    self.assertLess(resp.status, 500, (route, body[:200], payload[:300]))
                    if 400 <= resp.status < 500:
                        client_errors += 1
                        self.assertIn("code", json.loads(payload)["error"], (route, payload[:300]))
                    if resp.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=10)
            conn.close()
            print("statuses:", dict(sorted(statuses.items())), "bodies:", len(bodies))
            self.assertGreaterEqual(client_errors, 1000, statuses)
            self.assertEqual(stack.get("/health").status, 200)
            inv = t.invariants()
            self.assertTrue(inv["ok"], inv)
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
