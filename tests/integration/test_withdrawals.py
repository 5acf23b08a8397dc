"""Withdrawals (issue 24): a user asks through the gateway with the session of the wallet they
signed in with; the amount leaves the balance at once (pending_withdrawal) and the bridge (the
operator API, hydrox-admin withdrawals next|complete|reject) moves it PENDING -> PROCESSING ->
COMPLETED, or REJECTED with the funds back; a user may cancel a PENDING one. Every refusal has its
code and field; a replayed idempotency key moves nothing twice; a SIGKILL of trading between the
request and the completion loses and doubles nothing. The engine's invariants after each test."""
import os
import signal
import subprocess
import threading
import time
import unittest
import uuid
from decimal import Decimal as D

import yaml

from acked_orders import sql
from harness import BIN_DIR, SOURCE_DIR, Stack, wait_until
from test_openapi import check
from test_sign_in import ada, new_wallet, sign
from trading_client import OPERATOR_TOKEN, TRADING_ENV, Trading, api_key, loads_exact

HERE = os.path.dirname(os.path.abspath(__file__))


def load_doc():
    with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def psql(stack, query):
    # (withdrawals rows are written with the journal: no wait for the projector)
    return sql(stack, query, wait_projected=False)


def eth_user(stack):
    """A user with an Ethereum wallet (as sign-in stores it: lower case) and 10,000 USDM."""
    user, address = str(uuid.uuid4()), "0x" + os.urandom(20).hex()
    psql(stack, f"INSERT INTO users (id, wallet_address, chain) VALUES ('{user}', '{address}', 'ethereum')")
    Trading(stack.ports["trading"]).deposit(user, "10000")
    return user, address


def admin(stack, *args):
    env = {**os.environ, "TRADING_SERVICE_URL": f"http://127.0.0.1:{stack.ports['trading']}",
           "OPERATOR_TOKEN": OPERATOR_TOKEN}
    out = subprocess.run([os.path.join(BIN_DIR, "hydrox-admin"), *args], capture_output=True, text=True, env=env)
    return out.returncode, loads_exact(out.stdout) if out.stdout.strip().startswith(("{", "[")) else out.stdout


