"""A property-based API fuzzer generated from docs/openapi.yaml (Hypothesis).

For every operation of the document (path + method), requests of a valid shape and hostile ones:
path parameters that are real ids (own and other users'), random UUIDs and raw hostile segments
("%00", "%FF", "..", long, raw bytes); query parameters from the document's `parameters` plus junk
ones; bodies drawn from the `requestBody` schema (enums, decimal strings, integers in range) and then
mutated (a field dropped, an unknown one added, a wrong type, a hostile value: huge and negative
numbers, "1e400", control characters, "\\u0000", "\\u0085", lone surrogates as raw bytes, long
strings, duplicated JSON keys written by hand, not JSON at all); odd headers and identities. Requests
go to each service's own port (X-User-ID set, as the gateway would) and through the gateway (API keys,
no credential, forged identity headers). A second test sends batches of such requests from several
users at once.

The oracle, after every request: no 5xx except a 503 the operation documents (or OVERLOADED, noted);
every service still alive with the same pid; no answer holds another user's data (user ids, order,
position, API-key and vault-transaction ids of the other users; an id the caller sent itself, or
ever stored in a body, does not count). After every route and at the end: trading's
/internal/v1/invariants answers ok. At the end: a canary user that never acts (only its ids are used
by the others) has the same orders, balances and live API key as before.

Routes not fuzzed, and why:
  * /internal/* (not in the document): operator routes; deposits, withdrawals and marks would move
    the ground truth the oracle compares against. Only the read-only /internal/v1/invariants is used,
    as the oracle.
  * Nothing of the document is skipped. Two are narrowed: DELETE /api/v1/users/api-keys/{id} never
    draws the caller's own gateway key (revoking it would turn the rest of the run into 401s; other
    users' keys, spare keys and the canary's are drawn), and /ws is sent as one upgrade request whose
    answer head is read before the socket is closed.

Profiles: HYPOTHESIS_PROFILE=long runs many more examples (and a longer time budget); the default
("apifuzz") keeps the whole file to a few minutes. Derandomized (or HYPOTHESIS_SEED=<int>), and
database=None: nothing is written in the tree.
"""
import collections
import ctypes
import ctypes.util
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid
from decimal import Decimal

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from harness import SOURCE_DIR, Stack, request
from trading_client import OPERATOR_TOKEN, TRADING_ENV, Trading, new_user

# ---------------------------------------------------------------------------------------------
# Profiles and budgets

# Nothing in the tree: no example database, and Hypothesis' own caches (its Unicode table) in /tmp.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "hydrox-hypothesis"))

_COMMON = dict(database=None, deadline=None, print_blob=False, suppress_health_check=list(HealthCheck),
               phases=[Phase.explicit, Phase.generate])
settings.register_profile("apifuzz", max_examples=200, **_COMMON)
settings.register_profile("long", max_examples=600, **_COMMON)
PROFILE = "long" if os.environ.get("HYPOTHESIS_PROFILE") == "long" else "apifuzz"
# Seconds for the route walk and for the concurrent part, and batches in the concurrent part.
BUDGET = {"apifuzz": {"walk": 170, "concurrent": 50, "batches": 300},
          "long": {"walk": 2400, "concurrent": 900, "batches": 600}}[PROFILE]
SEED = os.environ.get("HYPOTHESIS_SEED")


def fuzz_settings(max_examples):
    parent = settings.get_profile(PROFILE)
    return settings(parent, max_examples=max_examples, derandomize=SEED is None)


def seeded(f):
    return seed(int(SEED))(f) if SEED is not None else f


with open(os.path.join(SOURCE_DIR, "docs", "openapi.yaml"), encoding="utf-8") as _f:
    DOC = yaml.safe_load(_f)

SYMBOL = "BTC_USDM_PERP"
HLP = "00000000-0000-7000-8000-0000000000a1"  # the protocol vault
MARK = Decimal("97000")

# ---------------------------------------------------------------------------------------------
# Values

class Raw:
    """Bytes written into a JSON body (or a URL) verbatim."""

    def __init__(self, data):
        self.data = data

    def __repr__(self):
        return f"Raw({self.data[:80]!r})"


class Dup:
    """A JSON object written by hand, keys possibly repeated."""

    def __init__(self, items):
        self.items = items

    def __repr__(self):
        return f"Dup({self.items!r})"


