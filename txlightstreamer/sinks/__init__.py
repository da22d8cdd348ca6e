"""
Outputs past one process: events into Redis Streams, a lease for standby take-over, and
sharding of item sets across bridges. See the "Scaling out" documentation.
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
