from collections.abc import Callable
from typing import Any

def decode(
    line: bytes,
    start: int,
    before: tuple[str | None, ...],
    docs: dict[int, Any],
    base: int,
    patch: Callable[[str, str, dict[int, Any], int, int, bool], str | None],
    limit: int,
    /,
) -> tuple[str | None, ...] | None: ...
CUT_BYTES: bool  # a kept cut takes a plain ASCII ^P payload from the line's bytes
