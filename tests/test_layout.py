"""The package is a house of layers: imports point down, never in a circle.

The imports are read with ``ast`` (nothing is run), including those inside functions: a lazy
import is still a dependency. Layers, top to bottom (docs/design.md, "Layout"):

    cli -> pipelines -> models / study / report -> io -> imaging -> errors, config

``io`` is the floor of the middle row: its ``Dataset`` type is what models, study and report
take. Rooms on one floor (models, study, report) never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "compare_models"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Rank of each room: a module may import only from rooms of a lower rank, or from its own.
RANKS = {
    "": 0,  # compare_models/__init__.py (the version)
    "errors": 0,
    "config": 0.5,  # reads YAML into config objects; raises errors
    "imaging": 1,
    "io": 2,
    "models": 3,
    "study": 3,
    "report": 3,
    "pipelines": 4,
    "cli": 5,
}
EXPECTED_ROOMS = {"imaging", "io", "models", "study", "report", "pipelines"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module that ``path`` imports, resolved to a name in ``modules``."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # "from pkg import module" names a module; "from module import name" does not.
            targets = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target.startswith(PACKAGE) and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    graph = {}
    for name, path in modules.items():
        targets = imported_modules(path, modules)
        # Importing a package's submodule runs the package's __init__; that edge is implicit.
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph


def test_rooms_exist_and_every_module_has_a_layer():
    modules = package_modules()
    rooms = {room(m) for m in modules}
    assert EXPECTED_ROOMS <= rooms
    unknown = sorted(m for m in modules if room(m) not in RANKS)
    assert not unknown, f"modules outside the layer map (add them to a room): {unknown}"


def test_imports_point_down_only():
    upward = []
    for module, targets in import_graph().items():
        here = room(module)
        for target in targets:
            there = room(target)
            if there == here:
                continue
            if RANKS[there] >= RANKS[here]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def test_imaging_knows_no_file_format_model_or_cli():
    for module, targets in import_graph().items():
        if room(module) == "imaging":
            bad = {t for t in targets if room(t) not in ("imaging", "errors", "config", "")}
            assert not bad, f"{module} imports {sorted(bad)}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


_MUTABLE_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque"}


def _is_mutable(value) -> bool:
    if isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name in _MUTABLE_CALLS
    return False


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_module_level_mutable_state(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [getattr(t, "id", "") for t in targets]
            if names != ["__all__"] and _is_mutable(node.value):
                bad.append(f"line {node.lineno}: {', '.join(names)}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            bad.append(f"line {node.lineno}: global {', '.join(node.names)}")
    assert not bad, f"{path.name}: module-level mutable state (use a tuple, a frozen mapping or pass it):\n" + "\n".join(bad)