class Withdrawals(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = load_doc()
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0", "WITHDRAWAL_DAILY_LIMIT": "5000",
                           "AUTH_CARDANO_NETWORKS": "1"},
               "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN}, "market": {"INDEX_FEED": "none"},
               "gateway": {"RATE_LIMIT_AUTH_IP_BURST": "1000"}}
        cls.stack = Stack("wd", extra_env=env).start_all()
        cls.t = Trading(cls.stack.ports["trading"])
        cls.t.mark("BTC_USDM_PERP", "97000")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def tearDown(self):
        self.assertEqual(self.t.invariants().get("ok"), True)

    def withdraw(self, user, amount, address, key=None):
        return self.t.call(user, "POST", "/api/v1/withdrawals",
                           {"amount": amount, "address": address, "idempotency_key": key or str(uuid.uuid4())})

    def balance(self, user):
        b = self.t.call(user, "GET", "/api/v1/balances")
        self.assertEqual(b.status, 200, b.body)
        row = loads_exact(b.body)[0]
        return row["collateral"], row["pending_withdrawal"]

    def refused(self, r, status, code, field=None):
        self.assertEqual(r.status, status, r.body)
        err = r.json()["error"]
        self.assertEqual(err["code"], code, r.body)
        if field:
            self.assertEqual(err.get("field"), field, r.body)

    def test_sign_in_withdraw_and_the_bridge_through_the_gateway(self):
        # A real wallet signs in (ethers); its own address, EIP-55 checksummed as wallets write it.
        w = new_wallet()
        n = self.stack.get(f"/api/v1/auth/nonce?wallet_address={w['address']}&chain=ethereum").json()
        c = self.stack.call("POST", "/api/v1/auth/connect", body={"wallet_address": w["address"], "chain": "ethereum",
                                                                 "message": n["message"], "signature": sign(w, n["message"])})
        self.assertEqual(c.status, 200, c.body)
        user, auth = c.json()["user_id"], {"Authorization": f"Bearer {c.json()['token']}"}
        wait_until(lambda: self.stack.get("/api/v1/balances", headers=auth).json()[0]["total"] == 10000, 5,
                   what="the faucet")
        key = str(uuid.uuid4())
        body = {"amount": "1500.5", "address": w["address"], "idempotency_key": key}
        r = self.stack.call("POST", "/api/v1/withdrawals", body=body, headers=auth)
        self.assertEqual(r.status, 201, r.body)
        check(self.doc, "/api/v1/withdrawals", "POST", r)
        wd = loads_exact(r.body)
        self.assertEqual((wd["status"], wd["amount"], wd["address"], wd["chain"], wd["user_id"]),
                         ("PENDING", D("1500.5"), w["address"].lower(), "ethereum", user))
        bal = loads_exact(self.stack.get("/api/v1/balances", headers=auth).body)[0]
        self.assertEqual((bal["collateral"], bal["pending_withdrawal"]), (D("8499.5"), D("1500.5")))
        # The same request again (a client retrying): the same withdrawal, nothing moved twice.
        again = self.stack.call("POST", "/api/v1/withdrawals", body=body, headers=auth)
        self.assertEqual((again.status, again.header("Idempotent-Replay"), again.json()["id"]), (200, "true", wd["id"]))
        # The key with another request: refused.
        other = self.stack.call("POST", "/api/v1/withdrawals", body={**body, "amount": "1"}, headers=auth)
        self.refused(other, 409, "IDEMPOTENCY_KEY_REUSED", "idempotency_key")
        bal = loads_exact(self.stack.get("/api/v1/balances", headers=auth).body)[0]
        self.assertEqual((bal["collateral"], bal["pending_withdrawal"]), (D("8499.5"), D("1500.5")))
        # An API key trades but does not withdraw.
        key_auth = {"Authorization": f"Bearer {api_key(self.stack.ports['user'], user)}"}
        r = self.stack.call("POST", "/api/v1/withdrawals", body={**body, "idempotency_key": "k2"}, headers=key_auth)
        self.refused(r, 403, "FORBIDDEN")
        # The list, and the ledger's entry.
        lst = self.stack.get("/api/v1/withdrawals", headers=auth)
        self.assertEqual(lst.status, 200, lst.body)
        check(self.doc, "/api/v1/withdrawals", "GET", lst)
        self.assertEqual([x["id"] for x in lst.json()], [wd["id"]])
        ledger = loads_exact(self.stack.get("/api/v1/ledger?kind=WITHDRAWAL", headers=auth).body)
        self.assertEqual([x["amount"] for x in ledger], [D("-1500.5")])

        # The bridge: next (PROCESSING), complete with the chain's transaction id (COMPLETED).
        code, out = admin(self.stack, "withdrawals", "next")
        while out["withdrawal"] and out["withdrawal"]["id"] != wd["id"]:  # (another test's, rejected)
            admin(self.stack, "withdrawals", "reject", out["withdrawal"]["id"], "test")
            code, out = admin(self.stack, "withdrawals", "next")
        self.assertEqual((code, out["withdrawal"]["id"], out["withdrawal"]["status"]), (0, wd["id"], "PROCESSING"))
        # A bridge that lost that answer finds what it took.
        code, taken = admin(self.stack, "withdrawals", "list")
        self.assertEqual((code, [x["id"] for x in taken]), (0, [wd["id"]]))
        # A user cannot cancel one the bridge has taken.
        self.refused(self.stack.call("DELETE", f"/api/v1/withdrawals/{wd['id']}", headers=auth), 409, "WITHDRAWAL_STATE")
        code, done = admin(self.stack, "withdrawals", "complete", wd["id"], "0xabc123")
        self.assertEqual((code, done["status"], done["chain_tx_id"]), (0, "COMPLETED", "0xabc123"))
        # The bridge retrying the same completion: the same answer; another transaction id: refused.
        code, again = admin(self.stack, "withdrawals", "complete", wd["id"], "0xabc123")
        self.assertEqual((code, again["status"]), (0, "COMPLETED"))
        code, other = admin(self.stack, "withdrawals", "complete", wd["id"], "0xother")
        self.assertEqual((code, other["error"]["code"]), (1, "WITHDRAWAL_STATE"))
        code, rej = admin(self.stack, "withdrawals", "reject", wd["id"], "too late")
        self.assertEqual((code, rej["error"]["code"]), (1, "WITHDRAWAL_STATE"))
        bal = loads_exact(self.stack.get("/api/v1/balances", headers=auth).body)[0]
        self.assertEqual((bal["collateral"], bal["pending_withdrawal"]), (D("8499.5"), D("0")))
        self.assertEqual(self.stack.get("/api/v1/withdrawals?status=COMPLETED", headers=auth).json()[0]["chain_tx_id"],
                         "0xabc123")

    def test_cancel_and_reject_give_the_amount_back(self):
        user, address = eth_user(self.stack)
        a = self.withdraw(user, "1000", address)
        b = self.withdraw(user, "2000", address)
        self.assertEqual((a.status, b.status), (201, 201), (a.body, b.body))
        self.assertEqual(self.balance(user), (D("7000"), D("3000")))
        other, _ = eth_user(self.stack)
        self.refused(self.t.call(other, "DELETE", f"/api/v1/withdrawals/{a.json()['id']}"), 404, "NOT_FOUND")
        c = self.t.call(user, "DELETE", f"/api/v1/withdrawals/{a.json()['id']}")
        self.assertEqual((c.status, c.json()["status"]), (200, "CANCELLED"), c.body)
        check(load_doc(), "/api/v1/withdrawals/{id}", "DELETE", c)
        # The same cancel again (its answer lost): the same answer, nothing moves.
        again = self.t.call(user, "DELETE", f"/api/v1/withdrawals/{a.json()['id']}")
        self.assertEqual((again.status, again.json()["status"], again.header("Idempotent-Replay")), (200, "CANCELLED", "true"))
        self.refused(self.t.call(other, "DELETE", f"/api/v1/withdrawals/{a.json()['id']}"), 404, "NOT_FOUND")
        self.assertEqual(self.balance(user), (D("8000"), D("2000")))
        code, rej = admin(self.stack, "withdrawals", "reject", b.json()["id"], "address on a sanctions list")
        self.assertEqual((code, rej["status"], rej["reason"]), (0, "REJECTED", "address on a sanctions list"))
        self.assertEqual(self.balance(user), (D("10000"), D("0")))
        kinds = [x["kind"] for x in loads_exact(self.t.call(user, "GET", "/api/v1/ledger").body)]
        self.assertEqual(kinds.count("WITHDRAWAL"), 2)
        self.assertEqual(kinds.count("WITHDRAWAL_RETURNED"), 2)
        # Cancelled and rejected ones give their part of the daily limit back.
        self.assertEqual(self.withdraw(user, "5000", address).status, 201)

    def test_every_refusal_names_its_reason(self):
        user, address = eth_user(self.stack)
        # More than the collateral, and more than what open positions need leaves free.
        self.refused(self.withdraw(user, "10000.000001", address), 422, "INSUFFICIENT_BALANCE", "amount")
        maker, _ = eth_user(self.stack)
        self.assertEqual(self.t.place(maker, side="Sell", price="97000", amount="0.5").status, 201)
        self.assertEqual(self.t.place(user, side="Buy", price="97000", amount="0.5", leverage=5).status, 201)
        self.refused(self.withdraw(user, "1000", address), 422, "INSUFFICIENT_MARGIN", "amount")
        self.assertEqual(self.balance(user)[1], D("0"))
        fresh, fresh_address = eth_user(self.stack)
        # Not the user's own wallet, and malformed addresses.
        self.refused(self.withdraw(fresh, "10", "0x" + os.urandom(20).hex()), 422, "ADDRESS_NOT_ALLOWED", "address")
        self.refused(self.withdraw(fresh, "10", "0x1234"), 400, "INVALID_FIELD", "address")
        bad_checksum = "0x" + "".join(ch.upper() if i % 2 else ch for i, ch in enumerate(fresh_address[2:]))
        if any(ch.isalpha() for ch in fresh_address[2:]):
            self.refused(self.withdraw(fresh, "10", bad_checksum), 400, "INVALID_FIELD", "address")
        # Over the daily limit (5,000 here): 4,000 passes, 1,000.000001 more does not.
        self.assertEqual(self.withdraw(fresh, "4000", fresh_address).status, 201)
        self.refused(self.withdraw(fresh, "1000.000001", fresh_address), 422, "WITHDRAWAL_LIMIT", "amount")
        self.assertEqual(self.withdraw(fresh, "1000", fresh_address).status, 201)
        # Fields, and the smallest withdrawal (1 USDM by default).
        self.refused(self.withdraw(fresh, "0.999999", fresh_address), 400, "BELOW_MIN_WITHDRAWAL", "amount")
        self.refused(self.withdraw(fresh, "-1", fresh_address), 400, "INVALID_FIELD", "amount")
        self.refused(self.withdraw(fresh, "0.0000001", fresh_address), 400, "TOO_MANY_DECIMALS", "amount")
        r = self.t.call(fresh, "POST", "/api/v1/withdrawals", {"amount": "1", "address": fresh_address})
        self.refused(r, 400, "MISSING_FIELD", "idempotency_key")
        r = self.t.call(fresh, "POST", "/api/v1/withdrawals", {"amount": "1", "address": fresh_address,
                                                                "idempotency_key": "k", "to": "x"})
        self.refused(r, 400, "UNKNOWN_FIELD")
        self.assertEqual(self.balance(fresh), (D("5000"), D("5000")))
        # At most 20 in flight per account (the bridge's queue stays bounded).
        many, many_address = eth_user(self.stack)
        for _ in range(20):
            self.assertEqual(self.withdraw(many, "1", many_address).status, 201)
        self.refused(self.withdraw(many, "1", many_address), 422, "TOO_MANY_WITHDRAWALS")
        # A key first used for a refused request is refused again only for the same request.
        key = str(uuid.uuid4())
        self.refused(self.withdraw(many, "1", many_address, key), 422, "TOO_MANY_WITHDRAWALS")
        self.refused(self.withdraw(many, "2", many_address, key), 409, "IDEMPOTENCY_KEY_REUSED", "idempotency_key")

    def test_the_insurance_funds_history_is_public(self):
        fund = "00000000-0000-7000-8000-000000000002"
        self.t.deposit(fund, "250.5")
        self.stack.wait_projected()
        h = self.stack.get("/api/v1/insurance/history?limit=1")  # no credentials
        self.assertEqual(h.status, 200, h.body)
        check(self.doc, "/api/v1/insurance/history", "GET", h)
        newest = loads_exact(h.body)[0]
        self.assertEqual((newest["kind"], newest["amount"]), ("DEPOSIT", D("250.5")))
        self.assertEqual(newest["balance"], loads_exact(self.stack.get("/api/v1/insurance").body)["balance"])
        self.assertIsNotNone(h.header("X-Next-Cursor"))
        self.refused(self.stack.get("/api/v1/insurance/history?before=x"), 400, "INVALID_FIELD", "before")

    def test_cardano_addresses_and_networks(self):
        payment, stake = os.urandom(32).hex(), os.urandom(32).hex()
        own = ada("address", "base", "1", payment, stake)["address"]
        user = str(uuid.uuid4())
        psql(self.stack, f"INSERT INTO users (id, wallet_address, chain) VALUES ('{user}', '{own}', 'cardano')")
        self.t.deposit(user, "100")
        testnet = ada("address", "base", "0", payment, stake)["address"]
        someone = ada("address", "enterprise", "1", os.urandom(32).hex(), stake)["address"]
        self.refused(self.withdraw(user, "10", testnet), 400, "WRONG_CHAIN", "address")
        self.refused(self.withdraw(user, "10", someone), 422, "ADDRESS_NOT_ALLOWED", "address")
        broken = own[:-1] + ("q" if own[-1] != "q" else "p")
        self.refused(self.withdraw(user, "10", broken), 400, "INVALID_FIELD", "address")
        r = self.withdraw(user, "10", own)
        self.assertEqual((r.status, r.json()["chain"]), (201, "cardano"), r.body)


