"""The import direction of the code: ``ndx_mimic`` <- ``session`` <- cores <- adapters <- ``cli``.

Every import is counted, also those inside functions (an import moved into a function to dodge a
cycle is still a cycle). Read from the source with ``ast``; nothing is imported.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("ndx_mimic", "mimic_nwb")

# Layers, lowest first: a module may import only modules of its own layer or lower ones.
#   0 ndx_mimic (the data standard)
#   1 mimic_nwb.session, errors, the package (open)
#   2 cores: arrays and configs in, arrays out (stac.core, simulate.rollout, controller, encoding.core, ...)
#   3 adapters: modules that read or append session files (they import mimic_nwb.session), the NWB
#     writers, and the importers
#   4 front ends: the command line, the demo, batch runs
FRONT_ENDS = {"mimic_nwb.cli", "mimic_nwb.__main__", "mimic_nwb.demo", "mimic_nwb.batch"}
SESSION_LAYER = {"mimic_nwb", "mimic_nwb.session", "mimic_nwb.errors"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    base = package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> set[str]:
    """Modules of this project that ``module`` imports, anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module and target.split(".")[0] in PACKAGES:
                found.add(target)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


ADAPTERS = {
    module
    for module, targets in GRAPH.items()
    if module not in SESSION_LAYER | FRONT_ENDS
    and module.startswith("mimic_nwb")
    and ("mimic_nwb.session" in targets or module.startswith("mimic_nwb.importers") or module == "mimic_nwb.writers")
}


def layer(module: str) -> int:
    if module.startswith("ndx_mimic"):
        return 0
    if module in SESSION_LAYER:
        return 1
    if module in FRONT_ENDS:
        return 4
    if module in ADAPTERS:
        return 3
    return 2


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    if MODULES[module].name == "__init__.py" and module != "mimic_nwb":
        pytest.skip("a package's __init__ only re-exports its own modules")
    upward = sorted(
        target for target in GRAPH[module] if layer(target) > layer(module) and not _is_package_reexport(target, module)
    )
    assert upward == [], f"{module} (layer {layer(module)}) imports upper layers: {upward}"


def _is_package_reexport(target: str, module: str) -> bool:
    # ``from . import x`` inside a package resolves to the package itself; not an upward import.
    return MODULES[target].name == "__init__.py" and module.startswith(target + ".")


def test_ndx_mimic_never_imports_the_pipeline():
    for module in MODULES:
        if module.startswith("ndx_mimic"):
            assert not any(t.startswith("mimic_nwb") for t in GRAPH[module]), module


def test_no_import_cycles():
    """The module graph (package ``__init__`` re-exports aside) has no cycle."""
    edges = {
        module: {t for t in targets if MODULES[t].name != "__init__.py"}
        for module, targets in GRAPH.items()
        if MODULES[module].name != "__init__.py"
    }
    cycles = []
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_controller_does_not_import_the_simulation():
    """simulate runs the controller; the controller never reaches back (it was a hidden cycle)."""
    for module in MODULES:
        if module.startswith("mimic_nwb.controller"):
            assert not any(t.startswith("mimic_nwb.simulate") for t in GRAPH[module]), module
