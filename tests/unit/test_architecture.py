"""ARCHITECTURE.md's import rule, checked on the source: data flows sweeps -> trainables -> models, analysis and
tracking import none of those (analysis reads results only, so it runs against a cluster's MLflow from a laptop), Ray
lives in sweeps and trainables only, MLflow in sweeps, analysis and tracking only, and nothing imports in a circle.
Function-level imports count: a cycle through a lazy import is still a cycle."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "trainables", "sweeps", "analysis", "tracking")
# package -> the project packages it must never import
FORBIDDEN = {
    "models": {"trainables", "sweeps", "analysis", "tracking"},
    "trainables": {"sweeps", "analysis", "tracking"},
    "analysis": {"models", "trainables", "sweeps"},
    "tracking": {"models", "trainables", "sweeps", "analysis"},
    "sweeps": set(),
}
THIRD_PARTY_HOMES = {"ray": {"sweeps", "trainables"}, "mlflow": {"sweeps", "analysis", "tracking"}}


def project_modules(root: Path) -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def imported_names(path: Path) -> set[str]:
    """Every absolute module name the file imports, at any depth (`from a import b` gives a and a.b)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = project_modules(root)
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(path):
            while imported and imported not in modules:  # a.b.func -> a.b
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each holds at least one cycle)."""
    order, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in order:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], order[target])
        if low[node] == order[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in order:
            visit(node)
    return found


def test_the_product_has_no_import_cycles():
    assert cycles(import_graph(ROOT)) == []


def test_the_cycle_check_finds_a_cycle_through_a_lazy_import(tmp_path):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "a.py").write_text("from sweeps.b import thing\n")
    (tmp_path / "sweeps" / "b.py").write_text("def thing():\n    from sweeps import a\n")
    assert cycles(import_graph(tmp_path)) == [["sweeps.a", "sweeps.b"]]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package):
    graph = import_graph(ROOT)
    wrong = sorted(f"{module} -> {target}" for module, targets in graph.items() if module.split(".")[0] == package
                   for target in targets if target.split(".")[0] in FORBIDDEN[package])
    assert wrong == []


@pytest.mark.parametrize("library", sorted(THIRD_PARTY_HOMES))
def test_ray_and_mlflow_stay_in_their_packages(library):
    wrong = sorted(name for name, path in project_modules(ROOT).items()
                   if name.split(".")[0] not in THIRD_PARTY_HOMES[library]
                   and any(imported.split(".")[0] == library for imported in imported_names(path)))
    assert wrong == []
