"""A slowloris attacker, as its own process (so that it does not share an interpreter with the
client that measures): opens N connections to 127.0.0.1:PORT, sends a request line and then one
more header line per connection every second, never the end of the headers. Prints "ready" once
all are open, then one JSON line: seconds from each connection's first byte to the server closing
it (null for those still open after LIMIT seconds)."""
import json
import select
import socket
import sys
import time

port, n, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
socks, opened = [], []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/v1/markets HTTP/1.1\r\nHost: x\r\n")
    socks.append(s)
    opened.append(time.monotonic())
print("ready", flush=True)
poller = select.poll()
by_fd = {}
for i, s in enumerate(socks):
    poller.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
    by_fd[s.fileno()] = i
closed = {}
next_drip = time.monotonic() + 1.0
end = time.monotonic() + limit
while len(closed) < n and time.monotonic() < end:
    for fd, _ in poller.poll(100):
        i = by_fd[fd]
        closed[i] = time.monotonic() - opened[i]
        poller.unregister(fd)
    if time.monotonic() >= next_drip:
        for i, s in enumerate(socks):
            if i not in closed:
                try:
                    s.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    pass
        next_drip += 1.0
print(json.dumps([closed.get(i) for i in range(n)]), flush=True)
