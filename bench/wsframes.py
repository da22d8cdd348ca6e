"""The server side of RFC 6455 for the benchmark sender: handshake, text frames, close."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 1 << 20


class WsConnection:
    """One accepted WebSocket on a blocking socket; ``send`` may be called from any thread."""

    def __init__(self, conn: socket.socket, buffered: bytes = b"") -> None:
        self.conn = conn
        self.buf = buffered
        self.lock = threading.Lock()
        self.closed = False

    @staticmethod
    def text_frame(payload: bytes) -> bytes:
        """One unmasked, final text frame (server -> client)."""
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x81, n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x81, 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 127, n)
        return head + payload

    def accept(self, headers: dict[str, str]) -> None:
        key = headers.get("sec-websocket-key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
        chosen = next((p for p in protocols if p.startswith("TLCP-")), "")
        self.send_raw(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n"
            + (b"Sec-WebSocket-Protocol: " + chosen.encode() + b"\r\n" if chosen else b"")
            + b"\r\n")

    def _read(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            data = self.conn.recv(65536)
            if not data:
                return None
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self) -> tuple[int, bool, bytes] | None:
        head = self._read(2)
        if head is None:
            return None
        b0, b1 = head
        n = b1 & 0x7F
        if n == 126:
            ext = self._read(2)
            if ext is None:
                return None
            n = struct.unpack("!H", ext)[0]
        elif n == 127:
            ext = self._read(8)
            if ext is None:
                return None
            n = struct.unpack("!Q", ext)[0]
        if n > MAX_MESSAGE:
            return None
        mask = self._read(4) if b1 & 0x80 else b""
        payload = self._read(n)
        if mask is None or payload is None:
            return None
        if mask:
            key = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
                n, "big")
        return b0 & 0x0F, bool(b0 & 0x80), payload

    def receive(self) -> str | None:
        """The next text message, answering pings; ``None`` once closed."""
        parts: list[bytes] = []
        for _ in range(10_000):
            frame = self._frame()
            if frame is None:
                return None
            opcode, fin, payload = frame
            if opcode == 0x8:
                self.close(payload[:2] or b"\x03\xe8")
                return None
            if opcode == 0x9:
                self.send_raw(struct.pack("!BB", 0x8A, len(payload)) + payload)
                continue
            if opcode == 0xA:
                continue
            parts.append(payload)
            if fin:
                return b"".join(parts).decode("utf-8")
        return None

    def send(self, payload: bytes) -> bool:
        return self.send_raw(self.text_frame(payload))

    def send_raw(self, data: bytes) -> bool:
        with self.lock:
            if self.closed:
                return False
            try:
                self.conn.sendall(data)
            except OSError:
                self.closed = True
                return False
            return True

    def close(self, code: bytes = b"\x03\xe8") -> None:
        self.send_raw(struct.pack("!BB", 0x88, len(code)) + code)
        with self.lock:
            self.closed = True
