"""
Connections at the edges of tlcp.md (found by review, each failing before its fix): a
WebSocket that opens but never says WSOK, a create the server holds (after CONERR 5) or
answers slowly, what polls ask for after LOOP and CONOK, and a password echoed by an error
page in another form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from txlightstreamer.testing import TlcpServer, _resource

from .memory import MemoryNetwork


class _Scripted(Resource):
    """An HTTP TLCP server whose answers a test writes: ``handler(name, params, request)``."""

    isLeaf = True

    def __init__(self, handler: Callable[[str, dict[str, str], Any], Any]) -> None:
        super().__init__()
        self.handler = handler
        self.seen: list[tuple[str, dict[str, str]]] = []

    def render_POST(self, request: Any) -> Any:  # noqa: N802
        name = request.uri.decode().split("?")[0].rsplit("/", 1)[-1].replace(".txt", "")
        params = dict(parse_qsl(request.content.read().decode().split("\r\n")[0],
                                keep_blank_values=True))
        self.seen.append((name, params))
        request.setHeader("content-type", "text/plain; charset=utf-8")
        out = self.handler(name, params, request)
        if isinstance(out, list):
            return "".join(line + "\r\n" for line in out).encode()
        return out


def test_a_websocket_without_wsok_makes_the_create_go_over_http(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy that upgrades but passes no frame: the create was retried on WebSocket every
    # retry_delay, forever (tlcp.md §7.2: repeated at once over HTTP).
    monkeypatch.setattr(_resource.TlcpResource, "_ws_request",
                        lambda self, conn, name, lines: None)
    clock = Clock()
    net = MemoryNetwork(clock)
    server = TlcpServer(clock=clock, keepalive_millis=1000)
    client = net.client(net.serve_tlcp(server), retry_delay=4.0)
    client.create_session()
    net.advance(6.0, step=0.05)
    assert client.status.startswith("CONNECTED:HTTP")
    assert len(server.sessions) >= 1


def test_a_create_the_server_holds_after_conerr_5_may_take_60_s() -> None:
    clock = Clock()
    net = MemoryNetwork(clock)
    creates: list[str | None] = []

    def handler(name: str, params: dict[str, str], request: Any) -> Any:
        if name != "create_session":
            return ["REQOK,1"]
        creates.append(params.get("LS_ttl_millis"))
        if len(creates) == 1:
            return ["CONERR,5,Server overloaded"]
        clock.callLater(10.0, lambda: request.write(b"CONOK,S1,50000,5000,*\r\n"))
        return NOT_DONE_YET  # queued on the server: no headers for 10 s

    client = net.client(net.serve(_Scripted(handler)), forced_transport="HTTP-STREAMING",
                        retry_delay=4.0)
    started = client.create_session()
    net.advance(12.0, step=0.05)
    assert creates == [None, "unlimited"]
    assert started.called and started.result.session_id == "S1"  # it gave up after 4 s


def test_a_slow_server_is_reached_once_the_retry_delay_has_grown() -> None:
    clock = Clock()
    net = MemoryNetwork(clock)

    def handler(name: str, params: dict[str, str], request: Any) -> Any:
        if name != "create_session":
            return ["REQOK,1"]
        clock.callLater(6.0, lambda: request.channel and request.write(
            b"CONOK,S1,50000,5000,*\r\n"))
        return NOT_DONE_YET  # every create takes 6 s

    client = net.client(net.serve(_Scripted(handler)), forced_transport="HTTP-STREAMING",
                        retry_delay=4.0)
    started = client.create_session()
    net.advance(60.0, step=0.1)
    assert started.called and started.result.session_id == "S1"  # the 12th may take 8 s


def test_polls_ask_for_the_last_loop_delay_and_the_granted_idle_time() -> None:
    # tlcp.md §3.2, §7.3: they asked for the configured values every time.
    clock = Clock()
    net = MemoryNetwork(clock)

    def handler(name: str, params: dict[str, str], request: Any) -> Any:
        if name in ("create_session", "bind_session"):
            return ["CONOK,S1,50000,5000,*", "LOOP,500"]
        return ["REQOK,1"]

    scripted = _Scripted(handler)
    client = net.client(net.serve(scripted), forced_transport="HTTP-POLLING",
                        polling_interval=2.0, idle_timeout=19.0)
    client.create_session()
    net.advance(2.0)
    polls = [(p.get("LS_polling_millis"), p.get("LS_idle_millis")) for _, p in scripted.seen]
    assert polls[0] == ("0", "0")  # the create: synchronous polling, as the official one
    assert polls[1] == ("500", "5000")


@pytest.mark.parametrize("echo", ["ls_password={}", "LS_password: {}", "rejected {}"])
def test_an_error_page_echoing_the_password_in_another_form_hides_it(echo: str) -> None:
    clock = Clock()
    net = MemoryNetwork(clock)
    password = "S3cr3t&p@ss w0rd"

    def handler(name: str, params: dict[str, str], request: Any) -> Any:
        request.setResponseCode(400)
        shown = quote(params["LS_password"]) if "rejected" in echo else params["LS_password"]
        return ("Bad request: " + echo.format(shown)).encode()

    client = net.client(net.serve(_Scripted(handler)), forced_transport="HTTP-STREAMING",
                        retry_delay=1.0)
    errors: list[Any] = []
    client.on_error(errors.append)
    client.create_session("DEMO", "alice", password).addErrback(errors.append)
    net.advance(3.0)
    assert errors
    for error in errors:
        text = str(getattr(error, "value", error))
        assert "S3cr3t" not in text and quote(password) not in text


def test_destroy_goes_on_the_websocket(monkeypatch: pytest.MonkeyPatch) -> None:
    # A gateway may pass WebSocket and refuse POSTs: the destroy went over HTTP only.
    seen: list[tuple[str, list[str]]] = []
    original = _resource.TlcpResource._ws_request

    def recording(self: Any, conn: Any, name: str, lines: Any) -> Any:
        seen.append((name, list(lines)))
        return original(self, conn, name, lines)

    monkeypatch.setattr(_resource.TlcpResource, "_ws_request", recording)
    clock = Clock()
    net = MemoryNetwork(clock)
    server = TlcpServer(clock=clock, keepalive_millis=1000)
    client = net.client(net.serve_tlcp(server), forced_transport="WS-STREAMING")
    net.wait(client.create_session())
    net.wait(client.destroy())
    assert any(name == "control" and any("LS_op=destroy" in str(line) for line in lines)
               for name, lines in seen)
