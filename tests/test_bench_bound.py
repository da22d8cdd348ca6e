"""
``python -m bench.bound`` stubs the diffs of a copy of the sources by text anchors: each must
still be there, once, or the bound measures something else (it once measured the error path
after the C line decoder grew a ``^T`` path its anchor missed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "txlightstreamer" / "protocol"
# bench/ is not installed: its file is read from the checkout (stdlib imports only).
_spec = importlib.util.spec_from_file_location("bench_bound", ROOT / "bench" / "bound.py")
assert _spec is not None and _spec.loader is not None
bound = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bound)


def test_every_stub_finds_its_anchor_once() -> None:
    hotpath = (PROTOCOL / "_hotpath.py").read_text()
    for anchor in bound.STUBS:
        assert hotpath.count(anchor) == 1, anchor
    line_decoder = (PROTOCOL / "_updateline.c").read_text()
    for value in (bound.FREE, bound.COPY):
        for anchor, _ in bound.c_stubs(value):
            assert line_decoder.count(anchor) == 1, anchor
    # Every diff the line decoder applies is one the stubs reach: a new path needs its stub.
    assert line_decoder.count("value = tlcp_diff_text(old, &diff);") == 1
    assert line_decoder.count("value = tlcp_diff(old, payload);") == 1
    assert line_decoder.count("value = apply_patch(docs,") == 2
