"""
The hot path (`txlightstreamer.protocol._hotpath`): what it delivers, where it stops and
hands over to the general path, and that its compiled build agrees with its source.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from tests.test_session import FakeTransport, Recorder
from txlightstreamer import MODE_COMMAND, MODE_DISTINCT, MODE_MERGE, MODE_RAW, Table
from txlightstreamer._session import Session, SessionOptions
from txlightstreamer.errors import TransportError
from txlightstreamer.protocol import ValueDecodeError, _hotpath, decode_update
from txlightstreamer.protocol._hotpath import UpdateRouter, decode_plain

SOURCE = _hotpath.__file__.rsplit("/", 1)[0] + "/_hotpath.py"


def _load_source() -> ModuleType:
    """The hot path's source, run interpreted whatever build is installed."""
    # Named inside the package, for its relative imports.
    spec = importlib.util.spec_from_file_location(
        "txlightstreamer.protocol._hotpath_source", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


interpreted = _load_source()


def test_the_expected_build_runs() -> None:
    # CI sets TXLS_REQUIRE_COMPILED, so that a silent fall-back to pure Python (a broken
    # build) cannot pass unnoticed, and runs the suite once more with the source.
    if os.environ.get("TXLIGHTSTREAMER_PURE_PYTHON", "") not in ("", "0"):
        assert not _hotpath.COMPILED
    elif os.environ.get("TXLS_REQUIRE_COMPILED") == "1":
        assert _hotpath.COMPILED, f"the hot path runs interpreted from {_hotpath.__file__}"
    assert interpreted.COMPILED is False


def test_pure_python_switch() -> None:
    out = subprocess.run(
        [sys.executable, "-c",
         "from txlightstreamer.protocol import _hotpath; print(_hotpath.COMPILED)"],
        env={**os.environ, "TXLIGHTSTREAMER_PURE_PYTHON": "1"},
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout.strip() == "False"


# -- decode_plain ------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("a|b|c", ["a", "b", "c"]),
    ("|b|", ["x", "b", None]),
    ("^2|c", ["x", "y", "c"]),
    ("#|$|^1", [None, "", None]),
    ("^3", ["x", "y", None]),
    ("a%7Cb|b|c", ["a|b", "b", "c"]),          # escapes
    ("%C3%A9%25|^2", ["é%", "y", None]),
    ("^Tabc|b|c", ["c", "b", "c"]),            # a TLCP-diff: COPY 0, ADD "c"
    ("^Tbb%7C|^Ta|$", ["x|", "", ""]),         # COPY 1, ADD "|"; COPY 0
])
def test_decode_plain_cases(raw: str, expected: list[str | None]) -> None:
    assert decode_plain(raw, ["x", "y", None], 3) == expected


@pytest.mark.parametrize("raw", [
    "a%7|b|c",        # a bad escape: the full decoder's job (it reports it)
    "a%C3|b|c",       # not UTF-8
    "^Tz|b|c",        # a bad diff
    "^TB|b|c",        # truncated
    "^T!|b|c",
    "x|y|^Ta",        # a diff on null
    "^Pabc|b|c",      # a JSON Patch (the full decoder reports its operations)
    "a|b",            # too few values
    "a|b|c|d",        # too many
    "^4",             # a run past the end
    "^0|a|b|c",       # not a run
    "^x|a|b",
    "^-1|a|b|c",
])
def test_decode_plain_leaves_the_rest_to_the_full_decoder(raw: str) -> None:
    assert decode_plain(raw, ["x", "y", None], 3) is None


def test_decode_plain_refuses_a_baseline_of_the_wrong_width() -> None:
    assert decode_plain("a|b|c", ["x"], 3) is None


