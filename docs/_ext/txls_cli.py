"""
``.. txlightstreamer-options::``: the command-line options, read from the ``usage.Options``
class itself (never copied by hand), as a table.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

# Where the Options class lives: the cli module once the service is split, else service.
CANDIDATES = ("txlightstreamer.cli", "txlightstreamer.cli.options", "txlightstreamer.service")


def options_class() -> Any:
    """The ``usage.Options`` subclass shared by ``twistd lightstreamer`` and ``python -m``."""
    for name in CANDIDATES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found = getattr(module, "Options", None)
        if found is not None:
            return found
    raise ImportError(f"no Options class in any of {', '.join(CANDIDATES)}")


def option_rows(cls: Any) -> list[tuple[str, str, str]]:
    """(option, default, help) for every long option, in the order ``--help`` shows them."""
    opts = cls()
    rows = []
    for long in opts.longOpt:
        name = long.rstrip("=")
        if name in ("help",):
            continue
        takes_value = long.endswith("=")
        shown = f"--{name}={name.upper().replace('-', '_')}" if takes_value else f"--{name}"
        default = opts.defaults.get(name) if hasattr(opts, "defaults") else None
        default = "" if default is None or not takes_value else repr(default)
        doc = " ".join((opts.docs.get(name) or "").split())
        rows.append((shown, default, doc))
    return rows


def _cell(text: str) -> str:
    # Escaped, "|" is not a substitution and "--" stays two hyphens (no smart en dash).
    return text.replace("|", "\\|").replace("--", "-\\-")


class OptionsDirective(SphinxDirective):
    """Render the options of the service's ``usage.Options`` as a list table."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        cls = options_class()
        lines = [
            f"Read from ``{cls.__module__}.{cls.__qualname__}``.",
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 32 10 58",
            "",
            "   * - option",
            "     - default",
            "     - meaning",
        ]
        for shown, default, doc in option_rows(cls):
            lines += [
                f"   * - ``{shown}``",
                f"     - ``{default}``" if default else "     -",
                f"     - {_cell(doc)}" if doc else "     -",
            ]
        longdesc = " ".join(str(getattr(cls, "longdesc", "")).split())
        if longdesc:
            lines += ["", _cell(longdesc)]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="txlightstreamer-options"),
                                self.content_offset, container)
        return list(container.children)


class OptionalModuleDirective(SphinxDirective):
    """``automodule`` for a module that may not exist yet (the service is being split)."""

    required_arguments = 1
    has_content = False
    option_spec = {"defer-to": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        try:
            module = importlib.import_module(name)
        except ImportError:
            return []
        # Names re-exported from a module documented on its own are documented there.
        others = tuple(f"{other}" for other in self.options.get("defer-to", "").split())
        excluded = [
            member for member in getattr(module, "__all__", [])
            if str(getattr(getattr(module, member), "__module__", "")).startswith(others)
            and others
        ]
        lines = [name, "-" * len(name), "", f".. automodule:: {name}", "   :members:",
                 "   :undoc-members:"]
        if excluded:
            lines.append(f"   :exclude-members: {', '.join(excluded)}")
        lines += ["", f".. public-data:: {name}", ""]
        container = nodes.section()
        self.state.nested_parse(StringList(lines, source=name), self.content_offset,
                                container, match_titles=True)
        return list(container.children)


class PublicDataDirective(SphinxDirective):
    """
    Document the constants and type aliases of a module's ``__all__`` that autodoc skipped
    (imported values have no source line for autodoc to find): the ``#:`` comment of the
    module that defines them, and their value when it is short.
    """

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        module = importlib.import_module(name)
        known = self.env.get_domain("py").objects  # type: ignore[attr-defined]
        lines: list[str] = []
        for member in getattr(module, "__all__", []):
            value = getattr(module, member)
            full = f"{name}.{member}"
            if full in known or inspect.isclass(value) or inspect.isroutine(value) \
                    or inspect.ismodule(value):
                continue
            lines += [f".. py:data:: {member}", f"   :module: {name}"]
            shown = repr(value)
            if len(shown) <= 70 and "\n" not in shown:
                lines += [f"   :value: {shown}"]
            lines += ["", *(f"   {line}" for line in _attribute_doc(name, member, value)), ""]
        if not lines:
            return []
        container = nodes.section()
        self.state.nested_parse(StringList([".. rubric:: Constants", "", *lines], source=name),
                                self.content_offset, container)
        return list(container.children)


def _attribute_doc(module_name: str, member: str, value: Any) -> list[str]:
    """The ``#:`` documentation of ``member`` in whichever loaded module defines it."""
    root = module_name.split(".")[0]
    candidates = [module_name] + sorted(
        name for name, module in list(sys.modules.items())
        if name.startswith(root + ".") and getattr(module, member, None) is value)
    for candidate in candidates:
        try:
            analyzer = ModuleAnalyzer.for_module(candidate)
            docs = analyzer.find_attr_docs()
        except Exception:  # noqa: BLE001 (no source: try the next one)
            continue
        found = docs.get(("", member))
        if found:
            return [line for line in found if line.strip()] or ["(no description)"]
    return ["(no description)"]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("public-data", PublicDataDirective)
    app.add_directive("txlightstreamer-options", OptionsDirective)
    app.add_directive("optional-automodule", OptionalModuleDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
