"""
The command line's outputs (review, third round): a reader of standard output that lags
never blocks the reactor, a closed standard output is one clear line, a key's lost
updates are told, ``--give-up-after`` also bounds a session lost mid-run, and a second
Ctrl-C while stopping is still a clean stop.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock

import txlightstreamer
from txlightstreamer.cli import Options
from txlightstreamer.service import JsonLinesWriter, LsService
from txlightstreamer.testing import TlcpServer

from .support import wait_until

ROOT = Path(__file__).resolve().parent.parent
F_SETPIPE_SZ = 1031


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LS_PASSWORD"}
    installed = "site-packages" in Path(txlightstreamer.__file__).resolve().parts
    if Path(txlightstreamer.__file__).resolve().is_relative_to(ROOT) and not installed:
        env["PYTHONPATH"] = str(ROOT)
    else:
        env["PYTHONSAFEPATH"] = "1"
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="F_SETPIPE_SZ")
def test_a_reader_that_stops_reading_stdout_does_not_freeze_the_service() -> None:
    """`txlightstreamer ... | slow-consumer`: a full pipe must not block the reactor."""
    port = _free_port()
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)  # the smallest pipe: full in ~1 s of demo
    child = subprocess.Popen(
        [sys.executable, "-m", "txlightstreamer", "--demo", "--quiet",
         "--http-port", f"tcp:{port}"],
        stdout=write_end, stderr=subprocess.PIPE, env=_env(), cwd=str(ROOT))
    os.close(write_end)
    try:
        time.sleep(6)  # the reader never reads: the pipe fills up
        # The reactor still runs: /healthz answers (it timed out: the process sat in write()).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as resp:
            assert resp.status == 200
        # ...and SIGTERM is still a clean stop (it was ignored: the process hung).
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(read_end)
        assert child.stderr is not None
        child.stderr.close()


class _QuietClient:
    def destroy(self) -> Deferred[None]:
        return succeed(None)


def test_give_up_after_also_bounds_a_session_lost_mid_run() -> None:
    # The option's help: no session for that long, at start-up or after a session was
    # lost (it bounded only the first create: a server gone mid-run meant retries for ever).
    options = Options(environ={})
    options.parseOptions(["--url", "http://127.0.0.1:1", "--subscribe", "MERGE item1 f1",
                          "--give-up-after", "30"])
    clock = MemoryReactorClock()
    out = io.BytesIO()
    service = LsService(options, reactor=clock, output=JsonLinesWriter(out))
    client: Any = _QuietClient()
    service.client = client
    done = service.when_done()
    service._on_status(client, "CONNECTED:WS-STREAMING", None)
    service._on_status(client, "DISCONNECTED:TRYING-RECOVERY", "connection refused")
    service._on_status(client, "DISCONNECTED:WILL-RETRY", "connection refused again")
    clock.advance(29)
    assert not done.called
    service._on_status(client, "CONNECTED:HTTP-STREAMING", None)  # back: the count restarts
    clock.advance(60)
    assert not done.called
    service._on_status(client, "DISCONNECTED:WILL-RETRY", "the server is gone")
    clock.advance(30)
    assert done.called and done.result == 1
    assert b"gave up after 30 s without a session: the server is gone" in out.getvalue()
    assert not clock.getDelayedCalls()


_SERVER = """
import sys
from twisted.internet import reactor, task
from txlightstreamer.testing import TlcpServer
srv = TlcpServer(keepalive_millis=1000)
srv.listen(reactor, port=int(sys.argv[1]), interface="127.0.0.1")
n = [0]
def tick():
    n[0] += 1
    srv.data.update("item1", {"f1": str(n[0])})
