"""Vaults through the running services (issue #8, api-contract "Vault service", perp-rules
"Vaults"): the worked example exactly, random deposits/withdrawals/NAV moves with 50 depositors,
lockup boundary, leader 5 %, capacity, minimum, a vault service crash between trading's answer
and its own, the leader trading the vault's account, and the protocol vault."""
import random
import signal
import time
import unittest
import uuid
from decimal import Decimal as D

from harness import Stack, request, wait_until
from trading_client import OPERATOR_TOKEN, TRADING_ENV, Trading, loads_exact, new_user

HLP = "00000000-0000-7000-8000-0000000000a1"


def openapi_check(path, method, resp):
    import os
    import yaml
    from harness import SOURCE_DIR
    from test_openapi import check
    with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as f:
        check(yaml.safe_load(f), path, method, resp)


class Vaults:
    def __init__(self, stack):
        self.stack = stack
        self.port = stack.ports["vault"]

    def call(self, user, method, path, body=None, key=None):
        headers = {"Content-Type": "application/json"}
        if user:
            headers["X-User-ID"] = user
        if key:
            headers["Idempotency-Key"] = key
        return request(self.port, method, path, body=body, headers=headers)

    def create(self, leader, name, initial, **extra):
        return self.call(leader, "POST", "/api/v1/vaults", {"name": name, "initial_deposit": initial, **extra})

    def deposit(self, user, vault, amount, key=None):
        return self.call(user, "POST", f"/api/v1/vaults/{vault}/deposit", {"amount": amount}, key=key)

    def withdraw(self, user, vault, amount, key=None):
        return self.call(user, "POST", f"/api/v1/vaults/{vault}/withdraw", {"amount": amount}, key=key)

    def get(self, vault):
        r = self.call(None, "GET", f"/api/v1/vaults/{vault}")
        assert r.status == 200, r.body
        return loads_exact(r.body)

    def holding(self, user, vault):
        r = self.call(user, "GET", f"/api/v1/vaults/{vault}/user")
        assert r.status == 200, r.body
        return loads_exact(r.body)


def vault_stack(name, **vault_env):
    env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"},
           "vault": {"OPERATOR_TOKEN": OPERATOR_TOKEN, "VAULT_SAMPLE_MS": "200", **vault_env},
           "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN}}
    stack = Stack(name, extra_env=env, services=["trading", "vault", "user"])
    stack.start("trading")
    stack.start("vault")
    stack.start("user")
    return stack


