from collections.abc import Callable
from typing import Any

def decode(
    line: bytes,
    start: int,
    before: tuple[str | None, ...],
    docs: dict[int, Any],
    base: int,
    patch: Callable[[str, str, dict[int, Any], int, int], str | None],
    limit: int,
    /,
) -> tuple[str | None, ...] | None: ...