task.LoopingCall(tick).start(0.05)
reactor.run()
"""


def test_a_second_ctrl_c_while_stopping_is_still_a_clean_stop() -> None:
    """Ctrl-C, then Ctrl-C again while the destroy waits for a server that does not
    answer: exit status 0 and no traceback (as under twistd)."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)], env=_env(),
                              cwd=str(ROOT))
    child = None
    try:
        time.sleep(2)
        child = subprocess.Popen(
            [sys.executable, "-m", "txlightstreamer", "--url", f"http://127.0.0.1:{port}",
             "--subscribe", "MERGE item1 f1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=str(ROOT),
            # As from a terminal: a background job (CI) inherits SIGINT ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        assert child.stdout is not None
        while b'"event": "update"' not in child.stdout.readline():
            pass
        server.send_signal(signal.SIGSTOP)  # the destroy request gets no answer
        child.send_signal(signal.SIGINT)
        time.sleep(0.3)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
        assert child.returncode == 0
        assert b"Traceback" not in err, err.decode()
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()
        if child is not None and child.poll() is None:
            child.kill()
            child.communicate()


@pytest_twisted.ensureDeferred
async def test_second_level_lost_updates_are_reported_in_the_json_lines() -> None:
    """A two-level COMMAND key's OV (updates the server dropped) must show as a ``lost``
    event (with the key): the JSON lines, the Redis stream and the relay never say it."""

    server = TlcpServer()
    await server.listen(reactor, port=0, interface="127.0.0.1")
    server.data.update("AAPL", {"price": "190.1"})
    server.data.command("portfolio", "AAPL", "ADD", {"qty": "5"})
    options = Options(environ={})
    options.parseOptions(["--url", str(server.url), "--subscribe",
                          "COMMAND portfolio key,command,qty snapshot=yes second_level=price"])
    out = io.BytesIO()
    service = LsService(options, reactor=reactor, output=JsonLinesWriter(out))
    service.startService()
    try:
        await wait_until(lambda: b'"price": "190.1"' in out.getvalue())
        lost = []
        service.tables[0].on_second_level_overflow(lambda key, n: lost.append((key, n)))
        server.data.overflow("AAPL", 3)  # the second-level subscription of key AAPL
        await wait_until(lambda: bool(lost))
        assert lost == [("AAPL", 3)]  # the client got it...
        await task.deferLater(reactor, 0.1, lambda: None)
        events = [json.loads(line) for line in out.getvalue().splitlines()]
        reported = [e for e in events if e["event"] in ("lost", "error")]
        assert reported, "3 updates of key AAPL lost, nothing in the JSON lines"
        assert reported[0]["event"] == "lost" and reported[0]["count"] == 3
        assert reported[0].get("key") == "AAPL"
    finally:
        await service.stopService()
        await server.stop()


@pytest.mark.parametrize("entry", ["module", "twistd"])
def test_a_closed_stdout_is_one_clear_line_not_a_traceback(entry: str) -> None:
    """``txlightstreamer --demo >&-`` (cron, a daemon's closed descriptors): exit 1 with
    one line saying the output cannot be written, as for an unwritable --output."""
    twistd = Path(sys.executable).parent / "twistd"
    argv = ([sys.executable, "-m", "txlightstreamer"] if entry == "module"
            else [str(twistd), "-n", "--pidfile=", "lightstreamer"])
    child = subprocess.run(
        [*argv, "--demo", "--max-updates", "2"], stderr=subprocess.PIPE,
        preexec_fn=lambda: os.close(1), env=_env(), cwd=str(ROOT), timeout=30)
    err = child.stderr.decode()
    assert child.returncode == 1, err
    assert "Traceback" not in err, err
    assert "output" in err.lower()


@pytest.mark.parametrize("entry", ["module", "twistd"])
def test_a_reader_that_goes_away_ends_the_run_cleanly(entry: str) -> None:
    # `txlightstreamer --demo | head -1`: the reader's end closes; exit status 0 with one
    # warning, no traceback (the poller saw the pipe close before a write failed).
    twistd = Path(sys.executable).parent / "twistd"
    argv = ([sys.executable, "-m", "txlightstreamer"] if entry == "module"
            else [str(twistd), "-n", "--pidfile=", "lightstreamer"])
    child = subprocess.Popen([*argv, "--demo"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=_env(), cwd=str(ROOT))
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        assert json.loads(first)["event"] == "status"
        child.stdout.close()
        assert child.wait(timeout=30) == 0
        err = child.stderr.read().decode() if child.stderr else ""
        assert "Traceback" not in err and "JSON output closed" in err, err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()
