"""
A prototype of the mixed-burst decoder that issue 16's levers describe (measurement only).

One pass over the tokens of a ``U`` line's values; ``^T`` decoded in the same loop;
``^P`` applied to a parsed per-item JSON baseline (no ``json.loads`` of the previous
value) by a small ``replace``/``add``/``remove`` applier, with one cached encoder. Not
used by the client: ``bench/levers.py`` times it, interpreted and compiled with mypyc,
against ``txlightstreamer.protocol.values.decode_update`` on the same lines.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class BadDiff(Exception):
    pass


def apply_tlcp(old: str, diff: str) -> str:
    out: list[str] = []
    n_old = len(old)
    n = len(diff)
    cursor = 0
    i = 0
    section = 0
    while i < n:
        count = 0
        while True:
            if i >= n:
                raise BadDiff("truncated")
            c = ord(diff[i])
            i += 1
            if 65 <= c <= 90:
                count = count * 26 + c - 65
            elif 97 <= c <= 122:
                count = count * 26 + c - 97
                break
            else:
                raise BadDiff("not a letter")
        if section == 0:
            if cursor + count > n_old:
                raise BadDiff("COPY out of range")
            out.append(old[cursor:cursor + count])
            cursor += count
            section = 1
        elif section == 1:
            if i + count > n:
                raise BadDiff("ADD out of range")
            out.append(diff[i:i + count])
            i += count
            section = 2
        else:
            if cursor + count > n_old:
                raise BadDiff("DEL out of range")
            cursor += count
            section = 0
    return "".join(out)


def _apply_ops(doc: Any, ops: list[Any]) -> Any:
    for op in ops:
        kind = op["op"]
        path = op["path"]
        if not path:
            if kind != "replace":
                raise BadDiff("unsupported root op")
            doc = op["value"]
            continue
        parts = path.split("/")[1:]
        target = doc
        for key in parts[:-1]:
            if "~" in key:
                key = key.replace("~1", "/").replace("~0", "~")
            target = target[int(key)] if isinstance(target, list) else target[key]
        leaf = parts[-1]
        if "~" in leaf:
            leaf = leaf.replace("~1", "/").replace("~0", "~")
        if isinstance(target, list):
            index = len(target) if leaf == "-" else int(leaf)
            if kind == "replace":
                target[index] = op["value"]
            elif kind == "add":
                target.insert(index, op["value"])
            elif kind == "remove":
                del target[index]
            else:
                raise BadDiff("unsupported op")
        elif isinstance(target, dict):
            if kind == "replace":
                if leaf not in target:
                    raise BadDiff("replace of a missing member")
                target[leaf] = op["value"]
            elif kind == "add":
                target[leaf] = op["value"]
            elif kind == "remove":
                del target[leaf]
            else:
                raise BadDiff("unsupported op")
        else:
            raise BadDiff("path into a scalar")
    return doc


def decode_line(raw: str, previous: list[str | None], docs: dict[int, Any],
                num_fields: int) -> list[str | None]:
    """New row from the previous one; ``docs`` holds the parsed JSON of patched fields."""
    values: list[str | None] = []
    for token in raw.split("|"):
        f = len(values)
        if f >= num_fields:
            raise BadDiff("too many values")
        if not token:
            values.append(previous[f])
        elif token[0] == "^":
            kind = token[1:2]
            if kind == "T":
                old = previous[f]
                if old is None:
                    raise BadDiff("diff on null")
                payload = token[2:]
                if "%" in payload:
                    payload = unquote(payload, errors="strict")
                values.append(apply_tlcp(old, payload))
                docs.pop(f, None)
            elif kind == "P":
                old = previous[f]
                if old is None:
                    raise BadDiff("patch on null")
                payload = token[2:]
                if "%" in payload:
                    payload = unquote(payload, errors="strict")
                doc = docs.get(f)
                if doc is None:
                    doc = json.loads(old)
                ops = json.loads(payload)
                doc = _apply_ops(doc, ops)
                docs[f] = doc
                values.append(_ENCODE(doc))
            else:
                count = int(token[1:])
                if count <= 0 or f + count > num_fields:
                    raise BadDiff("bad run")
                values.extend(previous[f:f + count])
        elif token == "#":
            values.append(None)
            docs.pop(f, None)
        elif token == "$":
            values.append("")
            docs.pop(f, None)
        else:
            values.append(unquote(token, errors="strict") if "%" in token else token)
            docs.pop(f, None)
    if len(values) != num_fields:
        raise BadDiff("too few values")
    return values
