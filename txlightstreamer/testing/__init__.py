"""Testing helpers: a real TLCP server to run clients against.

In the spirit of :mod:`treq.testing`: :class:`TlcpServer` speaks TLCP 2.5.0
(and 2.4.0) over HTTP and WebSocket (the latter needs autobahn), as a
``twisted.web`` resource or listening on a local port (optionally with TLS),
and :class:`DataModel` lets a test publish MERGE/DISTINCT/RAW and COMMAND
events to every subscribed client::

    server = TlcpServer()
    await server.listen(reactor)
    ...  # point a client at server.url
    server.data.update("item1", {"last_price": "10.5"})
    ...
    server.faults.close_after(3)  # script a fault (see Faults)
    ...
    await server.stop()

Modules, one concern each: ``_params`` (request parameters, refusals),
``_outputs`` (HTTP/WebSocket output writers), ``_stream`` (a stream and its
timers), ``_session`` (sessions, subscriptions), ``_pacing`` (frequency and buffer
limits), ``_faults`` (scripted faults),
``_control`` (control/msg/heartbeat requests), ``_resource`` (the HTTP front
door), ``_websocket`` (autobahn), ``_server`` (:class:`TlcpServer`),
``_adapter`` (data), ``demo`` (a feed and a server strict as a real one),
``ig`` (a profile that emulates IG's streaming conventions; it is not IG),
``_encoding`` (notification encoders).
"""

from ._adapter import DataModel, ItemListener
from ._encoding import encode_line, encode_update, encode_value
from ._faults import Faults
from ._params import CLIENT_ID, DEFAULT_CLIENT_IDS, PYTHON_SDK_CLIENT_ID, MessageError
from ._server import TlcpServer
from ._session import MessageHandler, Session, Subscription

__all__ = [
    "CLIENT_ID",
    "DEFAULT_CLIENT_IDS",
    "PYTHON_SDK_CLIENT_ID",
    "DataModel",
    "Faults",
    "ItemListener",
    "MessageError",
    "MessageHandler",
    "Session",
    "Subscription",
    "TlcpServer",
    "encode_line",
    "encode_update",
    "encode_value",
]
