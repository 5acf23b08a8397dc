"""Starts the real HydroX services against the test PostgreSQL and Redis (see scripts/test-infra.sh).

Every Stack gets its own database (migrated with hydrox-migrate) and its own free ports, so tests
do not share state. Processes are stopped when the Stack closes, and at interpreter exit.
"""
import atexit
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

SOURCE_DIR = os.environ.get("HYDROX_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN_DIR = os.environ.get("HYDROX_BIN_DIR", os.path.join(SOURCE_DIR, "build", "default", "bin"))
INFRA_ENV = os.environ.get("HYDROX_INFRA_ENV", os.path.join(SOURCE_DIR, "build", "default", "infra.env"))

SERVICES = ["market", "trading", "vault", "user", "gateway"]
# Every stack runs with an internal token, as `make run` and compose do: services believe
# X-User-ID only next to it. request() adds it when a test calls a service directly with
# X-User-ID (standing in for the gateway); pass X-Internal-Token yourself (even "") to send
# something else.
INTERNAL_TOKEN = "test-internal-token-0123456789"
INTERNAL_HEADER = "X-Internal-Token"
_live = []


def _cleanup():
    for p in list(_live):
        if p.poll() is None:
            p.kill()


atexit.register(_cleanup)


def read_infra():
    env = {}
    with open(INFRA_ENV, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    # Both servers want a password (scripts/infra.sh): psql and redis-cli find it here.
    if "PGPASSWORD" in env:
        os.environ["PGPASSWORD"] = env["PGPASSWORD"]
    if "REDIS_PASSWORD" in env:
        os.environ["REDISCLI_AUTH"] = env["REDIS_PASSWORD"]
    return env


def redis_conf(port, pidfile):
    """A private Redis server's configuration (on stdin: the password stays off the command line)."""
    pw = os.environ.get("REDISCLI_AUTH", "")
    return (f"bind 127.0.0.1\nport {port}\nsave \"\"\nappendonly no\ndaemonize yes\npidfile {pidfile}\n"
            + (f"requirepass {pw}\n" if pw else "")).encode()


def redis_url(port):
    pw = os.environ.get("REDISCLI_AUTH", "")
    return f"redis://:{pw}@127.0.0.1:{port}" if pw else f"127.0.0.1:{port}"


def free_port(avoid=()):
    """A free port that is not in `avoid` (ports chosen earlier but not yet listened on: the kernel
    may hand a just-closed port out again)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def free_ports(n):
    """n distinct free ports: all sockets stay open until every port is chosen (the kernel may hand
    out a just-closed port again)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def request(port, method, path, body=None, headers=None, timeout=10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body
        hdrs = dict(headers or {})
        names = {k.lower() for k in hdrs}
        internal_call = path.startswith("/internal/") and "authorization" not in names
        if ("x-user-id" in names or internal_call) and INTERNAL_HEADER.lower() not in names:
            hdrs[INTERNAL_HEADER] = INTERNAL_TOKEN
        hdrs = {k: v for k, v in hdrs.items() if not (k == INTERNAL_HEADER and v is None)}
        if isinstance(body, (dict, list)):
            data = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read().decode("utf-8", "replace"))
    finally:
        conn.close()


def raw_exchange(port, data: bytes, timeout=5.0):
    """Sends raw bytes and reads until the server closes (for requests a client library refuses)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out


class Stack:
    """The five services on free ports against a fresh database."""

    def __init__(self, name="t", extra_env=None, services=None, own_redis=False, own_pg=False):
        self.infra = read_infra()
        # A private PostgreSQL server, for tests that stop and restart it.
        self.pg_dir = None
        if own_pg:
            self.pg_dir = tempfile.mkdtemp(prefix="hx-pg-")
            subprocess.run([os.path.join(SOURCE_DIR, "scripts", "infra.sh"), "start", self.pg_dir],
                           env=self._pg_env(), check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(self.pg_dir, "env"), encoding="utf-8") as f:
                pg = dict(line.strip().split("=", 1) for line in f if "=" in line)
            self.infra = {**self.infra, "PGPORT": pg["PGPORT"]}
        # Redis pub/sub is global to a server: a stack whose marks follow an index feed gets a
        # private Redis, so that no other stack's feed reaches it.
        self.redis_dir = None
        if own_redis:
            self.redis_dir = tempfile.mkdtemp()
            port = free_port()
            subprocess.run(["redis-server", "-"], input=redis_conf(port, f"{self.redis_dir}/r.pid"),
                           check=True, stdout=subprocess.DEVNULL)
            wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG",
                       5, what="a private redis")
            self.redis_port = port
            self.infra = {**self.infra, "REDIS_URL": redis_url(port)}
        self.db_name = f"hx_{name}_{secrets.token_hex(4)}"
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", self.infra["PGPORT"], "-U", "postgres", "-qc",
                        f"CREATE DATABASE {self.db_name} OWNER hydrox"], check=True)
        app_pw = self.infra.get("PG_APP_PASSWORD", "hydrox")
        self.database_url = (f"postgres://hydrox:{app_pw}@127.0.0.1:{self.infra['PGPORT']}/{self.db_name}"
                             "?sslmode=disable")
        subprocess.run([os.path.join(BIN_DIR, "hydrox-migrate"), os.path.join(SOURCE_DIR, "db", "migrations")],
                       env={**os.environ, "DATABASE_URL": self.database_url}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        *service_ports, ops_port = free_ports(len(SERVICES) + 1)
        self.ports = dict(zip(SERVICES, service_ports))
        self.gateway_ops_port = ops_port  # the gateway's /metrics and /ready (loopback only)
        self.extra_env = extra_env or {}
        self.procs = {}
        self.logs = {}
        self.log_dir = os.path.join(os.path.dirname(INFRA_ENV), "test-logs", self.db_name)
        os.makedirs(self.log_dir, exist_ok=True)
        self.services = services or SERVICES
        self.handoff_socket = os.path.join(tempfile.mkdtemp(prefix="hx-ws-"), "market.sock")

    def _pg_env(self):
        """A private PostgreSQL server gets the shared one's passwords (one PGPASSWORD for all)."""
        return {**os.environ, "SKIP_REDIS": "1", "PG_SUPERUSER_PASSWORD": self.infra.get("PGPASSWORD", ""),
                "PG_APP_PASSWORD": self.infra.get("PG_APP_PASSWORD", "")}

    def redis_stop(self):
        """Stops the private Redis server."""
        with open(f"{self.redis_dir}/r.pid") as f:
            os.kill(int(f.read()), signal.SIGTERM)
        wait_until(lambda: subprocess.run(["redis-cli", "-p", str(self.redis_port), "ping"],
                                          capture_output=True).returncode != 0, 5, what="redis to stop")

    def redis_start(self):
        """Starts the private Redis server again, empty, on the same port."""
        subprocess.run(["redis-server", "-"], input=redis_conf(self.redis_port, f"{self.redis_dir}/r.pid"),
                       check=True, stdout=subprocess.DEVNULL)
        wait_until(lambda: subprocess.run(["redis-cli", "-p", str(self.redis_port), "ping"],
                                          capture_output=True).stdout.strip() == b"PONG", 5, what="redis to start")

    def pg_stop(self):
        """Stops the private PostgreSQL server (fast shutdown: sessions are cut)."""
        subprocess.run([os.path.join(SOURCE_DIR, "scripts", "infra.sh"), "stop", self.pg_dir],
                       check=True, stdout=subprocess.DEVNULL)

    def pg_start(self):
        subprocess.run([os.path.join(SOURCE_DIR, "scripts", "infra.sh"), "start", self.pg_dir, self.infra["PGPORT"]],
                       env=self._pg_env(), check=True, stdout=subprocess.DEVNULL)

    def add_standby(self, service="trading"):
        """A second process of `service` on its own port; every service (and the gateway) is told
        both addresses, the active one first."""
        name = f"{service}-standby"
        self.ports[name] = free_port(avoid={*self.ports.values(), self.gateway_ops_port})
        var = f"{service.upper()}_SERVICE_URL"
        both = f"http://127.0.0.1:{self.ports[service]},http://127.0.0.1:{self.ports[name]}"
        self.extra_env.setdefault("*", {})[var] = both
        return name

    def env_for(self, service):
        env = dict(os.environ)
        env.update({
            "PORT": str(self.ports[service]),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.infra["REDIS_URL"],
            "MARKET_SERVICE_URL": f"http://127.0.0.1:{self.ports['market']}",
            "TRADING_SERVICE_URL": f"http://127.0.0.1:{self.ports['trading']}",
            "VAULT_SERVICE_URL": f"http://127.0.0.1:{self.ports['vault']}",
            "USER_SERVICE_URL": f"http://127.0.0.1:{self.ports['user']}",
            "LOG_LEVEL": "info",
            "INTERNAL_TOKEN": INTERNAL_TOKEN,
            "LISTEN_ADDRESS": "127.0.0.1",  # tests speak to loopback only (and legacy mode needs it)
        })
        # The gateway hands WebSocket clients' sockets to market, as `make run` does.
        if service == "market":
            env["HANDOFF_SOCKET"] = self.handoff_socket
        elif service == "gateway":
            env["MARKET_WS_HANDOFF_SOCKET"] = self.handoff_socket
            env["OPS_PORT"] = str(self.gateway_ops_port)
        env.update(self.extra_env.get(service.split("-")[0], {}))
        env.update(self.extra_env.get("*", {}))
        env["PORT"] = str(self.ports[service])
        return env

    def start(self, service, wait=True):
        if service in self.logs:
            self.logs[service].close()
        log = open(os.path.join(self.log_dir, f"{service}.log"), "ab")
        binary = service.split("-")[0]  # "trading-standby" runs hydrox-trading
        p = subprocess.Popen([os.path.join(BIN_DIR, f"hydrox-{binary}")], env=self.env_for(service),
                             stdout=log, stderr=subprocess.STDOUT)
        self.procs[service] = p
        self.logs[service] = log
        _live.append(p)
        if wait:
            path = "/health"
            wait_until(lambda: self._answers(service, path), 10, what=f"{service} to listen")
        return p

    def _answers(self, service, path):
        if self.procs[service].poll() is not None:
            raise AssertionError(f"{service} exited with {self.procs[service].returncode}; see {self.log_dir}")
        try:
            return request(self.ports[service], "GET", path, timeout=1).status > 0
        except OSError:
            return False

    def start_all(self):
        for s in self.services:
            self.start(s)
        if "gateway" in self.services:
            wait_until(lambda: self.get("/health").status == 200, 15, what="gateway /health 200")
        return self

    def wait_projected(self, timeout=15):
        """Journal-first (issue 22): the read tables are written behind the acknowledgement. A test
        that reads them with SQL first waits until the projector's watermark reaches every command
        journaled so far (an acknowledged command is journaled)."""
        def ask(q):
            return subprocess.run(["psql", self.database_url, "-Atc", q], check=True, capture_output=True,
                                  text=True).stdout.strip()
        target = int(ask("SELECT coalesce(max(command_no), 0) FROM engine_journal"))
        deadline = time.monotonic() + timeout
        while int(ask("SELECT command_no FROM projector_watermark")) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the projector did not reach command {target} in {timeout} s")
            time.sleep(0.02)

    def stop(self, service, sig=signal.SIGTERM, timeout=10):
        p = self.procs.get(service)
        if p is None or p.poll() is not None:
            return p.returncode if p else None
        p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(f"{service} did not stop within {timeout}s after {sig}")

    def close(self):
        problems = []
        for s in list(self.procs):
            try:
                code = self.stop(s)
                if code not in (0, None, -signal.SIGKILL):
                    problems.append(f"{s} exited with {code}")
            except AssertionError as e:
                problems.append(str(e))
        for log in self.logs.values():
            log.close()
        if self.redis_dir:
            try:
                with open(f"{self.redis_dir}/r.pid") as f:
                    os.kill(int(f.read()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
            shutil.rmtree(self.redis_dir, ignore_errors=True)
        shutil.rmtree(os.path.dirname(self.handoff_socket), ignore_errors=True)
        if self.pg_dir:
            subprocess.run([os.path.join(SOURCE_DIR, "scripts", "infra.sh"), "stop-remove", self.pg_dir],
                           check=False, stdout=subprocess.DEVNULL)
        else:
            subprocess.run(["psql", "-h", "127.0.0.1", "-p", self.infra["PGPORT"], "-U", "postgres", "-qc",
                            f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)"], check=False)
        # Under the sanitizer preset a report in any service's log fails the test.
        for name in os.listdir(self.log_dir):
            with open(os.path.join(self.log_dir, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in text:
                    problems.append(f"{name}: {marker}")
        if problems:
            raise AssertionError("service problems: " + "; ".join(problems) + f" (logs in {self.log_dir})")

    # Requests to the gateway.
    @property
    def gateway_port(self):
        return self.ports["gateway"]

    def get(self, path, **kw):
        return request(self.gateway_port, "GET", path, **kw)

    def call(self, method, path, **kw):
        return request(self.gateway_port, method, path, **kw)


def query_string(**params):
    return urllib.parse.urlencode(params)
