#!/usr/bin/env python3
"""WebSocket order entry load (issue 22): CONNECTIONS connections to the gateway's /ws, each a
funded user (legacy X-User-ID at the upgrade), each sending `order.place` and waiting for its
answer before the next (closed loop, like wrk's HTTP connections). Prints orders/s and latency
percentiles of the answered requests.
    ws_order_entry.py HOST PORT DURATION_S CONNECTIONS USERS_PREFIX
Frames are masked with a zero key (valid per RFC 6455, and no per-byte work in Python)."""
import asyncio
import base64
import json
import os
import random
import struct
import sys
import time


def frame(text):
    data = text.encode()
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + b"\0\0\0\0" + data


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


async def client(host, port, user, deadline, seed, latencies, statuses):
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nX-User-ID: {user}\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise SystemExit(f"upgrade refused: {head[:200]!r}")
    rng = random.Random(seed)
    n = 0
    while time.monotonic() < deadline:
        n += 1
        buy = rng.random() < 0.5
        params = {"symbol": "BTC_USDM_PERP", "side": "Buy" if buy else "Sell", "type": "Limit",
                  "price": str(96990 + rng.randint(0, 20)), "amount": f"0.00{rng.randint(1, 5)}",
                  "time_in_force": "GTC"}
        sent = time.monotonic()
        writer.write(frame(json.dumps({"id": n, "method": "order.place", "params": params})))
        while True:
            op, payload = await read_frame(reader)
            if op == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 0
                raise SystemExit(f"server closed the connection: {code} {payload[2:].decode(errors='replace')}")
            if op != 1:
                continue
            msg = json.loads(payload)
            if msg.get("id") == n:
                break
        latencies.append(time.monotonic() - sent)
        status = msg.get("status", 0)
        statuses[status] = statuses.get(status, 0) + 1
    writer.close()


async def main():
    host, port, duration, conns, prefix = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    latencies, statuses = [], {}
    start = time.monotonic()
    deadline = start + duration
    await asyncio.gather(*[client(host, port, f"{prefix}{i + 1:012d}", deadline, 7000 + i, latencies, statuses)
                           for i in range(conns)])
    elapsed = time.monotonic() - start
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1000
    ok = sum(v for k, v in statuses.items() if 200 <= int(k) < 300)
    print(f"ws_orders_per_s={len(latencies) / elapsed:.0f} p50_ms={pct(50):.2f} p99_ms={pct(99):.2f} "
          f"requests={len(latencies)} non2xx={len(latencies) - ok} statuses={statuses}")


if __name__ == "__main__":
    asyncio.run(main())
