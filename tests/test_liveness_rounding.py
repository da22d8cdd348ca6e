"""
The liveness timer at the edge of a float (chaos review, third round): a silence that is
over but for the clock's rounding is over; re-armed for 1e-15 s, `Clock.advance` spun.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from txlightstreamer.testing import TlcpServer

from .memory import MemoryNetwork


class _SpinGuardClock(Clock):
    """A Clock that fails (instead of hanging) when timers are set again and again now."""

    def __init__(self) -> None:
        super().__init__()
        self._at: float | None = None
        self._count = 0

    def callLater(self, delay: float, func: Any, *args: Any, **kw: Any) -> Any:  # noqa: N802
        now = self.seconds()
        if now == self._at:
            self._count += 1
            if self._count > 10_000 and self.seconds() + delay <= now:
                raise AssertionError(f"timer spin at t={now!r}: {func!r} set {self._count} "
                                     f"times, delay {delay!r}")
        else:
            self._at, self._count = now, 0
        return super().callLater(delay, func, *args, **kw)


def test_liveness_timer_never_spins_on_a_rounding_error() -> None:
    # Bound at t=15.9 with a 0.5 s keepalive: the timer fires at 15.9 + 0.5, which rounds to
    # a float 2**-49 short of 0.5 s after the last read. Liveness._fired then re-arms for the
    # "remaining" 1.8e-15 s, which Clock rounds back to now: Clock.advance never returns.
    clock = _SpinGuardClock()
    server = TlcpServer(clock=clock, keepalive_millis=500)
    net = MemoryNetwork(clock)
    net.serve_tlcp(server)
    client = net.client(forced_transport="HTTP-STREAMING")
    clock.advance(15.9)
    d = client.create_session()
    net.flush()
    assert d.called  # CONOK read at exactly t=15.9
    clock.advance(0.5)  # hangs (here: AssertionError from the guard)
    net.flush()
    net.wait(client.destroy())
