"""
``^T`` in C (``protocol/_tlcpdiff.c``): the same result as the Python version, byte for byte.

The compiled hot path calls it for every TLCP-diff; where it is built, it must give exactly
what `._hotpath._apply_diff` gives for BMP-only strings (a canonical ``str``: same length,
characters and width) and None where that gives None or where a string leaves the BMP.
"""

from __future__ import annotations

import os
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_hotpath import interpreted
from txlightstreamer.protocol import HOTPATH_COMPILED

try:
    from txlightstreamer.protocol import _tlcpdiff
except ImportError:  # pure-Python build
    _tlcpdiff = None  # type: ignore[assignment]

needs_c = pytest.mark.skipif(_tlcpdiff is None, reason="built without the C TLCP-diff")

# Characters of each width CPython stores: ASCII, Latin-1, BMP (a lone surrogate too), astral.
CHARS = st.sampled_from("abcXYZ09 |%é\xffü€\u4e2d\ud800😀")


@pytest.fixture(scope="module")
def python_hotpath() -> ModuleType:
    return interpreted


def _count(n: int) -> str:
    """A TLCP-diff number: base 26, upper-case digits then a lower-case last one."""
    digits = [chr(97 + n % 26)]
    n //= 26
    while n:
        digits.append(chr(65 + n % 26))
        n //= 26
    return "".join(reversed(digits))


@st.composite
def diffs(draw: st.DrawFn) -> tuple[str, str]:
    """An old value and a diff of it: mostly valid, sometimes out of range or cut short."""
    old = draw(st.text(CHARS, max_size=80))
    parts = []
    cursor = 0
    # A few sections, as a server sends; or many (C keeps 16 runs, then walks again).
    for section in range(draw(st.integers(0, 7) | st.integers(40, 70))):
        if section % 3 == 1:  # ADD
            text = draw(st.text(CHARS, max_size=8))
            parts.append(_count(len(text)) + text)
        else:  # COPY, DEL
            n = draw(st.integers(0, max(0, len(old) - cursor) + draw(st.sampled_from([0, 0, 2]))))
            cursor += n
            parts.append(_count(n))
    diff = "".join(parts)
    if draw(st.integers(0, 9)) == 0 and diff:
        diff = diff[: draw(st.integers(0, len(diff) - 1))]
    return old, diff


def _expected(python_hotpath: ModuleType, old: str, diff: str) -> str | None:
    if not (python_hotpath.bmp_only(old) and python_hotpath.bmp_only(diff)):
        return None
    result: str | None = python_hotpath._apply_diff(old, diff)
    return result


@needs_c
@settings(max_examples=3000 if os.environ.get("TXLS_FUZZ") == "full" else 600, deadline=None)
@given(diffs())
def test_same_as_python(python_hotpath: ModuleType, case: tuple[str, str]) -> None:
    old, diff = case
    expected = _expected(python_hotpath, old, diff)
    result = _tlcpdiff.apply(old, diff)
    assert result == expected  # str equality also compares the storage width
    if result is not None and expected is not None:
        assert result.isascii() == expected.isascii()
        assert len(result.encode("utf-32-le", "surrogatepass")) == 4 * len(expected)


@needs_c
@settings(max_examples=600, deadline=None)
@given(st.text(CHARS, max_size=12), st.text(max_size=12))
def test_any_text_as_diff(python_hotpath: ModuleType, old: str, diff: str) -> None:
    # Junk diffs (any character, any length) are refused exactly where Python refuses them.
    assert _tlcpdiff.apply(old, diff) == _expected(python_hotpath, old, diff)


@needs_c
def test_examples() -> None:
    # tlcp.md §5.3's shape: COPY, ADD, DEL, COPY.
    assert _tlcpdiff.apply("foobar", "ddxyzbc") == "fooxyzar"
    assert _tlcpdiff.apply("€100 x", "bdXYZbc") == "€XYZ00"
    assert _tlcpdiff.apply("€100 x", "abé") == "é"
    assert _tlcpdiff.apply("€100", "b") == "€"
    # ASCII runs of wider strings make an ASCII (or Latin-1) result, stored as such.
    assert _tlcpdiff.apply("éabc", "aabd") == "abc"
    assert _tlcpdiff.apply("€abc", "aabd") == "abc"
    assert _tlcpdiff.apply("€abcé", "aabe") == "abcé"
    assert _tlcpdiff.apply("éabc", "abxbd").isascii()
    assert _tlcpdiff.apply("abc", "") == ""
    assert _tlcpdiff.apply("abc", "e") is None  # COPY beyond the end
    assert _tlcpdiff.apply("abc", "Z") is None  # cut inside a number
    assert _tlcpdiff.apply("abc", "a1") is None  # not a number
    assert _tlcpdiff.apply("a😀", "b") is None  # outside the BMP: UTF-16 units
    # More runs than C keeps from its first walk: the width and the copy walk again.
    many = "".join(f"bb{c}a" for c in "0123456789abcdefghijé")  # COPY 1, ADD 1, DEL 0
    assert _tlcpdiff.apply("x" * 21, many) == "".join(f"x{c}" for c in "0123456789abcdefghijé")
    assert _tlcpdiff.apply("x" * 21, many + "z") is None  # the bad end found by the first walk
    with pytest.raises(TypeError):
        _tlcpdiff.apply(b"abc", "a")  # type: ignore[arg-type]


def test_compiled_hot_path_uses_it() -> None:
    # Built together: a compiled hot path without its C TLCP-diff is a broken build.
    from txlightstreamer.protocol import _hotpath

    assert (_hotpath.C_DIFF is not None) == HOTPATH_COMPILED
