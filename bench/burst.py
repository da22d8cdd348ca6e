"""
A deterministic, realistic MERGE burst, pre-encoded as TLCP ``U`` lines.

100 items x 10 fields of a quote feed. Every update changes the time; prices, sizes and
the day's range move now and then, so most lines carry unchanged fields as empty tokens
or ``^n`` runs, like a real Lightstreamer server sends them (tlcp.md §5.1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

SCHEMA = (
    "time", "last_price", "pct_change", "bid", "ask",
    "bid_quantity", "ask_quantity", "min", "max", "status",
)
NUM_ITEMS = 100
NUM_FIELDS = len(SCHEMA)
ITEMS = tuple(f"item{i}" for i in range(1, NUM_ITEMS + 1))
#: Clients record the row of every SAMPLE_EVERY-th update for the correctness check.
SAMPLE_EVERY = 997


@dataclass
class Burst:
    """Value lists of a burst: ``bodies[k]`` is ``b"<item>,<v1>|...|<v10>"`` (no sub id)."""

    bodies: list[bytes]
    #: Final row per 1-based item position (``None`` = null).
    final: dict[int, list[str | None]]
    stats: dict[str, float] = field(default_factory=dict)
    schema: tuple[str, ...] = SCHEMA
    items: tuple[str, ...] = ITEMS
    #: Decoded row of every ``SAMPLE_EVERY``-th update (0-based update index -> row).
    samples: dict[int, list[str | None]] = field(default_factory=dict)
    #: Field positions (0-based) holding JSON: compared by meaning, not text.
    json_fields: tuple[int, ...] = ()

    def lines(self, sub_id: int) -> list[bytes]:
        """The complete ``U`` lines (with CR LF) for one subscription id."""
        prefix = b"U,%d," % sub_id
        return [prefix + body + b"\r\n" for body in self.bodies]


def _encode_value(value: str | None) -> str:
    if value is None:
        return "#"
    if value == "":
        return "$"
    out = value.replace("%", "%25").replace("|", "%7C").replace("\r", "%0D").replace(
        "\n", "%0A")
    if out[0] in "#$^":
        out = "%" + format(ord(out[0]), "02X") + out[1:]
    return out


def encode_tokens(new: list[str | None], old: list[str | None] | None,
                  rng: random.Random) -> str:
    """The second-level encoding of ``new`` against ``old`` (empties and ``^n`` runs)."""
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
            # Real servers use ^n for longer runs; mix both forms.
            if run >= 2 and rng.random() < 0.7:
                tokens.append(f"^{run}")
            else:
                tokens.extend([""] * run)
            i = j
        else:
            tokens.append(_encode_value(new[i]))
            i += 1
    return "|".join(tokens)


class _Quote:
    def __init__(self, rng: random.Random, index: int) -> None:
        self.rng = rng
        self.ref = round(rng.uniform(5, 500), 2)
        price = self.ref
        self.row: list[str | None] = [
            "09:00:00.000", f"{price:.2f}", "0.00", f"{price - 0.01:.2f}", f"{price + 0.01:.2f}",
            str(rng.randrange(1, 100) * 100), str(rng.randrange(1, 100) * 100),
            f"{price:.2f}", f"{price:.2f}", "" if index % 7 else None,
        ]
        self.price = price
        self.lo = self.hi = price

    def step(self, millis: int) -> list[str | None]:
        rng = self.rng
        row = list(self.row)
        ms = 9 * 3600_000 + millis
        hours, minutes, seconds = ms // 3600_000, ms // 60_000 % 60, ms // 1000 % 60
        row[0] = f"{hours:02d}:{minutes:02d}:{seconds:02d}.{ms % 1000:03d}"
        if rng.random() < 0.5:
            self.price = max(0.01, round(self.price + rng.choice((-2, -1, 1, 2)) * 0.01, 2))
            row[1] = f"{self.price:.2f}"
            row[2] = f"{(self.price - self.ref) / self.ref * 100:.2f}"
            if self.price < self.lo:
                self.lo = self.price
                row[7] = f"{self.lo:.2f}"
            if self.price > self.hi:
                self.hi = self.price
                row[8] = f"{self.hi:.2f}"
        if rng.random() < 0.6:
            row[3] = f"{self.price - rng.choice((1, 2)) * 0.01:.2f}"
            row[4] = f"{self.price + rng.choice((1, 2)) * 0.01:.2f}"
        if rng.random() < 0.4:
            row[5] = str(rng.randrange(1, 100) * 100)
        if rng.random() < 0.4:
            row[6] = str(rng.randrange(1, 100) * 100)
        r = rng.random()
        if r < 0.001:
            row[9] = rng.choice(("Halted|news pending", "100% auction", "#closing"))
        elif r < 0.003:
            row[9] = ""
        self.row = row
        return row


def make_burst(updates: int, seed: int = 10) -> Burst:
    """``updates`` updates spread over the items (each item's first update is complete)."""
    rng = random.Random(seed)
    quotes = [_Quote(rng, i) for i in range(NUM_ITEMS)]
    last: list[list[str | None] | None] = [None] * NUM_ITEMS
    bodies: list[bytes] = []
    samples: dict[int, list[str | None]] = {}
    empties = carets = tokens_total = 0
    for k in range(updates):
        # Busy items update more often than quiet ones (Zipf-like), all get updates.
        idx = k % NUM_ITEMS if k < NUM_ITEMS else min(int(rng.paretovariate(0.8)) - 1,
                                                      NUM_ITEMS - 1) if rng.random() < 0.5 \
            else rng.randrange(NUM_ITEMS)
        quote = quotes[idx]
        row = list(quote.row) if last[idx] is None else quote.step(k * 7)
        text = encode_tokens(row, last[idx], rng)
        last[idx] = row
        if k % SAMPLE_EVERY == 0:
            samples[k] = row
        toks = text.split("|")
        tokens_total += len(toks)
        empties += toks.count("")
        carets += sum(1 for t in toks if t[:1] == "^")
        bodies.append(b"%d," % (idx + 1) + text.encode("utf-8"))
    final = {i + 1: row for i, row in enumerate(last) if row is not None}
    size = sum(len(b) for b in bodies) + updates * len(b"U,1,\r\n")
    stats = {
        "updates": updates,
        "bytes": size,
        "avg_line_bytes": round(size / max(1, updates), 1),
        "empty_token_share": round(empties / max(1, tokens_total), 3),
        "caret_runs_per_update": round(carets / max(1, updates), 3),
    }
    return Burst(bodies, final, stats, samples=samples)


def decode_reference(bodies: list[bytes]) -> dict[int, list[str | None]]:
    """Independent slow decoder used by the self-test (not by the benchmark)."""
    from urllib.parse import unquote

    state: dict[int, list[str | None]] = {}
    for body in bodies:
        item_text, _, values = body.decode().partition(",")
        item = int(item_text)
        old = state.get(item)
        new: list[str | None] = []
        for tok in values.split("|"):
            if tok == "":
                assert old is not None
                new.append(old[len(new)])
            elif tok.startswith("^"):
                assert old is not None
                n = int(tok[1:])
                new.extend(old[len(new):len(new) + n])
            elif tok == "#":
                new.append(None)
            elif tok == "$":
                new.append("")
            else:
                new.append(unquote(tok))
        assert len(new) == NUM_FIELDS
        state[item] = new
    return state


if __name__ == "__main__":
    import time

    t = time.perf_counter()
    b = make_burst(200_000)
    print("encoded in %.2f s" % (time.perf_counter() - t), b.stats)
    assert decode_reference(b.bodies) == b.final
    print(b.lines(1)[:3], b.lines(1)[5000:5006])