def encode(v, ascii_only=True):
    if isinstance(v, Raw):
        return v.data
    if isinstance(v, (dict, Dup)):
        items = v.items if isinstance(v, Dup) else list(v.items())
        return b"{" + b",".join(encode(k, ascii_only) + b":" + encode(x, ascii_only) for k, x in items) + b"}"
    if isinstance(v, (list, tuple)):
        return b"[" + b",".join(encode(x, ascii_only) for x in v) + b"]"
    if isinstance(v, str):
        # ensure_ascii=False leaves a lone surrogate as the raw bytes ED A0 80.
        return json.dumps(v, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    return json.dumps(v).encode()  # numbers (NaN, Infinity as written by Python), bools, null


def text_bytes(s):
    return s if isinstance(s, bytes) else s.encode("utf-8", "surrogatepass")


HOSTILE_STRINGS = [
    "", " ", "\u0000", "\u0085", "\u2028", "\u202e", "\ufeff", "\ud800", "\udfff", "a\ud83db", "a\u0000b",
    "\x1b[31m", "\t\r\n", "null", "undefined", "true", "NaN", "Infinity", "-Infinity", "1e400", "-1e400",
    "1e-400", "0x10", "-1", "-0", "0", "0.0", "99999999999999999999999999999999", "١٢٣", "９７０００", "1,5",
    " 1", "1 ", "+1", ".5", "5.", "'; DROP TABLE orders;--", "%00", "%s%n%x", "../../../../etc/passwd",
    "<script>alert(1)</script>", "{{7*7}}", "${jndi:ldap://x/a}", "\\", "\"", "é", "\U0001f4a5",
    "\U0001d7d7\U0001d7d5", "ＢＴＣ_USDM_PERP", "btc_usdm_perp", "BTC_USDM_PERP ", "BTC_USDM_PERP\u0000",
    "BTC_USDM_PERP\u0085", "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "a" * 300, "a" * 70000, "\u00e9" * 20000, "\u0000" * 2000, "\u0085" * 1000, "\ud800" * 500,
]
RAW_NUMBERS = [b"1e400", b"-1e400", b"1e-400", b"1E+308", b"-0", b"0.0000000000000000000000001",
               b"123456789012345678901234567890", b"-123456789012345678901234567890", b"9223372036854775807",
               b"9223372036854775808", b"-9223372036854775809", b"18446744073709551616", b"4.9e-324",
               b"1.7976931348623157e309", b"NaN", b"Infinity", b"-Infinity", b"01", b"1.", b".5", b"+1", b"0x10",
               b"1e", b"--1", b"1_000", b"97000.05", b"0.00000001", b"1" * 400]
RAW_BODIES = [b"", b" ", b"null", b"[]", b"{}", b"123", b"\"x\"", b"true", b"{", b"}", b"{\"a\":", b"{'a': 1}",
              b"{\"a\":1,}", b"{\"a\":1,\"a\":2}", b"[" * 3000 + b"]" * 3000, b"{\"a\":" * 3000 + b"1" + b"}" * 3000,
              b"{\"a\":\"\\ud800\"}", b"{\"a\":\"\xed\xa0\x80\"}", b"{\"a\": NaN}", b"\x00", b"\x00{}", b"\xff\xfe{}",
              b"\xef\xbb\xbf{}", b"{} trailing", b"{}{}", b"{\"a\":1}\x00", b"\x1f\x8b\x08\x00", b"a=1&b=2",
              b"{\"\\u0000\":1}", b"{\"a\":\"\\u0000\"}", b"{\"a\":\"\x85\"}", b"{\"a\":1e400}", b"--x\r\n\r\n--x--"]
WRONG_TYPES = [None, True, False, 0, -1, 1.5, [], {}, [1, 2], {"a": 1}, "x", [None],
               Raw(b"[" * 2000 + b"]" * 2000), Raw(b"{\"a\":" * 400 + b"1" + b"}" * 400)]
# Header values (no CR or LF: the framing must stay intact; NUL and other controls do not).
HOSTILE_HEADER_VALUES = [b"", b" ", b"\x00", b"a\x00b", b"\xc2\x85", b"\x85", b"\xed\xa0\x80", b"\xff\xfe", b"\x7f",
                         b"\t", b"a" * 8000, "é".encode(), b"%00", b"../../", b"null", b"-1", b"1e400", b"\x1b[0m",
                         b"00000000-0000-0000-0000-000000000000", b"{}", b"\"\""]
HOSTILE_SEGMENTS = [b"%00", b"%FF", b"%ff%fe", b"%C0%AF", b"%ED%A0%80", b"%C2%85", b"%E2%80%AE", b"..", b"%2e%2e",
                    b"..%2f..%2f..%2fetc%2fpasswd", b"../../../etc/passwd", b"%2F", b"", b"%20", b"-1", b"0",
                    b"1e400", b"9" * 40, b"a" * 5000, b"%", b"%Z", b"%%", b"\xff", b"\xc2\x85", b"\xed\xa0\x80",
                    b"\x00", b"a b", b"null", b"{id}", b";", b"*", b"%3Bx", "é".encode(), "\U0001f4a5".encode(),
                    b"%F0%9F%92%A5", b"00000000-0000-0000-0000-000000000000", b"BTC_USDM_PERP%00",
                    b"btc_usdm_perp", b"ffffffff-ffff-ffff-ffff-ffffffffffff", b"%0d%0aX-Injected:%201"]
EXTRA_FIELDS = ["user_id", "id", "account", "status", "filled", "__proto__", "constructor", "Price", "", " ",
                "\u0000", "a" * 300, "symbol\u0000", "ñ", "\ud800", "idempotency_key", "leverage", "price", "amount",
                "user", "owner", "vault_id", "is_protocol"]
EXTRA_QUERY = ["user_id", "account", "limit", "before", "symbol", "", "a" * 300, "x\u0000", "\u0085", "id",
               "callback", "format", "__proto__"]
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

UUID_RE = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
WORD_RE = re.compile(rb"[A-Za-z0-9_-]{8,}")
HTTP_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def words(data):
    """The id-like words of a text: where a token would be found."""
    return {w.decode() for w in WORD_RE.findall(data)} | {u.decode().lower() for u in UUID_RE.findall(data)}


def dec(lo, hi, step, as_text=None):
    """Decimals lo..hi in multiples of step, as a decimal string or a raw JSON number."""
    step = Decimal(step)
    n = st.integers(int(Decimal(lo) / step), int(Decimal(hi) / step))
    form = st.booleans() if as_text is None else st.just(as_text)
    return st.tuples(n, form).map(lambda t: format(t[0] * step, "f") if t[1] else Raw(format(t[0] * step, "f").encode()))


def hostile_text():
    return st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=30),
                     st.text(alphabet=st.characters(blacklist_categories=()), max_size=12))


def hostile_number():
    return st.one_of(st.sampled_from([Raw(x) for x in RAW_NUMBERS]), st.integers(-2 ** 130, 2 ** 130),
                     st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([-1, 0, 2 ** 63, -2 ** 63 - 1, 2 ** 64, 10 ** 30, -10 ** 30]))


def hostile_value():
    return st.one_of(hostile_text(), hostile_number(), st.sampled_from(WRONG_TYPES))


def resolve(node):
    while isinstance(node, dict) and "$ref" in node:
        cur = DOC
        for part in node["$ref"].lstrip("#/").split("/"):
            cur = cur[part]
        node = cur
    return node


# ---------------------------------------------------------------------------------------------
# Operations of the document, and the service behind each

# The gateway's route table (services/gateway/gateway_app.cpp), by path prefix.
ROUTE_TABLE = [("/api/v1/markets", "market"), ("/api/v1/oracle/prices", "market"), ("/api/v1/insurance", "trading"),
               ("/api/v1/positions", "trading"), ("/api/v1/orders", "trading"), ("/api/v1/balances", "trading"),
               ("/api/v1/fills", "trading"), ("/api/v1/ledger", "trading"), ("/api/v1/funding", "trading"),
               ("/api/v1/withdrawals", "trading"),
               ("/api/v1/vaults", "vault"), ("/api/v1/auth", "user"),
               ("/api/v1/users", "user"), ("/health", "gateway"), ("/api/v1/openapi.json", "gateway"),
               ("/ws", "ws"), ("/ready", "each"), ("/metrics", "each")]
# Answers that are public by design and name users (vault leaders, depositors), or hold arbitrary
# text of the process: not checked for other users' ids.
LEAK_EXEMPT = {("GET", "/api/v1/vaults"), ("POST", "/api/v1/vaults"), ("GET", "/api/v1/vaults/{id}"),
               ("GET", "/api/v1/vaults/{id}/transactions"), ("GET", "/metrics"), ("GET", "/api/v1/openapi.json")}


def service_for(path):
    for prefix, service in ROUTE_TABLE:
        if path == prefix or path.startswith(prefix + "/"):
            return service
    raise AssertionError(f"docs/openapi.yaml has {path}, which no service of the route table serves")


class Op:
    def __init__(self, path, method, spec, path_params):
        self.path, self.method, self.spec = path, method, spec
        self.key = f"{method} {path}"
        self.service = service_for(path)
        self.params = [resolve(p) for p in path_params + spec.get("parameters", [])]
        self.responses = {str(k) for k in spec.get("responses", {})}
        body = resolve(spec.get("requestBody")) if spec.get("requestBody") else None
        self.body_schema = resolve(body["content"]["application/json"]["schema"]) if body else None
        self.leak_exempt = (method, path) in LEAK_EXEMPT


def operations():
    ops = []
    for path, item in DOC["paths"].items():
        for method, spec in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                ops.append(Op(path, method.upper(), spec, item.get("parameters", [])))
    return ops


# ---------------------------------------------------------------------------------------------
# Raw HTTP: every byte of the request is ours (http.client refuses most of what is sent here)

