"""Server endpoint strings that bind the loopback interface unless told otherwise."""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.endpoints import serverFromString

__all__ = ["endpoint_string"]

#: The interface TCP/SSL endpoints bind when the string names none.
DEFAULT_INTERFACES = {"tcp": "127.0.0.1", "ssl": "127.0.0.1", "tcp6": "\\:\\:1"}

# The fields of an endpoint string are separated by colons not escaped with a backslash.
_SEPARATOR = re.compile(r"(?<!\\):")


def _fields(description: str) -> list[str]:
    return _SEPARATOR.split(description)


class _NoReactor:
    """Stands in for a reactor while an endpoint string is only being checked."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"no reactor while checking an endpoint ({name})")


def endpoint_string(description: str) -> str:
    """
    Check a Twisted server endpoint string and make it bind 127.0.0.1 (``::1`` for
    ``tcp6``) unless it names an ``interface``. A bare port number means TCP.

    Raises `ValueError` with a one-line message when the string is not usable.

    >>> endpoint_string("8080")
    'tcp:8080:interface=127.0.0.1'
    >>> endpoint_string("tcp:8080:interface=0.0.0.0")
    'tcp:8080:interface=0.0.0.0'
    """
    text = description.strip()
    if not text:
        raise ValueError("empty endpoint: use e.g. tcp:8080")
    if text.isdigit():
        text = f"tcp:{text}"
    fields = _fields(text)
    kind = fields[0].lower() if fields else ""
    if kind in DEFAULT_INTERFACES and not any(f.startswith("interface=") for f in fields[1:]):
        text = f"{text}:interface={DEFAULT_INTERFACES[kind]}"
    try:
        serverFromString(_NoReactor(), text)
    except (ValueError, TypeError, KeyError, IndexError, OSError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"bad endpoint {description!r}: {reason}") from None
    except Exception as e:  # a plugin's parser failing some other way
        raise ValueError(f"bad endpoint {description!r}: {e}") from None
    return text