class WithdrawalsAcrossAKill(unittest.TestCase):
    """SIGKILL of trading while withdrawals are asked for, taken and completed: after the restart
    (from a snapshot that holds withdrawals in flight, then the journal) every acknowledged
    withdrawal is there once, with its money out of the balance once; nothing is lost or doubled,
    and the bridge finishes them."""

    def test_kill_between_request_and_completion(self):
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0", "WITHDRAWAL_DAILY_LIMIT": "0",
                           "SNAPSHOT_EVERY_COMMANDS": "20"}}
        stack = Stack("wdkill", extra_env=env, services=["trading"])
        try:
            stack.start("trading")
            t = Trading(stack.ports["trading"])
            users = [eth_user(stack) for _ in range(4)]
            acked, keys = [], {}
            stop = threading.Event()
            failures = []

            def client(user, address):
                try:
                    while not stop.is_set():
                        key = str(uuid.uuid4())
                        try:
                            r = t.call(user, "POST", "/api/v1/withdrawals",
                                       {"amount": "7.25", "address": address, "idempotency_key": key}, timeout=3)
                        except OSError:
                            time.sleep(0.05)
                            continue
                        if r.status == 201:
                            acked.append(r.json()["id"])
                            keys[r.json()["id"]] = (user, address, key)
                        elif r.status not in (503, 422):  # 422: the balance ran out
                            failures.append((r.status, r.body))
                except Exception as e:  # noqa: BLE001 — any other failure fails the test
                    failures.append(repr(e))

            threads = [threading.Thread(target=client, args=u) for u in users]
            for th in threads:
                th.start()
            wait_until(lambda: len(acked) >= 40, 20, what="40 acknowledged withdrawals")
            taken = [admin(stack, "withdrawals", "next")[1]["withdrawal"]["id"] for _ in range(5)]
            self.assertEqual(admin(stack, "withdrawals", "complete", taken[0], "0xdone")[0], 0)
            stack.procs["trading"].send_signal(signal.SIGKILL)
            stack.procs["trading"].wait()
            stop.set()
            for th in threads:
                th.join()
            self.assertEqual(failures, [])
            stack.start("trading")

            rows = {r[0]: r for r in psql(stack, "SELECT id, user_id, amount, status FROM withdrawals")}
            for wid in acked:
                self.assertIn(wid, rows)
            self.assertEqual(rows[taken[0]][3], "COMPLETED")
            for wid in taken[1:]:
                self.assertEqual(rows[wid][3], "PROCESSING")
            # Each row's money left its account once: collateral + in flight + completed = 10,000.
            for user, address in users:
                mine = [r for r in rows.values() if r[1] == user]
                out = sum(D(r[2]) for r in mine if r[3] in ("PENDING", "PROCESSING", "COMPLETED"))
                collateral, pending = (lambda b: (b["collateral"], b["pending_withdrawal"]))(
                    loads_exact(t.call(user, "GET", "/api/v1/balances").body)[0])
                self.assertEqual(collateral + out, D("10000"), user)
                self.assertEqual(pending, sum(D(r[2]) for r in mine if r[3] in ("PENDING", "PROCESSING")))
                ledger = psql(stack, f"SELECT count(*) FROM ledger WHERE user_id = '{user}' AND reason = 'WITHDRAWAL'")
                self.assertEqual(int(ledger[0][0]), len(mine))
            # A retried request after the restart is the same withdrawal.
            wid = acked[-1]
            user, address, key = keys[wid]
            r = t.call(user, "POST", "/api/v1/withdrawals", {"amount": "7.25", "address": address, "idempotency_key": key})
            self.assertEqual((r.status, r.json()["id"]), (200, wid), r.body)
            # The bridge finishes what it had taken, and rejects the rest.
            for wid in taken[1:]:
                self.assertEqual(admin(stack, "withdrawals", "complete", wid, "0x" + wid[:8])[0], 0)
            while True:
                code, nxt = admin(stack, "withdrawals", "next")
                self.assertEqual(code, 0, nxt)
                if nxt["withdrawal"] is None:
                    break
                self.assertEqual(admin(stack, "withdrawals", "reject", nxt["withdrawal"]["id"], "test")[0], 0)
            completed = sum(D(r[0]) for r in psql(stack, "SELECT amount FROM withdrawals WHERE status = 'COMPLETED'"))
            total = sum(loads_exact(t.call(u, "GET", "/api/v1/balances").body)[0]["collateral"] for u, _ in users)
            self.assertEqual(total + completed, 4 * D("10000"))
            self.assertEqual(t.invariants().get("ok"), True)
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
