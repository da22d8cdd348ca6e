"""
The realistic mixed MERGE burst: what a TLCP 2.4+ server sends for a rich quote feed.

100 items x 12 fields. The time changes on every update; six numeric fields change often
(sent plain, or as empty tokens / ``^n`` runs when unchanged); two long strings (a
headline of ~150 characters and a ~200-character summary) change slightly and are sent as
``^T`` (TLCP-diff, tlcp.md §5.3) when the diff is shorter than the value, as a real
server does; a JSON order book (~230 characters) changes by ``^P`` (RFC 6902 JSON Patch
of ``replace`` operations) when the patch is shorter. Some diffs carry percent-escaped
characters (``%``, ``|``) and non-ASCII text. ``decode_reference`` is an independent slow
decoder used to check the encoder.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

from bench.burst import SAMPLE_EVERY, Burst, _encode_value

MIXED_SCHEMA = (
    "time", "last_price", "bid", "ask", "bid_size", "ask_size", "volume", "pct_change",
    "headline", "summary", "book", "status",
)
MIXED_ITEMS = tuple(f"item{i}" for i in range(1, 101))
TEXT_FIELDS = (8, 9)
JSON_FIELD = 10
VENUES = ("Zürich", "Genève", "London", "Paris | Euronext", "Milano")
MOODS = ("steady", "up 50% on the week", "under pressure", "flat", "volatile")


def encode_int(n: int) -> str:
    """A TLCP-diff number: base 26, upper-case leading digits, one lower-case last digit."""
    digits = []
    while True:
        digits.append(n % 26)
        n //= 26
        if not n:
            break
    digits.reverse()
    return "".join(chr(65 + d) for d in digits[:-1]) + chr(97 + digits[-1])


def _escape_payload(text: str) -> str:
    return text.replace("%", "%25").replace("|", "%7C").replace("\r", "%0D").replace(
        "\n", "%0A")


def _common_prefix(a: str, b: str, limit: int) -> int:
    """Length of the common prefix of ``a`` and ``b``, at most ``limit`` (binary search)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def tlcp_diff(old: str, new: str) -> str:
    """COPY(common prefix) ADD(changed middle) DEL(old middle) COPY(common suffix)."""
    limit = min(len(old), len(new))
    p = _common_prefix(old, new, limit)
    s = _common_prefix(old[::-1], new[::-1], limit - p)
    middle = new[p:len(new) - s]
    out = encode_int(p) + encode_int(len(middle)) + middle
    if s:
        out += encode_int(len(old) - s - p) + encode_int(s)
    return out


