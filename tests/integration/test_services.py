"""Each service binary on its own: fail-fast start, readiness, graceful stop (issue #2)."""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import BIN_DIR, Stack, free_port, read_infra, redis_conf, redis_url, request, wait_until


def run_service(name, env, timeout=10):
    p = subprocess.run([os.path.join(BIN_DIR, f"hydrox-{name}")], env={**os.environ, **env},
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stderr


class FailFastStart(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack("ff")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def test_bad_port_names_the_variable(self):
        code, err = run_service("market", {**self.stack.env_for("market"), "PORT": "80a"})
        self.assertEqual(code, 1)
        self.assertIn('init config failed: PORT must be an integer in 0..65535, got "80a"', err)

    def test_bad_service_url_names_the_variable(self):
        code, err = run_service("gateway", {**self.stack.env_for("gateway"), "TRADING_SERVICE_URL": "ftp://x"})
        self.assertEqual(code, 1)
        self.assertIn("init setup failed: TRADING_SERVICE_URL must be an http://host:port URL", err)

    def test_unreachable_database_fails_the_database_step(self):
        env = {**self.stack.env_for("trading"),
               "DATABASE_URL": f"postgres://hydrox:hydrox@127.0.0.1:{free_port()}/hydrox?connect_timeout=1"}
        code, err = run_service("trading", env)
        self.assertEqual(code, 1)
        self.assertIn("init database failed: cannot connect to PostgreSQL", err)

    def test_unreachable_redis_fails_the_redis_step(self):
        code, err = run_service("user", {**self.stack.env_for("user"), "REDIS_URL": f"127.0.0.1:{free_port()}"})
        self.assertEqual(code, 1)
        self.assertIn("init redis failed", err)

    def test_port_in_use_fails_the_listen_step(self):
        taken = self.stack.ports["vault"]
        self.stack.start("vault")
        try:
            code, err = run_service("market", {**self.stack.env_for("market"), "PORT": str(taken)})
            self.assertEqual(code, 1)
            self.assertIn("init listen failed", err)
        finally:
            self.stack.stop("vault")


class ReadinessFollowsRedis(unittest.TestCase):
    """A service's /ready reflects its Redis, and it reconnects by itself when Redis returns."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.redis_port = free_port()
        self.start_redis()
        self.stack = Stack("rd", extra_env={"*": {"REDIS_URL": redis_url(self.redis_port)}})

    def tearDown(self):
        self.stack.close()
        self.stop_redis()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_redis(self):
        read_infra()  # (the password every test Redis has)
        subprocess.run(["redis-server", "-"], input=redis_conf(self.redis_port, f"{self.dir}/r.pid"), check=True)
        wait_until(lambda: subprocess.run(["redis-cli", "-p", str(self.redis_port), "ping"],
                                          capture_output=True).stdout.strip() == b"PONG", 5, what="redis up")

    def stop_redis(self):
        if os.path.exists(f"{self.dir}/r.pid"):
            with open(f"{self.dir}/r.pid") as f:
                pid = int(f.read())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            wait_until(lambda: subprocess.run(["redis-cli", "-p", str(self.redis_port), "ping"],
                                              capture_output=True).returncode != 0, 5, what="redis down")

    def test_ready_turns_503_without_redis_and_recovers(self):
        self.stack.start("market")
        port = self.stack.ports["market"]
        self.assertEqual(request(port, "GET", "/ready").status, 200)
        self.stop_redis()
        r = wait_until(lambda: (lambda x: x if x.status == 503 else None)(request(port, "GET", "/ready")), 3,
                       what="/ready 503")
        self.assertEqual(r.json()["checks"]["postgres"], "ok")
        self.assertNotEqual(r.json()["checks"]["redis"], "ok")
        # The process stays up and answers quickly while Redis is away.
        t0 = time.monotonic()
        self.assertEqual(request(port, "GET", "/health").status, 200)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.start_redis()
        wait_until(lambda: request(port, "GET", "/ready").status == 200, 5, what="/ready back to 200")


class GracefulStop(unittest.TestCase):
    def test_sigterm_exits_zero_promptly_even_with_open_keepalive_connections(self):
        stack = Stack("gs", services=["market"])
        try:
            stack.start("market")
            import http.client
            conns = []
            for _ in range(5):
                c = http.client.HTTPConnection("127.0.0.1", stack.ports["market"], timeout=5)
                c.request("GET", "/health")
                c.getresponse().read()
                conns.append(c)  # left open, idle
            t0 = time.monotonic()
            code = stack.stop("market", signal.SIGTERM, timeout=10)
            self.assertEqual(code, 0)
            self.assertLess(time.monotonic() - t0, 3.0)
            for c in conns:
                c.close()
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
