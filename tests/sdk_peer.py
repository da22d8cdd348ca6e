"""Drive the official Lightstreamer Python SDK against a server; print the final state.

Usage: ``python sdk_peer.py <server-url> '<json spec>'``

The spec::

    {
      "subscriptions": [
        {"mode": "MERGE", "items": ["i1"], "fields": ["f1", "f2"],
         "snapshot": true, "frequency": "unfiltered"},   # snapshot/frequency optional
        {"mode": "COMMAND", "items": ["p"], "fields": ["key", "command"],
         "snapshot": true, "second_level_fields": ["price"]},   # two-level COMMAND
        ...
      ],
      "messages": [{"text": "hello", "sequence": null}],  # optional
      "expect_updates": 12,       # total onItemUpdate calls to wait for
      "until": {"sub": 0, "item": "i1", "field": "f1", "value": "end"},  # optional
      "timeout": 20,              # seconds, capped at 30
      "transport": "HTTP-STREAMING",
      "events": false,            # also list every update (any mode) in "events"
      "debug": false              # SDK log on stderr
    }

It prints one JSON object on stdout and exits 0 once ``expect_updates``
updates (and every message outcome, and the ``until`` value) were seen; on
timeout or failure it prints the partial state on stderr and exits non-zero.

The SDK runs its own threads, so this always runs in a separate process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

from lightstreamer.client import (
    ClientListener,
    ClientMessageListener,
    ConsoleLoggerProvider,
    ConsoleLogLevel,
    LightstreamerClient,
    Subscription,
    SubscriptionListener,
)


class Recorder:
    """Collects everything the SDK reports (callbacks run on the SDK's thread)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.updates = 0
        self.statuses: list[str] = []
        self.server_errors: list[list[Any]] = []
        self.subs: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        #: Every update, in the Node peer's shape, when the spec asks for "events".
        self.events: list[dict[str, Any]] | None = [] if spec.get("events") else None
        self.until = spec.get("until")
        self.until_seen = self.until is None
        for sub_spec in spec["subscriptions"]:
            mode = sub_spec["mode"]
            state: Any = [] if mode in ("RAW", "DISTINCT") else {}
            self.subs.append(
                {
                    "mode": mode,
                    "state": state,
                    "subscribed": False,
                    "errors": [],
                    "eos": [],
                    "clears": [],
                    "lost": [],
                    "frequency": None,
                    "updates": 0,
                }
            )

    def notify(self) -> None:
        self.changed.notify_all()

    def result(self) -> dict[str, Any]:
        return {
            "subscriptions": self.subs,
            "messages": self.messages,
            "statuses": self.statuses,
            "server_errors": self.server_errors,
            "updates": self.updates,
            **({"events": self.events} if self.events is not None else {}),
        }


class ClientL(ClientListener):  # type: ignore[misc]
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def onStatusChange(self, status: str) -> None:  # noqa: N802
        with self.rec.lock:
            self.rec.statuses.append(status)
            self.rec.notify()

    def onServerError(self, code: int, message: str) -> None:  # noqa: N802
        with self.rec.lock:
            self.rec.server_errors.append([code, message])
            self.rec.notify()


class SubL(SubscriptionListener):  # type: ignore[misc]
    def __init__(self, rec: Recorder, index: int, fields: list[str]) -> None:
        self.rec = rec
        self.index = index
        self.fields = fields
        self.record = rec.subs[index]

    def onSubscription(self) -> None:  # noqa: N802
        with self.rec.lock:
            self.record["subscribed"] = True
            self.rec.notify()

    def onSubscriptionError(self, code: int, message: str) -> None:  # noqa: N802
        with self.rec.lock:
            self.record["errors"].append([code, message])
            self.rec.notify()

    def onEndOfSnapshot(self, item_name: str, item_pos: int) -> None:  # noqa: N802
        with self.rec.lock:
            self.record["eos"].append(item_name)

    def onClearSnapshot(self, item_name: str, item_pos: int) -> None:  # noqa: N802
        with self.rec.lock:
            self.record["clears"].append(item_name)
            mode = self.record["mode"]
            if mode == "COMMAND":
                self.record["state"].get(item_name, {}).clear()

    def onItemLostUpdates(self, item_name: str, item_pos: int, lost: int) -> None:  # noqa: N802
        with self.rec.lock:
            self.record["lost"].append([item_name, lost])

    def onRealMaxFrequency(self, frequency: str | None) -> None:  # noqa: N802
        with self.rec.lock:
            self.record["frequency"] = frequency

    def onItemUpdate(self, update: Any) -> None:  # noqa: N802
        item = update.getItemName()
        values = {name: update.getValue(name) for name in self.fields}
        with self.rec.lock:
            if self.rec.events is not None:
                self.rec.events.append({
                    "sub": self.index, "item": item, "fields": values,
                    "snapshot": bool(update.isSnapshot()),
                    "changed": sorted(update.getChangedFields()),
                })
            mode = self.record["mode"]
            state = self.record["state"]
            if mode == "MERGE":
                state[item] = values
            elif mode == "COMMAND":
                table = state.setdefault(item, {})
                if values.get("command") == "DELETE":
                    table.pop(values.get("key"), None)
                else:
                    table[values.get("key")] = values
            else:
                state.append(
                    {
                        "item": item,
                        "fields": values,
                        "snapshot": bool(update.isSnapshot()),
                        "changed": sorted(update.getChangedFields()),
                    }
                )
            self.record["updates"] += 1
            self.rec.updates += 1
            until = self.rec.until
            if (
                until is not None
                and until.get("sub", 0) == self.index
                and until["item"] == item
                and values.get(until["field"]) == until["value"]
            ):
                self.rec.until_seen = True
            self.rec.notify()


class MsgL(ClientMessageListener):  # type: ignore[misc]
    def __init__(self, rec: Recorder, record: dict[str, Any]) -> None:
        self.rec = rec
        self.record = record

    def _set(self, outcome: str, *extra: Any) -> None:
        with self.rec.lock:
            self.record["outcome"] = [outcome, *extra]
            self.rec.notify()

    def onProcessed(self, msg: str, response: str | None) -> None:  # noqa: N802
        self._set("processed", response)

    def onDeny(self, msg: str, code: int, error: str) -> None:  # noqa: N802
        self._set("deny", code, error)

    def onAbort(self, msg: str, sent_on_network: bool) -> None:  # noqa: N802
        self._set("abort")

    def onDiscarded(self, msg: str) -> None:  # noqa: N802
        self._set("discarded")

    def onError(self, msg: str) -> None:  # noqa: N802
        self._set("error")


def _snapshot_arg(value: Any) -> str | None:
    if value is None:
        return None
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 64
    url, spec = argv[1], json.loads(argv[2])
    timeout = min(float(spec.get("timeout", 20)), 30.0)
    if spec.get("debug"):
        logging.basicConfig(level=logging.DEBUG, format="%(message)s", stream=sys.stderr)
        LightstreamerClient.setLoggerProvider(ConsoleLoggerProvider(ConsoleLogLevel.DEBUG))
    rec = Recorder(spec)
    client = LightstreamerClient(url, spec.get("adapter_set", "DEFAULT"))
    client.connectionOptions.setForcedTransport(spec.get("transport", "HTTP-STREAMING"))
    client.addListener(ClientL(rec))
    for index, sub_spec in enumerate(spec["subscriptions"]):
        sub = Subscription(sub_spec["mode"], sub_spec["items"], sub_spec["fields"])
        snapshot = _snapshot_arg(sub_spec.get("snapshot"))
        if snapshot is not None:
            sub.setRequestedSnapshot(snapshot)
        if sub_spec.get("frequency") is not None:
            sub.setRequestedMaxFrequency(str(sub_spec["frequency"]))
        second = list(sub_spec.get("second_level_fields") or [])
        if second:
            # Two-level COMMAND: each key's own item, in MERGE, merged into its row.
            sub.setCommandSecondLevelFields(second)
        sub.addListener(SubL(rec, index, list(sub_spec["fields"]) + second))
        client.subscribe(sub)
    client.connect()
    for msg_spec in spec.get("messages", []):
        record: dict[str, Any] = {"text": msg_spec["text"], "outcome": None}
        rec.messages.append(record)
        client.sendMessage(
            msg_spec["text"], msg_spec.get("sequence"), None, MsgL(rec, record), True
        )
    expected = int(spec.get("expect_updates", 0))

    def complete() -> bool:
        return (
            rec.updates >= expected
            and rec.until_seen
            and all(m["outcome"] is not None for m in rec.messages)
        )

    deadline = time.monotonic() + timeout
    with rec.lock:
        while not complete():
            if rec.server_errors:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            rec.changed.wait(min(left, 0.5))
        ok = complete()
        result = json.dumps(rec.result())
    if ok:
        sys.stdout.write(result + "\n")
        sys.stdout.flush()
    else:
        sys.stderr.write("sdk_peer: incomplete (timeout or server error)\n" + result + "\n")
        sys.stderr.flush()
    try:
        client.disconnect()
    except Exception:  # pragma: no cover - best effort
        pass
    # The SDK's threads are not all daemons; do not wait for them.
    os._exit(0 if ok else 2)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