TOKENS = st.sampled_from(["", "#", "$", "^1", "^2", "^3", "^9", "^10", "^01", "^", "^P1",
                          "a", "b1", "%41", "#x", "$y", "é", "a^b", " ", "%zz", "%E2%82%AC",
                          "^T", "^Tb", "^Tbc", "^Tabd", "^Tbb%C3%A9", "^Tz", "^TBa", "^T%",
                          "^Tabc%F0%9F%98%80", "😀", "^P[]", "%", "x%4"])


@settings(max_examples=2000)
@given(st.lists(TOKENS, min_size=1, max_size=12),
       st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=1, max_size=12))
def test_compiled_and_interpreted_decoders_agree(tokens: list[str],
                                                 previous: list[str | None]) -> None:
    raw = "|".join(tokens)
    for num_fields in (len(previous), len(tokens)):
        expected = interpreted.decode_plain(raw, previous, num_fields)
        assert decode_plain(raw, previous, num_fields) == expected
        # A tuple baseline (a delivered row) decodes the same.
        assert decode_plain(raw, tuple(previous), num_fields) == expected


# -- the router --------------------------------------------------------------------------

class Recipient:
    def __init__(self) -> None:
        self.row_list: list[tuple[str | None, ...] | None] = []
        self.calls: list[tuple[int, Any]] = []
        self.failures: list[tuple[Any, BaseException]] = []

    def lane(self, module: Any = _hotpath, num_items: int = 3, num_fields: int = 2,
             row_factory: Callable[[list[Any]], Any] | None = None) -> Any:
        self.row_list[:] = [None] * num_items
        lane = module.Lane(num_items, num_fields, self.row_list,
                           [lambda item, row: self.calls.append((item, row))],
                           lambda cb, exc: self.failures.append((cb, exc)), row_factory)
        lane.open = True
        return lane

    @property
    def rows(self) -> dict[int, tuple[str | None, ...]]:
        """The rows delivered, by item position (the lane keeps them by ``item - 1``)."""
        return {k + 1: row for k, row in enumerate(self.row_list) if row is not None}


def router_with(lane: Any, module: Any = _hotpath) -> Any:
    router = module.UpdateRouter()
    router.lanes[7] = lane
    router.open = True
    return router


def seeded(recipient: Recipient, **kwargs: Any) -> tuple[Any, Any]:
    lane = recipient.lane(**kwargs)
    for i in range(lane.num_items):
        lane.baselines[i] = [f"a{i + 1}", f"b{i + 1}"]
    return lane, router_with(lane, kwargs.get("module", _hotpath))


def test_router_delivers_a_run_of_plain_updates() -> None:
    r = Recipient()
    lane, router = seeded(r)
    lines = [b"U,7,1,x|", b"U,7,2,|y", b"U,7,1,#|$", b"U,7,3,^2"]
    assert router.feed(lines, 0) == 4
    assert r.calls == [(1, ("x", "b1")), (2, ("a2", "y")), (1, (None, "")), (3, ("a3", "b3"))]
    assert r.rows == {1: (None, ""), 2: ("a2", "y"), 3: ("a3", "b3")}
    # The delivered row is the item's baseline: one object per item.
    assert lane.baselines[0] == (None, "") and lane.baselines[0] is r.rows[1]
    # The router keeps no count: the lines it consumed are the data notifications.
    assert not hasattr(router, "data_count")


@pytest.mark.parametrize("line", [
    b"PROBE",
    b"U,8,1,x|y",          # a subscription without a lane
    b"U,7,4,x|y",          # item out of range
    b"U,7,0,x|y",
    b"U,07x,1,x|y",
    b"U, 7,1,x|y",
    b"U,7,1",              # no values
    b"U,7,1,x%7|y",        # a bad escape
    b"U,7,1,^Tab|y",       # a bad diff (ADD past the end)
    b"U,7,1,^P[]|y",       # a patch of a value that is not JSON
    b"U,7,1,x|y|z",        # too many values
    b"U,7,1,\xff|y",       # not UTF-8
    b"U,7,1234567890,x|y",  # an index too long to parse here
    b"u,7,1,x|y",
])
def test_router_hands_over_anything_else(line: bytes) -> None:
    r = Recipient()
    _, router = seeded(r)
    first = router.feed([b"U,7,1,x|", line, b"U,7,1,z|"], 0)
    second = router.feed([b"U,7,1,x|", line, b"U,7,1,z|"], 2)
    assert (first, second) == (1, 3)
    assert len(r.calls) == 2
    assert (first - 0) + (second - 2) == 2  # the data notifications consumed


