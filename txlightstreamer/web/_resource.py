"""The ``twisted.web`` resources of a `Relay`: ``/``, ``/snapshot`` and ``/events``."""

from __future__ import annotations

from typing import Any, Protocol

from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from txlightstreamer.events import encode_event
from txlightstreamer.web._page import CONTENT_SECURITY_POLICY, PAGE

__all__ = ["RelayResource", "RelaySource"]


class RelaySource(Protocol):
    """What the resources need of a relay (`Relay` implements it)."""

    @property
    def closed(self) -> bool:
        """Whether the relay has stopped relaying."""

    def snapshot(self) -> dict[str, Any]:
        """Every subscription's current state (``GET /snapshot``)."""

    @property
    def full(self) -> bool:
        """Whether no more ``/events`` streams are allowed now."""

    def open_stream(self, request: Request, last_event_id: str | None) -> object | None:
        """Start ``/events`` on ``request``; None when no more streams are allowed."""


def _no_cache(request: Request) -> None:
    request.setHeader(b"cache-control", b"no-cache, no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")


class RelayResource(Resource):
    """
    The root of a relay: ``""`` is the page, ``snapshot`` and ``events`` the data.

    Rendered itself (the mount point without its trailing slash), it redirects to the
    same path with the slash, so the page's relative links resolve below it.
    """

    def __init__(self, relay: RelaySource) -> None:
        super().__init__()
        self.relay = relay
        self.putChild(b"", PageResource())
        self.putChild(b"snapshot", SnapshotResource(relay))
        self.putChild(b"events", EventsResource(relay))

    def getChild(self, path: bytes, request: Request) -> IResource:  # noqa: N802
        return notFound()

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        _, sep, query = request.uri.partition(b"?")
        request.redirect(request.path + b"/" + (b"?" + query if sep else b""))
        return b""


class PageResource(Resource):
    """The live page (self-contained HTML, no external resources)."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not found\n"
        _no_cache(request)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"referrer-policy", b"no-referrer")
        return PAGE


class SnapshotResource(Resource):
    """``GET /snapshot``: `Relay.snapshot` as JSON."""

    isLeaf = True

    def __init__(self, relay: RelaySource) -> None:
        super().__init__()
        self.relay = relay

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        _no_cache(request)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return encode_event(self.relay.snapshot())


class EventsResource(Resource):
    """
    ``GET /events``: Server-Sent Events. Resumes after the ``Last-Event-ID`` header (or
    the ``last_event_id`` query argument); with neither, starts with a ``snapshot``.
    """

    isLeaf = True

    def __init__(self, relay: RelaySource) -> None:
        super().__init__()
        self.relay = relay

    def _headers(self, request: Request) -> None:
        _no_cache(request)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"x-accel-buffering", b"no")  # reverse proxies: do not buffer

    def render_HEAD(self, request: Request) -> bytes:  # noqa: N802
        # What GET would answer (RFC 9110 §9.3.2): a health check may ask with HEAD.
        if self.relay.closed or self.relay.full:
            return self._unavailable(request, b"")
        self._headers(request)
        return b""

    def render_GET(self, request: Request) -> bytes | int:  # noqa: N802
        relay = self.relay
        if relay.closed:
            return self._unavailable(request, b"the relay is closed\n")
        raw = request.getHeader(b"last-event-id")
        if raw is None:
            args = request.args.get(b"last_event_id") if request.args else None
            raw = args[0] if args else None
        last_event_id = raw.decode("utf-8", "replace") if raw is not None else None
        self._headers(request)
        if relay.open_stream(request, last_event_id) is None:
            request.responseHeaders.removeHeader(b"content-type")
            return self._unavailable(request, b"too many /events clients\n")
        return NOT_DONE_YET

    def _unavailable(self, request: Request, message: bytes) -> bytes:
        request.setResponseCode(503)
        request.setHeader(b"retry-after", b"10")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return message
