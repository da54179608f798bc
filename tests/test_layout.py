"""The package's layout rules, read from the source: wings in layers, no circles, one home per
name. ``tests/test_tutorial_layout.py`` checks the lazy face at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "quartznet_tutorial"
NAME = "quartznet_tutorial"

#: The wings, bottom to top: a module may import its own wing and the wings below it.
WINGS = (
    "utils",
    "ops",
    "audio",
    "models",
    "datasets",
    "synthetic",
    "checkpoints",
    "export",
    "evaluation",
    "kws",
    "training",
    "cli",
    "tutorial",
)
#: The wings that may build a command line or import the package face.
TOP = ("cli", "tutorial")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` of every import in module ``name``, inside
    functions too, relative imports resolved."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for a in node.names:
                full = f"{base}.{a.name}"
                if full in MODULES:  # `from package import module`
                    found.append((full, None, node.lineno))
                else:
                    found.append((base, a.name, node.lineno))
    return found


def _wing(module: str) -> str | None:
    """The wing of a module of the package; ``None`` for the face, ``__main__`` and any other
    package's module."""
    parts = module.split(".")
    return parts[1] if parts[0] == NAME and len(parts) > 1 and parts[1] in WINGS else None


def _edges() -> dict[str, set[str]]:
    return {
        name: {m for m, _, _ in _imports(name) if m in MODULES and m != name} for name in MODULES
    }


def test_every_module_is_in_a_wing():
    loose = [m for m in MODULES if m.count(".") == 1 and m.split(".")[1] not in WINGS]
    assert sorted(loose) == ["quartznet_tutorial.__main__"], loose


def test_no_wing_imports_a_wing_above_it():
    upward = []
    for name in MODULES:
        wing = _wing(name)
        if wing is None:
            continue
        for target, _, line in _imports(name):
            other = _wing(target)
            if other is not None and WINGS.index(other) > WINGS.index(wing):
                upward.append(f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    edges = _edges()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in MODULES:
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(circles)


def test_only_the_top_builds_command_lines_or_imports_the_face():
    bad = []
    for name in MODULES:
        wing = _wing(name)
        if wing in TOP or wing is None:
            continue
        for target, imported, line in _imports(name):
            where = f"{MODULES[name].relative_to(ROOT)}:{line}"
            if target == "argparse":
                bad.append(f"{where} imports argparse")
            if target == NAME and imported is not None:
                bad.append(f"{where} imports {imported} from the package face")
    assert not bad, "\n".join(bad)


def test_subpackages_are_docstrings_only():
    for name, tree in TREES.items():
        if MODULES[name].name == "__init__.py" and name != NAME:
            body = tree.body
            assert len(body) == 1 and isinstance(body[0], ast.Expr), (
                f"{name}: more than a docstring"
            )


def test_no_paths_found_through_parents_of_the_source_file():
    bad = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in MODULES.values()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "__file__" in line and "parents[" in line
    ]
    assert not bad, f"files outside the package are not in a wheel: {bad}"


def _defined(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.If, ast.Try)):  # definitions under a condition
            names |= _defined(ast.Module(body=node.body, type_ignores=[]))
    return names


def _all(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return []


@pytest.mark.parametrize("name", [m for m in MODULES if m != NAME])
def test_a_module_exports_only_what_it_defines(name):
    defined = _defined(TREES[name])
    assert not [n for n in _all(TREES[name]) if n not in defined], f"{name} re-exports"


def _sources() -> list[Path]:
    folders = ("quartznet_tutorial", "tests", "examples", "benchmarks")
    files = [p for f in folders for p in (ROOT / f).rglob("*.py")]
    return [p for p in files if "_build" not in p.parts]


def test_names_are_imported_from_their_home():
    """``from quartznet_tutorial.x.y import name`` finds ``name`` defined in ``x.y`` (a class,
    function or constant), not imported there from elsewhere; a private name stays in its
    module."""
    bad = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        inside = path.is_relative_to(PACKAGE)
        this = _module_name(path) if inside else None
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if node.module not in MODULES or node.module == NAME:
                continue
            defined = _defined(TREES[node.module])
            for a in node.names:
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if f"{node.module}.{a.name}" in MODULES:
                    continue
                if a.name not in defined:
                    bad.append(f"{where}: {a.name} is not defined in {node.module}")
                elif inside and a.name.startswith("_") and node.module != this:
                    bad.append(f"{where}: private {a.name} of {node.module}")
    assert not bad, "\n".join(bad)
