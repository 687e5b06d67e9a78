"""Room boundaries, read from the source: api never imports the worker, the worker has no
import circle, shared imports no other room, services import neither api nor worker.

Every import counts, also those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ucvgl"


def module_name(path: Path) -> str:
    """``ucvgl/worker/tasks.py`` -> ``ucvgl.worker.tasks`` (a package is its ``__init__``)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (``from a import b`` gives ``a``
    and ``a.b``, since ``b`` may be a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def room_files(room: str) -> list[Path]:
    files = sorted((PACKAGE / room).rglob("*.py"))
    assert files, f"no Python files under {PACKAGE / room}"
    return files


def offending_imports(room: str, forbidden: tuple[str, ...]) -> list[str]:
    """``file: module`` for each import of a ``forbidden`` package from ``room``."""
    return [
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in room_files(room)
        for name in sorted(imported_modules(path))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        ("api", ("ucvgl.worker", "torch", "torchvision", "timm", "faiss")),
        ("shared", ("ucvgl.api", "ucvgl.services", "ucvgl.worker", "ucvgl.commands")),
        ("services", ("ucvgl.api", "ucvgl.worker", "ucvgl.commands", "fastapi", "celery")),
    ],
)
def test_a_room_does_not_import_what_it_must_not(room: str, forbidden: tuple[str, ...]) -> None:
    assert offending_imports(room, forbidden) == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (module -> modules it imports) as a path, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_circle_and_only_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_worker_modules_import_each_other_without_a_circle() -> None:
    modules = {module_name(p): p for p in room_files("worker")}
    graph = {
        name: {m for m in imported_modules(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    assert "ucvgl.worker.tasks" in graph["ucvgl.worker.celery_app"]  # the graph sees imports
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph) or [])}"
