"""The package's layers, read from its imports: every import points down (or stays on its
floor), there is no import cycle, and no module reaches for another of the package from inside
a function (the trick that hides a cycle). Lazy imports of heavy or optional third-party
libraries are fine."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "fuxictr_mmctr"

# Floors, bottom first: a module may import its own floor and the floors below.
LAYERS = [
    {"fuxictr_mmctr", "errors", "io", "compat", "resources", "process_group", "config_contract"},
    {"data"},
    {"models", "embeddings", "submit"},
    {"train"},
    {"integrations", "pipeline"},
    {"cli", "__main__"},
]
FLOOR = {name: level for level, names in enumerate(LAYERS) for name in names}

# Imports of the package inside a function still allowed (being reshaped on a branch): none.
RESHAPED_NEXT: list = []


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, path.name == "__init__.py"


def _imports(name, path, is_package):
    """(imported package module, line, at module level?) for each import of the package."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
        for target in targets:
            if target == "fuxictr_mmctr" or target.startswith("fuxictr_mmctr."):
                yield target, node.lineno, id(node) in top


def _floor(module: str) -> int:
    parts = module.split(".")
    return FLOOR["fuxictr_mmctr" if len(parts) == 1 else parts[1]]


def _graph():
    names = {name for name, _, _ in _modules()}
    edges = defaultdict(set)
    found = []
    for name, path, is_package in _modules():
        for target, line, top in _imports(name, path, is_package):
            while target not in names and "." in target:  # `from pkg import name`: the module
                target = target.rpartition(".")[0]
            found.append((name, target, line, top))
            if top and target != name:
                edges[name].add(target)
    return names, edges, found


def test_every_module_has_a_floor():
    for name, _, _ in _modules():
        _floor(name)


def test_imports_point_down():
    _, _, found = _graph()
    upward = [f"{src}:{line} imports {dst}" for src, dst, line, _ in found
              if _floor(dst) > _floor(src)]
    assert not upward, upward


def test_no_module_imports_the_package_from_inside_a_function():
    _, _, found = _graph()
    hidden = [f"{src} imports {dst}" for src, dst, _, top in found if not top]
    assert sorted(set(hidden)) == sorted(RESHAPED_NEXT), hidden


def test_no_import_cycle():
    names, edges, _ = _graph()
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in edges.get(node, ()):
            # a package's __init__ re-exporting its submodules is not a cycle with them
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == "open":
                raise AssertionError(" -> ".join(path + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for name in sorted(names):
        if name not in state:
            visit(name, [name])


def test_test_modules_have_unique_names():
    """pytest imports tests/unit and tests/e2e as top-level modules (no __init__.py): two files
    with one basename make collection fail on a clean clone."""
    seen = defaultdict(list)
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen[path.name].append(str(path.relative_to(ROOT)))
    assert not {name: paths for name, paths in seen.items() if len(paths) > 1}


def test_every_folder_of_modules_is_a_package():
    """setup.cfg's ``packages = find:`` skips a folder without ``__init__.py``: its modules
    would work from the source tree and be missing from the wheel."""
    folders = {path.parent for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts}
    assert sorted(str(f.relative_to(ROOT)) for f in folders
                  if not (f / "__init__.py").exists()) == []