def test_router_decodes_escapes_and_diffs_as_the_general_decoder_does() -> None:
    r = Recipient()
    lane = r.lane(num_fields=3)
    lane.baselines[0] = ['{"a":1,"b":[1,2]}', "foobar", "x"]
    router = router_with(lane)
    raws = [
        '^P[{"op":"replace","path":"/a","value":"%7C"}]|^Tbdzapcd|%C3%A9',
        '^P[{"op":"add","path":"/b/-","value":3},{"op":"remove","path":"/b/0"}]|^Ta|#',
        "^P[]|$|^T",  # ^T on a null field: the general path reports it
    ]
    lines = [f"U,7,1,{raw}".encode() for raw in raws]
    assert router.feed(lines[:2], 0) == 2
    expected: list[str | None] = ['{"a":1,"b":[1,2]}', "foobar", "x"]
    for raw in raws[:2]:
        expected = decode_update(raw, expected, 3).values
    assert r.calls[-1] == (1, tuple(expected))
    assert list(lane.baselines[0]) == expected == ['{"a":"|","b":[2,3]}', "", None]
    # The router kept the text it produced for the patched field: its current value (and,
    # compiled, that cut as the field's shape, far below the fields' keys).
    assert [key for key in lane.docs if key > -(1 << 40)] == [0]
    assert lane.docs[0].text is lane.baselines[0][0]
    assert router.feed(lines, 2) == 2
    assert list(lane.baselines[0]) == expected


@pytest.mark.parametrize("raw", [
    '^P[{"op":"remove","path":"/nope"}]|a|b',      # a patch that does not fit
    '^P[{"op":"replace","path":"/a","value":2},{"op":"test","path":"/a","value":1}]|a|b',
    "^P[|a|b",                                      # not JSON
    '^P[{"op":"add","path":"/a","value":1}]|^Tz|b',  # a bad diff after a good patch
    "|^Tdb😀|b",                                    # astral: the general path counts UTF-16
    "|^T%F0%9F%98%80|b",
])
def test_router_hands_bad_or_astral_diffs_to_the_general_path(raw: str) -> None:
    table = Table(StubClient(), mode=MODE_MERGE, item_ids=["i1", "i2"], schema="a b c")
    table._begin(1)
    table._subok(2, 3)
    got: list[Any] = []
    table.on_update(lambda item, row: got.append(row))
    table._update(1, '{"a":1}|foo|bar')
    router = router_with(table._lane)
    assert router.feed([b'U,7,1,^P[{"op":"replace","path":"/a","value":5}]||'], 0) == 1
    before = list(table._lane.baselines[0] or ())
    assert router.feed([f"U,7,1,{raw}".encode()], 0) == 0
    assert list(table._lane.baselines[0] or ()) == before
    try:
        expected = decode_update(raw, before, 3).values
    except ValueDecodeError:
        with pytest.raises(ValueDecodeError):
            table._update(1, raw)
    else:
        table._update(1, raw)
        assert got[-1] == tuple(expected)
    # A failed patch leaves nothing stale behind: the next one starts from the value.
    patch = '^P[{"op":"add","path":"/z","value":0}]||'
    expected = decode_update(patch, list(table._lane.baselines[0] or ()), 3).values
    assert router.feed([f"U,7,1,{patch}".encode()], 0) == 1
    assert got[-1] == tuple(expected)


