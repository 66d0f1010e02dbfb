"""The package's layering holds: cli > pipelines > subsystems > foundations > core, no import cycles, and no
private name imported across top-level packages (docs/architecture.md, "where new code goes").

Imports are read from the source with ``ast`` (module level and function level alike: a lazy import inside
a function is still a dependency), so the test needs no torch and sees every arrow.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "srl_rlvr"

# Lower index = lower layer. A module may import its own layer or any layer below, never one above.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("core", frozenset({"core", "errors"})),
    ("foundations", frozenset({"prompts", "models", "data", "rewards", "tiers"})),
    # registry: the model registry's gate reads eval's paired statistics, so it sits with the subsystems
    ("subsystems", frozenset({"training", "eval", "ops", "routing", "serving", "registry", "monitoring"})),
    ("pipelines", frozenset({"pipelines"})),
    ("cli", frozenset({"cli"})),
)
# What may sit loose at the package top besides __init__.py (the issue allows at most two).
LOOSE_MODULES = {"errors", "prompts"}
HEAVY = ("torch", "transformers", "fastapi", "trl", "peft", "accelerate")


def layer_of(top: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"srl_rlvr.{top} is in no layer: add it to LAYERS in tests/test_layers.py "
                         "and to the table in docs/architecture.md")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, *([target] if target else [])])


def read_imports(root: Path) -> dict[str, list[tuple[str, str, int]]]:
    """module → [(imported module, imported name or '', line)] for every srl_rlvr import in the tree."""
    graph: dict[str, list[tuple[str, str, int]]] = {}
    modules = {module_name(p, root) for p in root.rglob("*.py")}
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        edges: list[tuple[str, str, int]] = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                edges += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == root.name]
            elif isinstance(node, ast.ImportFrom):
                target = (resolve_relative(name, path.name == "__init__.py", node.level, node.module)
                          if node.level else node.module or "")
                if target.split(".")[0] != root.name:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    # ``from pkg import module`` depends on the module; ``from mod import name`` on mod
                    edges.append((sub, "", node.lineno) if sub in modules else (target, alias.name, node.lineno))
        graph[name] = edges
    return graph


def top_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, list[tuple[str, str, int]]]) -> list[str]:
    out = []
    for module, edges in graph.items():
        source = top_package(module)
        if not source:
            continue  # srl_rlvr/__init__.py: the version string only
        for target, _, line in edges:
            dest = top_package(target)
            if dest and layer_of(dest) > layer_of(source):
                out.append(f"{module}:{line} imports {target} ({LAYERS[layer_of(source)][0]} -> "
                           f"{LAYERS[layer_of(dest)][0]}, an arrow up)")
    return out


def find_cycle(graph: dict[str, list[tuple[str, str, int]]]) -> list[str] | None:
    """One import cycle between modules (as a path that ends where it starts), or None."""
    known = set(graph)
    deps = {m: sorted({t for t, _, _ in edges if t in known and t != m}) for m, edges in graph.items()}
    colour: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for dep in deps[node]:
            if colour[dep] == 1:
                return stack[stack.index(dep):] + [dep]
            if colour[dep] == 0 and (cycle := visit(dep)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(deps):
        if colour[node] == 0 and (cycle := visit(node)):
            return cycle
    return None


def private_imports(graph: dict[str, list[tuple[str, str, int]]]) -> list[str]:
    out = []
    for module, edges in graph.items():
        for target, name, line in edges:
            private = name.startswith("_") and not name.startswith("__")
            if private and top_package(target) != top_package(module):
                out.append(f"{module}:{line} imports private {name} from {target}")
    return out


@pytest.fixture(scope="module")
def graph():
    return read_imports(PACKAGE_DIR)


def test_every_import_points_down_the_layers(graph):
    assert layer_violations(graph) == []


def test_there_is_no_import_cycle_between_modules(graph):
    assert find_cycle(graph) is None


def test_no_private_name_crosses_a_top_level_package(graph):
    assert private_imports(graph) == []


def test_at_most_two_modules_sit_loose_at_the_package_top():
    loose = {p.stem for p in PACKAGE_DIR.glob("*.py") if p.name != "__init__.py"}
    assert loose <= LOOSE_MODULES and len(loose) <= 2, sorted(loose)


def test_every_package_is_in_a_layer():
    for path in PACKAGE_DIR.iterdir():
        if path.is_dir() and (path / "__init__.py").is_file():
            layer_of(path.name)


def test_core_imports_no_ml_or_web_library():
    for path in (PACKAGE_DIR / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            heavy = [n for n in names if n.split(".")[0] in HEAVY]
            # accelerate is allowed lazily in core.console.Ranks, only under a distributed launch
            if heavy and not (path.name == "console.py" and heavy == ["accelerate"]):
                raise AssertionError(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno} imports {heavy}")


# --- the checks can fail ---------------------------------------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "srl_rlvr"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return root


def test_an_injected_cycle_is_caught(tmp_path):
    root = _tree(tmp_path, {
        "core/a.py": "from srl_rlvr.core.b import thing\n",
        "core/b.py": "def thing():\n    from srl_rlvr.core import a  # a lazy import closes the loop too\n",
    })
    cycle = find_cycle(read_imports(root))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"srl_rlvr.core.a", "srl_rlvr.core.b"}


def test_the_real_tree_fails_once_a_cycle_is_injected(tmp_path, graph):
    assert find_cycle(graph) is None
    injected = {m: list(e) for m, e in graph.items()}
    injected["srl_rlvr.core.names"].append(("srl_rlvr.core.yamlconf", "check_keys", 1))  # yamlconf imports names
    assert find_cycle(injected) is not None


def test_an_arrow_up_and_a_private_import_are_caught(tmp_path):
    root = _tree(tmp_path, {
        "core/util.py": "from srl_rlvr.pipelines.run import run_pipeline\n",
        "pipelines/run.py": "def run_pipeline():\n    pass\n",
        "eval/x.py": "from srl_rlvr.rewards.math import _parse_gold\n",
        "rewards/math.py": "def _parse_gold():\n    pass\n",
    })
    graph = read_imports(root)
    assert any("core -> pipelines" in v for v in layer_violations(graph))
    assert private_imports(graph) == ["srl_rlvr.eval.x:1 imports private _parse_gold from srl_rlvr.rewards.math"]
