"""
The options shared by ``twistd lightstreamer`` and ``python -m txlightstreamer``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)
from twisted.python import usage

from txlightstreamer._version import __version__
from txlightstreamer.cli.subscribe import DECIMAL, parse_subscription, positive_int
from txlightstreamer.protocol import SUPPORTED_VERSIONS
from txlightstreamer.sinks._shard import parse_shard
from txlightstreamer.sinks._target import RedisTarget, parse_redis_url
from txlightstreamer.transport._endpoints import refuse_userinfo
from txlightstreamer.transport._trust import read_trust_roots

__all__ = [
    "LOG_LEVELS",
    "PASSWORD_ENV",
    "REDIS_PASSWORD_ENV",
    "Options",
    "log_observer",
    "stderr_log_observer",
]

#: The environment variable read for the password.
PASSWORD_ENV = "LS_PASSWORD"
#: The environment variable read for the Redis password (--sink, --source).
REDIS_PASSWORD_ENV = "TXLS_REDIS_PASSWORD"
#: The public name twistd imports for `stderr_log_observer` (re-exported by the service).
STDERR_OBSERVER_NAME = "txlightstreamer.service.stderr_log_observer"


#: The --log-level names.
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
#: Namespaces kept at warning level and above unless --log-level debug: the HTTP
#: plumbing's chatter (legacy log.msg: "Starting factory ...", the access log per request),
#: ClientService's "Scheduling retry N" of the Redis connection (the service says what
#: failed itself) and the embedded demo server's per-request lines.
QUIET_NAMESPACES = ("twisted.web.client", "twisted.python.log", "log_legacy",
                    "twisted.web.server", "twisted.application._client_service",
                    "txlightstreamer.testing")
#: The level `stderr_log_observer` uses: twistd imports it by name, without arguments.
_chosen_level = {"level": LogLevel.info}


def log_observer(stream: object, level: LogLevel = LogLevel.info) -> ILogObserver:
    """Log events of ``level`` and above to ``stream``, without the plumbing's chatter."""
    levels = LogLevelFilterPredicate(defaultLogLevel=level)
    if level > LogLevel.debug:
        for namespace in QUIET_NAMESPACES:
            levels.setLogLevelForNamespace(namespace, max(level, LogLevel.warn))
    return FilteringLogObserver(textFileLogObserver(stream), [levels])  # type: ignore[arg-type]


def stderr_log_observer() -> ILogObserver:
    """The log observer of ``twistd -n`` without a log file: standard error, --log-level."""
    return log_observer(sys.stderr, _chosen_level["level"])


