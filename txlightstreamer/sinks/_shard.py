"""Stable sharding of item names across several bridges (``--shard K/N``)."""

from __future__ import annotations

import zlib

__all__ = ["parse_shard", "shard_of"]


def shard_of(item: str, shards: int) -> int:
    """
    The shard (1..``shards``) an item belongs to: ``crc32(utf-8 name) % shards + 1``.

    CRC-32 is the same in every process, Python version and language, unlike ``hash()``.
    """
    if shards < 1:
        raise ValueError("the number of shards must be at least 1")
    return zlib.crc32(item.encode("utf-8", "surrogatepass")) % shards + 1


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N; `ValueError` with a clear message."""
    k_text, sep, n_text = text.partition("/")
    if not sep or not k_text.strip().isdigit() or not n_text.strip().isdigit():
        raise ValueError(f"--shard takes K/N, e.g. 1/3, not {text!r}")
    k, n = int(k_text), int(n_text)
    if not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N, not {text!r}")
    return k, n
