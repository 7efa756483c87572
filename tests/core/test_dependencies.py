"""The import graph as docs/arch.md draws it: no circle, and dependencies that point one way.

Every import of Sender's own modules counts, at module level or inside a function (an import
inside a function is still a dependency; it only hides a circle from Python).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("daemons", "sender_cli")
DAEMONS = ("daemons.ingest", "daemons.http", "daemons.edge_fill", "daemons.snapshot", "daemons.front")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sender_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Sender modules `path` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import submodule` depends on the submodule; `from pkg import name`, on pkg.
            for a in node.names:
                found.add(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module)
    return {name for name in found if name in modules}


def graph() -> dict[str, set[str]]:
    modules = sender_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package_of(module: str) -> str:
    return next((d for d in DAEMONS if module == d or module.startswith(d + ".")), ".".join(module.split(".")[:2]))


def test_the_checker_sees_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    edges = graph()
    assert len(edges) > 100  # the walk found the code
    assert circles(edges) == []


def test_dependencies_point_one_way():
    """arch.md: no package imports a daemon package but itself (the CLI may import a daemon's
    `main` to run it); `daemons.core` and `daemons.media` import no daemon, no runtime and no
    CLI; `daemons.media` imports nothing else of Sender; nothing imports `sender_cli`."""
    wrong = []
    for module, targets in graph().items():
        own = package_of(module)
        for target in targets:
            theirs = package_of(target)
            if theirs == own:
                continue
            if theirs in DAEMONS and not (module.startswith("sender_cli.") and target == f"{theirs}.main"):
                wrong.append(f"{module} → {target} (a daemon package)")
            elif theirs.startswith("sender_cli") and not module.startswith("sender_cli"):
                wrong.append(f"{module} → {target} (the CLI)")
            elif own == "daemons.media":
                wrong.append(f"{module} → {target} (media imports nothing else of Sender)")
            elif own == "daemons.core" and theirs != "daemons.media":
                wrong.append(f"{module} → {target} (core imports only media)")
    assert wrong == []


def test_core_and_media_import_no_trio():
    """The domain and the media code are plain Python: the CLI and tests call them without an event loop."""
    users = []
    for name, path in sender_modules().items():
        if package_of(name) in ("daemons.core", "daemons.media"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n == "trio" or n.startswith("trio.") for n in names):
                    users.append(name)
    assert users == []
