"""
Serve live tables to browsers and HTTP clients: a plain ``twisted.web`` resource.

``Relay(client, tables)`` listens to an `~txlightstreamer.LsClient` and its tables and
serves, wherever its `Relay.resource` is mounted:

- ``GET /`` — a self-contained live page (one table per subscription, updating in place);
- ``GET /snapshot`` — every subscription's current state as JSON, with the connection
  status and the id of the last event;
- ``GET /events`` — Server-Sent Events carrying the JSON-lines output's events (``id:``,
  ``event:``, ``data:`` JSON), resumable with ``Last-Event-ID`` from a bounded backlog.

Everything runs in the reactor thread. A slow reader of ``/events`` is paused through
the transport's producer/consumer flow control and dropped once its own bounded buffer is
full; it never holds the reactor or unbounded memory.
"""

from txlightstreamer.web._endpoint import endpoint_string
from txlightstreamer.web._relay import CLIENT_BUFFER, HEARTBEAT, Relay, RelayBase, RelayOptions
from txlightstreamer.web._resource import RelayResource
from txlightstreamer.web._stream_relay import StreamRelay

__all__ = [
    "CLIENT_BUFFER", "HEARTBEAT", "Relay", "RelayBase", "RelayOptions", "RelayResource",
    "StreamRelay",
    "endpoint_string",
]
