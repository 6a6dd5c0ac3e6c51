"""The import graph of ``tl_lightning/``, read from the source with ``ast`` (nothing is imported).

    python scripts/import_graph.py            # cycles, layer violations and over-long modules; exit 1 if any
    python scripts/import_graph.py --edges    # also every module -> module arrow

Cycles are checked twice: between modules, and between packages (``data``, ``tools``, ``rl``...; a top-level
module such as ``losses`` is a package of its own), where ``data.a -> tools.b -> data.c`` is a cycle even
though no module imports itself back.

Every import counts, including those inside functions: a lazy import still makes one module depend on
another, it only hides the dependency from the reader. Imports under ``if TYPE_CHECKING:`` do not count,
since they never run. ``tests/test_architecture.py`` asserts the same rules.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "tl_lightning"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: Lower layers and the upper layers they must never import (docs/architecture.md#layers): data flows one way.
LOWER = ("data", "tools", "benchmarks")
UPPER = ("modules", "evaluation", "synthetic")
#: The top layer: it may import anything, and no other module may import it (the entry point names it as a string).
TOP = ("experiments",)
MAX_LINES = 400
#: Data rather than logic: tables of tools and scenarios may be long.
LENGTH_EXEMPT = ("tools/toolkits/", "synthetic/scenarios/")


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: Path, modules: set[str], root: Path = ROOT) -> set[str]:
    """The package modules that ``path`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` depends on the submodule; `from pkg import name` on pkg itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in targets:
            # the longest prefix that is a module of the package: `a.b.func` -> `a.b`
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


def build_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imports_of(f, modules, root) for f in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph folded onto packages: ``tl_lightning.data.schema`` -> ``data``, ``tl_lightning.losses`` ->
    ``losses``; arrows inside one package are dropped."""
    folded: dict[str, set[str]] = {_layer(m) or PACKAGE: set() for m in graph}
    for src, dsts in graph.items():
        for dst in dsts:
            a, b = _layer(src) or PACKAGE, _layer(dst) or PACKAGE
            if a != b:
                folded[a].add(b)
    return folded


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted(
        (src, dst)
        for src, dsts in graph.items()
        for dst in dsts
        if (_layer(src) in LOWER and _layer(dst) in UPPER) or (_layer(dst) in TOP and _layer(src) not in TOP)
    )


def long_modules(root: Path = ROOT, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    out = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        n = len(f.read_text(encoding="utf-8").splitlines())
        if n > limit and not rel.startswith(LENGTH_EXEMPT):
            out.append((rel, n))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every arrow")
    args = parser.parse_args(argv)
    graph = build_graph()
    if args.edges:
        for src in sorted(graph):
            for dst in sorted(graph[src]):
                print(f"{src} -> {dst}")
    problems = 0
    packages = package_graph(graph)
    if args.edges:
        for src in sorted(packages):
            for dst in sorted(packages[src]):
                print(f"package {src} -> {dst}")
    for component in cycles(graph):
        problems += 1
        print("cycle: " + " <-> ".join(component))
    for component in cycles(packages):
        problems += 1
        print("package cycle: " + " <-> ".join(component))
    for src, dst in layer_violations(graph):
        problems += 1
        print(f"upward import: {src} -> {dst}")
    for rel, n in long_modules():
        problems += 1
        print(f"over {MAX_LINES} lines: {rel} ({n})")
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} arrows, {len(packages)} packages, {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