class Req:
    def __init__(self, op, service, port, method, target, headers, body, callers, chunked=False, ws=False):
        self.op, self.service, self.port, self.method, self.target = op, service, port, method, target
        self.headers, self.body, self.callers, self.chunked, self.ws = headers, body, callers, chunked, ws
        self.overridden = method.decode("latin-1") != op.method
        token = HTTP_TOKEN
        self.wellformed = (all(0x21 <= c < 0x7f for c in target) and token.match(method) is not None
                           and all(token.match(k) and all(c >= 0x20 or c == 9 for c in v) and 0x7f not in v
                                   for k, v in headers))

    def wire(self):
        lines = [self.method + b" " + self.target + b" HTTP/1.1", b"Host: 127.0.0.1:%d" % self.port]
        lines += [k + b": " + v for k, v in self.headers]
        payload = b""
        if self.body is not None:
            if self.chunked:
                lines.append(b"Transfer-Encoding: chunked")
                for i in range(0, len(self.body), 4096):
                    part = self.body[i:i + 4096]
                    payload += b"%x\r\n" % len(part) + part + b"\r\n"
                payload += b"0\r\n\r\n"
            else:
                lines.append(b"Content-Length: %d" % len(self.body))
                payload = self.body
        if not self.ws:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + payload

    def describe(self):
        body = "" if self.body is None else f"\n    body ({len(self.body)} bytes{', chunked' if self.chunked else ''}): {self.body[:1200]!r}"
        heads = "".join(f"\n    {k.decode('latin-1')}: {v[:200]!r}" for k, v in self.headers)
        return (f"{self.method.decode('latin-1')} {self.target[:1500]!r} to {self.service} (port {self.port}),"
                f" operation {self.op.key}, acting as {sorted(self.callers) or 'nobody'}{heads}{body}")


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def code(self):
        try:
            return json.loads(self.body)["error"]["code"]
        except Exception:  # noqa: BLE001 - any non-error body
            return None

    def json(self):
        return json.loads(self.body)

    def describe(self):
        return f"{self.status} {self.headers.get('content-type', '')} {self.body[:800]!r}"


class NoAnswer(Exception):
    pass


class Hang(Exception):
    pass


def exchange(req, timeout=20.0):
    """Sends req, reads one answer (Content-Length, chunked or until close)."""
    try:
        s = socket.create_connection(("127.0.0.1", req.port), timeout=timeout)
    except OSError as e:
        raise NoAnswer(f"connect: {e}") from e
    try:
        try:
            s.sendall(req.wire())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (413, 400) before reading everything
        buf = b""

        def fill():
            try:
                chunk = s.recv(65536)
            except socket.timeout as e:
                raise Hang(f"no complete answer within {timeout} s (got {buf[:200]!r})") from e
            except ConnectionResetError:
                chunk = b""
            return chunk

        while True:
            while b"\r\n\r\n" not in buf:
                chunk = fill()
                if not chunk:
                    raise NoAnswer(f"connection closed after {buf[:200]!r}")
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
            if 100 <= status < 200 and status != 101:
                continue
            break
        if status == 101 or req.method == b"HEAD" or status in (204, 304):
            return Resp(status, headers, b"")
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(buf) < n:
                chunk = fill()
                if not chunk:
                    raise NoAnswer(f"answer cut at {len(buf)} of {n} bytes: {head[:200]!r}")
                buf += chunk
            return Resp(status, headers, buf[:n])
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                while b"\r\n" not in buf:
                    chunk = fill()
                    if not chunk:
                        raise NoAnswer("chunked answer cut")
                    buf += chunk
                size_line, buf = buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(buf) < size + 2:
                    chunk = fill()
                    if not chunk:
                        raise NoAnswer("chunked answer cut")
                    buf += chunk
                if size == 0:
                    return Resp(status, headers, body)
                body += buf[:size]
                buf = buf[size + 2:]
        while True:
            chunk = fill()
            if not chunk:
                return Resp(status, headers, buf)
            buf += chunk
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# Ed25519 for valid-shaped oracle samples (libsodium, as test_oracle.py)

try:
    _SODIUM = ctypes.CDLL(ctypes.util.find_library("sodium"))
    _SODIUM.sodium_init()
except (OSError, TypeError):
    _SODIUM = None


def keypair():
    pk, sk = ctypes.create_string_buffer(32), ctypes.create_string_buffer(64)
    _SODIUM.crypto_sign_keypair(pk, sk)
    return pk.raw, sk.raw


def ed25519_sign(sk, message):
    sig = ctypes.create_string_buffer(64)
    _SODIUM.crypto_sign_detached(sig, None, message, ctypes.c_ulonglong(len(message)), sk)
    return sig.raw.hex()


# ---------------------------------------------------------------------------------------------
# The fuzzer: state (users, their ids), request strategies, the oracle