def test_kept_json_is_used_only_while_the_field_holds_its_value() -> None:
    r = Recipient()
    lane, router = seeded(r)
    lane.baselines[0] = ['{"a":1}', "x"]
    patch = b'U,7,1,^P[{"op":"add","path":"/b","value":2}]|'
    assert router.feed([patch], 0) == 1
    assert r.rows[1] == ('{"a":1,"b":2}', "x")
    # The general path (or a plain value) replaced the field: the kept document is stale.
    lane.baselines[0] = ['{"c":3}', "x"]
    assert router.feed([patch], 0) == 1
    assert r.rows[1] == ('{"c":3,"b":2}', "x")
    assert router.feed([b"U,7,1,[0]|", patch.replace(b"/b", b"/-")], 0) == 2
    assert r.rows[1] == ("[0,2]", "x")


def test_router_decodes_first_updates_and_leaves_closed_lanes_to_the_table() -> None:
    r = Recipient()
    lane = r.lane()
    router = router_with(lane)
    # No baseline yet: an item's first update (a snapshot) must give every field.
    for bad in (b"U,7,1,x|", b"U,7,1,^2", b"U,7,1,x|^1", b"U,7,1,^Tabc|y", b"U,7,1,x"):
        assert router.feed([bad], 0) == 0
    assert lane.baselines[0] is None and r.calls == []
    assert router.feed([b"U,7,1,x|y"], 0) == 1
    assert lane.baselines[0] == ("x", "y")
    lane.open = False
    assert router.feed([b"U,7,1,z|"], 0) == 0
    lane.open = True
    assert router.feed([b"U,7,1,z|"], 0) == 1
    assert r.calls == [(1, ("x", "y")), (1, ("z", "y"))]


def test_router_stays_out_of_a_stopped_stream() -> None:
    r = Recipient()
    _, router = seeded(r)
    router.open = False
    assert router.feed([b"U,7,1,x|"], 0) == 0
    assert r.calls == []


def test_a_callback_that_stops_the_stream_stops_the_loop() -> None:
    r = Recipient()
    lane, router = seeded(r)

    def destroy(item: int, row: Any) -> None:
        router.open = False

    lane.callbacks.append(destroy)
    assert router.feed([b"U,7,1,x|", b"U,7,2,x|", b"U,7,3,x|"], 0) == 1
    assert len(r.calls) == 1


def test_failing_callbacks_are_reported_and_the_others_still_run() -> None:
    r = Recipient()
    lane, router = seeded(r)
    boom = RuntimeError("boom")

    def failing(item: int, row: Any) -> None:
        raise boom

    lane.callbacks.insert(0, failing)
    assert router.feed([b"U,7,1,x|", b"U,7,2,x|"], 0) == 2
    assert len(r.calls) == 2
    assert r.failures == [(failing, boom), (failing, boom)]


def test_row_factory_is_applied_and_its_failure_reported() -> None:
    r = Recipient()
    _, router = seeded(r, row_factory=lambda values: {"f": values[0]})
    assert router.feed([b"U,7,1,x|"], 0) == 1
    assert r.calls == [(1, {"f": "x"})]
    r2 = Recipient()

    def broken(values: list[Any]) -> Any:
        raise ValueError("no")

    _, router2 = seeded(r2, row_factory=broken)
    assert router2.feed([b"U,7,1,x|"], 0) == 1
    assert r2.calls == [] and r2.failures[0][0] is broken
    assert r2.rows[1] == ("x", "b1")  # the row is kept even if delivering it failed


LINE = st.one_of(
    st.builds(lambda sub, item, toks: b"U,%d,%d,%s" % (sub, item, "|".join(toks).encode()),
              st.sampled_from([7, 8]), st.integers(0, 4), st.lists(TOKENS, max_size=4)),
    st.sampled_from([b"PROBE", b"U,7,1", b"U,7,x,a|b", b"U,7,1,\xff|a", b"EOS,7,1"]),
)


