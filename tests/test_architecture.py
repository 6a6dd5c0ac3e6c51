"""The package's shape (docs/architecture.md#layers): no import cycles, lower layers never import upper ones, short modules.

The graph is read from the source by ``scripts/import_graph.py``; these tests hold its rules.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"


@pytest.fixture(scope="module")
def ig():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def graph(ig):
    return ig.build_graph()


def test_no_import_cycles(ig, graph):
    assert ig.cycles(graph) == []


def test_no_package_cycles(ig, graph):
    packages = ig.package_graph(graph)
    assert {"data", "tools", "benchmarks", "rl", "modules", "losses"} <= set(packages)
    assert ig.cycles(packages) == []


def test_data_is_the_bottom_layer_of_the_packages(ig, graph):
    """``data`` (schema, templates, encoding) imports no other package but the top-level tokenization and
    range helpers; ``tools`` and ``benchmarks`` build on it, never the reverse."""
    packages = ig.package_graph(graph)
    assert packages["data"] <= {"tokenization", "ranges"}
    assert "benchmarks" not in packages["tools"] and "rl" not in packages["data"] | packages["tools"]


def test_lower_layers_never_import_upper_ones(ig, graph):
    assert ig.layer_violations(graph) == []


def test_no_module_over_400_lines(ig):
    assert ig.long_modules() == []


def test_the_checker_sees_lazy_imports_and_ignores_type_only_ones(ig, tmp_path):
    pkg = tmp_path / "tl_lightning"
    (pkg / "data").mkdir(parents=True)
    (pkg / "evaluation").mkdir()
    for init in (pkg, pkg / "data", pkg / "evaluation"):
        (init / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text(textwrap.dedent("""
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from tl_lightning.evaluation.b import B
        def f():
            from tl_lightning.evaluation import b
            return b
    """))
    (pkg / "evaluation" / "b.py").write_text("from ..data.a import f\n")
    graph = ig.build_graph(pkg)
    assert graph["tl_lightning.data.a"] == {"tl_lightning.evaluation.b"}
    assert graph["tl_lightning.evaluation.b"] == {"tl_lightning.data.a"}
    assert ig.cycles(graph) == [["tl_lightning.data.a", "tl_lightning.evaluation.b"]]
    assert ig.layer_violations(graph) == [("tl_lightning.data.a", "tl_lightning.evaluation.b")]
    assert ig.cycles(ig.package_graph(graph)) == [["data", "evaluation"]]
    (pkg / "data" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tl_lightning.evaluation.b import B\n")
    assert ig.cycles(ig.build_graph(pkg)) == []


def test_a_cycle_between_packages_is_found_where_no_module_cycles(ig, tmp_path):
    pkg = tmp_path / "tl_lightning"
    for sub in ("data", "tools"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("from tl_lightning.tools import b\n")
    (pkg / "tools" / "b.py").write_text("from tl_lightning.data import c\n")
    (pkg / "data" / "c.py").write_text("")
    graph = ig.build_graph(pkg)
    assert ig.cycles(graph) == []
    assert ig.cycles(ig.package_graph(graph)) == [["data", "tools"]]
