"""
`TlcpServer` against the official Node client (lightstreamer-client-node) where it behaves in
ways our own client does not: a LOOP that arrives before a subscription is confirmed on a
WebSocket, after which the official client re-sends the same ``add`` on the new binding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import pytest_twisted

from txlightstreamer.testing import Session, TlcpServer, _control

from .node_oracle import run_node_peer
from .support import wait_until


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.mark.parametrize("transport", ["WS-STREAMING", "HTTP-STREAMING"])
@pytest_twisted.ensureDeferred
async def test_node_client_resends_an_unconfirmed_add_after_a_loop(
    monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    adds: list[Mapping[str, str]] = []
    original = _control._OPERATIONS["add"]

    def add_then_loop(session: Session, params: Mapping[str, str]) -> None:
        adds.append(dict(params))
        if len(adds) == 1 and session.stream is not None:
            # The stream loops before the subscription is confirmed (SUBOK comes after).
            session.stream.close_with("LOOP,0")
        original(session, params)

    def control_honouring_ack(
        sessions: Mapping[str, Session], query: dict[str, str], lines: list[str]
    ) -> bytes:
        # As a real server does (tlcp.md 3.3), no REQOK for an add sent with LS_ack=false:
        # the official client then waits for SUBOK to know the add arrived.
        answer = control(sessions, query, lines).decode("utf-8").split("\r\n")
        unacked = {f"REQOK,{p['LS_reqId']}" for p in map(_control.parse_params, lines)
                   if p.get("LS_ack") == "false"}
        return "\r\n".join(x for x in answer if x not in unacked).encode("utf-8")

    control = _control.control
    monkeypatch.setitem(_control._OPERATIONS, "add", add_then_loop)
    monkeypatch.setattr(_control, "control", control_honouring_ack)
    server = TlcpServer()
    server.data.update("a", {"v": "snap"})
    await server.listen(_reactor())
    assert server.url is not None
    spec = {
        "transport": transport,
        "subscriptions": [{"mode": "MERGE", "items": ["a"], "fields": ["v"], "snapshot": True}],
        "until": {"sub": 0, "item": "a", "field": "v", "value": "done"},
        "timeout": 15,
    }
    try:
        peer = run_node_peer(server.url, spec)
        await wait_until(lambda: peer.called or any(
            s.subscriptions and s.is_bound for s in server.sessions.values()), timeout=20)
        server.data.update("a", {"v": "done"})
        theirs = await peer
    finally:
        await server.stop()
    assert theirs["server_errors"] == []
    assert [e["fields"]["v"] for e in theirs["events"]] == ["snap", "done"]
    assert theirs["subscriptions"][0]["errors"] == []
    if transport == "WS-STREAMING":
        # The official client did re-send it: same LS_subId, a new LS_reqId.
        assert len(adds) == 2, adds
        assert adds[0]["LS_subId"] == adds[1]["LS_subId"]
        assert adds[0]["LS_reqId"] != adds[1]["LS_reqId"]
