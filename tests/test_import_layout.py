"""The package's import graph: one-way arrows between sub-packages, and no cycles.

Every import counts: module level, inside functions, and under `if TYPE_CHECKING:` (a type-only
import is still a dependency a reader has to follow, and a cycle through a function-level import
is a cycle that only happens to work because of the order modules load in).

Allowed arrows (README "Layout"):
    core                      imports nothing of ours
    measure, gate, report,
    history                   import only core (and themselves)
    run                       imports core, measure, gate, report, history
    plugin, fixtures, cli     import anything
The package root (`pytest_nvme_ai/__init__.py`) runs before every sub-package, so it may import only core.

Inside measure/, a workload package (a sub-package that runs a workload: zero_inference, zero_infinity,
and the next ones, kv_cache/, model_load/...) never imports another workload package: what two share
lives in a shared package (`SHARED_MEASURE`: the DeepSpeed toolkit, fio, aio) or a plain module
(throttle, bounds, device...), and those import no workload package either.
"""
from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "pytest_nvme_ai"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

TOP = "top"  # plugin.py, fixtures.py, cli.py, __main__ and anything else at the top level
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "measure": frozenset({"core", "measure"}),
    "gate": frozenset({"core", "gate"}),
    "report": frozenset({"core", "report"}),
    "history": frozenset({"core", "history"}),
    "run": frozenset({"core", "measure", "gate", "report", "history", "run"}),
    "root": frozenset({"core"}),
    TOP: frozenset({"core", "measure", "gate", "report", "history", "run", TOP, "root"}),
}


# Sub-packages of measure/ every workload may import; every other sub-package of measure/ is a workload.
SHARED_MEASURE = frozenset({"deepspeed", "fio", "aio"})


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    how: str  # "module", "function" or "TYPE_CHECKING"


def module_names(pkg_dir: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package."""
    out: dict[str, Path] = {}
    for f in sorted(pkg_dir.rglob("*.py")):
        parts = [package, *f.relative_to(pkg_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with where it sits: module level, a function, or a TYPE_CHECKING block."""
    found: list[tuple[ast.Import | ast.ImportFrom, str]] = []

    def visit(node: ast.AST, how: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, how))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, "function" if how == "module" else how)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), "TYPE_CHECKING")
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), how)
            else:
                visit(child, how)

    visit(tree, "module")
    return found


def import_edges(pkg_dir: Path, package: str) -> list[Edge]:
    mods = module_names(pkg_dir, package)
    edges: list[Edge] = []
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, how in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods else base)
            for t in targets:
                # `import pkg.a.b` names module pkg.a.b; fall back to the longest prefix that is a module.
                while t and t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != name:
                    edges.append(Edge(name, t, node.lineno, how))
    return list(dict.fromkeys(edges))  # `from m import a, b` is one arrow


def layer_of(module: str, package: str) -> str:
    parts = module.split(".")
    if parts == [package]:
        return "root"
    if len(parts) >= 3 or (len(parts) == 2 and parts[1] in ALLOWED and parts[1] not in (TOP, "root")):
        return parts[1] if parts[1] in ALLOWED else TOP
    return TOP


def forbidden_arrows(edges: list[Edge], package: str) -> list[str]:
    bad = []
    for e in edges:
        src, dst = layer_of(e.src, package), layer_of(e.dst, package)
        if dst not in ALLOWED[src]:
            bad.append(f"{e.src}:{e.line} ({e.how} import) -> {e.dst}: {src} may not import {dst}")
    return bad


def workload_of(module: str, package: str, pkg_dir: Path) -> str | None:
    """The workload package under measure/ that `module` belongs to, or None (shared, a plain module, elsewhere)."""
    parts = module.split(".")
    if len(parts) < 3 or parts[1] != "measure" or parts[2] in SHARED_MEASURE:
        return None
    return parts[2] if (pkg_dir / "measure" / parts[2]).is_dir() else None


