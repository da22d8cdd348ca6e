"""
Outputs past one process: events into Redis Streams, a lease for standby take-over, and
sharding of item sets across bridges. See the "Scaling out" documentation::

    Lightstreamer ──> bridge (holder) ──XADD──> Redis stream ──XREAD──> relay 1 ──SSE──> browsers
                      bridge (standby)  lease   txls:events  ──XREAD──> relay 2 ──SSE──> browsers
                                                             ──XREAD──> your consumers

    # two bridges, one lease: the standby takes over within --lease-time of a crash
    twistd -n lightstreamer --url https://push.example.com --subscribe "MERGE a,b f1,f2" \
        --sink redis://127.0.0.1:6379/0 --lease feed --lease-time 10 --output /dev/null
    # any number of relays: /, /snapshot, /events (SSE id = stream id), /metrics, /healthz
    python -m txlightstreamer --source redis://127.0.0.1:6379/0 --http-port tcp:8080

Each stream entry has one field, ``event``: the JSON-lines text of the event (the
password comes from the URL, ``--sink-password-file`` or ``TXLS_REDIS_PASSWORD``).
Besides the JSON-lines events, a bridge writes ``{"event": "sink", "state":
"connected"|"disconnected", "sink": ADDRESS, "reason": TEXT|null}`` on sink status changes
and ``{"event": "lease", "name": NAME, "state": "holder", "reason": null}`` when it takes
the lease; its first session after another bridge's says ``"continuity": "replaced"``
(consumers reset their state there, as after ``new``). Dropped events (a full buffer)
are reported by ``{"event": "error", "code": null, "message": "N events dropped: ..."}``.
``--shard K/N`` keeps the items with ``crc32(utf-8 name) % N + 1 == K``.
"""

from txlightstreamer.sinks._connection import RedisUnavailable
from txlightstreamer.sinks._lease import RedisLease
from txlightstreamer.sinks._shard import parse_shard, shard_of
from txlightstreamer.sinks._target import (
    DEFAULT_MAXLEN,
    DEFAULT_STREAM,
    RedisTarget,
    parse_redis_url,
)
from txlightstreamer.sinks.redis import RedisSink

__all__ = [
    "DEFAULT_MAXLEN",
    "DEFAULT_STREAM",
    "RedisLease",
    "RedisSink",
    "RedisTarget",
    "RedisUnavailable",
    "parse_redis_url",
    "parse_shard",
    "shard_of",
]
