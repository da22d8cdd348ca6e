"""
The command line shared by ``twistd lightstreamer`` and ``python -m txlightstreamer``:
`Options` (``options``) and the ``--subscribe`` mini-language (``subscribe``).

The service that runs them is `txlightstreamer.service`; this package does not import it.
"""

from txlightstreamer.cli.options import (
    PASSWORD_ENV,
    REDIS_PASSWORD_ENV,
    Options,
    stderr_log_observer,
)
from txlightstreamer.cli.subscribe import (
    MODES,
    SubscriptionSpec,
    demo_subscriptions,
    parse_subscription,
)

__all__ = [
    "MODES",
    "PASSWORD_ENV",
    "REDIS_PASSWORD_ENV",
    "Options",
    "SubscriptionSpec",
    "demo_subscriptions",
    "parse_subscription",
    "stderr_log_observer",
]
