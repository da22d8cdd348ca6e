"""
The session: create, bind, LOOP rebind, liveness, recovery and retry (one connection).

Modules: `machine` (the states and the one table of transitions), `session` (the
`Session` that feeds the machine and talks to transports through
`txlightstreamer.transport.interfaces`), `reader` (the streams' sink: hot path, parsing,
data counters), `liveness` (the silence timer), `sense` (which transport to try),
`options` (tunables and the retry policy), `endings` (CONERR, END and unparsable data:
retry, recover, replace or fail), `attempts` (failed attempts, told once per cause).

States and transitions (input → next state; the table is `machine.TRANSITIONS`)::

    IDLE/CLOSED  connect → CREATING
    CREATING     CONOK → BOUND | refused/broken (retryable) → WAITING | fatal → CLOSED
    BOUND        LOOP → BINDING | broken/stalled/unparsable → WAITING (recovery)
                 | END → WAITING/CLOSED
    BINDING      CONOK → BOUND | broken → WAITING (recovery) | CONERR → WAITING (new session)
                 | WebSocket that did not open → BINDING (the same bind over HTTP)
    RECOVERING   CONOK (then PROG) → BOUND | broken → WAITING | CONERR 4/20/... → WAITING
    WAITING      timer → CREATING or RECOVERING
    any          close → CLOSED

What is not a state is a value: the current stream (None once LOOP, END or an error ended
it; on WS-POLLING the socket stays after LOOP for the next poll), ``server_prog`` (None
while a recovered stream has not sent PROG), the liveness
`liveness.Phase`, the lowered TLCP version after a fall-back, the TTL of a scheduled
create, whether reading is paused (`Session.pause_reading`, kept across rebinds).
``Session.bound`` is the client's test for "requests can be sent".
"""

from __future__ import annotations

from txlightstreamer._session.machine import TRANSITIONS, IllegalTransition, Input, State
from txlightstreamer._session.options import RetryPolicy, SessionOptions, tlcp_retry_policy
from txlightstreamer._session.sense import FORCED_TRANSPORTS, Kind, kind_status
from txlightstreamer._session.session import Session, SessionListener
from txlightstreamer._session.session import _control_url as _control_url
from txlightstreamer.states import Continuity, Status

__all__ = [
    "FORCED_TRANSPORTS",
    "TRANSITIONS",
    "IllegalTransition",
    "Input",
    "Kind",
    "RetryPolicy",
    "Session",
    "SessionListener",
    "SessionOptions",
    "State",
    "kind_status",
    "tlcp_retry_policy",
]

# The names of the first releases, kept as aliases of the public enums.
STATUS_CONNECTING: str = Status.CONNECTING
STATUS_SENSING: str = Status.STREAM_SENSING
STATUS_STALLED: str = Status.STALLED
STATUS_WILL_RETRY: str = Status.WILL_RETRY
STATUS_TRYING_RECOVERY: str = Status.TRYING_RECOVERY
STATUS_DISCONNECTED: str = Status.DISCONNECTED
CONTINUITY_NEW: str = Continuity.NEW
CONTINUITY_PRESERVED: str = Continuity.PRESERVED
CONTINUITY_RECOVERED: str = Continuity.RECOVERED
CONTINUITY_REPLACED: str = Continuity.REPLACED
