"""docs/openapi.yaml against real responses: the gateway serves it, and what the system answers
matches the schemas it declares (issue #2; every later route is added to the document and here)."""
import os
import unittest

import yaml

from harness import SOURCE_DIR, Stack, raw_exchange, request, wait_until


class SchemaError(AssertionError):
    pass


def resolve(doc, schema):
    while "$ref" in schema:
        node = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def validate(doc, schema, value, path="$"):
    """A small validator for the OpenAPI 3.0 subset the document uses."""
    schema = resolve(doc, schema)
    if value is None and (schema.get("nullable") or None in schema.get("enum", [])):
        return
    if "oneOf" in schema:
        errors = []
        for option in schema["oneOf"]:
            try:
                validate(doc, option, value, path)
                return
            except SchemaError as e:
                errors.append(str(e))
        raise SchemaError(f"{path}: matches no oneOf option ({errors})")
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t in types and not isinstance(value, types[t]):
        raise SchemaError(f"{path}: expected {t}, got {type(value).__name__}")
    if t == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        raise SchemaError(f"{path}: expected integer")
    if t == "number" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise SchemaError(f"{path}: expected number")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{path}: {value!r} not in {schema['enum']}")
    for part in schema.get("allOf", []):
        validate(doc, part, value, path)
    if t == "object":
        props = schema.get("properties", {})
        for req in schema.get("required", []):
            if req not in value:
                raise SchemaError(f"{path}: missing required {req}")
        for k, v in value.items():
            if k in props:
                validate(doc, props[k], v, f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                raise SchemaError(f"{path}: unexpected property {k}")
            elif isinstance(schema.get("additionalProperties"), dict):
                validate(doc, schema["additionalProperties"], v, f"{path}.{k}")
    if t == "array" and "items" in schema:
        for i, item in enumerate(value):
            validate(doc, schema["items"], item, f"{path}[{i}]")


def check(doc, path, method, resp):
    op = doc["paths"][path][method.lower()]
    spec = op["responses"].get(str(resp.status))
    if spec is None:
        raise SchemaError(f"{method} {path}: status {resp.status} not documented")
    spec = resolve(doc, spec)
    media = resp.header("Content-Type").split(";")[0]
    if media not in spec.get("content", {}):
        raise SchemaError(f"{method} {path} {resp.status}: content type {media} not documented")
    if media == "application/json":
        validate(doc, spec["content"][media]["schema"], resp.json())


class OpenApiMatchesRealResponses(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            cls.doc = yaml.safe_load(f)
        cls.stack = Stack("oa").start_all()

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def test_gateway_serves_the_document(self):
        r = self.stack.get("/api/v1/openapi.json")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), self.doc)
        check(self.doc, "/api/v1/openapi.json", "GET", r)

    def test_health_up_and_down_match_the_schema(self):
        check(self.doc, "/health", "GET", self.stack.get("/health"))
        self.stack.stop("user")
        r = wait_until(lambda: (lambda x: x if x.status == 503 else None)(self.stack.get("/health")), 3)
        check(self.doc, "/health", "GET", r)
        self.stack.start("user")
        wait_until(lambda: self.stack.get("/health").status == 200, 5)

    def test_service_ready_and_metrics_match(self):
        port = self.stack.ports["trading"]
        check(self.doc, "/ready", "GET", request(port, "GET", "/ready"))
        check(self.doc, "/metrics", "GET", request(port, "GET", "/metrics"))

    def test_every_error_answer_matches_the_error_schema(self):
        error_schema = {"$ref": "#/components/schemas/ErrorBody"}
        answers = [
            self.stack.get("/nope"),
            self.stack.call("PUT", "/health", body="{}"),
        ]
        for r in answers:
            self.assertGreaterEqual(r.status, 400)
            validate(self.doc, error_schema, r.json())
        import json
        for raw in [b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
                    b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n",
                    b"BAD\r\n\r\n"]:
            out = raw_exchange(self.stack.gateway_port, raw)
            validate(self.doc, error_schema, json.loads(out.split(b"\r\n\r\n", 1)[1]))

    def test_documented_error_codes_are_exactly_the_servers_table(self):
        codes = self.doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["properties"]["code"]["enum"]
        with open(os.path.join(SOURCE_DIR, "libs", "core", "src", "error.cpp"), encoding="utf-8") as f:
            table = [line.split('"')[1] for line in f if "CodeInfo{Code::" in line]
        self.assertEqual(codes, table)


