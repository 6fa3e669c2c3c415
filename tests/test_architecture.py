"""The package layout is the architecture (docs/architecture.md); these tests keep it so.

Module-level imports (not those under ``if TYPE_CHECKING:`` or inside functions) must follow
the layers below -- a subpackage imports only from lower layers and itself -- and form no
cycle; no module imports another module's private name; at most 12 modules sit directly in
``hookstats/``; no public function hides a module of the same name.
"""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

import hookstats

PACKAGE = Path(hookstats.__file__).parent

LAYERS = {
    "errors": 0,
    "units": 0,
    "points": 1,
    "counting": 2,
    "display": 2,
    "instrument": 3,
    "metrics": 4,
    "profiling": 5,
    "tracking": 6,
    "hardware": 7,
    "runs": 8,
    "integrations": 9,
    "plots": 9,
    "cli": 10,
    "__init__": 11,
    "__main__": 11,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` of the imports a module runs when it is imported."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((alias.name, []) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
                if not node.level:
                    target = node.module or ""
                names = [a.name for a in node.names]
                found.append((target, names))
            elif isinstance(node, ast.If) and not is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(target: str, names: list[str]) -> list[str]:
    """The hookstats modules an import statement loads (a name may be a submodule)."""
    if not target.startswith("hookstats"):
        return []
    submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
    takes_attributes = not names or len(submodules) < len(names)
    return submodules + ([target] if target in MODULES and takes_attributes else [])


def layer_of(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


GRAPH = {
    name: sorted({m for t, n in module_level_imports(path) for m in resolve(t, n)} - {name})
    for name, path in MODULES.items()
}


def test_every_subpackage_and_top_level_module_has_a_layer():
    tops = {name.split(".")[1] for name in MODULES if name.count(".") >= 1}
    assert tops <= set(LAYERS), f"add {tops - set(LAYERS)} to LAYERS and docs/architecture.md"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module):
    mine = layer_of(module)
    mine_top = module.split(".")[1] if "." in module else "__init__"
    for imported in GRAPH[module]:
        top = imported.split(".")[1] if "." in imported else "__init__"
        assert top == mine_top or layer_of(imported) < mine, (
            f"{module} (layer {mine}) imports {imported} (layer {layer_of(imported)})"
        )


def test_no_module_level_import_cycle():
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in GRAPH[node]:
            if nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_imported_from_other_modules(module):
    for target, names in module_level_imports(MODULES[module]):
        if target.startswith("hookstats"):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{module} imports private {private} from {target}"


def test_at_most_twelve_modules_at_the_top():
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 12, sorted(top)


@pytest.mark.parametrize("name", ["profiling", "tracking", "runs", "metrics", "hardware", "cli"])
def test_subpackages_are_modules_not_hidden_by_functions(name):
    assert isinstance(importlib.import_module(f"hookstats.{name}"), types.ModuleType)
    assert isinstance(getattr(hookstats, name), types.ModuleType)
    assert callable(hookstats.profile) and callable(hookstats.track) and callable(hookstats.sweep)