class Fuzzer:
    def __init__(self, stack, oracle_sk):
        self.stack = stack
        self.t = Trading(stack.ports["trading"])
        self.oracle_sk = oracle_sk
        self.ops = operations()
        self.pids = {s: p.pid for s, p in stack.procs.items()}
        self.lock = threading.Lock()
        self.tokens = {}            # token -> owner
        self.known = collections.defaultdict(set)  # user -> tokens it stored itself (bodies)
        self.orders = collections.defaultdict(list)
        self.positions = collections.defaultdict(list)
        self.keys = collections.defaultdict(list)   # key ids usable as DELETE targets
        self.main_key = {}          # user -> (id, secret) of its gateway key
        self.read_key = {}
        self.vaults = [HLP]
        self.symbols = [SYMBOL]
        self.failures = collections.OrderedDict()
        self.notes = collections.OrderedDict()
        self.recent = collections.deque(maxlen=15)
        self.stats = collections.Counter()
        self.judged = 0
        self.crashed = None

    # ---- state

    def own(self, user, *tokens):
        for tok in tokens:
            if tok:
                self.tokens[str(tok).lower() if UUID_RE.fullmatch(str(tok).encode()) else str(tok)] = user

    def issue_key(self, user, scope="trade", label="fuzz"):
        r = request(self.stack.ports["user"], "POST", "/internal/v1/api-keys",
                    body={"user_id": user, "scope": scope, "label": label},
                    headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert r.status == 201, r.body
        k = r.json()
        self.own(user, k["id"], k["key"])
        return k["id"], k["key"]

    def freeze(self):
        """The pools the strategies draw from, fixed for one Hypothesis run: a draw must not depend on
        state that changes between runs (Hypothesis replays prefixes)."""
        with self.lock:
            self.v = {"orders": {u: list(x) for u, x in self.orders.items()},
                      "positions": {u: list(x) for u, x in self.positions.items()},
                      "keys": {u: list(x) for u, x in self.keys.items()},
                      "vaults": list(self.vaults),
                      "ids": sorted(t for t in self.tokens if UUID_RE.fullmatch(t.encode())) + list(self.vaults)}

    def ids_of(self, pool, callers, want_own):
        out = []
        for user, ids in self.v[pool].items():
            if (user in callers) == want_own:
                out.extend(ids)
        return out

    # ---- strategies

    def domain(self, op, name, schema):
        """Realistic values for the fields this API knows; None: derive from the schema."""
        vaultish = op.path.startswith("/api/v1/vaults")
        if name == "symbol":
            return st.sampled_from([SYMBOL] * 4 + self.symbols)
        if name in ("price", "trigger_price"):
            return dec(MARK * Decimal("0.95"), MARK * Decimal("1.05"), "0.1",
                       as_text=True if op.path.startswith("/api/v1/oracle") else None)
        if name == "amount":
            return dec("0.01", "500", "0.01") if vaultish else dec("0.001", "0.03", "0.001")
        if name == "initial_deposit":
            return dec("100", "300", "1")
        if name == "performance_fee":
            return dec("0", "50", "0.5")
        if name == "management_fee":
            return dec("0", "5", "0.1")
        if name == "capacity":
            return dec("1000", "100000", "1")
        if name == "min_deposit":
            return dec("1", "100", "1")
        if name == "name" and vaultish:
            return st.text(alphabet=ALNUM, min_size=3, max_size=24).map(lambda s: "fz " + s)
        if name == "idempotency_key":
            return st.uuids().map(str)
        if name == "leverage":
            return st.integers(1, 50)
        if name == "lock_period_seconds":
            return st.integers(0, 10 ** 6)
        if name == "wallet_address":
            return st.one_of(st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
                             st.text(alphabet="qpzry9x8gf2tvdw0s3jn54khce6mua7l", min_size=50, max_size=60)
                             .map(lambda s: "addr_test1" + s))
        if name == "signature":
            return st.binary(min_size=64, max_size=65).map(lambda b: b.hex())
        if name == "key":
            return st.binary(max_size=48).map(lambda b: b.hex())
        if name == "timestamp_ms":
            return st.integers(-20_000, 4_000).map(lambda off: int(time.time() * 1000) + off)
        if name == "key_id":
            return st.sampled_from(["o1", "o1", "o2", ""])
        if name == "message":
            return st.one_of(st.text(max_size=200), st.just(
                "localhost wants you to sign in with your Ethereum account:\n0x0000000000000000000000000000000000000000"
                "\n\nURI: http://localhost\nVersion: 1\nChain ID: 1\nNonce: abcdefgh\nIssued At: 2026-01-01T00:00:00Z"))
        return None

    def valid_value(self, op, name, schema):
        schema = resolve(schema or {})
        d = self.domain(op, name, schema)
        if d is not None:
            return d
        if "enum" in schema:
            return st.sampled_from([e for e in schema["enum"] if e is not None])
        if "oneOf" in schema or "allOf" in schema:
            return dec("0", "1000", "0.01")
        t = schema.get("type")
        if t == "string":
            if "pattern" in schema:
                return st.from_regex(schema["pattern"], fullmatch=True)
            if schema.get("format") == "uuid":
                return st.uuids().map(str)
            return st.text(alphabet=ALNUM + " -_", min_size=schema.get("minLength", 0),
                           max_size=min(schema.get("maxLength", 40), 64))
        if t == "integer":
            lo = schema.get("minimum", -1000)
            return st.integers(lo, schema.get("maximum", max(lo, 0) + 10 ** 6))
        if t == "number":
            return dec("0", "100000", "0.01")
        if t == "boolean":
            return st.booleans()
        if t == "array":
            return st.lists(self.valid_value(op, name, schema.get("items", {})), max_size=3)
        if t == "object":
            return self.valid_object(op, schema)
        return st.none()

    @st.composite
    def valid_object(draw, self, op, schema):  # noqa: N805 - st.composite passes draw first
        schema = resolve(schema)
        if op.path == "/api/v1/orders" and not draw(st.booleans()):
            return draw(self.coherent_order())
        out = {}
        required = schema.get("required", [])
        for name, sub in schema.get("properties", {}).items():
            if name in required or draw(st.booleans()):
                out[name] = draw(self.valid_value(op, name, sub))
        if op.path == "/api/v1/oracle/prices" and _SODIUM and self.oracle_sk and draw(st.booleans()):
            p = out.get("price")
            text = p.data.decode() if isinstance(p, Raw) else p
            if isinstance(text, str) and isinstance(out.get("timestamp_ms"), int) and isinstance(out.get("symbol"), str):
                out["key_id"] = "o1"
                out["signature"] = ed25519_sign(self.oracle_sk, f"{out['symbol']}|{text}|{out['timestamp_ms']}".encode())
        return out

    @st.composite
    def coherent_order(draw, self):  # noqa: N805
        typ = draw(st.sampled_from(["Limit"] * 4 + ["Market", "StopLimit", "StopMarket", "TakeProfitLimit",
                                                     "TakeProfitMarket"]))
        o = {"symbol": draw(st.sampled_from([SYMBOL] * 6 + self.symbols)), "side": draw(st.sampled_from(["Buy", "Sell"])),
             "type": typ, "amount": draw(dec("0.001", "0.02", "0.001"))}
        price = dec(MARK * Decimal("0.97"), MARK * Decimal("1.03"), "0.1")
        if typ.endswith("Limit"):
            o["price"] = draw(price)
        if typ != "Limit" and typ != "Market":
            o["trigger_price"] = draw(price)
        if typ == "Limit" and draw(st.booleans()):
            o["time_in_force"] = draw(st.sampled_from(["GTC", "IOC", "FOK", "PostOnly"]))
        if draw(st.booleans()):
            o["client_order_id"] = draw(st.from_regex(r"^[A-Za-z0-9_.:-]{1,36}$", fullmatch=True))
        if draw(st.integers(0, 3)) == 3:
            o["reduce_only"] = draw(st.booleans())
        if draw(st.integers(0, 3)) == 3:
            o["leverage"] = draw(st.integers(1, 20))
        if draw(st.integers(0, 5)) == 5:
            o["margin_mode"] = draw(st.sampled_from(["cross", "isolated"]))
        if typ == "Market" and draw(st.booleans()):
            o["max_slippage_bps"] = draw(st.integers(1, 5000))
        return o

    def id_pool(self):
        return st.sampled_from(self.v["ids"])

    @st.composite
    def mutated(draw, self, op, obj):  # noqa: N805
        """Up to three mutations of a valid object: dropped, added, retyped, hostile, duplicated keys."""
        obj = dict(obj)
        dups = []
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(["drop", "add", "wrong_type", "hostile", "hostile", "dup", "number"]))
            keys = list(obj)
            if kind == "add" or not keys:
                name = draw(st.one_of(st.sampled_from(EXTRA_FIELDS), hostile_text()))
                obj[name] = draw(st.one_of(hostile_value(), self.id_pool()))
                continue
            k = draw(st.sampled_from(keys))
            if kind == "drop":
                del obj[k]
            elif kind == "wrong_type":
                obj[k] = draw(st.sampled_from(WRONG_TYPES))
            elif kind == "number":
                obj[k] = draw(hostile_number())
            elif kind == "hostile":
                obj[k] = draw(st.one_of(hostile_value(), self.id_pool()))
            else:
                dups.append((k, draw(st.one_of(hostile_value(), st.just(obj[k])))))
        if not dups:
            return obj
        items = list(obj.items())
        for k, v in dups:
            items.insert(draw(st.integers(0, len(items))), (k, v))
        return Dup(items)

    @st.composite
    def body_for(draw, self, op, valid_bias):  # noqa: N805
        """(bytes or None, content type or None)."""
        ascii_only = draw(st.booleans())
        if op.body_schema is None:
            if valid_bias or draw(st.integers(0, 6)) != 6:
                return None, None
            raw = draw(st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=64), st.just(b"{\"symbol\":\"BTC_USDM_PERP\"}")))
            return raw, draw(st.sampled_from([b"application/json", b"text/plain"]))
        valid = draw(self.valid_value(op, "", op.body_schema))
        kind = 0 if valid_bias and draw(st.integers(0, 2)) != 2 else draw(st.integers(0, 9))
        if kind <= 6:
            value = valid if kind <= 3 else draw(self.mutated(op, valid))
            body = encode(value, ascii_only)
        elif kind == 6:
            body = draw(st.sampled_from(RAW_BODIES))
        elif kind == 7:
            whole = encode(valid, ascii_only)
            body = whole[:draw(st.integers(0, max(len(whole) - 1, 0)))]
        elif kind == 8:
            body = draw(st.binary(max_size=300))
        else:
            body = encode(draw(st.sampled_from([[valid], {"data": valid}, valid, [valid, valid]])), ascii_only)
        ctype = draw(st.sampled_from([b"application/json"] * 14 + [
            b"application/json; charset=utf-8", b"APPLICATION/JSON", b"text/plain", b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x", b"", b"application/json\x85", None]))
        return body, ctype

    def quote(self, value):
        if isinstance(value, Raw):
            return value.data
        if isinstance(value, bytes):
            return value
        return urllib.parse.quote(text_bytes(str(value)), safe="").encode()

    def param_value(self, op, p, callers):
        name, schema = p["name"], resolve(p.get("schema", {}))
        if name == "before" and schema.get("type", "string") == "string":
            mine = self.ids_of("orders", callers, True)
            return st.sampled_from(mine + self.ids_of("orders", callers, False) + ["9" * 10]) | st.uuids().map(str)
        if name in ("start", "end", "before") and schema.get("type") == "integer":
            return st.integers(-10, 3_000_000_000)
        if name == "symbol":
            return st.sampled_from([SYMBOL] * 3 + self.symbols)
        if name == "wallet_address":
            return self.domain(op, name, schema)
        v = self.valid_value(op, name, schema)
        return v.map(lambda x: x.data.decode() if isinstance(x, Raw) else x)

    @st.composite
    def query_for(draw, self, op, callers, valid_bias):  # noqa: N805
        parts = []
        for p in op.params:
            if p.get("in") != "query":
                continue
            if p.get("required") or draw(st.booleans()):
                hostile = not valid_bias and draw(st.integers(0, 3)) == 3
                v = draw(st.one_of(hostile_text(), hostile_number().map(lambda x: x.data if isinstance(x, Raw) else x))
                         if hostile else self.param_value(op, p, callers))
                parts.append((p["name"], v))
        if not valid_bias:
            for _ in range(max(0, draw(st.integers(0, 4)) - 2)):
                name = draw(st.one_of(st.sampled_from(EXTRA_QUERY), hostile_text()))
                parts.append((name, draw(st.one_of(hostile_text(), self.id_pool(),
                                                   st.sampled_from(self.v["vaults"]), st.uuids().map(str)))))
        encoded = [self.quote(k) + b"=" + (self.quote(v) if not isinstance(v, bytes) else v) for k, v in parts]
        if not valid_bias and draw(st.integers(0, 9)) == 9:
            encoded.append(draw(st.sampled_from([b"%", b"%ZZ=1", b"=", b"&&", b"a=%00", b"a=%ff", b"\xff=1",
                                                 b"a=b=c", b"limit=1&limit=2", b"x=\x85", b"a b=c", b";"])))
        if not encoded:
            return b"?" if draw(st.integers(0, 9)) == 9 else b""
        return b"?" + b"&".join(encoded)

    def path_pool(self, op, callers):
        """(own ids, other users' ids) for the operation's {id}."""
        if op.path.startswith("/api/v1/orders/"):
            return self.ids_of("orders", callers, True), self.ids_of("orders", callers, False)
        if op.path.startswith("/api/v1/positions/"):
            return self.ids_of("positions", callers, True), self.ids_of("positions", callers, False)
        if op.path.startswith("/api/v1/users/api-keys/"):
            protected = {self.main_key[u][0] for u in callers if u in self.main_key}
            own = [k for k in self.ids_of("keys", callers, True) if k not in protected]
            return own, self.ids_of("keys", callers, False)
        if op.path.startswith("/api/v1/vaults/"):
            return self.v["vaults"], []
        return [], []

    @st.composite
    def path_for(draw, self, op, callers, valid_bias):  # noqa: N805
        target = op.path.encode()
        for name in re.findall(r"\{(\w+)\}", op.path):
            if name == "symbol":
                valid = st.sampled_from([SYMBOL] * 3 + self.symbols + ["NOPE_USDM_PERP"])
            else:
                own, others = self.path_pool(op, callers)
                valid = st.one_of(*[s for s in (st.sampled_from(own) if own else None,
                                                 st.sampled_from(others) if others else None,
                                                 st.uuids().map(str)) if s is not None])
            if valid_bias or draw(st.integers(0, 3)) != 3:
                seg = self.quote(draw(valid))
            else:
                seg = draw(st.one_of(st.sampled_from(HOSTILE_SEGMENTS), hostile_text().map(self.quote),
                                     valid.map(lambda v: v.upper().encode() + b"%00")))
            target = target.replace(b"{" + name.encode() + b"}", seg)
        return target

    @st.composite
    def identity(draw, self, service, via, valid_bias):  # noqa: N805
        """(headers, callers): who the request acts as, and how it says so."""
        users = self.actors
        headers, callers = [], set()
        k = draw(st.integers(0, 5 if valid_bias else 9))
        u = draw(st.sampled_from(users))
        if via == "gateway":
            if k <= 5:
                key = self.read_key[u] if u in self.read_key and draw(st.integers(0, 3)) == 3 else self.main_key[u]
                headers.append((b"Authorization", b"Bearer " + key[1].encode()))
                callers = {u}
            elif k == 6:
                pass
            elif k == 7:
                headers.append((b"Authorization", draw(st.sampled_from([b"Bearer ", b"Bearer hxk_", b"Bearer hxs_x",
                                                                          b"Basic YTpi", b"Bearer \x85", b"Bearer " + b"a" * 5000]))))
            elif k == 8:
                v = draw(st.sampled_from([x for x in users if x != u]))
                headers += [(b"Authorization", b"Bearer " + self.main_key[u][1].encode()),
                            (b"Authorization", b"Bearer " + self.main_key[v][1].encode())]
                callers = {u, v}
            else:
                secret = self.main_key[u][1].encode()
                headers.append((b"Authorization", draw(st.sampled_from([b"bearer " + secret, b"Bearer  " + secret,
                                                                          b"Bearer " + secret + b"x", b"Bearer " + secret[:-1],
                                                                          b"BEARER " + secret]))))
                callers = {u}
            if not valid_bias and draw(st.booleans()):  # forged identity: never believed by the gateway
                forged = draw(st.sampled_from(self.all_users))
                headers.append((draw(st.sampled_from([b"X-User-ID", b"x-user-id"])), forged.encode()))
                if draw(st.booleans()):
                    headers.append((b"X-Auth-Kind", b"session"))
        else:
            if k <= 5:
                headers.append((b"X-User-ID", u.encode()))
                callers = {u}
            elif k == 6:
                pass
            elif k == 7:
                headers.append((b"X-User-ID", draw(st.sampled_from(HOSTILE_HEADER_VALUES))))
            elif k == 8:
                v = draw(st.sampled_from([x for x in users if x != u]))
                headers += [(b"X-User-ID", u.encode()), (b"X-User-ID", v.encode())]
                callers = {u, v}
            else:
                headers.append((b"X-User-ID", draw(st.sampled_from([u.upper(), "{" + u + "}", " " + u + " ", u + "\x00",
                                                                     u.replace("-", ""), u + "0", u[:-1]])).encode()))
                callers = {u}
            if service == "user" and not valid_bias and draw(st.booleans()):
                headers.append((b"X-Auth-Kind", draw(st.sampled_from([b"session", b"api_key", b"", b"\x85", b"SESSION"]))))
                if draw(st.booleans()):
                    headers.append((b"X-Auth-Credential", draw(st.sampled_from([b"0" * 64, b"f" * 64, b"", b"\xff" * 64]))))
        return headers, frozenset(callers)

    @st.composite
    def odd_headers(draw, self, op):  # noqa: N805
        out = []
        for _ in range(max(0, draw(st.integers(0, 5)) - 2)):
            out.append(draw(st.sampled_from([
                (b"X-Request-ID", draw(st.sampled_from(HOSTILE_HEADER_VALUES + [b"trace-42"]))),
                (b"Accept", draw(st.sampled_from([b"*/*", b"application/xml", b"text/html;q=0.1", b"\x85"]))),
                (b"Origin", draw(st.sampled_from([b"http://localhost:3000", b"http://evil.example", b"null", b"\xff"]))),
                (b"Idempotency-Key", draw(st.sampled_from(HOSTILE_HEADER_VALUES + [str(uuid.uuid4()).encode()]))),
                (b"X-Forwarded-For", draw(st.sampled_from([b"1.2.3.4, ::1", b"\x00", b"999.999.999.999", b"a" * 3000]))),
                (b"Cookie", draw(st.sampled_from(HOSTILE_HEADER_VALUES))),
                (b"X-Auth-Scope", draw(st.sampled_from([b"trade", b"read", b"admin", b"\x00"]))),
                (b"Content-Encoding", b"gzip"), (b"Accept-Encoding", b"gzip, br"),
                (b"X-" + b"a" * 200, draw(st.sampled_from(HOSTILE_HEADER_VALUES))),
                (b"X-\xff\x85", b"v"), (b"X Space", b"v"), (b"X-Empty", b""),
                (b"Range", b"bytes=0-1"), (b"If-None-Match", b"*"), (b"Upgrade", b"h2c"),
            ])))
        if op.path.startswith("/api/v1/vaults") and op.method == "POST" and draw(st.booleans()):
            out.append((b"Idempotency-Key", draw(st.sampled_from(self.shared_idempotency_keys)).encode()))
        return out

    @st.composite
    def request_for(draw, self, op, valid_bias=False):  # noqa: N805
        service = op.service
        if service == "each":
            service = draw(st.sampled_from(sorted(self.stack.procs)))
            via = "direct"
        elif service in ("gateway", "ws"):
            via = "gateway"
        else:
            via = "gateway" if draw(st.integers(0, 4)) >= 3 else "direct"
        port = self.stack.ports["gateway" if via == "gateway" else service]
        headers, callers = draw(self.identity(service, via, valid_bias))
        if op.service == "ws":
            return self.ws_request(draw, op, port, headers, callers, valid_bias)
        target = draw(self.path_for(op, callers, valid_bias)) + draw(self.query_for(op, callers, valid_bias))
        body, ctype = draw(self.body_for(op, valid_bias))
        if ctype is not None:
            headers.append((b"Content-Type", ctype))
        if not valid_bias:
            headers += draw(self.odd_headers(op))
            headers = draw(st.permutations(headers))
        method = op.method.encode()
        if not valid_bias and draw(st.integers(0, 14)) == 14:
            method = draw(st.sampled_from([b"HEAD", b"OPTIONS", b"PATCH", b"PUT", b"TRACE", op.method.lower().encode(),
                                           b"FOO", b"DELETE", b"POST", b"GET", b"G\x85T"]))
        chunked = body is not None and draw(st.integers(0, 9)) == 9
        return Req(op, "gateway" if via == "gateway" else service, port, method, target, list(headers), body,
                   callers, chunked=chunked)

    def ws_request(self, draw, op, port, headers, callers, valid_bias):
        key = draw(st.sampled_from([b"dGhlIHNhbXBsZSBub25jZQ==", b"", b"\x00", b"a" * 300, b"!!!!"]))
        headers = headers + [(b"Upgrade", draw(st.sampled_from([b"websocket", b"websocket", b"WebSocket", b"h2c", b""]))),
                             (b"Connection", draw(st.sampled_from([b"Upgrade", b"Upgrade", b"keep-alive, Upgrade", b"close"]))),
                             (b"Sec-WebSocket-Key", key if not valid_bias else b"dGhlIHNhbXBsZSBub25jZQ=="),
                             (b"Sec-WebSocket-Version", draw(st.sampled_from([b"13", b"13", b"8", b"", b"99999999999"])))]
        if not valid_bias:
            headers += draw(self.odd_headers(op))
        target = b"/ws" + draw(self.query_for(op, callers, valid_bias))
        return Req(op, "gateway", port, b"GET", target, headers, None, callers, ws=True)

    # ---- the oracle

    def record(self, key, text, table=None):
        table = self.failures if table is None else table
        with self.lock:
            if key not in table:
                table[key] = text
                if table is self.failures:
                    print(f"\nFUZZ FAILURE: {text}\n", file=sys.stderr, flush=True)

    def send(self, req):
        try:
            return exchange(req, timeout=5.0 if req.ws else 20.0)
        except (NoAnswer, Hang, ValueError, IndexError) as e:
            return e

    def note_stored(self, req):
        """Tokens of other users the caller put in a body: it may see them again, stored as its own."""
        if req.body and req.callers:
            seen = {t for t in words(req.body) if t in self.tokens}
            for c in req.callers:
                self.known[c] |= seen

    def judge(self, req, res):
        """The oracle for one answer."""
        self.judged += 1
        self.recent.append(req.describe())
        op = req.op
        if isinstance(res, Hang):
            self.record((op.key, "hang"), f"{op.key}: {res}\n  request: {req.describe()}")
        elif isinstance(res, Exception):
            if req.wellformed:
                self.record((op.key, "no answer"), f"{op.key}: no answer to a well-formed request ({res})\n"
                                                   f"  request: {req.describe()}")
            self.stats[(op.key, "no answer")] += 1
        else:
            self.stats[(op.key, res.status)] += 1
            code = res.code()
            if res.status >= 500:
                documented = res.status == 503 and not req.overridden and "503" in op.responses
                if documented or (res.status == 503 and code == "OVERLOADED"):
                    self.record((op.key, res.status, code), f"{op.key}: {res.status} {code}", self.notes)
                else:
                    where = f"any operation sent as {req.method!r}" if req.overridden else op.key
                    self.record((res.status, code, where, req.service), f"{op.key}: answered {res.status} {code}\n"
                                                            f"  request: {req.describe()}\n  answer: {res.describe()}")
            if res.status >= 400 and res.headers.get("content-type", "").startswith("application/json") and res.body:
                try:
                    json.loads(res.body)
                except ValueError:
                    self.record((op.key, "bad json"), f"{op.key}: a JSON error answer that is not JSON: "
                                                      f"{res.body[:200]!r}", self.notes)
            if not op.leak_exempt:
                self.check_leak(req, res)
            if res.status < 300 and len(req.callers) == 1:
                self.learn(req, res)
        self.check_pids(req)

    def check_leak(self, req, res):
        seen = words(res.body) | words(" ".join(f"{k}: {v}" for k, v in res.headers.items()).encode("latin-1", "replace"))
        sent = words(req.wire()) | words(urllib.parse.unquote_to_bytes(req.target))
        known = set().union(*[self.known[c] for c in req.callers]) if req.callers else set()
        for tok in seen:
            owner = self.tokens.get(tok)
            if owner is not None and owner not in req.callers and tok not in sent and tok not in known:
                who = "canary" if owner == self.canary else owner
                self.record((req.op.key, "leak", req.service, bool(req.callers)),
                            f"{req.op.key}: the answer to {sorted(req.callers) or 'nobody'} holds {tok!r} of user {who}\n"
                            f"  request: {req.describe()}\n  answer: {res.describe()}")
                return

    def learn(self, req, res):
        """Ids a successful answer gave its (single) caller become that caller's tokens and targets."""
        (user,) = req.callers
        try:
            doc = res.json()
        except ValueError:
            return
        path, method = req.op.path, req.method
        with self.lock:
            if path == "/api/v1/orders" and method == b"POST" and isinstance(doc, dict) and isinstance(doc.get("id"), str):
                if self.tokens.get(doc["id"], user) == user:
                    self.own(user, doc["id"])
                    self.orders[user].append(doc["id"])
            elif path == "/api/v1/positions" and method == b"GET" and isinstance(doc, list):
                for p in doc:
                    if isinstance(p, dict) and isinstance(p.get("id"), str) and p["id"] not in self.positions[user] \
                            and self.tokens.get(p["id"], user) == user:
                        self.own(user, p["id"])
                        self.positions[user].append(p["id"])
            elif path == "/api/v1/users/api-keys" and method == b"POST" and isinstance(doc, dict) and "id" in doc:
                self.own(user, doc.get("id"), doc.get("key"))
                self.keys[user].append(doc["id"])
            elif path.startswith("/api/v1/vaults/") and method == b"POST" and isinstance(doc, dict):
                if self.tokens.get(str(doc.get("transaction_id")), user) == user:
                    self.own(user, doc.get("transaction_id"))
            elif path == "/api/v1/vaults" and method == b"POST" and isinstance(doc, dict) and doc.get("id") not in self.vaults:
                self.vaults.append(doc["id"])

    def check_pids(self, req=None):
        if self.crashed:
            return
        for s, p in self.stack.procs.items():
            if p.poll() is not None or p.pid != self.pids[s]:
                self.crashed = f"{s} (pid {self.pids[s]}) exited with {p.returncode}"
                last = "\n  ".join(self.recent)
                self.record(("crash", s), f"service {self.crashed}; the last requests, newest last:\n  {last}")
                return

    def check_invariants(self, where):
        try:
            r = self.t.op("GET", "/internal/v1/invariants")
            ok = r.status == 200 and r.json().get("ok") is True
            detail = r.body
        except Exception as e:  # noqa: BLE001
            ok, detail = False, repr(e)
        if not ok:
            last = "\n  ".join(self.recent)
            self.record(("invariants", where), f"/internal/v1/invariants not ok after {where}: {detail[:500]}\n"
                                               f"  the last requests, newest last:\n  {last}")

    # ---- runs

    def run_route(self, op, deadline, max_examples):
        @fuzz_settings(max_examples)
        @given(st.data())
        def example(data):
            # Always draw, then maybe skip: an example that draws nothing once the time is up would
            # make Hypothesis see "inconsistent data generation" (Flaky).
            req = data.draw(self.request_for(op), label="request")
            if self.crashed or time.monotonic() > deadline:
                return
            self.note_stored(req)
            res = self.send(req)
            self.judge(req, res)
            if self.judged % 25 == 0:
                self.check_invariants(f"{self.judged} requests")

        self.freeze()
        try:
            seeded(example)()
        except Exception as e:  # noqa: BLE001 - keep walking; the failure is reported at the end
            self.record((op.key, "hypothesis"), f"{op.key}: the Hypothesis run stopped: {e!r}")

    def run_batches(self, deadline, max_examples):
        ops = [op for op in self.ops if op.service != "ws"]

        @fuzz_settings(max_examples)
        @given(st.data())
        def batch(data):
            if data.draw(st.integers(0, 2), label="burst") == 0:
                # One request sent many times at once: client_order_id, Idempotency-Key, cancel races.
                req = data.draw(self.request_for(data.draw(st.sampled_from(ops)), valid_bias=True), label="request")
                reqs = [req] * data.draw(st.integers(3, 8), label="copies")
            else:
                reqs = [data.draw(self.request_for(data.draw(st.sampled_from(ops)),
                                                   valid_bias=data.draw(st.booleans())), label="request")
                        for _ in range(data.draw(st.integers(6, 14), label="size"))]
            if self.crashed or time.monotonic() > deadline:
                return
            for r in reqs:
                self.note_stored(r)
            results = [None] * len(reqs)
            barrier = threading.Barrier(len(reqs))

            def worker(i):
                try:
                    barrier.wait(10)
                except threading.BrokenBarrierError:
                    pass
                results[i] = self.send(reqs[i])

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(reqs))]
            for th in threads:
                th.start()
            for th in threads:
                th.join(60)
            for r, res in zip(reqs, results):
                self.judge(r, res if res is not None else Hang("no answer within 60 s (thread still waiting)"))
            self.check_invariants("a concurrent batch")

        self.freeze()
        try:
            seeded(batch)()
        except Exception as e:  # noqa: BLE001
            self.record(("concurrent", "hypothesis"), f"concurrent batches: the Hypothesis run stopped: {e!r}")


# ---------------------------------------------------------------------------------------------

class ApiFuzz(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        pk, sk = keypair() if _SODIUM else (None, None)
        big = "10000000"
        market = {"INDEX_FEED": "oracle", "ORACLE_PUBLIC_KEYS": f"o1:{pk.hex()}"} if pk else {"INDEX_FEED": "none"}
        env = {"trading": {**TRADING_ENV, "MARK_FROM_INDEX": "0"}, "market": market,
               "vault": {"OPERATOR_TOKEN": OPERATOR_TOKEN, "VAULT_SAMPLE_MS": "500"},
               "user": {"OPERATOR_TOKEN": OPERATOR_TOKEN},
               "gateway": {"RATE_LIMIT_IP_BURST": big, "RATE_LIMIT_USER_BURST": big, "RATE_LIMIT_AUTH_IP_BURST": big,
                           "RATE_LIMIT_IP_PER_MIN": "100000000", "RATE_LIMIT_USER_PER_MIN": "100000000",
                           "RATE_LIMIT_AUTH_IP_PER_MIN": "100000000", "RATE_LIMIT_AUTH_FAIL_PER_MIN": "0"}}
        cls.stack = Stack("apifuzz", extra_env=env, own_redis=True)
        try:
            cls.stack.start_all()
            cls.fz = cls.prepare(cls.stack, sk)
        except BaseException:
            cls.stack.close()
            raise

    @classmethod
    def prepare(cls, stack, sk):
        fz = Fuzzer(stack, sk)
        t = fz.t
        t.mark(SYMBOL, str(MARK))
        a, b, c, d = new_user(), new_user(), new_user(), new_user()
        fz.actors, fz.canary, fz.all_users = [a, b, c], d, [a, b, c, d]
        fz.shared_idempotency_keys = [str(uuid.uuid4()) for _ in range(3)]
        for u in fz.all_users:
            t.deposit(u, "10000")
            fz.own(u, u)
            fz.main_key[u] = fz.issue_key(u)
            spare = fz.issue_key(u, label="spare")
            fz.keys[u] += [fz.main_key[u][0], spare[0]]
        fz.read_key[a] = fz.issue_key(a, scope="read")

        def place(user, **o):
            o.setdefault("symbol", SYMBOL)
            o.setdefault("type", "Limit")
            o.setdefault("client_order_id", f"fz{user[:8]}{uuid.uuid4().hex[:12]}")
            r = t.call(user, "POST", "/api/v1/orders", o)
            assert r.status == 201, r.body
            fz.own(user, r.json()["id"], o["client_order_id"])
            fz.orders[user].append(r.json()["id"])
            return r.json()["id"]

        place(a, side="Sell", price="97000", amount="0.01")
        place(b, side="Buy", price="97000", amount="0.004")
        place(a, side="Buy", price="96000", amount="0.001")
        place(b, side="Sell", price="98000", amount="0.001")
        for u in (a, b):
            for p in t.call(u, "GET", "/api/v1/positions").json():
                fz.own(u, p["id"])
                fz.positions[u].append(p["id"])
        assert fz.positions[a] and fz.positions[b], "the setup trade made no positions"
        vport = stack.ports["vault"]
        r = request(vport, "POST", "/api/v1/vaults", body={"name": f"Fuzz vault {uuid.uuid4().hex[:8]}",
                                                           "initial_deposit": "1000"}, headers={"X-User-ID": c})
        assert r.status == 201, r.body
        fz.vaults.append(r.json()["id"])
        r = t.call(c, "POST", "/api/v1/orders", {"symbol": SYMBOL, "side": "Buy", "type": "Limit", "price": "96000",
                                                  "amount": "0.001", "account": fz.vaults[-1]})
        assert r.status == 201, r.body
        fz.own(c, r.json()["id"])
        fz.orders[c].append(r.json()["id"])
        r = request(vport, "POST", f"/api/v1/vaults/{fz.vaults[-1]}/deposit", body={"amount": "200"},
                    headers={"X-User-ID": a})
        assert r.status == 200, r.body
        fz.own(a, r.json()["transaction_id"])
        # The canary: an untriggered stop order (in no book), a key; it never acts.
        place(d, side="Buy", type="StopLimit", price="98000", trigger_price="98000", amount="0.001")
        fz.canary_state = cls.canary_state(fz)
        markets = request(stack.ports["market"], "GET", "/api/v1/markets").json()
        fz.symbols = sorted({m["symbol"] for m in markets} | {SYMBOL})
        return fz

    @staticmethod
    def canary_state(fz):
        d = fz.canary
        orders = fz.t.call(d, "GET", "/api/v1/orders")
        balances = fz.t.call(d, "GET", "/api/v1/balances")
        keys = request(fz.stack.ports["user"], "GET", "/api/v1/users/api-keys", headers={"X-User-ID": d})
        via_gateway = fz.stack.call("GET", "/api/v1/orders", headers={"Authorization": f"Bearer {fz.main_key[d][1]}"})
        live = sorted(k["id"] for k in keys.json() if k["revoked_at"] is None) if keys.status == 200 else keys.body
        return {"orders": sorted((o["id"], o["status"], o["filled"]) for o in orders.json()),
                "balances": balances.json(), "live keys": live,
                "through the gateway": (via_gateway.status, sorted(o["id"] for o in via_gateway.json())
                                        if via_gateway.status == 200 else via_gateway.body)}

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def conclude(self, started, what, before):
        fz = self.fz
        fz.check_pids()
        fz.check_invariants(f"the {what}")
        if not fz.crashed:
            now = self.canary_state(fz)
            if now != fz.canary_state:
                fz.record(("canary", what), f"the canary user (who never acted) changed during the {what}:\n"
                                            f"  before: {fz.canary_state}\n  after:  {now}")
        elapsed = time.monotonic() - started
        by_op = collections.defaultdict(collections.Counter)
        for (key, status), n in fz.stats.items():
            by_op[key][status] += n
        lines = [f"{k}: " + " ".join(f"{s}x{n}" for s, n in sorted(c.items(), key=str)) for k, c in sorted(by_op.items())]
        print(f"\n[{what}] {elapsed:.0f} s, {fz.judged} requests so far, profile {PROFILE}; answers by operation:\n  "
              + "\n  ".join(lines), file=sys.stderr)
        if fz.notes:
            print("  notes (allowed): " + "; ".join(fz.notes.values()), file=sys.stderr)
        new = [text for key, text in fz.failures.items() if key not in before]
        if new:
            self.fail(f"{len(new)} distinct failures:\n\n" + "\n\n".join(new))

    def test_1_every_operation(self):
        fz, started = self.fz, time.monotonic()
        before = set(fz.failures)
        ops = fz.ops
        self.assertGreater(len(ops), 30)
        limit = settings.get_profile(PROFILE).max_examples
        for i, op in enumerate(ops):
            remaining = BUDGET["walk"] - (time.monotonic() - started)
            fz.run_route(op, time.monotonic() + max(remaining / (len(ops) - i), 1.0), limit)
            fz.check_invariants(op.key)
            if fz.crashed:
                break
        # Not vacuous: valid-shaped requests got through to the engine and back.
        for key, status in [("POST /api/v1/orders", 201), ("GET /api/v1/orders", 200),
                            ("POST /api/v1/vaults/{id}/deposit", 200), ("GET /api/v1/markets/{symbol}/ticker", 200)]:
            if not fz.crashed:
                self.assertGreater(fz.stats[(key, status)], 0, f"no {status} for {key}: the generator is off")
        self.conclude(started, "walk over every operation", before)

    def test_2_concurrent_users(self):
        fz, started = self.fz, time.monotonic()
        before = set(fz.failures)
        if not fz.crashed:
            fz.run_batches(time.monotonic() + BUDGET["concurrent"], BUDGET["batches"])
        self.conclude(started, "concurrent batches", before)


if __name__ == "__main__":
    unittest.main()
