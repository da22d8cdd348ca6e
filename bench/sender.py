"""
A minimal pre-encoded TLCP sender (HTTP/1.1 on 127.0.0.1), run as its own process.

It is just fast enough to never be the bottleneck: the burst is encoded once, framed as
HTTP chunks once per subscription id, and written with ``sendall`` from a thread per
connection. It speaks only what the benchmark clients need (tlcp.md §2.2, §3.1-3.3, §4):

* ``create_session.txt``: streaming (txlightstreamer) -> ``CONOK`` and the stream; polling
  (the official SDK's first request) -> ``CONOK,<sid>,50000,0,*`` + ``LOOP,0``.
* ``bind_session.txt``: streaming -> ``CONOK`` and the stream.
* ``control.txt``: ``REQOK,<reqId>`` per line; ``LS_op=add`` starts the data on the
  session's stream (``SUBOK`` + ``CONF`` + the burst), ``LS_op=destroy`` ends it with ``END``.
* ``/bench/raw``: the same bytes with no HTTP framing, then close (the raw ceiling).
* ``/bench/chunked``: the same chunked stream as a session gets, then the last chunk
  (the HTTP ceiling).

Scenarios: ``burst`` (``--updates`` pre-encoded updates, sent ``--repeat`` times) and
``paced`` (``--rate`` updates/s for ``--duration`` s, with ``time_ns()`` at send time in
the first field, for latency). A stream honours ``LS_content_length``: past it the sender
writes ``LOOP,0`` and the client binds again; the data resume where they stopped.

Usage: ``python -m bench.sender --scenario burst --updates 200000``; prints
``LISTENING <port>`` and serves until stdin closes or ``--lifetime`` seconds pass.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import sys
import threading
import time
from urllib.parse import unquote

from bench.mixed import KINDS, load_burst
from bench.wsframes import WsConnection

CHUNK_TARGET = 32 * 1024
#: How the burst is cut into writes, chosen by the first path segment of the client's URL
#: (``http://host:port/p512`` -> ``/p512/lightstreamer/...``): large blocks, ~512 bytes
#: (HTTP: exact 512-byte slices, lines cross them; WS: whole lines per message), or one
#: line per write. Each piece is its own HTTP chunk or WS message and its own ``sendall``.
PIECES = {"block": CHUNK_TARGET, "p512": 512, "line": 0}
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Cache-Control: no-store\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
LAST_CHUNK = b"0\r\n\r\n"
# Longest time a connection or a wait may last (every loop is bounded).
MAX_WAIT = 600.0


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def short_response(body: bytes, *, close: bool = False) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Cache-Control: no-store\r\nContent-Length: %d\r\n%s\r\n%s"
        % (len(body), b"Connection: close\r\n" if close else b"", body)
    )


def parse_params(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in line.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            out[unquote(name)] = unquote(value)
    return out


def piece_of(path: str) -> str:
    first = path.strip("/").split("/", 1)[0]
    return first if first in PIECES else "block"


class Session:
    def __init__(self, sid: str, piece: str = "block") -> None:
        self.sid = sid
        self.piece = piece
        self.cond = threading.Condition()
        self.sub_id: int | None = None
        self.sub_error: str | None = None
        self.destroyed = False
        self.started = False  # SUBOK/CONF sent
        self.position = 0  # next chunk to send (burst) / update to send (paced)
        self.stream_sock: socket.socket | None = None
        self.write_lock = threading.Lock()


class Sender:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.burst = load_burst(args.burst, args.updates)
        self.num_items = len(self.burst.items)
        self.num_fields = len(self.burst.schema)
        self._framed: dict[tuple[int, str, bool], list[bytes]] = {}
        self.streams_served = 0

    # -- data -------------------------------------------------------------------------

    def framed(self, sub_id: int, piece: str = "block", ws: bool = False) -> list[bytes]:
        """The burst for one sub id as HTTP chunks (or WS text frames) of one piece size."""
        key = (sub_id, piece, ws)
        with self.lock:
            found = self._framed.get(key)
            if found is not None:
                return found
            frame = WsConnection.text_frame if ws else chunk
            target = PIECES[piece]
            lines = self.burst.lines(sub_id)
            payloads: list[bytes] = []
            if piece == "p512" and not ws:
                data = b"".join(lines)
                payloads = [data[i:i + target] for i in range(0, len(data), target)]
            else:
                part: list[bytes] = []
                size = 0
                for line in lines:
                    part.append(line)
                    size += len(line)
                    if size >= target:
                        payloads.append(b"".join(part))
                        part, size = [], 0
                if part:
                    payloads.append(b"".join(part))
            chunks = [frame(p) for p in payloads]
            self._framed[key] = chunks
            return chunks

    def head_lines(self, sub_id: int) -> bytes:
        return b"SUBOK,%d,%d,%d\r\nCONF,%d,unlimited,filtered\r\n" % (
            sub_id, self.num_items, self.num_fields, sub_id)

    # -- HTTP -------------------------------------------------------------------------

    def serve(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        print(f"LISTENING {listener.getsockname()[1]}", flush=True)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(MAX_WAIT)
        buf = b""
        try:
            for _ in range(100_000):  # requests per connection
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for h in header_lines:
                    name, _, value = h.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                method, target, _ = request_line.split(" ", 2)
                path, _, query = target.partition("?")
                if headers.get("upgrade", "").lower() == "websocket":
                    self._websocket(conn, path, headers, buf)
                    return
                if not self._handle(conn, path, parse_params(query), body.decode("utf-8")):
                    return
        except (OSError, ValueError):
            return
        finally:
            conn.close()

    def _handle(self, conn: socket.socket, path: str, query: dict[str, str], body: str) -> bool:
        """Answer one request; False when the connection must close."""
        lines = [parse_params(line) for line in body.split("\r\n") if line]
        name = path.rsplit("/", 1)[-1]
        if path == "/bench/raw":
            self._raw(conn)
            return False
        if path == "/bench/chunked":
            self._chunked(conn)
            return True
        if name == "create_session.txt":
            params = lines[0] if lines else {}
            sid = f"S{next(self.ids)}bench{os.getpid()}"
            session = Session(sid, piece_of(path))
            with self.lock:
                self.sessions[sid] = session
            if params.get("LS_polling") == "true":
                conn.sendall(short_response(b"CONOK,%s,50000,0,*\r\nLOOP,0\r\n" % sid.encode()))
                return True
            return self._stream(conn, session, params)
        if name == "bind_session.txt":
            params = lines[0] if lines else {}
            sid = params.get("LS_session") or query.get("LS_session", "")
            session = self.sessions.get(sid)
            if session is None:
                conn.sendall(short_response(b"CONERR,4,Unknown session\r\n"))
                return True
            return self._stream(conn, session, params)
        if name == "control.txt":
            sid = query.get("LS_session", "")
            session = self.sessions.get(sid)
            out = []
            for params in lines:
                req_id = params.get("LS_reqId", "")
                if session is None:
                    out.append(b"REQERR,%s,20,Unknown session\r\n" % req_id.encode())
                    continue
                out.append(b"REQOK,%s\r\n" % req_id.encode())
                op = params.get("LS_op")
                if op == "add":
                    self._add(session, params)
                elif op == "destroy":
                    self._destroy(session)
            conn.sendall(short_response(b"".join(out)))
            return True
        if name == "heartbeat.txt":
            conn.sendall(short_response(b"REQOK\r\n"))
            return True
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True

    # -- sessions ---------------------------------------------------------------------

    def _add(self, session: Session, params: dict[str, str]) -> None:
        items = params.get("LS_group", "").split()
        fields = params.get("LS_schema", "").split()
        with session.cond:
            if session.sub_id is None:
                session.sub_id = int(params["LS_subId"])
                if len(items) != self.num_items or len(fields) != self.num_fields:
                    session.sub_error = (f"expected {self.num_items} items x "
                                         f"{self.num_fields} fields")
                session.cond.notify_all()

    def _destroy(self, session: Session) -> None:
        with session.cond:
            session.destroyed = True
            session.cond.notify_all()
        with session.write_lock:
            sock, session.stream_sock = session.stream_sock, None
            if sock is not None:
                try:
                    sock.sendall(chunk(b"END,31,Destroy invoked by client\r\n") + LAST_CHUNK)
                except OSError:
                    pass

    def _stream(self, conn: socket.socket, session: Session, params: dict[str, str]) -> bool:
        self.streams_served += 1
        budget = int(params.get("LS_content_length") or 0) or (1 << 62)
        keepalive = 5000
        conn.sendall(STREAM_HEAD + chunk(
            b"CONOK,%s,50000,%d,*\r\n" % (session.sid.encode(), keepalive)))
        with session.write_lock:
            session.stream_sock = conn
        with session.cond:
            session.cond.wait_for(lambda: session.sub_id is not None or session.destroyed,
                                  timeout=MAX_WAIT)
            if session.sub_id is None or session.destroyed:
                return False
            sub_id = session.sub_id
            first = not session.started
            session.started = True
        sent = 0

        def write(data: bytes) -> bool:
            with session.write_lock:
                if session.stream_sock is not conn:
                    return False
                conn.sendall(data)
                return True

        if first:
            if session.sub_error:
                write(chunk(b"REQERR,0,61,%s\r\n" % session.sub_error.encode()))
                return False
            write(chunk(self.head_lines(sub_id)))
        if self.args.scenario == "paced":
            finished = self._paced(session, sub_id, write)
        else:
            finished = True
            chunks = self.framed(sub_id, session.piece)
            total = len(chunks) * self.args.repeat
            while session.position < total:
                data = chunks[session.position % len(chunks)]
                if sent + len(data) > budget and sent:
                    # Content length reached: end this stream, the client binds again.
                    write(chunk(b"LOOP,0\r\n") + LAST_CHUNK)
                    with session.write_lock:
                        session.stream_sock = None
                    return True
                if not write(data):
                    return False
                sent += len(data)
                session.position += 1
        if finished:
            # Everything sent: hold the stream open until the client goes away.
            conn.settimeout(MAX_WAIT)
            try:
                conn.recv(1)
            except OSError:
                pass
        return False

    # -- WebSocket --------------------------------------------------------------------

    def _websocket(self, conn: socket.socket, path: str, headers: dict[str, str],
                   buf: bytes) -> None:
        """TLCP over one WebSocket (tlcp.md §2.3): wsok, create_session, control."""
        ws = WsConnection(conn, buf)
        ws.accept(headers)
        session: Session | None = None
        piece = piece_of(path)
        for _ in range(100_000):  # messages per connection
            message = ws.receive()
            if message is None:
                break
            name, _, rest = message.partition("\r\n")
            lines = [parse_params(line) for line in rest.split("\r\n") if line]
            if name == "wsok":
                ws.send(b"WSOK\r\n")
            elif name in ("create_session", "bind_session"):
                params = lines[0] if lines else {}
                if name == "create_session":
                    sid = f"S{next(self.ids)}bench{os.getpid()}"
                    session = Session(sid, piece)
                    with self.lock:
                        self.sessions[sid] = session
                else:
                    session = self.sessions.get(params.get("LS_session", "")) or session
                    if session is None:
                        ws.send(b"CONERR,4,Unknown session\r\n")
                        continue
                threading.Thread(target=self._ws_stream, args=(ws, session),
                                 daemon=True).start()
            elif name == "control":
                out = []
                for params in lines:
                    sid = params.get("LS_session")
                    target = self.sessions.get(sid) if sid else session
                    req_id = params.get("LS_reqId", "")
                    if target is None:
                        out.append(b"REQERR,%s,20,Unknown session\r\n" % req_id.encode())
                        continue
                    if params.get("LS_ack") != "false":
                        out.append(b"REQOK,%s\r\n" % req_id.encode())
                    op = params.get("LS_op")
                    if op == "add":
                        self._add(target, params)
                    elif op == "destroy":
                        with target.cond:
                            target.destroyed = True
                            target.cond.notify_all()
                        out.append(b"END,31,Destroy invoked by client\r\n")
                if out:
                    ws.send(b"".join(out))
            # heartbeat and anything else: no answer on WS
        ws.close()

    def _ws_stream(self, ws: WsConnection, session: Session) -> None:
        self.streams_served += 1
        ws.send(b"CONOK,%s,50000,5000,*\r\n" % session.sid.encode())
        with session.cond:
            session.cond.wait_for(lambda: session.sub_id is not None or session.destroyed,
                                  timeout=MAX_WAIT)
            if session.sub_id is None or session.destroyed:
                return
            sub_id = session.sub_id
            first = not session.started
            session.started = True
        if first:
            if session.sub_error:
                ws.send(b"REQERR,0,61,%s\r\n" % session.sub_error.encode())
                return
            ws.send(self.head_lines(sub_id))
        frames = self.framed(sub_id, session.piece, ws=True)
        total = len(frames) * self.args.repeat
        while session.position < total and not session.destroyed:
            if not ws.send_raw(frames[session.position % len(frames)]):
                return
            session.position += 1

    def _paced(self, session: Session, sub_id: int, write) -> bool:  # type: ignore[no-untyped-def]
        """Send ``rate`` updates/s for ``duration`` s, stamping field 1 with time_ns()."""
        rate = self.args.rate
        total = int(rate * self.args.duration)
        bodies = self.burst.bodies
        prefix = b"U,%d," % sub_id
        # Value lists with the first field cut off: b"<item>," and b"|<rest>".
        parts = []
        for body in bodies:
            item, _, values = body.partition(b",")
            rest = values[values.index(b"|"):]
            parts.append((prefix + item + b",", rest + b"\r\n"))
        t0 = time.perf_counter()
        deadline = t0 + self.args.duration + 30
        n = session.position
        while n < total and time.perf_counter() < deadline:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            if due > n:
                stamp = b"%d" % time.time_ns()
                out = []
                for k in range(n, due):
                    head, rest = parts[k % len(parts)]
                    out.append(head + stamp + rest)
                if not write(chunk(b"".join(out))):
                    return False
                n = due
                session.position = n
            time.sleep(0.0002)
        return True

    # -- ceilings ---------------------------------------------------------------------

    def _ceiling_bytes(self) -> list[bytes]:
        return [chunk(b"CONOK,Sceiling,50000,5000,*\r\n" + self.head_lines(1))] + self.framed(1)

    def _raw(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        for _ in range(self.args.repeat):
            for data in self._ceiling_bytes():
                # The payload of each chunk, without its framing.
                conn.sendall(data[data.index(b"\r\n") + 2:-2])
        conn.shutdown(socket.SHUT_WR)

    def _chunked(self, conn: socket.socket) -> None:
        conn.sendall(STREAM_HEAD)
        for _ in range(self.args.repeat):
            for data in self._ceiling_bytes():
                conn.sendall(data)
        conn.sendall(LAST_CHUNK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--scenario", choices=("burst", "paced"), default="burst")
    parser.add_argument("--burst", choices=KINDS, default="plain")
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--lifetime", type=float, default=3600.0)
    args = parser.parse_args()
    sender = Sender(args)
    if args.scenario == "burst":
        sender.framed(1)  # encode before announcing the port, not during a measurement
    sender.serve(args.port)
    # Serve until the orchestrator closes our stdin (or the lifetime ends).
    done = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    done.wait(args.lifetime)


if __name__ == "__main__":
    main()
