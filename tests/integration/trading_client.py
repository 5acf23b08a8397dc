"""Helpers for talking to the trading service directly (its internal port), as the gateway would
after authentication: X-User-ID carries the user, the operator token guards /internal."""
import json
import uuid

from harness import request

OPERATOR_TOKEN = "test-operator-token"
TRADING_ENV = {"OPERATOR_TOKEN": OPERATOR_TOKEN, "FAUCET_AMOUNT": "10000"}


class Trading:
    def __init__(self, port):
        self.port = port

    def op(self, method, path, body=None):
        return request(self.port, method, path, body=body,
                       headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json"})

    def deposit(self, user, amount, key=None):
        r = self.op("POST", "/internal/v1/deposits",
                    {"user_id": user, "amount": amount, "idempotency_key": key or str(uuid.uuid4())})
        assert r.status == 200, r.body
        return r.json()

    def mark(self, symbol, price):
        r = self.op("POST", "/internal/v1/marks", {"symbol": symbol, "mark_price": price})
        assert r.status == 200, r.body

    def invariants(self):
        r = self.op("GET", "/internal/v1/invariants")
        assert r.status == 200, r.body
        return r.json()

    def call(self, user, method, path, body=None, raw=None, timeout=10.0):
        headers = {"Content-Type": "application/json"}
        if user is not None:
            headers["X-User-ID"] = user
        return request(self.port, method, path, body=raw if raw is not None else body, headers=headers,
                       timeout=timeout)

    def place(self, user, **order):
        order.setdefault("symbol", "BTC_USDM_PERP")
        order.setdefault("type", "Limit")
        return self.call(user, "POST", "/api/v1/orders", order)


def api_key(user_port, user, scope="trade"):
    """An API key for `user` from the user service's operator route (as `make run` issues them)."""
    r = request(user_port, "POST", "/internal/v1/api-keys", body={"user_id": user, "scope": scope},
                headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert r.status == 201, r.body
    return r.json()["key"]


def new_user():
    return str(uuid.uuid4())


def dec(text):
    """Numbers in answers are exact decimal literals: compare them as decimals, never floats."""
    from decimal import Decimal
    return Decimal(str(text))


def loads_exact(body):
    from decimal import Decimal
    return json.loads(body, parse_float=Decimal, parse_int=Decimal)
