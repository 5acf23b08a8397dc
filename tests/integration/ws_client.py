"""A small RFC 6455 client for the tests (standard library only): handshake, masked text frames,
fragmented messages, ping/pong, close codes."""
import base64
import json
import os
import socket
import struct


def frame(opcode, data, fin=True):
    """One masked client frame."""
    header = bytes([(0x80 if fin else 0) | opcode])
    n = len(data)
    if n < 126:
        header += bytes([0x80 | n])
    elif n < 65536:
        header += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class Closed(Exception):
    def __init__(self, code, reason=""):
        super().__init__(f"closed {code} {reason}")
        self.code = code


class WsClient:
    def __init__(self, port, path="/ws", headers=None, timeout=10.0, rcvbuf=None, early=b""):
        """`early`: bytes sent in the same write as the upgrade request (frames that do not wait
        for the 101)."""
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode() + early)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])
        if self.status != 101:
            self.sock.close()
            raise ConnectionError(f"handshake answered {head[:200]!r}")

    def send_text(self, text):
        data = text.encode() if isinstance(text, str) else text
        self._send_frame(0x1, data)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def _send_frame(self, opcode, data):
        self.sock.sendall(frame(opcode, data))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed(1006, "connection dropped")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """The next text message as a string (answers pings; raises Closed on a close frame)."""
        message = b""
        while True:
            b1, b2 = self._read(2)
            opcode, fin = b1 & 0x0F, b1 & 0x80
            n = b2 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                try:
                    self._send_frame(0x8, payload[:2])  # answer the close handshake
                except OSError:
                    pass
                raise Closed(code, payload[2:].decode(errors="replace"))
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            message += payload
            if fin:
                return message.decode()

    def recv_json(self):
        return json.loads(self.recv())

    def close(self):
        try:
            self._send_frame(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()
