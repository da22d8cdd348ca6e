"""
The documentation site (docs/): it builds without a warning, its reference covers every
public name, and every code example in it runs as written.

Examples: every ``.. code-block:: python`` in docs/**/*.rst is executed as a module (so it
must be complete); then its ``main`` (if any) and each ``test_*`` function are called
against a live test server with the demo feed, their parameters filled by name
(``reactor``, ``url``, ``server``, ``seconds``). Console lines that run
``python -m txlightstreamer --demo`` with ``--max-updates`` or ``--duration`` (possibly
piped into ``jq``) are run in a shell. Code of other libraries, shown for comparison in the
migration guides, is marked ``py`` or ``python2`` and is not run.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import posixpath
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from txlightstreamer.testing import TlcpServer
from txlightstreamer.testing.demo import DemoFeed

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: Every public module whose ``__all__`` must be in the reference (optional ones may not
#: exist yet while the service is being split).
PUBLIC_MODULES = [
    "txlightstreamer",
    "txlightstreamer.errors",
    "txlightstreamer.states",
    "txlightstreamer.testing",
    "txlightstreamer.protocol",
    "txlightstreamer.transport",
    "txlightstreamer.web",
]
OPTIONAL_MODULES = [
    "txlightstreamer.events",
    "txlightstreamer.cli",
    "txlightstreamer.service",
    "txlightstreamer.sinks",
]

SNIPPET_TIMEOUT = 30.0


@dataclass
class Snippet:
    path: Path
    line: int
    language: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def snippets(language: str) -> list[Snippet]:
    """Every ``.. code-block:: LANGUAGE`` body in docs/**/*.rst, dedented."""
    found = []
    for path in sorted(DOCS.rglob("*.rst")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            match = re.match(r"^(\s*)\.\. code-block:: (\S+)\s*$", line)
            if match is None or match.group(2) != language:
                continue
            outer = len(match.group(1))
            body: list[str] = []
            indent: int | None = None
            for following in lines[index + 1:]:
                if not following.strip():
                    body.append("")
                    continue
                depth = len(following) - len(following.lstrip())
                if depth <= outer:
                    break
                if indent is None:
                    if following.lstrip().startswith(":"):
                        continue  # a directive option such as :caption:
                    indent = depth
                if depth < indent:
                    break
                body.append(following[indent:])
            code = "\n".join(body).strip("\n") + "\n"
            found.append(Snippet(path, index + 1, language, code))
    return found


PYTHON = snippets("python")
CONSOLE = snippets("console")


def test_the_docs_have_examples() -> None:
    assert len(PYTHON) >= 15
    assert all(s.code.strip() for s in PYTHON)


@pytest.mark.parametrize("snippet", PYTHON, ids=lambda s: s.name)
def test_python_examples_are_complete(snippet: Snippet) -> None:
    """No placeholder to fill in: an example is real code that compiles."""
    compile(snippet.code, snippet.name, "exec")
    assert not re.search(r"^\s*\.\.\.\s*$", snippet.code, re.M), "an example with '...'"


@pytest_twisted.async_yield_fixture
async def docs_server() -> Any:
    server = TlcpServer(keepalive_millis=1000)
    await server.listen(reactor, port=0, interface="127.0.0.1")
    feed = DemoFeed(server.data, reactor, interval=0.05)
    feed.start()
    yield server
    feed.stop()
    await server.stop()


def _is_asyncio_code(code: str) -> bool:
    return "asyncio.get_running_loop()" in code or "asFuture(" in code


def _arguments(function: Any, server: TlcpServer) -> dict[str, Any]:
    available = {"reactor": reactor, "url": server.url, "server": server, "seconds": 0.5}
    parameters = inspect.signature(function).parameters
    missing = [name for name, p in parameters.items()
               if name not in available and p.default is inspect.Parameter.empty]
    assert not missing, f"{function.__name__}: cannot fill {missing}"
    return {name: available[name] for name in parameters if name in available}


async def _call(function: Any, server: TlcpServer, in_asyncio: bool) -> Any:
    result = function(**_arguments(function, server))
    if inspect.iscoroutine(result):
        if in_asyncio:
            result = defer.Deferred.fromFuture(asyncio.ensure_future(result))
        else:
            result = defer.Deferred.fromCoroutine(result)
    if isinstance(result, defer.Deferred):
        result.addTimeout(SNIPPET_TIMEOUT, reactor)
        return await result
    return result


@pytest.mark.parametrize("snippet", PYTHON, ids=lambda s: s.name)
@pytest_twisted.ensureDeferred
async def test_python_examples_run(snippet: Snippet, docs_server: TlcpServer) -> None:
    in_asyncio = _is_asyncio_code(snippet.code)
    if in_asyncio:
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        if not isinstance(reactor, AsyncioSelectorReactor):
            pytest.skip("an asyncio example: runs under pytest --reactor=asyncio")
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(snippet.code, snippet.name, "exec"), namespace)  # noqa: S102
    entry_points = [namespace[name] for name in sorted(namespace)
                    if (name == "main" or name.startswith("test_"))
                    and inspect.isfunction(namespace[name])
                    and namespace[name].__module__ == "docs_example"]
    for function in entry_points:
        await _call(function, docs_server, in_asyncio)


def _runnable_commands() -> Iterator[tuple[str, str]]:
    for snippet in CONSOLE:
        for line in snippet.code.splitlines():
            command = line.strip()
            if not command.startswith("$ "):
                continue
            command = command[2:]
            if "python -m txlightstreamer" in command and "--demo" in command and (
                    "--max-updates" in command or "--duration" in command):
                yield snippet.name, command


COMMANDS = list(_runnable_commands())


def test_the_docs_have_commands_to_run() -> None:
    assert len(COMMANDS) >= 3


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_console_examples_run(where: str, command: str, tmp_path: Path) -> None:
    if "jq" in command and shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    env = dict(os.environ)
    python_dir = str(Path(sys.executable).parent)
    env["PATH"] = python_dir + os.pathsep + env.get("PATH", "")
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, f"{where}: {command}\n{done.stderr[-2000:]}"
    assert done.stdout.strip(), f"{where}: {command} printed nothing"


def test_the_klein_tutorial_shows_the_tested_program() -> None:
    """The Klein tutorial includes docs/klein_relay.py itself (tests/test_web_klein.py runs it)."""
    text = (DOCS / "tutorials" / "klein.rst").read_text(encoding="utf-8")
    assert ".. literalinclude:: ../klein_relay.py" in text


# -- the site ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sphinx", reason="sphinx is not installed: pip install '.[docs]'")
    pytest.importorskip("furo", reason="furo is not installed: pip install '.[docs]'")
    out = tmp_path_factory.mktemp("docs-html")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(out)],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"the docs build failed or warned:\n{done.stderr[-4000:]}"
    return out


def _inventory(site: Path) -> dict[str, Any]:
    from sphinx.util.inventory import InventoryFile

    with open(site / "objects.inv", "rb") as f:
        loaded: Any = InventoryFile.load(f, "", posixpath.join)
    data = getattr(loaded, "data", loaded)  # Sphinx >= 8.2 returns an _Inventory
    names: dict[str, Any] = {}
    for role, entries in data.items():
        if role.startswith("py:"):
            for name in entries:
                names[name] = role
    return names


def _resolve(name: str) -> Any:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def public_names() -> list[tuple[str, str]]:
    modules = list(PUBLIC_MODULES)
    for name in OPTIONAL_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        modules.append(name)
    found = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            found.append((module_name, name))
    return found


def test_the_site_builds_without_warnings(built_site: Path) -> None:
    assert (built_site / "index.html").exists()
    for page in ("reference/cli.html", "howto/continuity.html", "migration/official-sdk.html"):
        assert (built_site / page).exists(), page


def test_every_public_name_is_in_the_reference(built_site: Path) -> None:
    """
    ``module.name`` is in the inventory, or (for a class or function re-exported from
    another public module) the object itself is documented under its other public name.
    """
    inventory = _inventory(built_site)
    documented_objects: dict[int, str] = {}
    for name in inventory:
        obj = _resolve(name)
        if obj is not None and (inspect.isclass(obj) or inspect.isroutine(obj)):
            documented_objects[id(obj)] = name
    missing = []
    for module_name, name in public_names():
        full = f"{module_name}.{name}"
        if full in inventory:
            continue
        obj = getattr(importlib.import_module(module_name), name)
        if (inspect.isclass(obj) or inspect.isroutine(obj)) and id(obj) in documented_objects:
            continue
        missing.append(full)
    assert not missing, f"not in the docs' reference: {missing}"


def test_the_options_page_is_generated_from_the_options_class(built_site: Path) -> None:
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import txls_cli
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    page = (built_site / "reference" / "cli.html").read_text(encoding="utf-8")
    rows = txls_cli.option_rows(txls_cli.options_class())
    assert len(rows) >= 10
    for shown, _, _ in rows:
        assert shown.split("=")[0] in page


def test_the_readme_links_into_the_docs() -> None:
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    links = re.findall(r"<((?:docs/|CHANGES)[^>]+\.rst)>`_", text)
    assert len(links) >= 15
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, f"README.rst links to missing pages: {missing}"


def test_the_metrics_reference_lists_every_metric() -> None:
    # The table in reference/web.rst is the metrics' documentation: the same names as
    # web._metrics.METRICS, counters with their _total suffix.
    pytest.importorskip("prometheus_client")
    from txlightstreamer.web._metrics import METRICS

    text = (DOCS / "reference" / "web.rst").read_text(encoding="utf-8")
    documented = re.findall(r"^``(txls_\w+)(?:\{\w+\})?``\s+(gauge|counter)\s", text, re.M)
    expected = [(name + "_total" if kind == "counter" else name, kind)
                for name, (kind, _) in METRICS.items()]
    assert sorted(documented) == sorted(expected)


def test_every_public_member_of_the_client_and_table_is_in_the_reference(
        built_site: Path) -> None:
    # Their on_* methods live in base classes, which autodoc leaves out unless told to.
    import txlightstreamer

    inventory = _inventory(built_site)
    missing = [f"txlightstreamer.{cls.__name__}.{name}"
               for cls in (txlightstreamer.LsClient, txlightstreamer.Table,
                           txlightstreamer.ItemUpdate)
               for name in dir(cls)
               if not name.startswith("_")
               and f"txlightstreamer.{cls.__name__}.{name}" not in inventory]
    assert not missing, f"not in the reference: {missing}"
