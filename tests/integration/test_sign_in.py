"""Ethereum wallet sign-in (issue #6, EIP-4361): signatures made by ethers (npm), never by our
code; each violation refused with its own code; one signed message yields exactly one session
even when submitted ten times at once; sessions work at the gateway and end on disconnect."""
import concurrent.futures
import json
import os
import subprocess
import time
import unittest

from harness import Stack, wait_until
from trading_client import OPERATOR_TOKEN, TRADING_ENV

HERE = os.path.dirname(os.path.abspath(__file__))
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def node(*args):
    out = subprocess.run(["node", os.path.join(HERE, "eth_sign.mjs"), *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def new_wallet():
    return node("new")


def sign(wallet, message):
    return node("sign", wallet["private_key"], message)["signature"]


def ada(*args):
    out = subprocess.run(["node", os.path.join(HERE, "cardano_sign.mjs"), *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def ada_wallet(kind="base", network=1):
    payment, stake = os.urandom(32).hex(), os.urandom(32).hex()
    return {"payment": payment, "stake": stake, "address": ada("address", kind, str(network), payment, stake)["address"],
            "signer": stake if kind == "reward" else payment}


def ada_sign(wallet, message, key=None, hashed=False):
    out = ada("sign", wallet["address"], key or wallet["signer"], message, *(["hashed"] if hashed else []))
    return out["signature"], out["key"]


def replace_line(message, prefix, new_line):
    lines = message.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(prefix):
            lines[i] = new_line
            return "\n".join(lines)
    return message + "\n" + new_line


class EthereumSignIn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN},
               "market": {"INDEX_FEED": "none"},
               "gateway": {"RATE_LIMIT_AUTH_IP_BURST": "1000"}}  # the tests sign in many times from one IP
        cls.stack = Stack("siwe", extra_env=env).start_all()

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def nonce(self, wallet):
        r = self.stack.get(f"/api/v1/auth/nonce?wallet_address={wallet['address']}&chain=ethereum")
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def connect(self, wallet, message, signature, address=None):
        return self.stack.call("POST", "/api/v1/auth/connect",
                               body={"wallet_address": address or wallet["address"], "chain": "ethereum",
                                     "message": message, "signature": signature})

    def test_sign_in_session_faucet_and_disconnect(self):
        w = new_wallet()
        n = self.nonce(w)
        self.assertIn(f"Nonce: {n['nonce']}", n["message"])
        r = self.connect(w, n["message"], sign(w, n["message"]))
        self.assertEqual(r.status, 200, r.body)
        body = r.json()
        import yaml
        from harness import SOURCE_DIR
        from test_openapi import check
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        check(doc, "/api/v1/auth/connect", "POST", r)
        check(doc, "/api/v1/auth/nonce", "GET", self.stack.get(f"/api/v1/auth/nonce?wallet_address={w['address']}"))
        self.assertEqual((body["status"], body["wallet_address"]), ("connected", w["address"].lower()))
        self.assertTrue(body["token"].startswith("hxs_"))
        auth = {"Authorization": f"Bearer {body['token']}"}
        bal = self.stack.get("/api/v1/balances", headers=auth)
        self.assertEqual(bal.status, 200, bal.body)
        self.assertEqual(bal.json()[0]["total"], 10000)  # the test-net faucet, on the first sign-in
        prof = self.stack.get("/api/v1/users/profile", headers=auth).json()
        self.assertEqual((prof["id"], prof["wallet_address"]), (body["user_id"], w["address"].lower()))
        # A second sign-in is the same user, and no second faucet.
        n2 = self.nonce(w)
        again = self.connect(w, n2["message"], sign(w, n2["message"])).json()
        self.assertEqual(again["user_id"], body["user_id"])
        self.assertEqual(self.stack.get("/api/v1/balances", headers=auth).json()[0]["total"], 10000)
        # A session may create API keys.
        k = self.stack.call("POST", "/api/v1/users/api-keys", body={"scope": "read"}, headers=auth)
        self.assertEqual(k.status, 201, k.body)
        d = self.stack.call("POST", "/api/v1/auth/disconnect", body={}, headers=auth)
        self.assertEqual((d.status, d.json()), (200, {"status": "disconnected"}))
        check(doc, "/api/v1/auth/disconnect", "POST", d)
        wait_until(lambda: self.stack.get("/api/v1/balances", headers=auth).status == 401, 2.0, what="session revoked")

    def test_each_violation_has_its_own_code(self):
        w, other = new_wallet(), new_wallet()

        def fresh():
            return self.nonce(w)["message"]

        cases = []
        m = fresh()
        ok_sig = sign(w, m)
        self.assertEqual(self.connect(w, m, ok_sig).status, 200)
        cases.append(("replay", self.connect(w, m, ok_sig), 401, "NONCE_REPLAYED"))
        m = fresh().replace("localhost:8080 wants you", "evil.example wants you")
        cases.append(("wrong domain", self.connect(w, m, sign(w, m)), 401, "WRONG_DOMAIN"))
        m = replace_line(fresh(), "URI: ", "URI: https://evil.example")
        cases.append(("wrong uri", self.connect(w, m, sign(w, m)), 401, "WRONG_DOMAIN"))
        m = replace_line(fresh(), "Chain ID: ", "Chain ID: 5")
        cases.append(("wrong chain", self.connect(w, m, sign(w, m)), 401, "WRONG_CHAIN"))
        m = replace_line(fresh(), "Expiration Time: ", "Expiration Time: 2020-01-01T00:00:00.000Z")
        cases.append(("expired", self.connect(w, m, sign(w, m)), 401, "EXPIRED"))
        m = replace_line(fresh(), "Issued At: ", "Issued At: 2020-01-01T00:00:00Z")
        cases.append(("old issued-at", self.connect(w, m, sign(w, m)), 401, "EXPIRED"))
        m = fresh() + "\nNot Before: 2099-01-01T00:00:00Z"
        cases.append(("not yet valid", self.connect(w, m, sign(w, m)), 401, "NOT_YET_VALID"))
        m = replace_line(fresh(), "Issued At: ", "Issued At: 2099-01-01T00:00:00+02:00")
        cases.append(("issued in the future", self.connect(w, m, sign(w, m)), 401, "NOT_YET_VALID"))
        cases.append(("malformed", self.connect(w, "hello", sign(w, "hello")), 400, "MALFORMED_MESSAGE"))
        m = fresh()
        cases.append(("signed by someone else", self.connect(w, m, sign(other, m)), 401, "BAD_SIGNATURE"))
        cases.append(("another message's signature", self.connect(w, m, sign(w, m + " ")), 401, "BAD_SIGNATURE"))
        sig = sign(w, m)
        r_s, s, v = sig[2:66], int(sig[66:130], 16), int(sig[130:132], 16)
        high = "0x" + r_s + format(N - s, "064x") + format(55 - v, "02x")  # the malleable twin
        cases.append(("high s", self.connect(w, m, high), 401, "BAD_SIGNATURE"))
        cases.append(("wallet is not the signer", self.connect(w, m, sig, address=other["address"]), 401,
                      "KEY_ADDRESS_MISMATCH"))
        r = self.stack.get(f"/api/v1/auth/nonce?wallet_address=addr_test1xyz&chain=cardano")
        cases.append(("cardano", r, 400, "INVALID_FIELD"))  # not a valid bech32 address
        import yaml
        from harness import SOURCE_DIR
        from test_openapi import check
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for name, r, status, code in cases:
            self.assertEqual((r.status, r.json()["error"]["code"]), (status, code), (name, r.body))
            check(doc, "/api/v1/auth/nonce" if name == "cardano" else "/api/v1/auth/connect",
                  "GET" if name == "cardano" else "POST", r)
        # The refused attempts did not burn the last nonce: the right signature still works.
        self.assertEqual(self.connect(w, m, sig).status, 200)

    def test_ten_concurrent_submissions_make_one_session(self):
        w = new_wallet()
        m = self.nonce(w)["message"]
        sig = sign(w, m)
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda _: self.connect(w, m, sig), range(10)))
        codes = sorted(r.status for r in answers)
        self.assertEqual(codes, [200] + [401] * 9, [r.body for r in answers])
        self.assertTrue(all(r.json()["error"]["code"] == "NONCE_REPLAYED" for r in answers if r.status == 401))


