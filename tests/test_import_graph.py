"""The package's import graph has no cycle, counting every import statement: at module level,
inside functions and under ``TYPE_CHECKING`` (a late import hides a cycle, it does not remove it)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hoi_r1"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from a.b import c``: ``a.b.c`` when that is a
    module, else ``a.b``)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = _resolve(name, modules)
                if target is not None and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a closed path of modules) per back edge that depth-first search meets."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_checker_finds_a_cycle_hidden_in_a_function():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and graph["hoi_r1.grpo"]  # the package was read
    assert cycles(graph) == []


def test_the_core_does_not_import_the_tool_mode():
    """``hoi_r1.ov_hoi`` imports the core, never the other way round; only the data side imports
    the pure tool modules it needs for ``data.task: tools`` (its collators, traces, detections)."""
    data_side = {"hoi_r1.tasks", "hoi_r1.datamodule"}
    graph = import_graph()
    into_tool_mode = {m: sorted(t for t in targets if t.startswith("hoi_r1.ov_hoi"))
                      for m, targets in graph.items() if not m.startswith("hoi_r1.ov_hoi") and m not in data_side}
    assert {m: t for m, t in into_tool_mode.items() if t} == {}
    models = {"hoi_r1.ov_hoi.episode_rollout", "hoi_r1.ov_hoi.evaluation", "hoi_r1.ov_hoi.sft", "hoi_r1.ov_hoi.tool_grpo"}
    assert not {t for m in data_side for t in graph[m]} & models