def json_patch(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """``replace`` operations turning ``old`` into ``new`` (same shape; leaves differ)."""
    if isinstance(old, dict) and isinstance(new, dict) and old.keys() == new.keys():
        return [op for k in old for op in json_patch(old[k], new[k], f"{path}/{k}")]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [op for i, (a, b) in enumerate(zip(old, new, strict=True))
                for op in json_patch(a, b, f"{path}/{i}")]
    return [] if old == new else [{"op": "replace", "path": path, "value": new}]


def compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


class _Instrument:
    def __init__(self, rng: random.Random, index: int) -> None:
        self.rng = rng
        self.name = f"Company {index} {'AG' if index % 3 else 'plc'}"
        self.price = round(rng.uniform(5, 500), 2)
        self.ref = self.price
        self.volume = rng.randrange(1000, 100000)
        self.venue = VENUES[index % len(VENUES)]
        self.mood = MOODS[index % len(MOODS)]
        self.book = {
            "seq": 1,
            "bids": [[round(self.price - 0.01 * (i + 1), 2), rng.randrange(1, 50) * 100]
                     for i in range(5)],
            "asks": [[round(self.price + 0.01 * (i + 1), 2), rng.randrange(1, 50) * 100]
                     for i in range(5)],
            "venue": "XSWX" if index % 2 else "XLON",
        }
        self.ops: list[dict[str, Any]] = []
        self.row: list[str | None] = [
            "09:00:00.000", "", "", "", "", "", "", "", self.headline(), self.summary(0),
            compact(self.book), "open" if index % 5 else None,
        ]
        self._numbers()

    def headline(self) -> str:
        pct = (self.price - self.ref) / self.ref * 100
        return (f"{self.name} trades at €{self.price:.2f} ({pct:+.2f}%) in {self.venue}; "
                f"the stock is {self.mood} as analysts keep a neutral view with targets "
                f"unchanged")

    def summary(self, millis: int) -> str:
        return (f"open={self.ref:.2f};last={self.price:.2f};volume={self.volume};"
                f"trades={self.volume // 37};vwap={(self.price + self.ref) / 2:.3f};"
                f"spread=0.02;updated={millis};currency=EUR;segment=blue chips;"
                f"lot=1;tick=0.01;auction=none;halted=false;notes=no corporate actions")

    def _numbers(self) -> None:
        row, p = self.row, self.price
        row[1] = f"{p:.2f}"
        row[2] = f"{p - 0.01:.2f}"
        row[3] = f"{p + 0.01:.2f}"
        row[4] = str(self.book["bids"][0][1])
        row[5] = str(self.book["asks"][0][1])
        row[6] = str(self.volume)
        row[7] = f"{(p - self.ref) / self.ref * 100:.2f}"

    def step(self, millis: int) -> list[str | None]:
        rng = self.rng
        row = self.row = list(self.row)
        ms = 9 * 3600_000 + millis
        row[0] = (f"{ms // 3600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}."
                  f"{ms % 1000:03d}")
        moved = rng.random() < 0.5
        if moved:
            self.price = max(0.05, round(self.price + rng.choice((-2, -1, 1, 2)) * 0.01, 2))
            self.volume += rng.randrange(1, 20) * 100
            row[1] = f"{self.price:.2f}"
            row[6] = str(self.volume)
            row[7] = f"{(self.price - self.ref) / self.ref * 100:.2f}"
        if rng.random() < 0.5:
            row[2] = f"{self.price - rng.choice((1, 2)) * 0.01:.2f}"
            row[3] = f"{self.price + rng.choice((1, 2)) * 0.01:.2f}"
        if rng.random() < 0.3:
            row[4] = str(rng.randrange(1, 50) * 100)
        if rng.random() < 0.3:
            row[5] = str(rng.randrange(1, 50) * 100)
        r = rng.random()
        if r < 0.03:
            self.mood = rng.choice(MOODS)
        elif r < 0.04:
            self.venue = rng.choice(VENUES)
        if moved or r < 0.04:
            row[8] = self.headline()
        if rng.random() < 0.5:
            row[9] = self.summary(millis)
        self.ops = []
        if rng.random() < 0.4:
            book = self.book
            book["seq"] += 1
            ops = self.ops
            ops.append({"op": "replace", "path": "/seq", "value": book["seq"]})
            for _ in range(rng.randrange(1, 3)):
                side = rng.choice(("bids", "asks"))
                level = rng.randrange(5)
                book[side][level][1] = size = rng.randrange(1, 50) * 100
                ops.append({"op": "replace", "path": f"/{side}/{level}/1", "value": size})
            if moved:
                book["bids"][0][0] = price = round(self.price - 0.01, 2)
                ops.append({"op": "replace", "path": "/bids/0/0", "value": price})
            row[10] = compact(book)
        if rng.random() < 0.002:
            row[11] = rng.choice(("open", "halted|news", "#auction", None, ""))
        return row


def encode_mixed(new: list[str | None], old: list[str | None] | None,
                 rng: random.Random, counts: dict[str, int],
                 ops: list[dict[str, Any]] | None = None, *, diffs: bool = True) -> str:
    """Tokens of ``new`` against ``old``: empties, ``^n``, ``^T``/``^P`` when shorter (and
    ``diffs``; otherwise every changed value is sent whole)."""
    if old is None:
        return "|".join(_encode_value(v) for v in new)
    tokens: list[str] = []
    i = 0
    n = len(new)
    while i < n:
        if new[i] == old[i]:
            j = i
            while j < n and new[j] == old[j]:
                j += 1
            run = j - i
            if run >= 2 and rng.random() < 0.7:
                tokens.append(f"^{run}")
                counts["caret_runs"] += 1
            else:
                tokens.extend([""] * run)
                counts["empty"] += run
            i = j
            continue
        value, before = new[i], old[i]
        token = _encode_value(value)
        if diffs and value is not None and before is not None:
            if i in TEXT_FIELDS:
                diff = "^T" + _escape_payload(tlcp_diff(before, value))
                if len(diff) < len(token):
                    token = diff
                    counts["tlcp_diff"] += 1
            elif i == JSON_FIELD:
                if ops is None:
                    ops = json_patch(json.loads(before), json.loads(value))
                patch = "^P" + _escape_payload(compact(ops))
                if len(patch) < len(token):
                    token = patch
                    counts["json_patch"] += 1
        tokens.append(token)
        i += 1
    return "|".join(tokens)


def make_mixed_burst(updates: int, seed: int = 16, *, diffs: bool = True) -> Burst:
    """``updates`` mixed updates over 100 items (each item's first update is complete);
    without ``diffs``, the same updates (the same rows, empty tokens and ``^n`` runs) with
    every changed value sent whole: the ``whole`` burst."""
    rng = random.Random(seed)
    nitems = len(MIXED_ITEMS)
    instruments = [_Instrument(rng, i) for i in range(nitems)]
    last: list[list[str | None] | None] = [None] * nitems
    bodies: list[bytes] = []
    samples: dict[int, list[str | None]] = {}
    counts = {"caret_runs": 0, "empty": 0, "tlcp_diff": 0, "json_patch": 0}
    lines_with = {"tlcp_diff": 0, "json_patch": 0}
    for k in range(updates):
        idx = k % nitems if k < nitems else min(int(rng.paretovariate(0.8)) - 1, nitems - 1) \
            if rng.random() < 0.5 else rng.randrange(nitems)
        inst = instruments[idx]
        row = list(inst.row) if last[idx] is None else inst.step(k * 7)
        before = dict(counts)
        text = encode_mixed(row, last[idx], rng, counts, inst.ops, diffs=diffs)
        for key in lines_with:
            lines_with[key] += counts[key] > before[key]
        last[idx] = row
        if k % SAMPLE_EVERY == 0:
            samples[k] = row
        bodies.append(b"%d," % (idx + 1) + text.encode("utf-8"))
    final = {i + 1: row for i, row in enumerate(last) if row is not None}
    size = sum(len(b) for b in bodies) + updates * len(b"U,1,\r\n")
    per = max(1, updates)
    stats = {
        "updates": updates,
        "bytes": size,
        "avg_line_bytes": round(size / per, 1),
        "fields": len(MIXED_SCHEMA),
        "empty_tokens_per_update": round(counts["empty"] / per, 3),
        "caret_runs_per_update": round(counts["caret_runs"] / per, 3),
        "tlcp_diffs_per_update": round(counts["tlcp_diff"] / per, 3),
        "json_patches_per_update": round(counts["json_patch"] / per, 3),
        "lines_with_tlcp_diff": round(lines_with["tlcp_diff"] / per, 3),
        "lines_with_json_patch": round(lines_with["json_patch"] / per, 3),
    }
    return Burst(bodies, final, stats, schema=MIXED_SCHEMA, items=MIXED_ITEMS,
                 samples=samples, json_fields=(JSON_FIELD,))


#: The bursts: ``whole`` is the mixed burst's updates with no ``^T`` nor ``^P``.
KINDS = ("plain", "mixed", "whole")


def shape(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Item names and schema of the ``plain``, ``mixed`` or ``whole`` burst."""
    from bench.burst import ITEMS, SCHEMA

    return (ITEMS, SCHEMA) if kind == "plain" else (MIXED_ITEMS, MIXED_SCHEMA)


CACHE = Path(tempfile.gettempdir()) / "txlightstreamer-bench-cache"


def load_burst(kind: str, updates: int) -> Burst:
    """The ``plain``, ``mixed`` or ``whole`` burst, cached on disk (encoding the mixed one
    takes seconds)."""
    from bench.burst import make_burst

    path = CACHE / f"{kind}-{updates}-v1.pickle"
    try:
        with path.open("rb") as f:
            found: Burst = pickle.load(f)
        return found
    except (OSError, EOFError, pickle.UnpicklingError):
        pass
    burst = (make_burst(updates) if kind == "plain"
             else make_mixed_burst(updates, diffs=kind == "mixed"))
    CACHE.mkdir(exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        pickle.dump(burst, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return burst


# -- independent reference decoder (self-test only) ------------------------------------

def _read_int(diff: str, pos: int) -> tuple[int, int]:
    n = 0
    while True:
        c = diff[pos]
        pos += 1
        if "A" <= c <= "Z":
            n = n * 26 + ord(c) - 65
        elif "a" <= c <= "z":
            return n * 26 + ord(c) - 97, pos
        else:
            raise ValueError(f"bad TLCP-diff character {c!r}")


def apply_tlcp_diff(old: str, diff: str) -> str:
    out: list[str] = []
    cursor = pos = 0
    section = 0
    while pos < len(diff):
        n, pos = _read_int(diff, pos)
        kind = section % 3
        if kind == 0:
            if cursor + n > len(old):
                raise ValueError("COPY out of range")
            out.append(old[cursor:cursor + n])
            cursor += n
        elif kind == 1:
            if pos + n > len(diff):
                raise ValueError("ADD out of range")
            out.append(diff[pos:pos + n])
            pos += n
        else:
            cursor += n
        section += 1
    return "".join(out)


def apply_replace_patch(old: str, patch: str) -> str:
    doc = json.loads(old)
    for op in json.loads(patch):
        assert op["op"] == "replace"
        *parents, leaf = op["path"].split("/")[1:]
        target = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(leaf)] = op["value"]
        else:
            target[leaf] = op["value"]
    return compact(doc)


def decode_reference(bodies: list[bytes]) -> dict[int, list[str | None]]:
    from urllib.parse import unquote

    state: dict[int, list[str | None]] = {}
    for body in bodies:
        item_text, _, values = body.decode().partition(",")
        item = int(item_text)
        old = state.get(item)
        new: list[str | None] = []
        for tok in values.split("|"):
            f = len(new)
            if tok == "":
                assert old is not None
                new.append(old[f])
            elif tok.startswith("^T"):
                assert old is not None and old[f] is not None
                new.append(apply_tlcp_diff(old[f], unquote(tok[2:])))  # type: ignore[arg-type]
            elif tok.startswith("^P"):
                assert old is not None and old[f] is not None
                new.append(apply_replace_patch(old[f], unquote(tok[2:])))  # type: ignore[arg-type]
            elif tok.startswith("^"):
                assert old is not None
                new.extend(old[f:f + int(tok[1:])])
            elif tok == "#":
                new.append(None)
            elif tok == "$":
                new.append("")
            else:
                new.append(unquote(tok))
        assert len(new) == len(MIXED_SCHEMA), (body, new)
        state[item] = new
    return state


if __name__ == "__main__":
    import time

    assert [encode_int(n) for n in (0, 3, 25, 26, 29, 52, 676)] == \
        ["a", "d", "z", "Ba", "Bd", "Ca", "BAa"]
    assert apply_tlcp_diff("foobar", "bdzapcd") == "fzapbar"
    assert apply_tlcp_diff("abcdefghijklmnopqrstuvwxyz1", "aaBab") == "1"
    for a, b in (("foobar", "fzapbar"), ("", "foo"), ("foo", ""), ("aaa", "aaaa"),
                 ("x€y", "x€€y")):
        assert apply_tlcp_diff(a, tlcp_diff(a, b)) == b, (a, b)
    t = time.perf_counter()
    burst = make_mixed_burst(200_000)
    print("encoded in %.2f s" % (time.perf_counter() - t), burst.stats)
    assert decode_reference(burst.bodies) == burst.final
    whole = make_mixed_burst(200_000, diffs=False)
    assert whole.stats["tlcp_diffs_per_update"] == whole.stats["json_patches_per_update"] == 0
    assert decode_reference(whole.bodies) == whole.final == burst.final
    assert whole.samples == burst.samples
    print(burst.lines(1)[150:154])
