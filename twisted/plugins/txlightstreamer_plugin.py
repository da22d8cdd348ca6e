"""The ``twistd lightstreamer`` plugin (the service itself is txlightstreamer.service)."""

from twisted.application.service import ServiceMaker

lightstreamer = ServiceMaker(
    "txlightstreamer",
    "txlightstreamer.service",
    "Stream a Lightstreamer server (or the embedded --demo) as JSON lines",
    "lightstreamer",
)
