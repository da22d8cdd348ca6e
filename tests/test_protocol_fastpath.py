"""
The decoder's fast path (no escapes, no diffs) agrees with a plain reading of tlcp.md §5.1.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from txlightstreamer.protocol import ValueDecodeError, decode_update, percent_decode

LITERALS = st.text(alphabet="ab#$^%7C1 ,", min_size=1, max_size=4).filter(
    lambda t: not t.startswith(("^", "#", "$")) or t in ("#", "$"))


def reference(raw: str, previous: list[str | None], num_fields: int) -> list[str | None]:
    """A token-by-token decoder, written for clarity only."""
    values: list[str | None] = []
    for token in raw.split("|"):
        if token == "":
            values.append(previous[len(values)])
        elif token == "#":
            values.append(None)
        elif token == "$":
            values.append("")
        elif token.startswith("^"):
            count = int(token[1:])
            for _ in range(count):
                values.append(previous[len(values)])
        else:
            values.append(percent_decode(token))
    assert len(values) == num_fields
    return values


@st.composite
def rows(draw: st.DrawFn) -> tuple[str, list[str | None], int]:
    num_fields = draw(st.integers(1, 12))
    previous = draw(st.lists(st.one_of(st.none(), st.text(max_size=3)),
                             min_size=num_fields, max_size=num_fields))
    tokens: list[str] = []
    left = num_fields
    while left:
        kind = draw(st.sampled_from(["same", "run", "null", "empty", "literal"]))
        if kind == "run":
            count = draw(st.integers(1, left))
            tokens.append(f"^{count}")
            left -= count
            continue
        tokens.append({"same": "", "null": "#", "empty": "$"}.get(kind) or draw(LITERALS))
        left -= 1
    return "|".join(tokens), previous, num_fields


@settings(max_examples=3000)
@given(rows())
def test_fast_path_matches_the_reference(case: tuple[str, list[str | None], int]) -> None:
    raw, previous, num_fields = case
    try:
        expected = reference(raw, previous, num_fields)
    except ValueDecodeError:
        return
    values, patches = decode_update(raw, list(previous), num_fields)
    assert values == expected
    assert patches is None


def test_caret_inside_literal_is_content() -> None:
    assert decode_update("a^2|^1", ["x", "y"], 2).values == ["a^2", "y"]
    assert decode_update("^2", ["x", "y"], 2).values == ["x", "y"]
    assert decode_update("|^1|z", ["x", "y", "w"], 3).values == ["x", "y", "z"]
