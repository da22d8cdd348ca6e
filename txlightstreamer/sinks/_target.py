"""Where a Redis sink or source writes and reads: ``redis://[:password@]HOST:PORT[/DB][?...]``."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["DEFAULT_MAXLEN", "DEFAULT_STREAM", "RedisTarget", "parse_redis_url"]

DEFAULT_STREAM = "txls:events"
#: Entries kept in the stream (``XADD ... MAXLEN ~ N``): bounded Redis memory by default.
DEFAULT_MAXLEN = 1_000_000

_QUERY_KEYS = ("stream", "maxlen")


@dataclasses.dataclass(frozen=True)
class RedisTarget:
    """A Redis server and the stream on it. The password never shows in its repr."""

    host: str
    port: int = 6379
    db: int = 0
    stream: str = DEFAULT_STREAM
    #: ``MAXLEN ~`` trimming; 0 keeps every entry.
    maxlen: int = DEFAULT_MAXLEN
    password: str | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def address(self) -> str:
        """``redis://HOST:PORT/DB`` without the password, for logs and messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"

    def with_password(self, password: str | None) -> RedisTarget:
        """The same target with another password (from a file or the environment)."""
        return dataclasses.replace(self, password=password)


def parse_redis_url(url: str) -> RedisTarget:
    """
    Parse ``redis://[:password@]HOST[:PORT][/DB][?stream=NAME&maxlen=N]``.

    Raises `ValueError` with a message that never contains the password.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"bad Redis URL: {_redact(url)} ({e})") from None
    if parts.scheme != "redis":
        raise ValueError(f"a Redis URL starts with redis:// (got {_redact(url)})")
    if not parts.hostname:
        raise ValueError(f"the Redis URL names no host: {_redact(url)}")
    if parts.username:
        raise ValueError("Redis ACL user names are not supported: use redis://:PASSWORD@HOST")
    db_text = parts.path.lstrip("/")
    if db_text and not db_text.isdigit():
        raise ValueError(f"the Redis database must be a number, not {db_text!r}")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - set(_QUERY_KEYS))
    if unknown:
        raise ValueError(f"unknown Redis URL option {unknown[0]!r} (known: stream, maxlen)")
    stream = query.get("stream", [DEFAULT_STREAM])[-1]
    if not stream:
        raise ValueError("the Redis stream name is empty")
    maxlen_text = query.get("maxlen", [str(DEFAULT_MAXLEN)])[-1]
    if not maxlen_text.isdigit():
        raise ValueError(f"maxlen must be a whole number (0: no trimming), not {maxlen_text!r}")
    password = unquote(parts.password) if parts.password is not None else None
    return RedisTarget(
        host=parts.hostname, port=port or 6379, db=int(db_text or 0), stream=stream,
        maxlen=int(maxlen_text), password=password or None)


def _redact(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    credentials, _, host = rest.partition("@")
    return f"{scheme}://***@{host}"
