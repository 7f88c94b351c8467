"""The package reads as its data path: each stage imports only the stages before it.

Every import counts, the lazy ones inside functions too: a cycle hidden in a function is still
a cycle for the reader.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "zoo"
# Stages in data-flow order. A module may import its own stage and the stages before it.
STAGES = [
    ("zoo.errors", "zoo.home", "zoo.reporting", "zoo.quiet", "zoo.child"),
    ("zoo.catalog",),
    ("zoo.sources",),
    ("zoo.data", "zoo.demo_data"),
    ("zoo.extraction",),
    ("zoo.training",),
    ("zoo.analysis",),
    ("zoo.runs",),
    ("zoo.api",),
    ("zoo.cli", "zoo.launch", "zoo.__main__"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The zoo modules `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from zoo.runs import store` imports the submodule zoo.runs.store
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [name for name in submodules if name in known] or [node.module]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def stage_of(module: str) -> int:
    for number, prefixes in enumerate(STAGES):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return number
    raise AssertionError(f"{module} belongs to no stage; add it to STAGES")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, set(known)) - {name} for name, path in known.items()}


def test_every_module_has_a_stage():
    for module in modules():
        if module != "zoo":
            stage_of(module)


@pytest.mark.parametrize("module", sorted(set(modules()) - {"zoo"}))
def test_a_module_imports_only_earlier_stages(module):
    later = [
        imported
        for imported in sorted(graph()[module])
        if imported != "zoo" and stage_of(imported) > stage_of(module)
    ]
    assert not later, f"{module} imports later stages: {later}"


def test_no_import_cycle():
    edges = graph()
    edges.pop("zoo")  # the package's lazy __getattr__ points at the API on purpose
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycle = trail[trail.index(target) :] if target in trail else trail
                raise AssertionError(" -> ".join([*cycle, target]))
            if target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])


def test_the_engine_never_formats_for_the_terminal():
    for module, path in modules().items():
        if stage_of(module) < stage_of("zoo.cli") if module != "zoo" else True:
            text = path.read_text()
            assert "import rich" not in text and "from rich" not in text, module