class CardanoSignIn(unittest.TestCase):
    """CIP-30 signData results made by EMURGO's Cardano libraries (npm)."""

    @classmethod
    def setUpClass(cls):
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN},
               "market": {"INDEX_FEED": "none"}, "gateway": {"RATE_LIMIT_AUTH_IP_BURST": "1000"}}
        cls.stack = Stack("cip30", extra_env=env).start_all()

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def nonce(self, wallet):
        r = self.stack.get(f"/api/v1/auth/nonce?wallet_address={wallet['address']}&chain=cardano")
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def connect(self, wallet, message, signed, address=None):
        signature, key = signed
        return self.stack.call("POST", "/api/v1/auth/connect",
                               body={"wallet_address": address or wallet["address"], "chain": "cardano",
                                     "message": message, "signature": signature, "key": key})

    def test_mainnet_testnet_and_stake_addresses_sign_in(self):
        for kind, network, hashed in [("base", 1, False), ("enterprise", 0, False), ("reward", 1, False),
                                      ("base", 0, True)]:
            w = ada_wallet(kind, network)
            n = self.nonce(w)
            self.assertIn("wants you to sign in with your Cardano account:\n" + w["address"], n["message"])
            self.assertIn(f"Chain ID: {network}", n["message"])
            r = self.connect(w, n["message"], ada_sign(w, n["message"], hashed=hashed))
            self.assertEqual(r.status, 200, (kind, network, r.body))
            body = r.json()
            self.assertEqual(body["wallet_address"], w["address"])
            bal = self.stack.get("/api/v1/balances", headers={"Authorization": f"Bearer {body['token']}"})
            self.assertEqual(bal.status, 200, bal.body)
        # A base address may also sign with its stake key (CIP-30 wallets offer both).
        w = ada_wallet("base", 1)
        n = self.nonce(w)
        self.assertEqual(self.connect(w, n["message"], ada_sign(w, n["message"], key=w["stake"])).status, 200)
        # The same wallet again is the same user.
        n = self.nonce(w)
        again = self.connect(w, n["message"], ada_sign(w, n["message"]))
        self.assertEqual(again.status, 200)

    def test_each_violation_has_its_own_code(self):
        w, other = ada_wallet("base", 1), ada_wallet("base", 1)

        def fresh():
            return self.nonce(w)["message"]

        cases = []
        m = fresh()
        ok = ada_sign(w, m)
        self.assertEqual(self.connect(w, m, ok).status, 200)
        cases.append(("replay", self.connect(w, m, ok), 401, "NONCE_REPLAYED"))
        m = fresh().replace("localhost:8080 wants you", "evil.example wants you")
        cases.append(("wrong domain", self.connect(w, m, ada_sign(w, m)), 401, "WRONG_DOMAIN"))
        m = replace_line(fresh(), "Chain ID: ", "Chain ID: 0")  # a mainnet address, a test-net message
        cases.append(("wrong chain", self.connect(w, m, ada_sign(w, m)), 401, "WRONG_CHAIN"))
        m = replace_line(fresh(), "Expiration Time: ", "Expiration Time: 2020-01-01T00:00:00.000Z")
        cases.append(("expired", self.connect(w, m, ada_sign(w, m)), 401, "EXPIRED"))
        m = fresh() + "\nNot Before: 2099-01-01T00:00:00Z"
        cases.append(("not yet valid", self.connect(w, m, ada_sign(w, m)), 401, "NOT_YET_VALID"))
        cases.append(("malformed", self.connect(w, "hello", ada_sign(w, "hello")), 400, "MALFORMED_MESSAGE"))
        m = fresh()
        cases.append(("another message signed", self.connect(w, m, ada_sign(w, m + " ")), 401, "BAD_SIGNATURE"))
        sig, key = ada_sign(w, m)
        tampered = sig[:-2] + ("00" if sig[-2:] != "00" else "01")
        cases.append(("tampered signature", self.connect(w, m, (tampered, key)), 401, "BAD_SIGNATURE"))
        cases.append(("not CBOR", self.connect(w, m, ("zz", key)), 401, "BAD_SIGNATURE"))
        cases.append(("key of another wallet", self.connect(w, m, ada_sign(w, m, key=other["payment"])), 401,
                      "KEY_ADDRESS_MISMATCH"))
        cases.append(("wallet is not the signer", self.connect(w, m, (sig, key), address=other["address"]), 401,
                      "KEY_ADDRESS_MISMATCH"))
        r = self.stack.get("/api/v1/auth/nonce?wallet_address=addr1qxyz&chain=cardano")
        cases.append(("bad address", r, 400, "INVALID_FIELD"))
        import yaml
        from harness import SOURCE_DIR
        from test_openapi import check
        with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for name, r, status, code in cases:
            self.assertEqual((r.status, r.json()["error"]["code"]), (status, code), (name, r.body))
            check(doc, "/api/v1/auth/nonce" if name == "bad address" else "/api/v1/auth/connect",
                  "GET" if name == "bad address" else "POST", r)
        self.assertEqual(self.connect(w, m, (sig, key)).status, 200)

    def test_ten_concurrent_submissions_make_one_session(self):
        w = ada_wallet("enterprise", 0)
        m = self.nonce(w)["message"]
        signed = ada_sign(w, m)
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda _: self.connect(w, m, signed), range(10)))
        self.assertEqual(sorted(r.status for r in answers), [200] + [401] * 9, [r.body for r in answers])


if __name__ == "__main__":
    unittest.main()
