"""
``.. txlightstreamer-options::``: the command-line options, read from the ``usage.Options``
class itself (never copied by hand), as a table.
"""

from __future__ import annotations

import importlib
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
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
        shown = f"--{name}={name.split('-')[-1].upper()}" if takes_value else f"--{name}"
        default = opts.defaults.get(name) if hasattr(opts, "defaults") else None
        default = "" if default is None or not takes_value else repr(default)
        doc = " ".join((opts.docs.get(name) or "").split())
        rows.append((shown, default, doc))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


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
            "   :widths: 25 12 63",
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

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        try:
            importlib.import_module(name)
        except ImportError:
            return []
        lines = [name, "-" * len(name), "", f".. automodule:: {name}", "   :members:", ""]
        container = nodes.section()
        self.state.nested_parse(StringList(lines, source=name), self.content_offset,
                                container, match_titles=True)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("txlightstreamer-options", OptionsDirective)
    app.add_directive("optional-automodule", OptionalModuleDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
