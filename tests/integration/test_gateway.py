"""The gateway against the real services, PostgreSQL and Redis (issue #2)."""
import json
import signal
import socket
import time
import unittest

from fake_upstream import FakeUpstream
from harness import Stack, raw_exchange, request, wait_until


def error_code(resp):
    body = resp.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "request_id"} <= set(body["error"]), body
    return body["error"]["code"]


class GatewayWithAllServices(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack("gw").start_all()
        cls.ops_port = cls.stack.gateway_ops_port

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def test_health_reports_all_five(self):
        r = self.stack.get("/health")
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["services"], {s: "up" for s in ["gateway", "market", "trading", "vault", "user"]})
        self.assertEqual(body["failing"], [])

    def test_stopped_service_turns_health_503_naming_it_within_2s_and_back(self):
        self.stack.stop("vault")
        started = time.monotonic()
        r = wait_until(lambda: (lambda x: x if x.status == 503 else None)(self.stack.get("/health")),
                       2.0, what="/health 503")
        self.assertLess(time.monotonic() - started, 2.0)
        body = r.json()
        self.assertEqual(body["failing"], ["vault"], body)
        self.assertEqual(body["services"]["vault"], "down")
        self.assertEqual(body["services"]["trading"], "up")
        # A request routed to the stopped upstream answers 503 quickly, never hangs.
        t0 = time.monotonic()
        v = self.stack.get("/api/v1/vaults")
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(v.status, 503, v.body)
        self.assertEqual(error_code(v), "UPSTREAM_UNAVAILABLE")
        self.stack.start("vault")
        wait_until(lambda: self.stack.get("/health").status == 200, 5, what="/health back to 200")

    def test_unknown_route_is_404_json(self):
        r = self.stack.get("/no/such/route")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(error_code(r), "ROUTE_NOT_FOUND")
        self.assertEqual(r.json()["error"]["request_id"], r.header("X-Request-ID"))

    def test_wrong_method_is_405_json(self):
        r = self.stack.call("POST", "/health", body="{}")
        self.assertEqual(r.status, 405)
        self.assertEqual(error_code(r), "METHOD_NOT_ALLOWED")
        r = self.stack.call("DELETE", "/api/v1/openapi.json")
        self.assertEqual(r.status, 405)

    def test_body_over_1mib_is_413_json(self):
        out = raw_exchange(self.stack.gateway_port,
                           b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1048577\r\n\r\n" + b"x" * 1024)
        self.assertTrue(out.startswith(b"HTTP/1.1 413"), out[:200])
        body = json.loads(out.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(body["error"]["code"], "PAYLOAD_TOO_LARGE")

    def test_headers_over_16kib_are_431_json(self):
        out = raw_exchange(self.stack.gateway_port,
                           b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (17 * 1024) + b"\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 431"), out[:200])
        body = json.loads(out.split(b"\r\n\r\n", 1)[1])
        self.assertEqual(body["error"]["code"], "HEADERS_TOO_LARGE")

    def test_malformed_http_is_400_json(self):
        out = raw_exchange(self.stack.gateway_port, b"GARBAGE\r\n\r\n")
        self.assertIn(b" 400 ", out.split(b"\r\n", 1)[0])
        self.assertIn(b"BAD_REQUEST", out)

    def test_request_id_is_generated_or_kept(self):
        r = self.stack.get("/health")
        self.assertEqual(len(r.header("X-Request-ID")), 36)
        r = self.stack.get("/health", headers={"X-Request-ID": "trace-42"})
        self.assertEqual(r.header("X-Request-ID"), "trace-42")
        r = self.stack.get("/health", headers={"X-Request-ID": "bad id with spaces"})
        self.assertNotEqual(r.header("X-Request-ID"), "bad id with spaces")

    def test_services_expose_ready_and_metrics(self):
        for s in ["market", "trading", "vault", "user"]:
            r = request(self.stack.ports[s], "GET", "/ready")
            self.assertEqual(r.status, 200, (s, r.body))
            self.assertEqual(r.json()["checks"], {"postgres": "ok", "redis": "ok"})
        self.stack.get("/health")
        # The gateway's own: on its loopback ops port, never on the public one.
        for path in ["/metrics", "/ready"]:
            self.assertEqual(request(self.stack.ports["gateway"], "GET", path).status, 404, path)
        self.assertEqual(request(self.ops_port, "GET", "/ready").status, 200)
        m = request(self.ops_port, "GET", "/metrics")
        self.assertEqual(m.status, 200)
        self.assertIn('http_requests_total{method="GET",route="/health",status="200"}', m.body)
        self.assertIn("http_request_duration_seconds_bucket", m.body)

    def test_cors_allow_list(self):
        ok = self.stack.call("OPTIONS", "/api/v1/markets",
                             headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"})
        self.assertEqual(ok.status, 204)
        self.assertEqual(ok.header("Access-Control-Allow-Origin"), "http://localhost:3000")
        bad = self.stack.call("OPTIONS", "/api/v1/markets",
                              headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
        self.assertEqual(bad.status, 403)
        self.assertIsNone(bad.header("Access-Control-Allow-Origin"))
        r = self.stack.get("/health", headers={"Origin": "http://localhost:3000"})
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "http://localhost:3000")
        r = self.stack.get("/health", headers={"Origin": "http://evil.example"})
        self.assertIsNone(r.header("Access-Control-Allow-Origin"))


class GatewayProxyBehaviour(unittest.TestCase):
    """The gateway in front of a recording upstream: what crosses, what is stripped."""

    @classmethod
    def setUpClass(cls):
        cls.fake = FakeUpstream()
        url = f"http://127.0.0.1:{cls.fake.port}"
        env = {"gateway": {"MARKET_SERVICE_URL": url, "TRADING_SERVICE_URL": url}}
        cls.stack = Stack("proxy", extra_env=env, services=["gateway"])
        cls.stack.start("gateway")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()
        cls.fake.close()

    def test_client_identity_header_never_reaches_a_service(self):
        # A user route without a credential stops at the gateway.
        r = self.stack.call("POST", "/api/v1/orders?symbol=BTC_USDM_PERP",
                            body={"symbol": "BTC_USDM_PERP", "price": 97250.50},
                            headers={"X-User-ID": "someone-else"})
        self.assertEqual(r.status, 401, r.body)
        self.assertEqual(r.json()["error"]["code"], "UNAUTHENTICATED")
        # A public route is forwarded, without the forged identity.
        r = self.stack.call("POST", "/api/v1/markets/x?symbol=BTC_USDM_PERP",
                            body='{"symbol": "BTC_USDM_PERP", "price": 97250.50}',
                            headers={"X-User-ID": "someone-else", "x-user-id": "again", "X-Auth-Kind": "session",
                                     "Authorization": "Bearer whatever"})
        self.assertEqual(r.status, 200, r.body)
        seen = r.json()
        self.assertNotIn("x-user-id", seen["headers"])
        self.assertNotIn("x-auth-kind", seen["headers"])
        self.assertNotIn("authorization", seen["headers"])
        self.assertEqual(seen["path"], "/api/v1/markets/x?symbol=BTC_USDM_PERP")
        self.assertEqual(json.loads(seen["body"])["price"], 97250.50)
        self.assertIn("97250.50", seen["body"])
        self.assertEqual(seen["headers"]["x-request-id"], r.header("X-Request-ID"))
        self.assertEqual(seen["headers"]["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(r.header("X-Upstream"), "fake")

    def test_keep_alive_upstream_serves_many_requests(self):
        before = len(self.fake.seen)
        for i in range(200):
            r = self.stack.get(f"/api/v1/markets/BTC_USDM_PERP/trades?i={i}")
            self.assertEqual(r.status, 200)
        self.assertEqual(len(self.fake.seen) - before, 200)

    def test_websocket_upgrade_is_tunnelled_both_ways(self):
        with socket.create_connection(("127.0.0.1", self.stack.gateway_port), timeout=5) as s:
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                      b"X-User-ID: forged\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
            for msg in [b"hello", b"x" * 50000]:
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    got += s.recv(65536)
                self.assertEqual(got, msg)
        upgrade = [h for (m, p, h) in self.fake.seen if p == "/ws"]
        self.assertTrue(upgrade)
        self.assertNotIn("x-user-id", upgrade[-1])

    def test_legacy_mode_passes_the_client_identity_and_says_so(self):
        fake = FakeUpstream()
        url = f"http://127.0.0.1:{fake.port}"
        stack = Stack("legacy", extra_env={"gateway": {"TRADING_SERVICE_URL": url, "HYDROX_LEGACY_CLIENT_AUTH": "1"}},
                      services=["gateway"])
        try:
            stack.start("gateway")
            r = stack.get("/api/v1/positions", headers={"X-User-ID": "u-1"})
            self.assertEqual(r.json()["headers"]["x-user-id"], "u-1")
            with open(f"{stack.log_dir}/gateway.log", encoding="utf-8") as f:
                self.assertIn("HYDROX_LEGACY_CLIENT_AUTH=1", f.read())
        finally:
            stack.close()
            fake.close()

    def test_websocket_to_a_down_market_is_503(self):
        stack = Stack("wsdown", extra_env={"gateway": {"MARKET_SERVICE_URL": "http://127.0.0.1:1"}},
                      services=["gateway"])
        try:
            stack.start("gateway")
            out = raw_exchange(stack.gateway_port,
                               b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            self.assertTrue(out.startswith(b"HTTP/1.1 503"), out[:200])
            self.assertIn(b"UPSTREAM_UNAVAILABLE", out)
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