@settings(max_examples=500)
@given(st.lists(LINE, max_size=20))
def test_compiled_and_interpreted_routers_agree(lines: list[bytes]) -> None:
    outcomes = []
    for module in (_hotpath, interpreted):
        r = Recipient()
        _, router = seeded(r, module=module)
        i, stops, consumed = 0, [], 0
        while i < len(lines):
            fed = router.feed(lines, i)
            consumed += fed - i
            stops.append(fed)
            i = fed + 1
        outcomes.append((stops, r.calls, r.rows, consumed))
    assert outcomes[0] == outcomes[1]


# -- tables open and close their lanes ---------------------------------------------------

class StubClient:
    """A `TableHost` whose owner (itself) subscribes nothing."""

    @property
    def table_owner(self) -> Any:
        return self

    def attach(self, link: Any) -> None:
        pass


def subscribed(mode: str, snapshot: bool = False, **kwargs: Any) -> Table:
    schema = "key command v" if mode == MODE_COMMAND else "a b"
    table = Table(StubClient(), mode=mode, item_ids=["i1", "i2"], schema=schema,
                  snapshot=snapshot, **kwargs)
    table._begin(1)
    if mode == MODE_COMMAND:
        table._subok(2, 3, 1, 2)
    else:
        table._subok(2, 2)
    return table


@pytest.mark.parametrize("mode", [MODE_MERGE, MODE_RAW, MODE_DISTINCT])
def test_plain_tables_open_their_lane(mode: str) -> None:
    assert subscribed(mode)._lane.open


def test_merge_snapshot_keeps_the_lane_open_for_items_past_their_first_update() -> None:
    table = subscribed(MODE_MERGE, snapshot=True)
    assert table._lane.open
    lane = table._lane
    router = router_with(lane)
    assert router.feed([b"U,7,1,x|y"], 0) == 1  # item 1's snapshot, on the hot path
    assert table._in_snapshot == [False, True] and table._snapshot_items == 1
    assert lane.first_update is not None
    table._update(2, "p|q")  # item 2's, through the table: the last snapshot ends
    assert table._in_snapshot == [] and table._snapshot_items == 0
    assert lane.first_update is None and lane.open
    assert router.feed([b"U,7,1,z|"], 0) == 1
    assert table.rows[1] == ("z", "y")


def test_distinct_snapshot_closes_the_lane_until_every_eos() -> None:
    table = subscribed(MODE_DISTINCT, snapshot=True)
    assert not table._lane.open
    table._end_of_snapshot(1)
    assert not table._lane.open
    table._end_of_snapshot(2)
    assert table._lane.open


def test_command_tables_never_open_their_lane() -> None:
    assert not subscribed(MODE_COMMAND)._lane.open


def test_item_update_callbacks_close_the_lane_while_registered() -> None:
    table = subscribed(MODE_MERGE)

    def callback(update: Any) -> None:
        pass

    table.on_item_update(callback)
    assert not table._lane.open
    table._item_update_cbs.remove(callback)
    assert table._lane.open


def test_hot_and_general_paths_deliver_the_same_rows() -> None:
    hot = subscribed(MODE_MERGE, row_factory=list)
    slow = subscribed(MODE_MERGE, row_factory=list)
    got: dict[str, list[Any]] = {"hot": [], "slow": []}
    hot.on_update(lambda item, row: got["hot"].append((item, row)))
    slow.on_update(lambda item, row: got["slow"].append((item, row)))
    slow.on_item_update(lambda update: None)  # forces the general path
    router = router_with(hot._lane)
    values = ["a|b", "c|", "^2", "#|$", "|x"]
    for table in (hot, slow):
        table._update(1, values[0])
    for raw in values[1:]:
        assert router.feed([f"U,7,1,{raw}".encode()], 0) == 1
        slow._update(1, raw)
    assert got["hot"] == got["slow"]
    assert dict(hot.rows) == dict(slow.rows)


# -- the session feeds whole reads -------------------------------------------------------

