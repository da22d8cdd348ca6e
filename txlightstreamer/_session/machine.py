"""
The session's states and every transition between them, in one table.

The `Session` feeds an `Input` to its `Machine` before acting on it; a transition missing
from `TRANSITIONS` is a bug and raises `IllegalTransition` instead of going unnoticed.
What the states do not hold lives in the session's values: the current stream (None once
LOOP, END or an error ended it), the server's progress (None while a recovered stream has
not sent its ``PROG`` yet) and the liveness phase (see `liveness`).
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "IllegalTransition", "Input", "Machine", "State"]


class State(enum.Enum):
    IDLE = "idle"  # never connected
    CREATING = "creating"  # a create_session is under way
    BOUND = "bound"  # CONOK received: the session runs on the current stream
    BINDING = "binding"  # LOOP received: a bind_session is due or under way
    RECOVERING = "recovering"  # a bind_session with LS_recovery_from is under way
    WAITING = "waiting"  # a timer will start the next create or recovery
    CLOSED = "closed"  # closed by the client or failed for good


class Input(enum.Enum):
    CONNECT = "connect"  # the client asks for a session
    CREATE = "create"  # a create_session attempt starts
    BIND = "bind"  # a bind_session attempt starts (after LOOP, or another transport)
    RECOVER = "recover"  # a recovery attempt starts
    CONOK = "conok"  # the server accepted the create or bind
    LOOP = "loop"  # the server asks for a rebind
    RETRY = "retry"  # the stream failed or was refused: a timer will try again
    FAIL = "fail"  # a fatal error: no retry
    CLOSE = "close"  # the client closes the session


_ALL = tuple(State)
_STREAMING = (State.CREATING, State.BOUND, State.BINDING, State.RECOVERING)

#: (state, input) -> next state. Anything else is an illegal transition.
TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.IDLE, Input.CONNECT): State.CREATING,
    (State.CLOSED, Input.CONNECT): State.CREATING,
    # A create starts at connect, after a wait, or at once on another transport kind.
    (State.CREATING, Input.CREATE): State.CREATING,
    (State.WAITING, Input.CREATE): State.CREATING,
    # A bind follows LOOP (maybe after its delay), or is retried on another kind.
    (State.BINDING, Input.BIND): State.BINDING,
    (State.WAITING, Input.RECOVER): State.RECOVERING,
    (State.RECOVERING, Input.RECOVER): State.RECOVERING,
    # CONOK answers a create or a bind, once a stream; LOOP ends a bound stream (tlcp.md
    # §4.1). Either out of turn is a protocol error, never a rebind.
    **{(state, Input.CONOK): State.BOUND
       for state in (State.CREATING, State.BINDING, State.RECOVERING)},
    (State.BOUND, Input.LOOP): State.BINDING,
    **{(state, Input.RETRY): State.WAITING for state in (*_STREAMING, State.WAITING)},
    **{(state, Input.FAIL): State.CLOSED for state in _ALL},
    **{(state, Input.CLOSE): State.CLOSED for state in _ALL},
}


class IllegalTransition(RuntimeError):
    """An input that the current state does not accept."""


class Machine:
    """The current `State`, changed only through `TRANSITIONS`."""

    def __init__(self) -> None:
        self.state = State.IDLE

    def accepts(self, event: Input) -> bool:
        """Whether `event` is a legal input in the current state."""
        return (self.state, event) in TRANSITIONS

    def feed(self, event: Input) -> State:
        """Move on `event`; returns the state it left."""
        previous = self.state
        try:
            self.state = TRANSITIONS[previous, event]
        except KeyError:
            raise IllegalTransition(
                f"cannot {event.value} while {previous.value}") from None
        return previous
