"""
The official Lightstreamer Node.js client (npm ``lightstreamer-client-node``) as a test
oracle: installed once into a cache, run as a subprocess by ``tests/node_peer.js``.

Where Node.js is missing the tests that use it are skipped, with the reason; in CI
(``CI=true``) a missing Node.js fails them instead, so the oracle can never silently vanish.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime

from .peer_process import JsonPeerProtocol, PeerError

NODE_CLIENT = "lightstreamer-client-node"
NODE_CLIENT_VERSION = "9.2.2"
PEER_SCRIPT = Path(__file__).with_name("node_peer.js")

# The package's xmlhttprequest dependency names a git URL; the registry's release works.
PACKAGE_JSON = {
    "name": "txlightstreamer-node-oracle",
    "private": True,
    "dependencies": {NODE_CLIENT: NODE_CLIENT_VERSION},
    "overrides": {"xmlhttprequest": "1.8.0"},
}


class NodePeerError(PeerError):
    """The Node peer failed or timed out; carries its exit code and stderr."""

    peer = "node_peer"


def _cache_dir() -> Path:
    configured = os.environ.get("TXLS_NODE_CACHE")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "txlightstreamer" / f"node-{NODE_CLIENT_VERSION}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the official Node client is required in CI: {reason}")
    pytest.skip(f"official Node client unavailable: {reason}")


def node_modules() -> Path:
    """The ``node_modules`` folder holding the official client, installed on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are not installed (Debian: apt-get install nodejs npm)")
    cache = _cache_dir()
    installed = cache / "node_modules" / NODE_CLIENT / "package.json"
    if not installed.exists():
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "package.json").write_text(json.dumps(PACKAGE_JSON, indent=2))
        done = subprocess.run(
            [cast(str, npm), "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=cache, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0 or not installed.exists():
            _unavailable(f"npm install failed: {done.stderr[-2000:]}")
    return cache / "node_modules"


def run_node_peer(
    url: str, spec: Mapping[str, Any], *, reactor: Any = None
) -> Deferred[dict[str, Any]]:
    """Run the official Node client (``node_peer.js``) against ``url`` with ``spec``."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    modules = node_modules()
    node = cast(str, shutil.which("node"))
    done: Deferred[dict[str, Any]] = Deferred()
    proto = JsonPeerProtocol(done, NodePeerError)
    env = dict(os.environ, NODE_PATH=str(modules))
    transport = cast(IReactorProcess, reactor).spawnProcess(
        proto, node, [node, str(PEER_SCRIPT), url, json.dumps(spec)], env=env)

    def kill() -> None:
        try:
            transport.signalProcess("KILL")
        except Exception:
            pass

    timeout = min(float(spec.get("timeout", 20)), 30.0) + 10
    proto.killer = cast(IReactorTime, reactor).callLater(timeout, kill)
    return done
