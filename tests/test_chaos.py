"""
Chaos on a Clock (third review round): seeded random scenarios on every transport: tables
added and deleted in every mode, server updates carrying per-item sequence numbers,
messages, and faults between the steps (cut streams and chunks, stalls, refusals, ENDs,
corrupt lines, server restarts, paused reading). After each: no update lost without a
report, duplicated or out of order; the client connected with every live table active;
every Deferred fired; no timer left after destroy(); no error logged.
``CHAOS_SEEDS``/``CHAOS_BASE``/``CHAOS_STEPS`` run more of them.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from txlightstreamer import (
    MODE_COMMAND,
    MODE_DISTINCT,
    MODE_MERGE,
    MODE_RAW,
    Table,
)
from txlightstreamer.testing import TlcpServer

from .memory import MemoryNetwork

ITEMS = ["a", "b", "c"]
CITEMS = ["k1", "k2"]
TRANSPORTS = ["HTTP-STREAMING", "HTTP-POLLING", "WS-STREAMING", "WS-POLLING"]
CORRUPT = ["U,abc,1,x", "CONF,1", "PROG,x", "U,1", "SUBOK,1,1", "XYZ,1"]


class Tracker:
    def __init__(self, sc: Scenario, table: Table, mode: str, items: list[str]) -> None:
        self.sc, self.table, self.mode, self.items = sc, table, mode, items
        self.last: dict[int, int | None] = {}
        self.keylast: dict[tuple[int, str], int] = {}
        self.deleted = False
        table.on_subscribed(self.subscribed)
        table.on_update(self.update)
        table.on_overflow(self.overflow)
        table.on_error(lambda e: sc.note(f"table error {type(e).__name__}: {e}"))
        table.on_clear_snapshot(self.cleared)

    def subscribed(self) -> None:
        self.last = {}
        self.keylast = {}

    def cleared(self, item: int) -> None:
        self.last.pop(item, None)
        for k in [k for k in self.keylast if k[0] == item]:
            del self.keylast[k]

    def overflow(self, item: int, lost: int) -> None:
        self.sc.note(f"OV {self.mode} {item} {lost}")
        self.last[item] = None

    def update(self, item: int, row: Any) -> None:
        if self.mode == MODE_COMMAND:
            key, cmd, seq = row[0], row[1], row[2]
            if cmd == "DELETE" or seq is None:
                self.keylast.pop((item, key), None)
                return
            n = int(seq)
            prev = self.keylast.get((item, key))
            if prev is not None and n <= prev:
                self.sc.problem(
                    f"COMMAND {self.table.sub_id} item {item} key {key}: {n} after {prev}")
            self.keylast[(item, key)] = n
            return
        seq = row[0]
        if seq is None:
            return
        n = int(seq)
        if item not in self.last or self.last[item] is None:
            self.last[item] = n
            return
        prev = self.last[item]
        assert prev is not None
        if n != prev + 1:
            self.sc.problem(f"{self.mode} sub {self.table.sub_id} item {item}: {n} after {prev}"
                            f" (t={self.sc.clock.seconds():.2f})")
        self.last[item] = n


class Scenario:
    def __init__(self, seed: int, transport: str, steps: int = 60) -> None:
        self.rng = random.Random(seed)
        random.seed(seed)  # the client's retry jitter too: a seed is one scenario
        self.seed, self.transport, self.steps = seed, transport, steps
        self.clock = Clock()
        self.server = TlcpServer(clock=self.clock, keepalive_millis=500,
                                 recovery_log_size=100_000)
        self.net = MemoryNetwork(self.clock)
        self.net.serve_tlcp(self.server)
        self.client = self.net.client(forced_transport=transport, retry_delay=0.5,
                                      stalled_timeout=0.5, reconnect_timeout=0.5,
                                      session_recovery_timeout=5.0)
        self.trackers: list[Tracker] = []
        self.seq = dict.fromkeys(ITEMS + CITEMS, 0)
        self.msgs: list[Any] = []
        self.notes: list[str] = []
        self.problems: list[str] = []
        self.errors: list[Any] = []
        self.fatal: list[Any] = []
        self.logs: list[str] = []
        self.continuity: list[str] = []
        self.client.on_error(self.client_error)
        self.client.on_session(self.session)
        self.stalled_until: float | None = None
        self.refusing_until: float | None = None

    def note(self, s: str) -> None:
        self.notes.append(f"[{self.clock.seconds():.2f}] {s}")

    def problem(self, s: str) -> None:
        self.problems.append(s)
        self.note("PROBLEM " + s)

    def session(self, info: Any) -> None:
        self.continuity.append(info.continuity)
        self.note(f"session {info.continuity}")
        if info.continuity in ("new", "replaced"):
            for t in self.trackers:
                t.subscribed()

    def client_error(self, e: Any) -> None:
        self.errors.append(e)
        if "skipped a notification" in str(e):
            for t in self.trackers:
                t.last = {k: None for k in t.last}
        self.note(f"client error {type(e).__name__}: {str(e)[:120]}")

    def observe(self, event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None or event.get("isError") or (
                "nhandled" in formatEvent(event)):
            self.logs.append(f"{event.get('log_namespace')}: {formatEvent(event)} "
                             f"{event.get('log_failure')!r}")

    # -- actions
    def add_table(self) -> None:
        mode = self.rng.choice([MODE_MERGE, MODE_DISTINCT, MODE_RAW, MODE_COMMAND])
        snap = self.rng.random() < 0.5 and mode != MODE_RAW
        if mode == MODE_COMMAND:
            items = self.rng.sample(CITEMS, self.rng.randint(1, 2))
            t = Table(self.client, mode=mode, item_ids=items, schema=["key", "command", "seq"],
                      snapshot=snap)
        else:
            items = self.rng.sample(ITEMS, self.rng.randint(1, 3))
            t = Table(self.client, mode=mode, item_ids=items, schema=["seq"], snapshot=snap)
        self.note(f"add {mode} {items} snap={snap}")
        self.trackers.append(Tracker(self, t, mode, items))

    def delete_table(self) -> None:
        live = [t for t in self.trackers if not t.deleted]
        if not live:
            return
        t = self.rng.choice(live)
        t.deleted = True
        self.note(f"delete {t.mode} {t.items}")
        d = t.table.delete()
        self.msgs.append(("delete", d))
        d.addErrback(lambda f: None)

    def publish(self) -> None:
        for _ in range(self.rng.randint(1, 20)):
            if self.rng.random() < 0.7:
                item = self.rng.choice(ITEMS)
                self.seq[item] += 1
                self.server.data.update(item, {"seq": str(self.seq[item])})
            else:
                item = self.rng.choice(CITEMS)
                self.seq[item] += 1
                key = self.rng.choice(["x", "y", "z"])
                cmd = self.rng.choice(["ADD", "UPDATE", "UPDATE", "DELETE"])
                self.server.data.command(item, key, cmd, {"seq": str(self.seq[item])})

    def message(self) -> None:
        seq = self.rng.choice([None, "S1", "S2"])
        enq = self.rng.random() < 0.5
        try:
            d = self.client.send_message(f"m{len(self.msgs)}", sequence=seq,
                                         enqueue_while_disconnected=enq)
        except Exception as e:  # noqa: BLE001
            self.note(f"send_message raised {e!r}")
            return
        d.addErrback(lambda f: self.note(f"msg failed {f.value!r}"))
        self.msgs.append(("msg", d))

    def fault(self) -> None:
        f, server = self.server.faults, self.server
        kind = self.rng.choice(["close_after", "mid", "trunc", "stall", "fail", "conerr",
                                "refuse", "end", "corrupt", "drop", "reset", "garbage",
                                "restart", "pause"])
        self.note(f"fault {kind}")
        if kind == "close_after":
            f.close_after(self.rng.randint(0, 10))
        elif kind == "mid":
            f.close_mid_line()
        elif kind == "trunc":
            f.truncate_next_chunk()
        elif kind == "stall":
            f.stall()
            self.stalled_until = self.clock.seconds() + self.rng.choice([0.1, 0.3, 1.5, 3])
        elif kind == "fail":
            f.fail_next(self.rng.choice([500, 503]))
        elif kind == "conerr":
            f.conerr_next(self.rng.choice([5, 6, 40]))
        elif kind == "refuse":
            f.refuse_recovery()
            self.refusing_until = self.clock.seconds() + self.rng.uniform(0.5, 3)
        elif kind == "end":
            f.end_streams(self.rng.choice([48, 40, 35]), "chaos")
        elif kind == "corrupt":
            f.send_line_to_all(self.rng.choice(CORRUPT))
        elif kind == "drop":
            server.drop_streams()
        elif kind == "reset":
            self.net.reset()
        elif kind == "restart":
            self.server.faults.reset()
            self.server.stop()
            self.net.stop()
            self.net.advance(self.rng.choice([0, 0.3, 2.0]))
            data = self.server.data
            self.server = TlcpServer(clock=self.clock, keepalive_millis=500,
                                     recovery_log_size=100_000, data=data)
            self.net.serve_tlcp(self.server)
            self.stalled_until = self.refusing_until = None
        elif kind == "pause":
            self.client.pause_reading()
            self.net.advance(self.rng.choice([0, 0.1, 1.0, 3.0]))
            self.client.resume_reading()
        elif kind == "garbage":
            if self.rng.random() < 0.2:
                f.garbage_next(b"garbage\r\n")

    def maintenance(self) -> None:
        now = self.clock.seconds()
        if self.stalled_until is not None and now >= self.stalled_until:
            self.server.faults.unstall()
            self.stalled_until = None
        if self.refusing_until is not None and now >= self.refusing_until:
            self.server.faults.accept_recovery()
            self.refusing_until = None
        if self.client.status.startswith("DISCONNECTED") and self.fatal_pending():
            pass

    def fatal_pending(self) -> bool:
        return False

    def run(self) -> None:
        globalLogPublisher.addObserver(self.observe)
        try:
            self._run()
        finally:
            globalLogPublisher.removeObserver(self.observe)

    def start(self) -> None:
        d = self.client.create_session()
        self.creates.append(d)

        def failed(f: Failure) -> None:
            self.fatal.append(f.value)
            self.note(f"create failed {f.value!r}")
        d.addErrback(failed)

    def _run(self) -> None:
        self.creates: list[Any] = []
        self.start()
        for _ in range(self.rng.randint(1, 3)):
            self.add_table()
        for _ in range(self.steps):
            r = self.rng.random()
            if r < 0.1:
                self.add_table()
            elif r < 0.17:
                self.delete_table()
            elif r < 0.3:
                self.message()
            elif r < 0.55:
                self.fault()
            else:
                self.publish()
            adv = self.rng.choice([0, 0.01, 0.05, 0.2, 0.5, 1.0, 2.0])
            self.net.advance(adv)
            self.maintenance()
            if self.client.status == "DISCONNECTED" and self.creates[-1].called:
                self.note(f"status {self.client.status}: create again")
                self.start()
        # faults stop
        self.server.faults.reset()
        self.stalled_until = self.refusing_until = None
        self.net.advance(15)
        if self.client.status == "DISCONNECTED":
            self.note(f"ended {self.client.status}; create again")
            self.start()
        live = [t for t in self.trackers if not t.deleted]
        try:
            self.net.run_until(lambda: self.client.status.startswith("CONNECTED")
                               and all(t.table.is_active for t in live), limit=30,
                               what="connected with every live table active")
        except AssertionError as e:
            self.problem(f"stuck: {e}; status {self.client.status}; "
                         f"tables {[(t.mode, t.table.state) for t in live]}")
            return
        # final round: each item gets one more update; every live table must see it.
        for item in ITEMS:
            self.seq[item] += 1
            self.server.data.update(item, {"seq": str(self.seq[item])})
        for item in CITEMS:
            self.seq[item] += 1
            self.server.data.command(item, "x", "UPDATE", {"seq": str(self.seq[item])})
        self.net.advance(3)
        for t in live:
            for pos, item in enumerate(t.items, 1):
                if t.mode == MODE_COMMAND:
                    rows = t.table.command_rows(pos)
                    want = self.server.data.keys(item)
                    got = {k: r[2] for k, r in rows.items()}
                    exp = {k: r.get("seq") for k, r in want.items()}
                    if not t.table.snapshot:
                        exp = {k: v for k, v in exp.items() if k in got}
                    if got != exp:
                        self.problem(f"COMMAND {item}: client keys {got} != server {exp}")
                else:
                    row = t.table[item]
                    if row is None or row["seq"] != str(self.seq[item]):
                        self.problem(f"{t.mode} {item}: final {row} != {self.seq[item]}")
        self.net.advance(15)
        for kind, d in self.msgs:
            if not d.called:
                self.problem(f"{kind} deferred never fired")
        d = self.client.destroy()
        self.net.advance(1)
        if not d.called:
            try:
                self.net.run_until(lambda: d.called, limit=60)
            except AssertionError:
                self.note(f"destroy not fired after 60 s; status {self.client.status}; "
                          f"last received {[n for n, _ in list(self.server.received)[-4:]]}")
            self.problem("destroy never fired")
        self.net.flush()
        leftover = [c for c in self.clock.getDelayedCalls()
                    if "txlightstreamer" in repr(c.func) and "testing" not in repr(c.func)]
        if leftover:
            self.problem(f"leftover delayed calls {leftover}")
        client_logs = [x for x in self.logs if "testing" not in x.split(":")[0]]
        if client_logs:
            self.problem(f"logged errors {client_logs[:3]}")


SEEDS = int(os.environ.get("CHAOS_SEEDS", "10"))
BASE = int(os.environ.get("CHAOS_BASE", "0"))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("seed", range(BASE, BASE + SEEDS))
def test_chaos(transport: str, seed: int) -> None:
    sc = Scenario(seed, transport, steps=int(os.environ.get("CHAOS_STEPS", "60")))
    sc.run()
    if sc.problems:
        print("\n".join(sc.notes[-80:]))
        print("LOGS", "\n".join(sc.logs[:5]))
    assert sc.problems == []