class TradingRoutesMatchTheDocument(unittest.TestCase):
    """Every trading route's real answers (success and error) against docs/openapi.yaml."""

    @classmethod
    def setUpClass(cls):
        from trading_client import TRADING_ENV, Trading
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            cls.doc = yaml.safe_load(f)
        cls.stack = Stack("oatr", extra_env={"trading": TRADING_ENV}, services=["trading"])
        cls.stack.start("trading")
        cls.t = Trading(cls.stack.ports["trading"])
        cls.t.mark("BTC_USDM_PERP", "97000")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def test_trading_answers(self):
        from trading_client import new_user
        t, doc = self.t, self.doc
        a, b = new_user(), new_user()
        t.deposit(a, "10000")
        t.deposit(b, "10000")
        # Each answer is checked against its schema and for the status it must have (issue 26: a
        # shape alone would pass a 422 where a 201 is due).
        def expect(status, r, path="/api/v1/orders", method="POST", code=None):
            self.assertEqual(r.status, status, r.body)
            if code:
                self.assertEqual(r.json()["error"]["code"], code)
            check(doc, path, method, r)
            return r

        sell = expect(201, t.place(a, side="Sell", price="97000", amount="0.01", client_order_id="oa-1"))
        again = expect(200, t.place(a, side="Sell", price="97000", amount="0.01", client_order_id="oa-1"))
        self.assertEqual(again.json()["id"], sell.json()["id"])
        filled = expect(201, t.place(b, side="Buy", price="97000", amount="0.004"))
        self.assertEqual(filled.json()["status"], "Filled")
        expect(400, t.place(b, side="Buy", price="97000", amount="-1"))
        # 1,000 BTC is 97 M USDM: above the market's order notional (50 M), refused before margin.
        expect(400, t.place(b, side="Buy", price="97000", amount="1000"), code="ORDER_NOTIONAL_TOO_LARGE")
        # 5 BTC (485,000 USDM) on a 10,000 USDM account: within the limits, beyond its margin.
        expect(422, t.place(b, side="Buy", price="97000", amount="5"), code="INSUFFICIENT_MARGIN")
        expect(401, t.call(None, "POST", "/api/v1/orders", {}))
        for path in ["/api/v1/orders", "/api/v1/orders/history", "/api/v1/fills", "/api/v1/positions", "/api/v1/balances"]:
            answers = [expect(200, t.call(user, "GET", path), path, "GET") for user in (a, b)]
            # Not vacuous: A's resting sell, B's filled buy, both fills, B's position, balances.
            self.assertTrue(any(r.json() for r in answers), path)
            expect(401, t.call(None, "GET", path), path, "GET")
        expect(400, t.call(a, "GET", "/api/v1/orders?limit=abc"), "/api/v1/orders", "GET")
        oid = sell.json()["id"]
        check(doc, "/api/v1/orders/{id}", "DELETE", t.call(a, "DELETE", f"/api/v1/orders/{oid}"))
        check(doc, "/api/v1/orders/{id}", "DELETE", t.call(a, "DELETE", f"/api/v1/orders/{oid}"))
        check(doc, "/api/v1/orders", "DELETE", t.call(a, "DELETE", "/api/v1/orders?symbol=BTC_USDM_PERP"))
        t.place(a, side="Buy", price="96000", amount="0.01")
        pid = t.call(b, "GET", "/api/v1/positions").json()[0]["id"]
        check(doc, "/api/v1/positions/{id}/close", "POST", t.call(b, "POST", f"/api/v1/positions/{pid}/close"))
        check(doc, "/api/v1/positions/{id}/close", "POST", t.call(b, "POST", f"/api/v1/positions/{pid}/close"))


class MarketRoutesMatchTheDocument(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from trading_client import TRADING_ENV, Trading
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            cls.doc = yaml.safe_load(f)
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "market": {"INDEX_FEED": "none"}}
        cls.stack = Stack("oamk", extra_env=env, services=["trading", "market", "gateway"])
        for s in ["trading", "market", "gateway"]:
            cls.stack.start(s)
        t = Trading(cls.stack.ports["trading"])
        t.mark("BTC_USDM_PERP", "97000")
        from trading_client import new_user
        a, b = new_user(), new_user()
        t.deposit(a, "10000")
        t.deposit(b, "10000")
        t.place(a, side="Sell", price="97000", amount="0.01")
        t.place(b, side="Buy", price="97000", amount="0.004")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def test_market_answers_through_the_gateway(self):
        doc, g = self.doc, self.stack
        check(doc, "/api/v1/markets", "GET", g.get("/api/v1/markets"))
        for route in ["ticker", "klines", "trades", "orderbook", "funding"]:
            path = "/api/v1/markets/{symbol}/" + route
            ok = g.get(f"/api/v1/markets/BTC_USDM_PERP/{route}")
            self.assertEqual(ok.status, 200, (route, ok.body))
            check(doc, path, "GET", ok)
            check(doc, path, "GET", g.get(f"/api/v1/markets/NOPE/{route}"))
        check(doc, "/api/v1/markets/{symbol}/klines", "GET", g.get("/api/v1/markets/BTC_USDM_PERP/klines?interval=7m"))
        self.assertTrue(g.get("/api/v1/markets/BTC_USDM_PERP/trades").json())  # not vacuous


class TheDocumentIsValidOpenApi(unittest.TestCase):
    """Issue 26: the document is valid OpenAPI 3.0 for the common tools, not only for this suite's
    validator: @apidevtools/swagger-parser (which SDK generators and documentation tools use)
    accepts it, no mapping holds a key without a value (an unquoted description with a comma
    becomes one), no $ref has siblings (ignored in 3.0), and every operation has an operationId."""

    def test_swagger_parser_accepts_it(self):
        import subprocess
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["node", os.path.join(here, "openapi_validate.mjs"),
                              os.path.join(SOURCE_DIR, "docs", "openapi.yaml")], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout[:3000] + out.stderr[:1000])
        self.assertTrue(out.stdout.startswith("valid 3.0"), out.stdout)

    def test_no_stray_keys_no_ref_siblings_and_an_operation_id_each(self):
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        problems = []

        def walk(node, where):
            if isinstance(node, dict):
                if "$ref" in node and len(node) > 1:
                    problems.append(f"{where}: $ref with siblings {sorted(node)}")
                for k, v in node.items():
                    if v is None and k not in ("example", "default"):
                        problems.append(f"{where}: key {k!r} without a value")
                    walk(v, f"{where}/{k}")
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, f"{where}[{i}]")
        walk(doc, "")
        ids = []
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    if "operationId" not in op:
                        problems.append(f"{method} {path}: no operationId")
                    ids.append(op.get("operationId"))
        self.assertEqual(problems, [])
        self.assertEqual(len(ids), len(set(ids)), "operationIds repeat")


if __name__ == "__main__":
    unittest.main()