def session_with_lane() -> tuple[Session, FakeTransport, Recorder, Recipient, Any]:
    """A session being created, whose subscription 1 has a lane with item 1 known."""
    transport, recorder = FakeTransport(), Recorder()
    router = UpdateRouter()
    session = Session(transport=transport, clock=Clock(), listener=recorder,  # type: ignore[arg-type]
                      base_url="http://127.0.0.1:1", options=SessionOptions(),
                      router=router)
    session.connect({"adapter_set": "DEMO"})
    r = Recipient()
    lane = r.lane()
    lane.baselines[0] = ["a", "b"]
    router.lanes[1] = lane
    return session, transport, recorder, r, lane


def test_session_reads_a_batch_and_stops_where_the_stream_ends() -> None:
    session, transport, recorder, r, _ = session_with_lane()
    transport.last.feed("CONOK,S1,50000,5000,*", "U,1,1,x|", "U,1,2,first|update",
                        "U,1,3,first|", "U,1,1,y|", "LOOP,0", "U,1,1,after|loop")
    assert r.calls == [(1, ("x", "b")), (2, ("first", "update")), (1, ("y", "b"))]
    # A first update without every value went the general way (which reports it), LOOP
    # ended the stream's reading.
    assert [type(n).__name__ for n in recorder.data] == ["Update"]
    assert session.data_count == 4


def test_destroy_in_a_callback_drops_the_rest_of_the_read() -> None:
    session, transport, recorder, r, lane = session_with_lane()
    lane.callbacks.append(lambda item, row: session.close())
    transport.last.feed("CONOK,S1,50000,5000,*", "U,1,1,x|", "U,1,1,y|", "PROBE")
    assert r.calls == [(1, ("x", "b"))]
    assert recorder.data == []


def test_row_factory_can_change_while_subscribed() -> None:
    table = subscribed(MODE_MERGE)
    got: list[Any] = []
    table.on_update(lambda item, row: got.append(row))
    router = router_with(table._lane)
    table._update(1, "a|b")
    table.row_factory = list
    assert router.feed([b"U,7,1,c|"], 0) == 1
    table.row_factory = None  # back to tuples
    assert router.feed([b"U,7,1,d|"], 0) == 1
    assert got == [("a", "b"), ["c", "b"], ("d", "b")]


def test_the_session_keeps_the_router_out_of_a_replay() -> None:
    # The server's position is behind after a recovery: the replayed line is skipped
    # by the general path, and the router takes over once the positions match again.
    session, transport, recorder, r, _ = session_with_lane()
    transport.last.feed("CONOK,S1,50000,5000,*", "U,1,1,x|")
    assert (session.data_count, r.calls) == (1, [(1, ("x", "b"))])
    transport.last.end(TransportError("reset"))
    session._clock.advance(1)  # type: ignore[attr-defined]
    assert transport.last.params["LS_recovery_from"] == "1"
    transport.last.feed("CONOK,S1,50000,5000,*", "PROG,0", "U,1,1,x|", "U,1,1,y|")
    assert session.data_count == 2
    assert session.server_prog == 2
    assert r.calls == [(1, ("x", "b")), (1, ("y", "b"))]
    assert [type(n).__name__ for n in recorder.data] == []


def test_a_heartbeat_callback_that_closes_the_session_stops_the_read() -> None:
    session, transport, recorder, r, _ = session_with_lane()
    transport.last.feed("CONOK,S1,50000,5000,*")
    recorder.line_received = session.close  # type: ignore[method-assign]
    transport.last.feed("U,1,1,x|", "U,1,1,y|")
    assert r.calls == []
    assert session.data_count == 0


@pytest.mark.parametrize("previous", [("x", "y"), ["x", 1]])
def test_decode_update_takes_any_sequence_as_the_previous_row(previous: Any) -> None:
    # Compiled, the fast decoder checks its argument types: the public decoder adapts.
    assert decode_update("a|", previous, 2).values == ["a", previous[1]]
