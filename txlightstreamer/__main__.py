"""
``python -m txlightstreamer`` (and the ``txlightstreamer`` console script): the
``twistd lightstreamer`` service run in the foreground under `twisted.internet.task.react`.

Exit status: 0 after a clean stop (SIGINT, SIGTERM, ``--max-updates``, ``--duration``),
1 when the session ends for good, 2 for a usage error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.logger import LogLevel, globalLogBeginner
from twisted.python import usage

from txlightstreamer.cli import Options
from txlightstreamer.cli.options import log_observer
from txlightstreamer.service import LsService, handle_stop_signals, makeService, stop_reactor

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _program_name() -> str:
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not argv0 or argv0 in ("__main__.py", "-c", "-m"):
        return "python -m txlightstreamer"
    return argv0


def _exit_code(code: object) -> int:
    """The integer status of a `SystemExit` code."""
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_FAILURE


async def _run(reactor: Any, options: Options) -> None:
    """Start the service once the reactor runs; stop with its exit code."""
    top = makeService(options, reactor=reactor, stop_reactor=False)
    service = top.getServiceNamed(LsService.name)
    assert isinstance(service, LsService)
    # SIGINT/SIGTERM stop the reactor: destroy the session before it goes.
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    running: Deferred[None] = Deferred()
    reactor.callWhenRunning(running.callback, None)
    await running
    # As under twistd: a second Ctrl-C while stopping is no error, a late one no death.
    handle_stop_signals(reactor, lambda: stop_reactor(reactor))
    top.startService()
    code = await service.when_done()
    await top.stopService()
    if code:
        raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run until stopped, return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    program = _program_name()
    options = Options()
    options.synopsis = f"Usage: {program} [options]"
    try:
        options.parseOptions(args)
    except usage.UsageError as e:
        message = " ".join(str(e).split())
        print(f"{program}: error: {message} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # --help, --version
        return _exit_code(e.code)

    level = LogLevel.levelWithName(options["log-level"])
    globalLogBeginner.beginLoggingTo([log_observer(sys.stderr, level)],
                                     redirectStandardIO=False)
    try:
        react(_run, (options,))
    except SystemExit as e:
        return _exit_code(e.code)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
