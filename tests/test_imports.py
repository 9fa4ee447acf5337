"""The import graph of claptune: no cycles, the library never imports the CLI, and CLI modules
never import each other (their shared helpers live in ``claptune.cli._common``).

Imports are read with ``ast`` from the sources, function-level imports included (a lazy import
still ties two modules together), so the test needs no import side effects and sees every
edge. ``if TYPE_CHECKING:`` imports count too: a type that names a module ties the two
together for a reader as much as a call does, so no loop may hide behind one.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
CLI = "claptune.cli"
CLI_SHARED = {"claptune.cli", "claptune.cli._common"}  # the dispatcher and the shared helpers
ENTRY_POINTS = {"claptune.__main__"}  # `python -m claptune`: the CLI's door, like the script


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The claptune modules that ``path`` imports (``from pkg import sub`` counts ``pkg.sub``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            # the longest claptune module that the dotted name starts with
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (SRC / "claptune").rglob("*.py")}
    modules = set(files)
    return {name: imported_modules(path, modules) for name, path in files.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` imports its own modules; importing any module of a package runs
    that ``__init__`` too, so ``a.x -> b.y`` also means ``a.x -> b``."""
    out = {}
    for name, targets in graph.items():
        extra = set()
        for t in targets:
            parent = t.rpartition(".")[0]
            while parent and parent != "claptune":
                if parent in graph and parent != name and not name.startswith(parent + "."):
                    extra.add(parent)
                parent = parent.rpartition(".")[0]
        out[name] = targets | extra
    return out


def test_find_cycles_sees_a_cycle_through_function_level_imports(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    pkg = tmp_path / "claptune"
    pkg.mkdir()
    (pkg / "one.py").write_text("def f():\n    from claptune import two\n")
    (pkg / "two.py").write_text("from claptune.one import f\n")
    modules = {"claptune.one", "claptune.two"}
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        assert imported_modules(pkg / "one.py", modules) == {"claptune.two"}
        assert imported_modules(pkg / "two.py", modules) == {"claptune.one"}
    finally:
        SRC = saved


def test_no_import_cycles():
    cycles = find_cycles(_package_edges(import_graph()))
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_library_never_imports_the_cli_and_cli_modules_not_each_other():
    bad = []
    for name, targets in import_graph().items():
        cli_targets = {t for t in targets if t == CLI or t.startswith(CLI + ".")}
        if name in ENTRY_POINTS:
            continue
        if not (name == CLI or name.startswith(CLI + ".")):
            bad += [f"{name} -> {t}" for t in cli_targets]
        elif name != CLI:
            bad += [f"{name} -> {t}" for t in cli_targets - CLI_SHARED if t != name]
            if CLI in cli_targets:
                bad.append(f"{name} -> {CLI}")
    assert bad == []
