"""
txlightstreamer: a Twisted-native client for Lightstreamer servers (TLCP 2.5.0 / 2.4.0).

Everything runs in the reactor thread; there are no threads anywhere.
"""

from txlightstreamer._subscription import (
    MODE_COMMAND,
    MODE_DISTINCT,
    MODE_MERGE,
    MODE_RAW,
    ItemUpdate,
    Table,
)
from txlightstreamer._update_queue import UpdateQueue
from txlightstreamer._version import __version__
from txlightstreamer.client import (
    STATE_CONNECTED,
    STATE_CONNECTING,
    STATE_DISCONNECTED,
    STATE_RECONNECTING,
    STATE_STALLED,
    LsClient,
    SessionInfo,
)
from txlightstreamer.errors import (
    ClientStateError,
    LightstreamerError,
    MessageDenied,
    MessageDiscarded,
    MessageError,
    ProtocolError,
    RequestError,
    RequestTimeoutError,
    ServerError,
    SessionLostError,
    SubscriptionError,
    TransportError,
    ValueDecodeError,
)
from txlightstreamer.states import ConnectionState, Continuity, Status, TableState

__all__ = [
    "MODE_COMMAND",
    "MODE_DISTINCT",
    "MODE_MERGE",
    "MODE_RAW",
    "STATE_CONNECTED",
    "STATE_CONNECTING",
    "STATE_DISCONNECTED",
    "STATE_RECONNECTING",
    "STATE_STALLED",
    "ClientStateError",
    "ConnectionState",
    "Continuity",
    "ItemUpdate",
    "LightstreamerError",
    "LsClient",
    "MessageDenied",
    "MessageDiscarded",
    "MessageError",
    "ProtocolError",
    "RequestError",
    "RequestTimeoutError",
    "ServerError",
    "SessionInfo",
    "SessionLostError",
    "Status",
    "SubscriptionError",
    "Table",
    "TableState",
    "TransportError",
    "UpdateQueue",
    "ValueDecodeError",
    "__version__",
]
