"""Structural facts about the package, for reviews and for the test that keeps them true.

    python tools/code_facts.py            # a summary; --json for the whole record

Counted from the source alone (``ast``), nothing imported:
- module-level import cycles among ``deblurcli`` modules (imports inside functions are lazy by
  intent and do not make a cycle at import time, so they are reported apart);
- upward imports: a module importing from a package that contains it (``from .. import x`` into
  the package's ``__init__``), which is how re-export tangles start;
- lines per module, and every function longer than ``--max-lines`` outside the compiled kernels
  (numba/Triton bodies are long by nature: one loop nest each).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

KERNEL_MODULES = {"deblurcli.ssm.numba_scan", "deblurcli.ssm.triton_scan"}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(mod: str, is_pkg: bool, node: ast.AST, known: set[str]) -> list[str]:
    out: list[str] = []
    if isinstance(node, ast.Import):
        out = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = _resolve(mod, is_pkg, node)
        out = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    return [t for t in out if t == "deblurcli" or t.startswith("deblurcli.")]


def _top_level_imports(tree: ast.Module) -> list[ast.AST]:
    """Imports run at import time: module level, including under if/try, but not TYPE_CHECKING."""
    found: list[ast.AST] = []

    def walk(body: list[ast.stmt]) -> None:
        for st in body:
            if isinstance(st, ast.Import | ast.ImportFrom):
                found.append(st)
            elif isinstance(st, ast.If):
                if "TYPE_CHECKING" in ast.unparse(st.test):
                    walk(st.orelse)
                    continue
                walk(st.body)
                walk(st.orelse)
            elif isinstance(st, ast.Try):
                walk(st.body)
                for h in st.handlers:
                    walk(h.body)
                walk(st.orelse)
                walk(st.finalbody)

    walk(tree.body)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def facts(root: Path, max_lines: int = 80) -> dict:
    files = sorted((root / "deblurcli").rglob("*.py"))
    trees = {module_name(root, f): (f, ast.parse(f.read_text(), str(f))) for f in files}
    known = set(trees)
    graph: dict[str, set[str]] = {m: set() for m in trees}
    lazy: dict[str, set[str]] = {m: set() for m in trees}  # every import, function bodies too
    upward: list[str] = []
    long_functions: list[dict] = []
    lines: dict[str, int] = {}
    for mod, (path, tree) in trees.items():
        is_pkg = path.name == "__init__.py"
        lines[mod] = len(path.read_text().splitlines())
        top = _top_level_imports(tree)
        every = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in every:
            for t in _targets(mod, is_pkg, node, known):
                while t not in known and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in known and t != mod and not mod.startswith(t + "."):
                    lazy[mod].add(t)
        for node in top:
            for t in _targets(mod, is_pkg, node, known):
                # a package's own __init__ is imported on the way to any of its modules: drop
                # edges from a module to the packages that contain it (reported as upward below)
                if mod.startswith(t + ".") or t == mod:
                    if t != mod and t != "deblurcli":
                        upward.append(f"{mod} -> {t}")
                    continue
                while t not in known and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in known and t != mod:
                    graph[mod].add(t)
        if mod in KERNEL_MODULES:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > max_lines:
                    long_functions.append({"function": f"{mod}.{node.name}", "lines": n})
    return {
        "modules": len(trees),
        "import_cycles": _cycles(graph),
        "cycles_with_lazy_imports": _cycles(lazy),
        "upward_imports": sorted(set(upward)),
        "long_functions": sorted(long_functions, key=lambda x: -x["lines"]),
        "lines": dict(sorted(lines.items(), key=lambda x: -x[1])),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--max-lines", type=int, default=80)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    f = facts(a.root, a.max_lines)
    if a.json:
        print(json.dumps(f, indent=1))
        return 0
    print(f"modules: {f['modules']}")
    print(f"import cycles: {len(f['import_cycles'])}" + "".join(f"\n  {' <-> '.join(c)}" for c in f["import_cycles"]))
    print(f"cycles counting imports inside functions too: {len(f['cycles_with_lazy_imports'])}"
          + "".join(f"\n  {' <-> '.join(c)}" for c in f["cycles_with_lazy_imports"]))
    print(f"upward imports: {len(f['upward_imports'])}" + "".join(f"\n  {u}" for u in f["upward_imports"]))
    print(f"functions over {a.max_lines} lines (kernels excepted): {len(f['long_functions'])}"
          + "".join(f"\n  {x['function']}: {x['lines']}" for x in f["long_functions"]))
    print("largest modules: " + ", ".join(f"{m} {n}" for m, n in list(f["lines"].items())[:8]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
