"""The signed oracle push (issue #5): Ed25519 signatures from libsodium (through ctypes, the
library the Cardano tooling also uses), each kind of bad sample refused with its own code, and
only accepted samples move trading's mark."""
import ctypes
import ctypes.util
import time
import unittest

from harness import Stack, request, wait_until
from trading_client import TRADING_ENV, loads_exact

SODIUM = ctypes.CDLL(ctypes.util.find_library("sodium"))
SODIUM.sodium_init()


def keypair():
    pk, sk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(64)
    SODIUM.crypto_sign_keypair(pk, sk)
    return pk.raw, sk.raw


def sign(sk, message: bytes) -> str:
    sig = ctypes.create_string_buffer(64)
    SODIUM.crypto_sign_detached(sig, None, message, ctypes.c_ulonglong(len(message)), sk)
    return sig.raw.hex()


class OraclePush(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pk, cls.sk = keypair()
        cls.other_pk, cls.other_sk = keypair()
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "1"},
               "market": {"INDEX_FEED": "oracle", "ORACLE_PUBLIC_KEYS": f"o1:{cls.pk.hex()}"}}
        cls.stack = Stack("orc", extra_env=env, own_redis=True).start_all()

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def push(self, price, ts=None, key_id="o1", sk=None, symbol="BTC_USDM_PERP", tamper=False):
        ts = ts if ts is not None else int(time.time() * 1000)
        msg = f"{symbol}|{price}|{ts}".encode()
        sig = sign(sk or self.sk, msg)
        body = {"symbol": symbol, "price": price + ("1" if tamper else ""), "timestamp_ms": ts, "key_id": key_id,
                "signature": sig}
        return self.stack.call("POST", "/api/v1/oracle/prices", body=body)  # through the gateway

    def mark(self):
        r = request(self.stack.ports["trading"], "GET", "/internal/v1/orderbook?symbol=BTC_USDM_PERP")
        return loads_exact(r.body)["mark_price"]

    def test_signed_samples_move_the_mark_and_bad_ones_never_do(self):
        r = self.push("97100.5")
        self.assertEqual(r.status, 200, r.body)
        wait_until(lambda: str(self.mark()) == "97100.5", 5, what="the mark to follow the oracle")
        now = int(time.time() * 1000)
        cases = [
            (self.push("97101", ts=now - 11_000), 422, "STALE_SAMPLE"),
            (self.push("97101", ts=now + 5_000), 422, "FUTURE_SAMPLE"),
            (self.push("97101", ts=now - 5_000), 422, "OUT_OF_ORDER"),
            (self.push("120000"), 422, "ABSURD_SAMPLE"),  # +23 %: beyond the 10 % rule
            (self.push("97101", sk=self.other_sk), 401, "BAD_SIGNATURE"),
            (self.push("97101", tamper=True), 401, "BAD_SIGNATURE"),
            (self.push("97101", key_id="nope"), 401, "UNKNOWN_ORACLE_KEY"),
        ]
        import os
        import yaml
        from harness import SOURCE_DIR
        from test_openapi import check
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for r, status, code in cases:
            self.assertEqual((r.status, r.json()["error"]["code"]), (status, code), r.body)
            check(doc, "/api/v1/oracle/prices", "POST", r)
        time.sleep(0.3)
        self.assertEqual(str(self.mark()), "97100.5")  # nothing refused reached the mark
        ok = self.push("97200")
        self.assertEqual(ok.status, 200)
        check(doc, "/api/v1/oracle/prices", "POST", ok)
        wait_until(lambda: str(self.mark()) == "97200", 5, what="the next good sample")
        # A real move beyond 10 % is accepted once three samples in a row agree on it (within 1 %).
        self.assertEqual([self.push(p).status for p in ("110000", "110100", "110200")], [422, 422, 200])
        # The refusals were logged.
        with open(f"{self.stack.log_dir}/market.log", encoding="utf-8") as f:
            log = f.read()
        for code in ["STALE_SAMPLE", "OUT_OF_ORDER", "ABSURD_SAMPLE", "BAD_SIGNATURE"]:
            self.assertIn(code, log)


if __name__ == "__main__":
    unittest.main()
