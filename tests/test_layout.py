"""The package layout keeps its promises: the hazmat layer stands alone, the root imports lazily,
and no import circle joins two modules or two subpackages.

The import checks run in a child process so that what the test session already imported does
not hide what an import really loads. The graph checks parse every module with `ast`."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import safeface

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402

PACKAGE_DIR = Path(safeface.__file__).resolve().parent
# The layers above hazmat: the index and the template primitives must work without any of them.
ABOVE_HAZMAT = ("safeface.policy", "safeface.sdk", "safeface.workspace", "safeface.storage",
                "safeface.cli", "safeface.service")


def modules_after(code: str, tmp_path: Path) -> set[str]:
    """Names in sys.modules after a fresh interpreter runs `code`."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=child_env(),
                         capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_index_loads_nothing_above_it(tmp_path: Path) -> None:
    loaded = modules_after("import safeface.hazmat.index", tmp_path)
    assert "safeface.hazmat.index" in loaded and "safeface.hazmat.index._core" in loaded
    above = sorted(m for m in loaded if under(m, ABOVE_HAZMAT + ("PIL",)))
    assert above == [], f"import safeface.hazmat.index loads {above}"


def test_index_searches_in_that_process(tmp_path: Path) -> None:
    # The pure import is not a stub: the index works with nothing above it loaded.
    code = ("import numpy as np\nfrom safeface.hazmat.index import ExactIndex\n"
            "ix = ExactIndex(4)\nix.add(np.array([7]), np.eye(4, dtype=np.float32)[:1])\n"
            "assert ix.search(np.eye(4, dtype=np.float32)[:1], 1)[1][0, 0] == 7")
    loaded = modules_after(code, tmp_path)
    assert not [m for m in loaded if under(m, ABOVE_HAZMAT + ("PIL",))]


def test_package_root_imports_lazily(tmp_path: Path) -> None:
    loaded = modules_after("import safeface", tmp_path)
    assert sorted(m for m in loaded if m.startswith("safeface")) == ["safeface"]
    # A name is loaded on first use, from the module that defines it, and only that one.
    loaded = modules_after("import safeface\nassert safeface.SafeFaceError.__module__ == 'safeface.errors'",
                           tmp_path)
    assert sorted(m for m in loaded if m.startswith("safeface")) == ["safeface", "safeface.errors"]


# ---- the static import graph ----------------------------------------------------------------

def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__)."""
    out = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = module_files()
LAZY_EXPORTS: dict[str, str] = dict(safeface._EXPORTS)  # root name -> defining module


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, tree: ast.Module, module_level: bool) -> set[str]:
    """safeface modules that `module` imports: those run at import time (module_level), or
    every import anywhere in the file, functions included. TYPE_CHECKING blocks never run."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def inside(name: str, pkg: str) -> bool:
        return name == pkg or name.startswith(pkg + ".")

    def resolve(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        # `from x import y` imports x, and x.y too when y is a module; from the root, a lazy
        # name (PEP 562) imports the module that defines it.
        names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        if prefix == "safeface":
            names += [LAZY_EXPORTS[a.name] for a in node.names if a.name in LAZY_EXPORTS]
        return names

    def add(name: str) -> None:
        # Importing a.b.c runs a.b's __init__ first, then a.b.c. The importer's own ancestors
        # are already importing when it runs, so they add no edge.
        while name in MODULES and not inside(package, name):
            found.add(name)
            name = name.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in resolve(node):
                    add(name)
            elif isinstance(node, ast.If) and is_type_checking(node.test):
                visit(node.orelse)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not module_level:
                    visit(node.body)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, []) or [])

    visit(tree.body)
    found.discard(module)
    return found


def import_graph(module_level: bool) -> dict[str, set[str]]:
    return {name: imports_of(name, ast.parse(path.read_text(encoding="utf-8")), module_level)
            for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = dfs(node)
            if cycle:
                return cycle
    return None


def subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_graph_reader_sees_imports() -> None:
    # The checks below are only as good as this reader: it must find what it is meant to find.
    graph = import_graph(module_level=True)
    assert "safeface.hazmat.index._core" not in MODULES  # compiled: not a node, not an edge
    assert "safeface.hazmat.index.exact" in graph["safeface.hazmat.index"]
    assert "safeface.policy.deployment" in graph["safeface.workspace.report"]
    assert "safeface.sdk" not in graph["safeface.workspace.report"]  # TYPE_CHECKING only
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_between_modules() -> None:
    cycle = find_cycle(import_graph(module_level=True))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_import_circle_between_subpackages() -> None:
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph(module_level=True).items():
        edges = graph.setdefault(subpackage(module), set())
        edges.update(subpackage(t) for t in targets if subpackage(t) != subpackage(module))
    graph.pop("safeface", None)  # the root: lazy, imports nothing at module level
    cycle = find_cycle(graph)
    assert cycle is None, "subpackage circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("safeface.hazmat")))
def test_hazmat_never_imports_the_layers_above(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    above = sorted(t for t in imports_of(module, tree, module_level=False) if under(t, ABOVE_HAZMAT))
    assert above == [], f"{module} imports {above}, even if only inside a function"
