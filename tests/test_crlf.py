"""
The transports' line cut (``transport/_crlf.c``, `txlightstreamer.transport._lines`): exactly
``bytes.split(b"\\r\\n")``, CRs and LFs anywhere.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from txlightstreamer.protocol import HOTPATH_COMPILED
from txlightstreamer.transport import _lines

EXAMPLES = 3000 if os.environ.get("TXLS_FUZZ") == "full" else 600
needs_c = pytest.mark.skipif(_lines.C_SPLIT is None, reason="built without the C line cut")

PARTS = st.sampled_from([b"\r", b"\n", b"\r\n", b"U,1,1,a|b", b"x" * 40, b"\xff", b""])


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(PARTS, max_size=30))
def test_same_cut_as_bytes_split(parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert _lines.split_lines(data) == data.split(b"\r\n")


@needs_c
def test_examples() -> None:
    split = _lines.C_SPLIT
    assert split is not None
    assert split(b"") == [b""]
    assert split(b"U,1,1,a\r\nU,1,1,b\r\nPRO") == [b"U,1,1,a", b"U,1,1,b", b"PRO"]
    assert split(b"a\r\n") == [b"a", b""]
    assert split(b"\r\n\r\n") == [b"", b"", b""]
    assert split(b"a\nb\r\rc\r\n\nd") == [b"a\nb\r\rc", b"\nd"]  # bare CR and LF stay
    assert split(b"\r\r\n") == [b"\r", b""]
    with pytest.raises(TypeError):
        split("a\r\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        split(bytearray(b"a\r\n"))  # type: ignore[arg-type]

    class Raw(bytes):
        pass

    for data in (Raw(b"a\r\nb"), Raw(b"ab")):  # as bytes.split: a list of exact bytes
        assert split(data) == data.split(b"\r\n")
        assert all(type(line) is bytes for line in split(data))


def test_compiled_hot_path_has_it() -> None:
    # Built together: a compiled hot path without the C line cut is a broken build.
    assert (_lines.C_SPLIT is not None) == HOTPATH_COMPILED
