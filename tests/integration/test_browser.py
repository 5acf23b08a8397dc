"""The legacy web client's calls made by a real browser (issue #21): headless Chromium (Debian's
`chromium`) loads a page from another origin, which connects by wallet address, reads balances,
places a market buy, reads positions and the vault list with `fetch` (so CORS preflights happen
as they do for a user), and subscribes three streams with the browser's own `WebSocket`. Driven
over the DevTools protocol with the suite's WebSocket client (no browser library)."""
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import Stack, free_port
from test_web_client import ADDRESS, SYM, legacy_env
from trading_client import Trading, new_user
from ws_client import WsClient

PAGE_SCRIPT = """
(async () => {
  const api = "%(api)s";
  const out = {};
  let r = await fetch(api + "/auth/connect", {method: "POST", headers: {"Content-Type": "application/json"},
                                              body: JSON.stringify({wallet_address: "%(address)s"})});
  out.connect = [r.status, await r.json()];
  const h = {"Content-Type": "application/json", "X-User-ID": out.connect[1].user_id};
  for (let i = 0; i < 50; i++) {  // the faucet's credit lands shortly after the connect
    r = await fetch(api + "/balances", {headers: h});
    out.balances = [r.status, await r.json()];
    if (out.balances[1][0] && out.balances[1][0].total > 0) break;
    await new Promise(ok => setTimeout(ok, 100));
  }
  r = await fetch(api + "/orders", {method: "POST", headers: h, body: JSON.stringify(
      {symbol: "%(symbol)s", side: "Buy", type: "Market", amount: "0.5", leverage: 10,
       time_in_force: "GTC", reduce_only: false})});
  out.order = [r.status, await r.json()];
  r = await fetch(api + "/positions", {headers: h});
  out.positions = [r.status, await r.json()];
  r = await fetch(api + "/vaults", {headers: h});
  out.vaults = [r.status, (await r.json()).length];
  out.frames = await new Promise((resolve, reject) => {
    const ws = new WebSocket("%(ws)s");
    const frames = {};
    ws.onopen = () => ws.send(JSON.stringify(
        {method: "SUBSCRIBE", params: ["ticker", "trade.%(symbol)s", "kline.1h.%(symbol)s"], id: 1}));
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.channel && !(m.channel in frames)) frames[m.channel] = m;
      if (Object.keys(frames).length === 3) { ws.close(); resolve(frames); }
    };
    ws.onerror = () => reject(new Error("websocket error"));
    setTimeout(() => reject(new Error("websocket: no three snapshots in 10 s")), 10000);
  });
  return JSON.stringify(out);
})()
"""


class DevTools:
    """Chromium, headless, and one page of it over the DevTools protocol."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="hx-chromium-")
        self.proc = subprocess.Popen(
            [shutil.which("chromium"), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = None
        deadline = time.time() + 30
        while time.time() < deadline and url is None:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise AssertionError(f"chromium exited with {self.proc.returncode}")
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)(/devtools/browser/\S+)", line)
            if m:
                url = (int(m.group(1)), m.group(2))
        if url is None:
            raise AssertionError("chromium did not open its DevTools port")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep the pipe drained
        self.ws = WsClient(url[0], path=url[1], timeout=30)
        self.next_id = 0
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self.ws.send_json(msg)
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise AssertionError(f"{method}: {m['error']}")
                return m["result"]

    def open(self, url):
        target = self.send("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        deadline = time.time() + 15
        # The new target shows about:blank (complete, with an opaque origin) before `url` loads.
        while self.evaluate("location.href + ' ' + document.readyState") != url + " complete":
            if time.time() > deadline:
                raise AssertionError("the page did not load")
            time.sleep(0.1)

    def evaluate(self, expression):
        r = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in r:
            raise AssertionError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self):
        try:
            self.ws.close()
        except OSError:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


class PageServer:
    """Serves one empty page on http://localhost:<port>/ (the web client's own origin)."""

    def __init__(self):
        self.port = free_port()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"<!doctype html><title>HydroX client</title><p>client</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class BrowserClient(unittest.TestCase):
    def test_fetch_and_websocket_from_another_origin(self):
        from test_web_client import clear_of_the_hour
        clear_of_the_hour()  # the 1h bar it reads must not close meanwhile
        page = PageServer()
        origin = f"http://localhost:{page.port}"
        env = legacy_env()
        env["gateway"]["CORS_ALLOWED_ORIGINS"] = origin
        stack = Stack("browser", extra_env=env, own_redis=True).start_all()
        browser = None
        try:
            t = Trading(stack.ports["trading"])
            t.mark(SYM, "97000")
            maker = new_user()
            t.deposit(maker, "1000000")
            self.assertEqual(t.place(maker, side="Sell", price="97100", amount="1").status, 201)
            browser = DevTools()
            browser.open(origin + "/")
            gw = stack.gateway_port
            out = json.loads(browser.evaluate(PAGE_SCRIPT % {
                "api": f"http://127.0.0.1:{gw}/api/v1", "ws": f"ws://127.0.0.1:{gw}/ws",
                "address": ADDRESS, "symbol": SYM}))
            self.assertEqual(out["connect"][0], 200, out)
            self.assertEqual(out["connect"][1]["status"], "connected")
            self.assertEqual((out["balances"][0], out["balances"][1][0]["total"]), (200, 10000), out)
            self.assertEqual(out["order"][0], 201, out)
            [p] = out["positions"][1]
            self.assertEqual((p["side"], p["size"], p["entry_price"]), ("Long", 0.5, 97100))
            self.assertGreater(p["liquidation_price"], 0)
            self.assertEqual(out["vaults"][0], 200)
            self.assertGreater(out["vaults"][1], 0)
            frames = out["frames"]
            self.assertEqual(set(frames), {"ticker", f"trade.{SYM}", f"kline.1h.{SYM}"})
            self.assertTrue(all(f.get("snapshot") for f in frames.values()), frames)
            self.assertIn("symbol", frames["ticker"]["data"])
            self.assertEqual(frames[f"trade.{SYM}"]["data"][0]["price"], 97100)
            kline = frames[f"kline.1h.{SYM}"]["data"]
            self.assertEqual((kline["c"], kline["x"]), (97100, False))
        finally:
            if browser:
                browser.close()
            stack.close()
            page.close()


if __name__ == "__main__":
    unittest.main()