class VaultRules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = vault_stack("vlt")
        cls.t = Trading(cls.stack.ports["trading"])
        cls.v = Vaults(cls.stack)
        cls.t.mark("BTC_USDM_PERP", "97000")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def account_of(self, vault):
        r = self.t.op("GET", "/internal/v1/vaults")
        return next(x["account_id"] for x in r.json() if x["id"] == vault)

    def test_worked_example_from_perp_rules(self):
        t, v = self.t, self.v
        leader, d, e = new_user(), new_user(), new_user()
        for u, amount in ((leader, "1000"), (d, "9000"), (e, "6000")):
            t.deposit(u, amount)
        # The name goes through the persister's array parameters: quotes, a backslash, braces,
        # a comma and the word NULL must come back as written.
        name = 'Worked "example" \\ {1,2} NULL'
        r = v.create(leader, name, "1000", lock_period_seconds=2)
        self.assertEqual(r.status, 201, r.body)
        openapi_check("/api/v1/vaults", "POST", r)
        vault = r.json()["id"]
        self.assertEqual(v.get(vault)["name"], name)
        self.assertEqual(loads_exact(r.body)["nav_per_share"], 1)
        r = v.deposit(d, vault, "9000")
        self.assertEqual(r.status, 200, r.body)
        openapi_check("/api/v1/vaults/{id}/deposit", "POST", r)
        self.assertEqual(loads_exact(r.body)["shares"], D("9000"))
        # NAV rises to 12,000: 2,000 of profit arrives in the vault's account.
        t.deposit(self.account_of(vault), "2000")
        self.assertEqual(v.get(vault)["nav_per_share"], D("1.2"))
        r = v.deposit(e, vault, "6000")
        self.assertEqual(loads_exact(r.body)["shares"], D("5000"))
        # The user service's balances span the trading account and vault holdings.
        r = request(self.stack.ports["user"], "GET", "/api/v1/users/balances", headers={"X-User-ID": e})
        openapi_check("/api/v1/users/balances", "GET", r)
        rows = loads_exact(r.body)
        self.assertEqual([(x["account"], x["total"]) for x in rows], [("trading", D("0")), ("vault", D("6000"))])
        self.assertEqual((rows[1]["vault_id"], rows[1]["locked"]), (vault, D("6000")))
        time.sleep(2.1)  # past the lockup
        before = loads_exact(t.call(d, "GET", "/api/v1/balances").body)[0]["total"]
        r = v.withdraw(d, vault, "10800")
        self.assertEqual(r.status, 200, r.body)
        openapi_check("/api/v1/vaults/{id}/withdraw", "POST", r)
        w = loads_exact(r.body)
        self.assertEqual((w["gross"], w["fee"], w["amount"], w["shares"]), (D("10800"), D("180"), D("10620"), D("9000")))
        self.assertEqual(w["nav_per_share"], D("1.2"))
        after = loads_exact(t.call(d, "GET", "/api/v1/balances").body)[0]["total"]
        self.assertEqual(after - before, D("10620"))
        self.assertEqual(v.holding(leader, vault)["shares"], D("1150"))  # 1,000 + 150 fee shares
        detail = v.get(vault)
        self.assertEqual((detail["tvl"], detail["total_shares"], detail["depositors"]), (D("7380"), D("6150"), 1))
        # History, newest first, paginated.
        r = v.call(None, "GET", f"/api/v1/vaults/{vault}/transactions?limit=2")
        openapi_check("/api/v1/vaults/{id}/transactions", "GET", r)
        txs = loads_exact(r.body)
        # The leader's profit share (150 shares for the 180 USDM fee) is a transaction of its own,
        # next to the withdrawal that paid it (issue #21).
        self.assertEqual([x["type"] for x in txs], ["WITHDRAWAL", "PROFIT_SHARE"])
        self.assertEqual(txs[0]["amount"], D("10620"))
        self.assertEqual((txs[1]["amount"], txs[1]["shares"], txs[1]["id"]),
                         (D("180"), D("150"), f"{txs[0]['id']}-profit-share"))
        mine = loads_exact(v.call(leader, "GET", f"/api/v1/vaults/{vault}/transactions?limit=2").body)
        self.assertEqual(mine[1]["user_id"], leader)
        r2 = v.call(None, "GET", f"/api/v1/vaults/{vault}/transactions?before={r.header('X-Next-Cursor')}")
        self.assertEqual([x["type"] for x in loads_exact(r2.body)], ["DEPOSIT", "DEPOSIT", "DEPOSIT"])
        # A page never splits a withdrawal from its profit share: limit 1 shows both.
        one = v.call(None, "GET", f"/api/v1/vaults/{vault}/transactions?limit=1")
        self.assertEqual([x["type"] for x in loads_exact(one.body)], ["WITHDRAWAL", "PROFIT_SHARE"])
        self.assertEqual(one.header("X-Next-Cursor"), txs[0]["id"])
        self.assertEqual({x["status"] for x in txs}, {"COMPLETED"})
        self.assertTrue(t.invariants()["ok"])

    def test_lockup_boundary_leader_minimum_capacity_minimum_and_errors(self):
        t, v = self.t, self.v
        leader, a, b = new_user(), new_user(), new_user()
        t.deposit(leader, "5000")
        t.deposit(a, "100000")
        t.deposit(b, "100000")
        self.assertEqual(v.create(leader, "Too small", "99").json()["error"]["code"], "BELOW_MIN_DEPOSIT")
        r = v.create(leader, "Boundaries", "1000", lock_period_seconds=3, capacity="30000", min_deposit="50")
        self.assertEqual(r.status, 201, r.body)
        vault = r.json()["id"]
        self.assertEqual(v.create(leader, "boundaries", "1000").json()["error"]["code"], "CONFLICT")  # the name
        cases = [
            (v.deposit(a, vault, "49.999999"), 422, "BELOW_MIN_DEPOSIT"),
            (v.deposit(a, vault, "19001"), 422, "LEADER_MINIMUM"),   # leader 1,000 must stay >= 5 %
            (v.deposit(a, vault, "abc"), 400, "INVALID_FIELD"),
            (v.deposit(a, str(uuid.uuid4()), "100"), 404, "VAULT_NOT_FOUND"),
            (v.deposit(None, vault, "100"), 401, "UNAUTHENTICATED"),
        ]
        for r, status, code in cases:
            self.assertEqual((r.status, r.json()["error"]["code"]), (status, code), r.body)
            openapi_check("/api/v1/vaults/{id}/deposit", "POST", r)
        r = v.deposit(a, vault, "19000")
        self.assertEqual(r.status, 200, r.body)
        from datetime import datetime, timezone
        deposit_locked_until = r.json()["locked_until"]
        unlock = datetime.strptime(r.json()["locked_until"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
        self.assertIsNotNone(v.holding(a, vault)["locked_until"])
        # One second before the boundary: refused. At it: accepted.
        time.sleep(max(0, unlock - 1 - time.time()))
        r = v.withdraw(a, vault, "100")
        self.assertEqual((r.status, r.json()["error"]["code"]), (422, "VAULT_LOCKED"), r.body)
        openapi_check("/api/v1/vaults/{id}/withdraw", "POST", r)
        # The refusal says when the amount unlocks (the deposit's locked_until) and what is free now.
        err = loads_exact(r.body)["error"]
        self.assertEqual((err["unlocks_at"], err["withdrawable_now"], err["field"]), (deposit_locked_until, 0, "amount"))
        self.assertIn(deposit_locked_until, err["message"])
        time.sleep(max(0, unlock - time.time()) + 0.05)
        self.assertEqual(v.withdraw(a, vault, "100").status, 200)
        # The leader keeps >= 5 % while others hold shares.
        self.assertEqual(v.withdraw(leader, vault, "100").json()["error"]["code"], "LEADER_MINIMUM")
        # Capacity: 30,000 of value.
        t.deposit(leader, "50000")
        self.assertEqual(v.deposit(leader, vault, "10000").status, 200)
        self.assertEqual(v.deposit(b, vault, "2000").json()["error"]["code"], "OVER_CAPACITY")
        self.assertTrue(t.invariants()["ok"])

    def test_random_deposits_withdrawals_and_nav_moves_with_50_depositors(self):
        t, v = self.t, self.v
        rng = random.Random(5)
        leader = new_user()
        t.deposit(leader, "100000")
        vault = v.create(leader, "Random fifty", "20000", lock_period_seconds=0, performance_fee="15").json()["id"]
        account = self.account_of(vault)
        users = [new_user() for _ in range(50)]
        for u in users:
            t.deposit(u, "20000")
        external = D("100000") + 50 * D("20000")  # every USDM that entered these accounts
        moved = D(0)
        for step in range(300):
            before = v.get(vault)
            k = rng.random()
            if k < 0.15:
                amount = D(rng.randint(1, 2000)) + D(rng.randint(0, 999999)) / 1000000
                if k < 0.1:
                    t.deposit(account, str(amount))
                    moved += amount
                else:
                    amount = min(amount, before["tvl"] / 4).quantize(D("0.000001"))
                    r = t.op("POST", "/internal/v1/withdrawals",
                             {"user_id": account, "amount": str(amount), "idempotency_key": str(uuid.uuid4())})
                    self.assertEqual(r.status, 200, r.body)
                    moved -= amount
                continue
            u = rng.choice(users)
            amount = str(D(rng.randint(10, 1500)) + D(rng.randint(0, 999999)) / 1000000)
            r = v.deposit(u, vault, amount) if k < 0.6 else v.withdraw(u, vault, amount)
            if r.status != 200:
                self.assertIn(r.json()["error"]["code"], {"INSUFFICIENT_BALANCE", "INSUFFICIENT_MARGIN", "LEADER_MINIMUM"}, r.body)
                continue
            after = loads_exact(r.body)["nav_per_share"]
            # NAV per share (6 decimals) stays within one unit across every deposit and withdrawal.
            self.assertLessEqual(abs(after - before["nav_per_share"]), D("0.000001"), (step, r.body))
        # Σ over holders of shares × NAV/share = the vault's equity, to the unit (each floor < 1).
        detail = v.get(vault)
        holdings = [v.holding(u, vault) for u in users + [leader]]
        total_shares = sum(h["shares"] for h in holdings)
        self.assertEqual(total_shares, detail["total_shares"])
        value = sum(h["balance"] for h in holdings)
        self.assertLessEqual(value, detail["tvl"])
        self.assertGreater(value + D("0.000051"), detail["tvl"])
        # USDM conserved: the users' money plus the vault's equals what came in from outside.
        balances = sum(loads_exact(t.call(u, "GET", "/api/v1/balances").body)[0]["total"] for u in users + [leader])
        self.assertEqual(balances + detail["tvl"], external + moved)
        self.assertTrue(t.invariants()["ok"])
        # The performance series is sampled (every 200 ms here) and served per period: the newest
        # point reaches the current NAV per share.
        def newest():
            points = loads_exact(v.call(None, "GET", f"/api/v1/vaults/{vault}/performance?period=all").body)
            return points and points[-1]["value"] == detail["nav_per_share"]
        wait_until(newest, 5, what="the sampler to catch up")
        for period in ("day", "week", "month", "all"):
            r = v.call(None, "GET", f"/api/v1/vaults/{vault}/performance?period={period}")
            openapi_check("/api/v1/vaults/{id}/performance", "GET", r)
            self.assertEqual(loads_exact(r.body)[-1]["value"], detail["nav_per_share"], period)
        # The vault never traded: its pnl is zero, although operator deposits into its account
        # (`moved`) raised its NAV: they are capital, like the vault's own deposits.
        self.assertNotEqual(moved, 0)
        def settled_pnl():
            points = loads_exact(v.call(None, "GET", f"/api/v1/vaults/{vault}/performance?period=all").body)
            return points and points[-1]["pnl"] == 0
        wait_until(settled_pnl, 5, what="a sample with the vault's pnl at zero")
        r = v.call(None, "GET", f"/api/v1/vaults/{vault}/performance?period=year")
        self.assertEqual(r.status, 400)
        openapi_check("/api/v1/vaults/{id}/performance", "GET", r)

    def test_the_leader_trades_the_vaults_account_and_nobody_else_can(self):
        t, v = self.t, self.v
        leader, other = new_user(), new_user()
        t.deposit(leader, "10000")
        t.deposit(other, "10000")
        vault = v.create(leader, "Trader vault", "5000").json()["id"]
        r = t.place(leader, side="Buy", price="96000", amount="0.01", account=vault)
        self.assertEqual(r.status, 201, r.body)
        r = t.place(other, side="Buy", price="96000", amount="0.01", account=vault)
        self.assertEqual((r.status, r.json()["error"]["code"]), (403, "FORBIDDEN"))
        r = t.place(leader, side="Buy", price="96000", amount="0.01", account=str(uuid.uuid4()))
        self.assertEqual(r.status, 404)
        orders = loads_exact(t.call(leader, "GET", f"/api/v1/orders?account={vault}").body)
        self.assertEqual(len(orders), 1)
        self.assertEqual(loads_exact(t.call(leader, "GET", "/api/v1/orders").body), [])  # not the leader's own
        self.assertEqual(t.call(other, "GET", f"/api/v1/orders?account={vault}").status, 403)
        # The leader amends the vault's order with the vault named in the body (issue 23), and
        # nobody else can.
        oid = orders[0]["id"]
        body = {"symbol": "BTC_USDM_PERP", "amount": "0.005", "account": vault}
        r = t.call(leader, "PATCH", f"/api/v1/orders/{oid}", body)
        self.assertEqual((r.status, r.json().get("kept_priority")), (200, True), r.body)
        self.assertEqual(t.call(other, "PATCH", f"/api/v1/orders/{oid}", body).status, 403)
        self.assertEqual(t.call(leader, "PATCH", f"/api/v1/orders/{oid}", {**body, "account": None}).status, 404)
        # A withdrawal that needs the margin first cancels the vault's orders.
        self.assertEqual(t.call(leader, "DELETE", f"/api/v1/orders?account={vault}").status, 200)

    def test_the_vault_list_is_newest_first_and_pages_with_the_cursor(self):
        t, v = self.t, self.v
        leader = new_user()
        t.deposit(leader, "1000")
        made = []
        for i in range(3):
            r = v.create(leader, f"Paged {uuid.uuid4().hex[:6]} {i}", "100")
            self.assertEqual(r.status, 201, r.body)
            made.append(r.json()["id"])
        r = v.call(None, "GET", "/api/v1/vaults?limit=1000")
        everything = [x["id"] for x in loads_exact(r.body)]
        self.assertEqual(everything[:3], list(reversed(made)))  # newest first
        self.assertEqual(everything[-1], HLP)                    # the first vault of all
        got, query = [], "limit=2"
        while True:
            r = v.call(None, "GET", f"/api/v1/vaults?{query}")
            self.assertEqual(r.status, 200, r.body)
            openapi_check("/api/v1/vaults", "GET", r)
            got += [x["id"] for x in loads_exact(r.body)]
            cursor = r.header("X-Next-Cursor")
            if not cursor:
                break
            query = f"limit=2&before={cursor}"
        self.assertEqual(got, everything)
        r = v.call(None, "GET", "/api/v1/vaults?limit=0")
        self.assertEqual(r.status, 400)
        openapi_check("/api/v1/vaults", "GET", r)

    def test_protocol_vault_exists_and_takes_deposits(self):
        t, v = self.t, self.v
        r = v.call(None, "GET", "/api/v1/vaults?limit=1000")
        self.assertEqual(r.status, 200)
        openapi_check("/api/v1/vaults", "GET", r)
        hlp = next(x for x in loads_exact(r.body) if x["id"] == HLP)
        self.assertEqual((hlp["name"], hlp["is_protocol"], hlp["lock_period_days"]), ("HydroX Liquidity Provider", True, 4))
        r = v.call(None, "GET", f"/api/v1/vaults/{HLP}")
        openapi_check("/api/v1/vaults/{id}", "GET", r)
        self.assertEqual(v.call(None, "GET", f"/api/v1/vaults/{uuid.uuid4()}").status, 404)
        u = new_user()
        t.deposit(u, "1000")
        r = v.deposit(u, HLP, "500")
        self.assertEqual(r.status, 200, r.body)
        h = v.holding(u, HLP)
        self.assertEqual(h["balance"], D("500"))
        openapi_check("/api/v1/vaults/{id}/user", "GET", v.call(u, "GET", f"/api/v1/vaults/{HLP}/user"))
        self.assertEqual(v.withdraw(u, HLP, "100").json()["error"]["code"], "VAULT_LOCKED")  # 4 days


class VaultCrash(unittest.TestCase):
    def test_a_crash_between_trading_and_the_answer_neither_duplicates_nor_loses(self):
        stack = vault_stack("vcr", VAULT_FAULT_EXIT_AFTER_TRADING="0")
        try:
            t, v = Trading(stack.ports["trading"]), Vaults(stack)
            t.mark("BTC_USDM_PERP", "97000")
            leader, u = new_user(), new_user()
            t.deposit(leader, "1000")
            t.deposit(u, "5000")
            key = str(uuid.uuid4())
            r = v.create(leader, "Crashy", "1000", lock_period_seconds=0)
            self.assertEqual(r.status, 201, r.body)
            vault = r.json()["id"]
            # With the fault on, trading takes the deposit and the vault service dies before answering.
            env = stack.extra_env["vault"]
            env["VAULT_FAULT_EXIT_AFTER_TRADING"] = "1"
            stack.stop("vault")
            stack.start("vault")
            with self.assertRaises(OSError):
                v.deposit(u, vault, "3000", key=key)
            wait_until(lambda: stack.procs["vault"].poll() is not None, 5, what="the vault service to die")
            self.assertEqual(stack.procs.pop("vault").returncode, 75)
            env["VAULT_FAULT_EXIT_AFTER_TRADING"] = "0"
            stack.start("vault")
            # The client retries with the same key: the first deposit's answer, not a second one.
            r = v.deposit(u, vault, "3000", key=key)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.header("Idempotent-Replay"), "true")
            self.assertEqual(loads_exact(r.body)["shares"], D("3000"))
            self.assertEqual(v.holding(u, vault)["shares"], D("3000"))
            self.assertEqual(loads_exact(t.call(u, "GET", "/api/v1/balances").body)[0]["total"], D("2000"))
            deposits = [x for x in loads_exact(v.call(u, "GET", f"/api/v1/vaults/{vault}/transactions").body)
                        if x["user_id"] == u]
            self.assertEqual(len(deposits), 1)
            # Others see the row, but not who made it (issue 20).
            public = loads_exact(v.call(None, "GET", f"/api/v1/vaults/{vault}/transactions").body)
            self.assertGreaterEqual(len(public), 1)
            self.assertTrue(all(x["user_id"] is None and x["address"] is None for x in public), public)
            other = loads_exact(v.call(new_user(), "GET", f"/api/v1/vaults/{vault}/transactions").body)
            self.assertEqual([x["id"] for x in other], [x["id"] for x in public])
            self.assertTrue(all(x["user_id"] is None for x in other), other)
            # A new key is a new deposit.
            self.assertEqual(v.deposit(u, vault, "1000", key=str(uuid.uuid4())).status, 200)
            self.assertEqual(v.holding(u, vault)["shares"], D("4000"))
            self.assertTrue(t.invariants()["ok"])
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