class Options(usage.Options):
    """Options shared by ``twistd lightstreamer`` and ``python -m txlightstreamer``."""

    #: Set by ``python -m`` to show its own usage line (twistd derives one).
    synopsis: str

    longdesc = (
        "Connect to a Lightstreamer server (TLCP 2.5.0/2.4.0), subscribe, and write every "
        "event as one JSON object per line (see README.rst for the format). "
        "The password comes from --password-file or the LS_PASSWORD environment variable. "
        "Logs go to standard error (or the twistd log), never into the JSON output."
    )

    optFlags = [
        ["demo", None, "Start the embedded demo server on 127.0.0.1 and connect to it "
                       "(subscribes to the demo items unless --subscribe is given)."],
        ["quiet", "q", "Log warnings and errors only (same as --log-level warn)."],
    ]
    optParameters = [
        ["url", None, None, "Server address, http://host[:port] or https://host[:port]."],
        ["adapter-set", None, None, "Adapter set name (LS_adapter_set)."],
        ["user", None, None, "User name."],
        ["password-file", None, None, "Read the password from this file (first line)."],
        ["password", None, None, "The password itself (visible to other local users: "
                                 "prefer --password-file or LS_PASSWORD)."],
        ["demo-profile", None, None,
         "Implies --demo; 'ig' serves IG's streaming conventions (an emulation, not IG) and "
         "uses its demo account, tokens and items unless told otherwise."],
        ["demo-port", None, None,
         "Implies --demo; the demo server's fixed port on 127.0.0.1 (default: a free one)."],
        ["ca-file", None, None,
         "Trust the certificates in this PEM file (e.g. a private CA) instead of the "
         "platform's for https:// URLs. Without it the platform's store is used, which "
         "OpenSSL lets the SSL_CERT_FILE environment variable replace."],
        ["give-up-after", None, None,
         "Stop (exit status 1, with the last connection failure's cause) when there has "
         "been no session for this many seconds, at start-up or after a session was lost; "
         "by default retry forever, reporting each new cause as an error event."],
        ["log-level", None, "info",
         "Log events of this level and above: " + ", ".join(LOG_LEVELS) + "."],
        ["protocol", None, "2.5.0", "TLCP version: " + " or ".join(SUPPORTED_VERSIONS) + "."],
        ["output", None, "-", "Append the JSON lines to this file; - is standard output."],
        ["max-updates", None, None, "Stop cleanly after this many update events."],
        ["duration", None, None, "Stop cleanly after this many seconds."],
        ["http-port", None, None,
         "Also serve the live tables over HTTP on this Twisted server endpoint, e.g. "
         "tcp:8080 (binds 127.0.0.1 unless it names an interface=): a live page at /, "
         "JSON at /snapshot, Server-Sent Events at /events, Prometheus /metrics, /healthz."],
        ["sink", None, None,
         "Also append every event to a Redis stream: redis://[:PASSWORD@]HOST[:PORT][/DB]"
         "[?stream=NAME&maxlen=N] (default stream txls:events, maxlen ~1000000)."],
        ["sink-password-file", None, None,
         "Read the Redis password of --sink/--source from this file (first line); "
         "else the URL's or the TXLS_REDIS_PASSWORD environment variable."],
        ["lease", None, None,
         "With --sink: hold this lease in Redis; only the holder keeps a session and "
         "writes, a standby takes over when the holder dies."],
        ["lease-time", None, "10", "Seconds a --lease lasts unless renewed."],
        ["shard", None, None,
         "K/N: keep only the items of each --subscribe whose crc32(name) % N + 1 == K."],
        ["source", None, None,
         "Serve --http-port from this Redis stream (a bridge's --sink) instead of a "
         "Lightstreamer session: redis://[:PASSWORD@]HOST[:PORT][/DB][?stream=NAME]."],
    ]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._environ = os.environ if environ is None else environ
        self["subscribe"] = []
        #: The password, kept out of the options mapping so it is never printed.
        self.password: str | None = None
        self._password_from_env = False
        #: Warnings to log once logging is set up.
        self.warnings: list[str] = []
        #: The Redis stream of --sink and --source (with its password), else None.
        self.sink: RedisTarget | None = None
        self.source: RedisTarget | None = None

    def opt_subscribe(self, spec: str) -> None:
        """
        Subscribe with SPEC = "MODE ITEMS FIELDS [key=value ...]", MODE one of MERGE,
        DISTINCT, RAW, COMMAND, ITEMS and FIELDS comma-separated; keys: snapshot=yes|no|N,
        adapter=NAME, selector=NAME, max_frequency=N|unlimited|unfiltered,
        second_level=FIELDS, second_level_adapter=NAME (two-level COMMAND),
        buffer_size=N|unlimited. Repeatable; subscriptions are numbered from 0.
        """
        self["subscribe"].append(parse_subscription(spec))

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"txlightstreamer {__version__}")
        sys.exit(0)

    def parseOptions(self, options: list[str] | None = None) -> None:  # noqa: N802
        """
        Parse; under twistd a usage error is one line on standard error and exit status 2
        (twistd itself would print the whole usage to standard output, the JSON channel).
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            from twisted.application.app import ServerOptions

            if not isinstance(getattr(self, "parent", None), ServerOptions):
                raise
            message = " ".join(str(e).split())
            print(f"twistd lightstreamer: error: {message} (see --help)", file=sys.stderr)
            raise SystemExit(2) from None

    def postOptions(self) -> None:  # noqa: N802 (Twisted API)
        """Check the combination of options and resolve the password."""
        if self["demo-profile"] is not None or self["demo-port"] is not None:
            self["demo"] = True
        url = self["url"]
        if self["source"] is not None:
            self._check_source()
        elif self["demo"]:
            if url is not None:
                raise usage.UsageError(
                    "--demo runs its own server on 127.0.0.1: do not combine it with --url")
        elif url is None:
            raise usage.UsageError("missing --url (or use --demo for the embedded demo server)")
        else:
            try:
                refuse_userinfo(url, "--url", "use --user and --password")
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise usage.UsageError(
                    f"bad --url {url!r}: use http://host[:port] or https://host[:port]")
        if self["protocol"] not in SUPPORTED_VERSIONS:
            raise usage.UsageError(
                f"bad --protocol {self['protocol']!r}: use {' or '.join(SUPPORTED_VERSIONS)}")
        raw_max = self["max-updates"]
        if raw_max is not None:
            count = positive_int(str(raw_max))
            if count is None:
                raise usage.UsageError(
                    f"bad --max-updates {raw_max!r}: use a positive integer")
            self["max-updates"] = count
        raw_duration = self["duration"]
        if raw_duration is not None:
            if not DECIMAL.match(str(raw_duration)) or float(raw_duration) <= 0:
                raise usage.UsageError(
                    f"bad --duration {raw_duration!r}: use a positive number of seconds")
            self["duration"] = float(raw_duration)
        self._check_http_port()
        self._check_scaling()
        self._check_first_hour()
        self._resolve_password()
        if self["demo-profile"] is not None:
            self._use_demo_profile()
        self._check_output()
        if self["url"] is not None and not self["subscribe"]:
            raise usage.UsageError(
                "nothing to subscribe to: give --subscribe \"MODE ITEMS FIELDS\" (repeatable)")
        self._adapt_twistd_logging()

    def _check_first_hour(self) -> None:
        """--demo-port, --ca-file, --give-up-after, --log-level, --quiet."""
        port = self["demo-port"]
        if port is not None:
            number = positive_int(str(port))
            if number is None or number > 65535:
                raise usage.UsageError(f"bad --demo-port {port!r}: use a port from 1 to 65535")
            self["demo-port"] = number
        path = self["ca-file"]
        if path is not None:
            if not os.access(path, os.R_OK):
                raise usage.UsageError(f"cannot read --ca-file {path!r}")
            try:  # every certificate loaded now, as the client will: a bad one is a usage error
                read_trust_roots(path)
            except ValueError as e:
                raise usage.UsageError(
                    f"bad --ca-file: {str(e).removeprefix('trust_roots: ')}") from None
            self["ca-file"] = os.path.abspath(path)  # twistd may change directory later
        raw = self["give-up-after"]
        if raw is not None:
            if not DECIMAL.match(str(raw)) or float(raw) <= 0:
                raise usage.UsageError(
                    f"bad --give-up-after {raw!r}: use a positive number of seconds")
            self["give-up-after"] = float(raw)
        level = "warn" if self["quiet"] else str(self["log-level"]).lower()
        if level == "warning":
            level = "warn"
        if level not in LOG_LEVELS:
            raise usage.UsageError(
                f"bad --log-level {self['log-level']!r}: use one of {', '.join(LOG_LEVELS)}")
        self["log-level"] = level
        _chosen_level["level"] = LogLevel.levelWithName(level)

    def _check_http_port(self) -> None:
        endpoint = self["http-port"]
        if endpoint is None:
            return
        from txlightstreamer.web import endpoint_string

        try:
            self["http-port"] = endpoint_string(endpoint)
        except ValueError as e:
            raise usage.UsageError(f"--http-port: {e}") from None

    def _check_source(self) -> None:
        # No Lightstreamer client runs: its limits would be accepted and do nothing.
        for name in ("url", "sink", "lease", "shard", "max-updates", "give-up-after"):
            if self[name] is not None:
                raise usage.UsageError(f"--source serves a Redis stream: do not combine it "
                                       f"with --{name}")
        if self["demo"] or self["subscribe"]:
            raise usage.UsageError("--source serves a Redis stream: do not combine it with "
                                   "--demo or --subscribe")
        if self["http-port"] is None:
            raise usage.UsageError("--source needs --http-port (where to serve the stream)")

    def _redis_target(self, option: str) -> RedisTarget:
        try:
            target = parse_redis_url(self[option])
        except ValueError as e:
            raise usage.UsageError(f"bad --{option}: {e}") from None
        self[option] = target.address + f"?stream={target.stream}"  # never the password
        if target.password is not None:
            self.warnings.append(
                f"the --{option} URL holds the Redis password, which other local users "
                "see on the command line: prefer --sink-password-file or "
                f"{REDIS_PASSWORD_ENV}")
            return target
        path = self["sink-password-file"]
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except (OSError, UnicodeDecodeError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise usage.UsageError(
                    f"cannot read --sink-password-file {path!r}: {reason}") from None
            return target.with_password(lines[0] if lines and lines[0] else None)
        return target.with_password(self._environ.get(REDIS_PASSWORD_ENV) or None)

    def _check_scaling(self) -> None:
        """--sink, --source, --lease, --lease-time, --shard."""
        if self["sink"] is not None:
            self.sink = self._redis_target("sink")
        if self["source"] is not None:
            self.source = self._redis_target("source")
        raw_time = str(self["lease-time"])
        if not DECIMAL.match(raw_time) or float(raw_time) <= 0:
            raise usage.UsageError(
                f"bad --lease-time {raw_time!r}: use a positive number of seconds")
        self["lease-time"] = float(raw_time)
        if self["lease"] is not None:
            if self.sink is None:
                raise usage.UsageError("--lease needs --sink (the lease lives in its Redis)")
            if not self["lease"].strip():
                raise usage.UsageError("--lease needs a name")
        if self["shard"] is not None:
            try:
                self["shard"] = parse_shard(self["shard"])
            except ValueError as e:
                raise usage.UsageError(str(e)) from None

    def _use_demo_profile(self) -> None:
        from txlightstreamer.testing.demo import demo_profile_defaults

        try:
            user, password, specs = demo_profile_defaults(self["demo-profile"])
        except ValueError as e:
            raise usage.UsageError(f"bad --demo-profile: {e}") from None
        # A password from the environment is not one given for this run: the profile's
        # account stands unless --user, --password or --password-file say otherwise.
        if self["user"] is None and (self.password is None or self._password_from_env):
            self["user"], self.password = user, password
        if not self["subscribe"]:
            self["subscribe"] = [parse_subscription(spec) for spec in specs]

    def _resolve_password(self) -> None:
        given, self["password"] = self["password"], None
        path = self["password-file"]
        if path is not None and given is not None:
            raise usage.UsageError("give either --password-file or --password, not both")
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise usage.UsageError(
                    f"cannot read --password-file {path!r}: {reason}") from None
            lines = text.splitlines()
            self.password = lines[0] if lines else ""
        elif given is not None:
            self.password = given
            self.warnings.append(
                "--password is visible to other local users (ps, /proc): "
                f"prefer --password-file or the {PASSWORD_ENV} environment variable")
        else:
            self.password = self._environ.get(PASSWORD_ENV)
            self._password_from_env = self.password is not None

    def _check_output(self) -> None:
        path = self["output"]
        if path == "-":
            return
        path = os.path.abspath(path)  # twistd may change directory later
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            raise usage.UsageError(f"cannot write --output {path!r}: {e.strerror}") from None
        self["output"] = path

    def _adapt_twistd_logging(self) -> None:
        """Under twistd in the foreground, log to standard error at the chosen level, as
        the docs say (whatever ``--output`` is: standard output is for the JSON lines)."""
        parent = getattr(self, "parent", None)
        if parent is None or "nodaemon" not in parent:
            return
        foreground = parent["nodaemon"] or parent.get("debug")
        if not foreground:
            if self["output"] == "-":
                raise usage.UsageError(
                    "--output - (standard output) needs twistd --nodaemon (-n): "
                    "give --output PATH when daemonizing")
            return  # daemonized: twistd.log (or --logfile) keeps every level
        if not parent.get("logfile") and not parent.get("logger") and not parent.get("syslog"):
            # twistd -n would log to stdout, unfiltered: to stderr instead, filtered.
            parent["logger"] = STDERR_OBSERVER_NAME


# usage.Options shows docstrings as written: make this one a single wrapped paragraph.
Options.opt_subscribe.__doc__ = " ".join((Options.opt_subscribe.__doc__ or "").split())
