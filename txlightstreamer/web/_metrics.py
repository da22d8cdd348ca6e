"""
``/metrics`` (Prometheus text format, ``prometheus_client``) and ``/healthz`` on the relay's
HTTP port. Values are read from the service when scraped: nothing is counted twice and the
hot path pays nothing. Each service has its own ``CollectorRegistry``.

The metrics and what they mean: ``docs/reference/web.rst``, whose table `METRICS` must
match (``tests/test_docs.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.twisted import MetricsResource
from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = ["METRICS", "HealthResource", "ServiceCollector", "mount_metrics"]

#: name -> (type, help); counters are named without their ``_total`` suffix here.
METRICS: dict[str, tuple[str, str]] = {
    "txls_healthy": ("gauge", "1 while /healthz answers 200"),
    "txls_updates_received": ("counter", "update events received from Lightstreamer"),
    "txls_lost_updates": ("counter", "updates the server reported lost"),
    "txls_sessions": ("counter", "session events by continuity"),
    "txls_sink_events_written": ("counter", "events written to the Redis stream"),
    "txls_sink_events_dropped": ("counter", "events dropped by the Redis sink (reported)"),
    "txls_sink_buffer_depth": ("gauge", "events waiting to be written to Redis"),
    "txls_sink_pauses": ("counter", "times the sink paused the Lightstreamer stream"),
    "txls_sink_connected": ("gauge", "1 while Redis answers: the last write, or on a standby "
                            "its last try for the lease"),
    "txls_lease_held": ("gauge", "1 while this bridge holds its lease"),
    "txls_source_events_read": ("counter", "entries read from the Redis stream"),
    "txls_source_connected": ("gauge", "1 while the Redis stream is being read"),
    "txls_relay_clients": ("gauge", "open /events streams"),
    "txls_relay_dropped_clients": ("counter", "/events clients dropped for being slow"),
}


class ServiceCollector:
    """
    A collector reading ``values()`` at scrape time: ``{name: number}`` for plain metrics,
    ``{name: {label_value: number}}`` for ``txls_sessions`` (label ``continuity``).
    """

    def __init__(self, values: Callable[[], Mapping[str, Any]]) -> None:
        self._values = values

    def collect(self) -> Iterator[Metric]:
        values = self._values()
        for name, (kind, doc) in METRICS.items():
            if name not in values:
                continue
            value = values[name]
            family: Metric
            if isinstance(value, Mapping):
                family = CounterMetricFamily(name, doc, labels=["continuity"])
                for label, count in sorted(value.items()):
                    family.add_metric([str(label)], float(count))
            elif kind == "counter":
                family = CounterMetricFamily(name, doc, value=float(value))
            else:
                family = GaugeMetricFamily(name, doc, value=float(value))
            yield family


class HealthResource(Resource):
    """``GET /healthz``: 200 ``ok`` while ``healthy()``, else 503 with the reason."""

    isLeaf = True

    def __init__(self, healthy: Callable[[], str | None]) -> None:
        super().__init__()
        self._healthy = healthy

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 (Twisted API)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache, no-store")
        problem = self._healthy()
        if problem is None:
            return b"ok\n"
        request.setResponseCode(503)
        return problem.encode("utf-8") + b"\n"


def mount_metrics(
    root: Any, values: Callable[[], Mapping[str, Any]], healthy: Callable[[], str | None]
) -> CollectorRegistry:
    """Add ``metrics`` and ``healthz`` under ``root`` (a Resource); returns the registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(values))
    root.putChild(b"metrics", MetricsResource(registry))
    root.putChild(b"healthz", HealthResource(healthy))
    return registry
