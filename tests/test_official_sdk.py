"""Cross-check :mod:`txlightstreamer.testing` against the official Lightstreamer SDK.

The SDK (``lightstreamer-client-lib``) uses threads, so it always runs in a
subprocess (``tests/sdk_peer.py``) while this process keeps its reactor
running the server.  :func:`run_sdk_peer` is reusable by other tests.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime

from txlightstreamer.testing import DataModel, MessageError, Session, TlcpServer

from .peer_process import JsonPeerProtocol, PeerError
from .support import wait_until

PEER_SCRIPT = Path(__file__).with_name("sdk_peer.py")

pytest.importorskip("lightstreamer.client")


class SdkPeerError(PeerError):
    """The SDK peer failed or timed out; carries its exit code and stderr."""

    peer = "sdk_peer"


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def run_sdk_peer(
    url: str, spec: Mapping[str, Any], *, reactor: Any = None
) -> Deferred[dict[str, Any]]:
    """Run ``tests/sdk_peer.py`` (the official SDK) against ``url``.

    Fires with the peer's JSON result (see the peer's docstring) or fails
    with :class:`SdkPeerError`.  The subprocess is killed if it outlives its
    own timeout by 10 seconds.
    """
    reactor = reactor or _reactor()
    done: Deferred[dict[str, Any]] = Deferred()
    proto = JsonPeerProtocol(done, SdkPeerError)
    argv = [sys.executable, str(PEER_SCRIPT), url, json.dumps(spec)]
    transport = cast(IReactorProcess, reactor).spawnProcess(
        proto, sys.executable, argv, env=dict(os.environ)
    )

    def kill() -> None:
        try:
            transport.signalProcess("KILL")
        except Exception:
            pass

    timeout = min(float(spec.get("timeout", 20)), 30.0) + 10
    proto.killer = cast(IReactorTime, reactor).callLater(timeout, kill)
    return done


def _subscribed(server: TlcpServer, count: int) -> Callable[[], bool]:
    def check() -> bool:
        return any(
            len(s.subscriptions) >= count and s.is_bound and s.stream is not None
            for s in server.sessions.values()
        )

    return check


def _session(server: TlcpServer) -> Session:
    (session,) = server.sessions.values()
    return session


TRICKY = [
    None,
    "",
    "plain",
    "àèì ünïcödé ☃ 😀",
    "pipe|inside",
    "100%",
    "comma,separated,values",
    "#hash",
    "$dollar",
    "^caret",
    "^3",
    "#",
    "$",
    "^",
    "a#b$c^d",
    "line\r\nbreak",
    "plus+sign",
    "  spaces  ",
    "%7C not an escape",
]

MERGE_FIELDS = ["a", "b", "c"]
CMD_FIELDS = ["key", "command", "qty", "note"]
PAIR = ["a", "b"]


def _spec(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "subscriptions": [
            {"mode": "MERGE", "items": ["m1", "m2"], "fields": MERGE_FIELDS, "snapshot": True},
            {"mode": "DISTINCT", "items": ["d1"], "fields": PAIR, "snapshot": True},
            {"mode": "RAW", "items": ["r1"], "fields": PAIR},
            {"mode": "COMMAND", "items": ["c1"], "fields": CMD_FIELDS, "snapshot": True},
            {"mode": "MERGE", "items": ["end"], "fields": ["flag"], "snapshot": False},
        ],
        "until": {"sub": 4, "item": "end", "field": "flag", "value": "done"},
        "timeout": 20,
    }
    spec.update(extra)
    return spec


def _prepublish(data: DataModel) -> None:
    """State that must arrive as snapshots."""
    data.update("m1", {"a": "snap-a", "b": None})
    data.update("d1", {"a": "h1", "b": "x"})
    data.update("d1", {"a": "h2"})
    data.command("c1", "k1", "ADD", {"qty": "1", "note": "first"})
    data.command("c1", "k2", "ADD", {"qty": "2", "note": None})


def _publish(data: DataModel) -> None:
    """A deterministic sequence exercising every encoding corner."""
    for i, value in enumerate(TRICKY):
        other = TRICKY[(i * 7 + 3) % len(TRICKY)]
        data.update("m1", {"a": value, "c": other})
        data.update("m2", {"b": value})
        data.update("d1", {"a": value, "b": other})
        data.update("r1", {"b": value})
        if i % 3 == 0:
            data.update("m1", {"a": value})  # unchanged values
    data.command("c1", "k3", "ADD", {"qty": "3", "note": "pipe|and%"})
    data.command("c1", "k1", "UPDATE", {"note": "#x"})
    data.command("c1", "k2", "DELETE")
    data.command("c1", "k4", "ADD", {"qty": None, "note": ""})
    data.command("c1", "k4", "UPDATE", {"qty": "44"})
    data.command("c1", "k3", "DELETE")
    data.command("c1", "k5", "UPDATE", {"qty": "5", "note": "ünï"})


def _publish_diffable(data: DataModel) -> None:
    """Values for which ^T and ^P are shorter than the literal."""
    text = "The quick brown fox jumps over the lazy dog. " * 3
    data.update("m1", {"a": text})
    data.update("m1", {"a": text.replace("lazy", "sleepy|%")})
    data.update("m1", {"a": text.replace("quick", "quack") + "tail ☃"})
    data.update("m1", {"a": "short"})
    doc: dict[str, Any] = {"name": "order", "items": [1, 2, 3], "meta": {"x": "y" * 40}}
    data.update("m2", {"c": json.dumps(doc, separators=(",", ":"))})
    doc["items"].append(4)
    doc["meta"]["z"] = "|%"
    data.update("m2", {"c": json.dumps(doc, separators=(",", ":"))})
    doc["name"] = "changed"
    data.update("m2", {"c": json.dumps(doc)})
    data.update("m2", {"c": "not json any more"})
    data.update("m2", {"c": "not json any longer"})
    data.update("d1", {"a": text, "b": "x"})
    data.update("d1", {"a": text + "!", "b": "x"})


def _project(row: Mapping[str, str | None], fields: list[str]) -> dict[str, str | None]:
    return {f: row.get(f) for f in fields}


def _expected(data: DataModel, raw_events: list[dict[str, str | None]]) -> dict[str, Any]:
    return {
        "merge": {
            item: _project(data.state(item), MERGE_FIELDS)
            for item in ("m1", "m2")
            if data.has_state(item)
        },
        "distinct": [_project(row, PAIR) for row in data.history("d1")],
        "raw": raw_events,
        "command": {"c1": {key: _project(row, CMD_FIELDS) for key, row in data.keys("c1").items()}},
    }


def _actual(result: dict[str, Any]) -> dict[str, Any]:
    subs = result["subscriptions"]
    return {
        "merge": subs[0]["state"],
        "distinct": [u["fields"] for u in subs[1]["state"]],
        "raw": [u["fields"] for u in subs[2]["state"]],
        "command": subs[3]["state"],
    }


class _RawRecorder:
    """Records what a RAW subscription to ``r1`` must receive."""

    def __init__(self, data: DataModel) -> None:
        self.events: list[dict[str, str | None]] = []
        data.add_listener("r1", self)

    def item_updated(self, item: str, state: Mapping[str, str | None], changed: Any) -> None:
        self.events.append(_project(state, PAIR))

    def item_command(self, item: str, row: Mapping[str, str | None]) -> None:
        pass

    def item_cleared(self, item: str) -> None:
        pass

    def item_overflow(self, item: str, lost: int) -> None:
        pass


def _handler(session: Session, message: str, sequence: str | None) -> str | None:
    if message.startswith("deny"):
        raise MessageError(-5, "denied, sorry")
    return "echo:" + message


async def _run_scenario(
    server: TlcpServer,
    publish: Callable[[DataModel], None],
    *,
    spec_extra: Mapping[str, Any] | None = None,
    between: Callable[[], Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    data = server.data
    _prepublish(data)
    await server.listen(_reactor())
    try:
        assert server.url is not None
        peer = run_sdk_peer(server.url, _spec(**(spec_extra or {})))
        await wait_until(_subscribed(server, 5))
        raw = _RawRecorder(data)
        publish(data)
        if between is not None:
            await defer.maybeDeferred(between)
        data.update("end", {"flag": "done"})
        result = await peer
        data.remove_listener("r1", raw)
        return result, _expected(data, raw.events)
    finally:
        await server.stop()


def _check_common(result: dict[str, Any], expected: dict[str, Any]) -> None:
    assert result["server_errors"] == []
    for sub in result["subscriptions"]:
        assert sub["subscribed"], sub
        assert sub["errors"] == []
    assert _actual(result) == expected
    assert result["subscriptions"][1]["eos"] == ["d1"]
    assert result["subscriptions"][3]["eos"] == ["c1"]


@pytest_twisted.ensureDeferred
async def test_sdk_decodes_every_mode() -> None:
    server = TlcpServer(message_handler=_handler)
    result, expected = await _run_scenario(
        server,
        _publish,
        spec_extra={"messages": [{"text": "hello, world|%"}, {"text": "deny this"}]},
    )
    _check_common(result, expected)
    assert [m["outcome"] for m in result["messages"]] == [
        ["processed", "echo:hello, world|%"],
        ["deny", -5, "denied, sorry"],
    ]
    distinct = result["subscriptions"][1]["state"]
    assert [u["snapshot"] for u in distinct[:2]] == [True, True]
    assert not any(u["snapshot"] for u in distinct[2:])
    assert result["subscriptions"][0]["frequency"] == "unlimited"


def _json_or_text(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


@pytest_twisted.ensureDeferred
async def test_sdk_decodes_tlcp_diff_and_json_patch() -> None:
    server = TlcpServer(diffs="TP")
    holder: dict[str, list[str]] = {}

    def publish(data: DataModel) -> None:
        _publish(data)
        _publish_diffable(data)
        session = _session(server)
        holder["lines"] = [line for _, line in session.kept_notifications]

    result, expected = await _run_scenario(server, publish)
    lines = holder["lines"]
    assert any("^T" in line for line in lines), "no TLCP-diff was produced"
    assert any("^P" in line for line in lines), "no JSON Patch was produced"
    # The SDK re-serialises a patched JSON value: compare semantically.
    merge = result["subscriptions"][0]["state"]
    for item in merge:
        merge[item] = {k: _json_or_text(v) for k, v in merge[item].items()}
    for item in expected["merge"]:
        expected["merge"][item] = {k: _json_or_text(v) for k, v in expected["merge"][item].items()}
    _check_common(result, expected)


@pytest_twisted.ensureDeferred
async def test_sdk_recovers_after_dropped_stream() -> None:
    server = TlcpServer()

    async def drop() -> None:
        server.drop_streams()
        await wait_until(lambda: _session(server).is_bound)
        _publish_diffable(server.data)

    result, expected = await _run_scenario(server, _publish, between=drop)
    _check_common(result, expected)
    assert "DISCONNECTED:TRYING-RECOVERY" in result["statuses"]


@pytest_twisted.ensureDeferred
async def test_sdk_follows_loop_at_content_length() -> None:
    server = TlcpServer(content_length=600)
    result, expected = await _run_scenario(server, _publish)
    _check_common(result, expected)


@pytest_twisted.ensureDeferred
async def test_sdk_reports_refused_session() -> None:
    server = TlcpServer()
    server.refuse_sessions(7, "Licensed max sessions reached")
    await server.listen(_reactor())
    try:
        assert server.url is not None
        spec = {"subscriptions": [], "expect_updates": 1, "timeout": 5}
        with pytest.raises(SdkPeerError) as info:
            await run_sdk_peer(server.url, spec)
        assert '"server_errors": [[7, "Licensed max sessions reached"]]' in info.value.stderr
    finally:
        await server.stop()
