"""A stand-in upstream for gateway tests: records what the gateway forwards.

HTTP requests are answered with a JSON echo of the method, path and headers; an upgrade request
gets 101 and then every byte is echoed back (enough to prove the /ws tunnel carries bytes both
ways without implementing WebSocket framing here).
"""
import json
import socket
import threading


class FakeUpstream:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.seen = []  # (method, path, headers dict lower-cased)
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
                self.seen.append((method, path, headers))
                if headers.get("upgrade", "").lower() == "websocket":
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\n\r\n")
                    if buf:
                        conn.sendall(buf)
                    while True:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        conn.sendall(chunk)
                payload = json.dumps({"method": method, "path": path, "headers": headers,
                                      "body": body.decode("utf-8", "replace")}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Upstream: fake\r\n"
                             b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        except OSError:
            return
        finally:
            conn.close()
