"""Connection abuse at the gateway (issue #9): 1,000 slowloris connections are closed at the header
timeout while a normal client keeps being served; 10,000 idle connections are held without harm.
The normal client's latency before and during each attack is printed (bench/run_all.sh keeps the
figures); the assertions are about behaviour, not speed."""
import json
import os
import resource
import select
import socket
import subprocess
import sys
import time
import unittest

from harness import Stack

HEADER_TIMEOUT_S = 10.0  # libs/http ServerOptions::header_timeout


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


class NormalClient:
    """One keep-alive connection doing GET /api/v1/markets back to back."""

    def __init__(self, port):
        import http.client
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def run(self, n=None, seconds=None):
        latencies, statuses = [], set()
        end = time.monotonic() + (seconds or 0)
        while (n is not None and len(latencies) < n) or (seconds is not None and time.monotonic() < end):
            t0 = time.perf_counter()
            self.conn.request("GET", "/api/v1/markets")
            r = self.conn.getresponse()
            r.read()
            latencies.append(time.perf_counter() - t0)
            statuses.add(r.status)
        return latencies, statuses


def is_closed(sock):
    """The server closed it (EOF or reset), or answered it: either way it is no longer waiting."""
    p = select.poll()
    p.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(p.poll(0))


class ConnectionAbuse(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fd_limit = raise_fd_limit(30000)
        cls.stack = Stack("conns", extra_env={"market": {"INDEX_FEED": "none"}, "gateway": {"RATE_LIMIT_IP_BURST": "10000000"}},
                          services=["market", "gateway"])
        cls.stack.start("market")
        cls.stack.start("gateway")
        cls.port = cls.stack.gateway_port

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def test_slowloris_connections_are_closed_at_the_header_timeout(self):
        client = NormalClient(self.port)
        base, base_status = client.run(300)
        attacker = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "slowloris.py"),
                                     str(self.port), "1000", str(HEADER_TIMEOUT_S + 10)],
                                    stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(attacker.stdout.readline().strip(), "ready")
            during, during_status = client.run(seconds=HEADER_TIMEOUT_S - 1.5)  # the whole attack
            times = json.loads(attacker.stdout.readline())
        finally:
            attacker.kill()
            attacker.wait()
        closed = [t for t in times if t is not None]
        print(f"slowloris: {len(during)} normal requests during the attack; 1000 connections, {len(closed)} closed by the gateway after "
              f"{min(closed):.1f}-{max(closed):.1f} s; normal client p50/p99 "
              f"{percentile(base, 0.5) * 1000:.2f}/{percentile(base, 0.99) * 1000:.2f} ms before, "
              f"{percentile(during, 0.5) * 1000:.2f}/{percentile(during, 0.99) * 1000:.2f} ms during", flush=True)
        self.assertEqual((base_status, during_status), ({200}, {200}))
        self.assertEqual(len(closed), 1000, "some slowloris connections were never closed")
        self.assertGreater(min(closed), HEADER_TIMEOUT_S - 1.0, "closed before the header timeout")

    def test_ten_thousand_idle_connections_are_held_without_harm(self):
        n = min(10000, self.fd_limit - 1500)
        self.assertGreaterEqual(n, 1000, f"file descriptor limit {self.fd_limit} is too low for this test")
        client = NormalClient(self.port)
        base, _ = client.run(300)
        socks = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(n)]
        try:
            during, statuses = client.run(seconds=5.0)
            still_open = sum(1 for s in socks if not is_closed(s))
        finally:
            for s in socks:
                s.close()
        print(f"idle: {n} connections held, {still_open} still open after the normal client's run; normal client "
              f"p50/p99 {percentile(base, 0.5) * 1000:.2f}/{percentile(base, 0.99) * 1000:.2f} ms before, "
              f"{percentile(during, 0.5) * 1000:.2f}/{percentile(during, 0.99) * 1000:.2f} ms during", flush=True)
        self.assertEqual(statuses, {200})
        self.assertEqual(still_open, n)


if __name__ == "__main__":
    unittest.main()
