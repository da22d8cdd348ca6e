"""Structure limits of txlightstreamer (issue 14), checked from the source with ``ast``.

Reports every import cycle among the package's modules (and ``twisted/plugins``), every
class over 400 lines and every module over 700 lines; exits 1 if there is any.

Every import counts: at module level, inside functions, under ``TYPE_CHECKING``, and
``importlib.import_module`` with a literal name. A package's ``__init__`` is a module of its
own; ``import a.b.c`` and ``from a.b import c`` (``c`` a module) are edges to ``a.b.c`` only.

Usage: ``python tools/check_structure.py [--root DIR] [--quiet]``
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("txlightstreamer", "twisted/plugins")
MAX_CLASS_LINES = 400
MAX_MODULE_LINES = 700
MAX_CYCLES_LISTED = 200  # per strongly connected component: keeps a tangle readable


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the checked packages (and the
    ``.pyi`` stub of each C extension module, which has no ``.py``)."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        base = root / package
        if not base.is_dir():
            continue
        for path in sorted([*base.rglob("*.py"), *base.rglob("*.pyi")]):
            if "__pycache__" in path.parts:
                continue
            if path.suffix == ".pyi" and path.with_suffix(".py").exists():
                continue
            modules[module_name(root, path)] = path
    return modules


def resolve_relative(current: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` in module ``current``."""
    parts = current.split(".")
    if not is_package:
        parts = parts[:-1]  # a plain module's package
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    if target:
        parts.append(target)
    return ".".join(parts)


def known(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules (None: not ours)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imported_names(tree: ast.AST, current: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """(dotted name, line) for every import anywhere in the tree; ``from`` imports yield
    ``package.name`` first, the caller falls back to ``package``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = resolve_relative(current, is_package, node.level, node.module)
            for alias in node.names:
                if alias.name == "*":
                    yield base, node.lineno
                else:
                    yield f"{base}.{alias.name}", node.lineno
        elif isinstance(node, ast.Call) and _is_import_call(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield arg.value, node.lineno


def _is_import_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("import_module", "__import__")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line of such an import}."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: dict[str, int] = {}
        for target, line in imported_names(tree, name, path.name == "__init__.py"):
            found = known(target, modules)
            if found is not None and found != name:
                edges.setdefault(found, line)
            elif found == name and target == name:
                edges.setdefault(found, line)  # a module importing itself by name
        graph[name] = edges
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return sorted(components)


def cycles_in(component: list[str], graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Elementary cycles of one component, each starting at its smallest member."""
    members = set(component)
    if len(component) == 1:
        only = component[0]
        return [[only]] if only in graph[only] else []
    found: list[list[str]] = []
    for start in component:
        # Only cycles whose smallest member is `start`: each cycle is listed once.
        allowed = {m for m in members if m >= start}
        path = [start]
        on_path = {start}
        work: list[Iterator[str]] = [iter(sorted(t for t in graph[start] if t in allowed))]
        while work:
            nxt = next(work[-1], None)
            if nxt is None:
                work.pop()
                on_path.discard(path.pop())
                continue
            if nxt == start:
                found.append(list(path))
                if len(found) >= MAX_CYCLES_LISTED:
                    return found
            elif nxt not in on_path:
                path.append(nxt)
                on_path.add(nxt)
                work.append(iter(sorted(t for t in graph[nxt] if t in allowed)))
    return sorted(found, key=lambda c: (len(c), c))


def long_classes(tree: ast.AST) -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, length) of every class over the limit, nested ones too."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, ast.ClassDef):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                length = (child.end_lineno or child.lineno) - first + 1
                name = f"{prefix}{child.name}."
                if length > MAX_CLASS_LINES:
                    yield f"{prefix}{child.name}", first, length
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}."
            yield from visit(child, name)

    yield from visit(tree, "")


def check(root: Path) -> list[str]:
    """The problems found, one line each (empty: the structure is within its limits)."""
    modules = find_modules(root)
    graph = import_graph(modules)
    problems: list[str] = []
    for component in strongly_connected(graph):
        cycles = cycles_in(component, graph)
        if not cycles:
            continue
        problems.append(f"import cycle among {len(component)} modules: {', '.join(component)}")
        for cycle in cycles:
            pairs = zip(cycle, [*cycle[1:], cycle[0]], strict=True)
            hops = [f"{a} (line {graph[a][b]})" for a, b in pairs]
            problems.append("    " + " -> ".join([*hops, cycle[0]]))
        if len(cycles) >= MAX_CYCLES_LISTED:
            problems.append(f"    ... (first {MAX_CYCLES_LISTED} cycles only)")
    for path in modules.values():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            problems.append(f"module over {MAX_MODULE_LINES} lines: {rel} ({lines} lines)")
        for qualname, first, length in long_classes(ast.parse(text)):
            problems.append(
                f"class over {MAX_CLASS_LINES} lines: {rel}:{first} {qualname} ({length} lines)"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout to read (default: the one holding this script)")
    parser.add_argument("--graph", action="store_true", help="also print the import graph")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.graph:
        for name, edges in import_graph(find_modules(root)).items():
            print(f"{name} -> {', '.join(sorted(edges)) or '-'}")
    problems = check(root)
    for line in problems:
        print(line)
    modules = len(find_modules(root))
    if problems:
        count = sum(1 for p in problems if not p.startswith(" "))
        print(f"structure check: {count} problem(s) in {modules} modules", file=sys.stderr)
        return 1
    print(f"structure check: {modules} modules, no import cycle, "
          f"no class over {MAX_CLASS_LINES} lines, no module over {MAX_MODULE_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