def workload_crossings(edges: list[Edge], package: str, pkg_dir: Path) -> list[str]:
    """Arrows into a workload package from anywhere else under measure/ (another workload, the toolkit,
    a plain module): what two workloads share belongs in a shared package."""
    bad = []
    for e in edges:
        dst = workload_of(e.dst, package, pkg_dir)
        if dst is None or layer_of(e.src, package) != "measure":
            continue
        src = workload_of(e.src, package, pkg_dir)
        if src != dst:
            who = f"workload {src}" if src else "a shared module"
            bad.append(f"{e.src}:{e.line} ({e.how} import) -> {e.dst}: {who} may not import workload {dst}")
    return bad


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.src, set()).add(e.dst)
        graph.setdefault(e.dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def strongconnect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return out


def describe_cycle(comp: list[str], edges: list[Edge]) -> str:
    inside = set(comp)
    arrows = sorted({f"{e.src} -> {e.dst} ({e.how}, line {e.line})" for e in edges
                     if e.src in inside and e.dst in inside})
    return " | ".join(comp) + "\n    " + "\n    ".join(arrows)


# ---- the package itself ------------------------------------------------------------------------
def test_no_import_cycles() -> None:
    edges = import_edges(PACKAGE_DIR, PACKAGE)
    found = cycles(edges)
    assert not found, "import cycles:\n  " + "\n  ".join(describe_cycle(c, edges) for c in found)


def test_arrows_point_the_allowed_way() -> None:
    bad = forbidden_arrows(import_edges(PACKAGE_DIR, PACKAGE), PACKAGE)
    assert not bad, "imports against the layout's direction:\n  " + "\n  ".join(bad)


def test_no_workload_imports_another() -> None:
    bad = workload_crossings(import_edges(PACKAGE_DIR, PACKAGE), PACKAGE, PACKAGE_DIR)
    assert not bad, "measure/ workloads must share through a shared package:\n  " + "\n  ".join(bad)


def test_graph_is_read_at_all() -> None:
    # Guard against a checker that silently reads nothing (wrong path, every import missed).
    edges = import_edges(PACKAGE_DIR, PACKAGE)
    assert any(e.src == f"{PACKAGE}.plugin" and e.dst.startswith(f"{PACKAGE}.run.") for e in edges)
    assert any(e.how == "function" for e in edges)


# ---- the checker on a synthetic tree -----------------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "fakepkg"
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_checker_finds_a_cycle_through_a_function_import(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "run/__init__.py": "",
        "run/a.py": "from fakepkg.run.b import thing\n",
        "run/b.py": "def thing():\n    from fakepkg.run import a\n    return a\n",
        "run/c.py": "from fakepkg.run.a import x\n",
    })
    edges = import_edges(root, "fakepkg")
    assert {(e.src, e.dst, e.how) for e in edges} >= {
        ("fakepkg.run.a", "fakepkg.run.b", "module"), ("fakepkg.run.b", "fakepkg.run.a", "function")}
    assert cycles(edges) == [["fakepkg.run.a", "fakepkg.run.b"]]


def test_checker_finds_forbidden_arrows_including_type_checking(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fakepkg.run.r import R\n",
        "measure/__init__.py": "",
        "measure/m.py": "from ..gate import g\nimport fakepkg.core\n",
        "gate/__init__.py": "",
        "gate/g.py": "import fakepkg.core\n",
        "run/__init__.py": "",
        "run/r.py": "from fakepkg.measure import m\nfrom fakepkg import plugin\n",
        "plugin.py": "from fakepkg.run import r\n",
    })
    bad = forbidden_arrows(import_edges(root, "fakepkg"), "fakepkg")
    assert len(bad) == 3, bad
    assert any("fakepkg.core.x:3 (TYPE_CHECKING import) -> fakepkg.run.r" in b for b in bad)
    assert any("fakepkg.measure.m:1 (module import) -> fakepkg.gate.g" in b for b in bad)  # relative import resolved
    assert any("fakepkg.run.r:2" in b and "run may not import top" in b for b in bad)
    # ... and a cycle run.r -> plugin -> run.r is a cycle as well as an arrow.
    assert cycles(import_edges(root, "fakepkg")) == [["fakepkg.plugin", "fakepkg.run.r"]]


def test_checker_finds_one_workload_importing_another(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "__init__.py": "",
        "measure/__init__.py": "",
        "measure/throttle.py": "",
        "measure/deepspeed/__init__.py": "",
        "measure/deepspeed/launch.py": "from fakepkg.measure.train.runner import x\n",
        "measure/infer/__init__.py": "",
        "measure/infer/runner.py": "from fakepkg.measure.deepspeed import launch\nfrom fakepkg.measure import throttle\n",
        "measure/train/__init__.py": "",
        "measure/train/runner.py": "def f():\n    from fakepkg.measure.infer.runner import y\n",
        "measure/train/child.py": "from . import runner\n",
    })
    bad = workload_crossings(import_edges(root, "fakepkg"), "fakepkg", root)
    assert len(bad) == 2, bad
    assert any("fakepkg.measure.train.runner:2 (function import) -> fakepkg.measure.infer.runner: workload train "
               "may not import workload infer" in b for b in bad)
    assert any("fakepkg.measure.deepspeed.launch:1" in b and "a shared module may not import workload train" in b
               for b in bad)


@pytest.mark.parametrize(("module", "layer"), [
    ("fakepkg", "root"), ("fakepkg.core", "core"), ("fakepkg.core.metrics", "core"),
    ("fakepkg.measure.fio.job", "measure"), ("fakepkg.plugin", TOP), ("fakepkg.cli", TOP),
    ("fakepkg.report", "report"),
])
def test_layer_of(module: str, layer: str) -> None:
    assert layer_of(module, "fakepkg") == layer
