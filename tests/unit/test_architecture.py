"""The layers of otsentry, written down once and checked on every run (an AST walk, no import of the code).

Layers only look down: a module may import its own package and the packages of lower layers, never a sibling of
its own layer nor anything above. Every import counts: module level, inside functions and under
``TYPE_CHECKING``. A module's ``_private`` names are its own, and a name imported across packages must be in the
target module's ``__all__``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "otsentry"

# Lowest first. Packages of one layer are independent of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("otsentry", "otsentry.errors"),  # the version; the exception hierarchy
    ("otsentry.contracts", "otsentry.arrays", "otsentry.prefetch"),  # the stages' vocabulary; plain helpers
    ("otsentry.records",),  # the records stages exchange
    ("otsentry.collectors",),  # capture -> packets -> streams -> events
    ("otsentry.features", "otsentry.synth"),  # events -> feature windows; the traffic simulator
    ("otsentry.detectors",),  # windows -> alerts
    ("otsentry.assets", "otsentry.correlation", "otsentry.alerts"),  # hosts; alerts -> incidents; ECS and sinks
    ("otsentry.stream",),  # the stages as Kafka daemons
    ("otsentry.pipeline",),  # the batch composition root
    ("otsentry.replay", "otsentry.config"),  # scenario replays for students; the configuration file
    ("otsentry.cli",),  # the command line
    ("otsentry.__main__",),  # python -m otsentry
)


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of otsentry
    names: tuple[str, ...]  # names taken from it (empty for "import x" or a submodule)
    line: int


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(name, a.name, (), node.lineno) for a in node.names if a.name.split(".")[0] == "otsentry"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "otsentry":
                continue
            names = []
            for a in node.names:
                if f"{module}.{a.name}" in MODULES:  # a submodule
                    out.append(Import(name, f"{module}.{a.name}", (), node.lineno))
                else:
                    names.append(a.name)
            if names:
                out.append(Import(name, module, tuple(names), node.lineno))
    return out


IMPORTS = [i for name, path in MODULES.items() for i in _imports(name, path)]


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the layer's package) of a module: the longest declared prefix."""
    best = None
    for rank, packages in enumerate(LAYERS):
        for p in packages:
            inside = module == p or p != "otsentry" and module.startswith(p + ".")  # the root holds the version only
            if inside and (best is None or len(p) > len(best[1])):
                best = (rank, p)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS")
    return best


def _where(i: Import) -> str:
    return f"{MODULES[i.importer].relative_to(ROOT.parent)}:{i.line}"


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def upward_imports(imports: list[Import]) -> list[str]:
    wrong = []
    for i in imports:
        (rank, pkg), (to_rank, to_pkg) = layer_of(i.importer), layer_of(i.target)
        if pkg == to_pkg or to_pkg == "otsentry" and i.names == ("__version__",):
            continue
        if to_rank >= rank:
            wrong.append(f"{i.importer}:{i.line} ({pkg}) imports {i.target} ({to_pkg}), "
                         f"{'a sibling' if to_rank == rank else 'a higher layer'}")
    return wrong


def private_imports(imports: list[Import]) -> list[str]:
    return [f"{i.importer}:{i.line}: {i.target}.{n}" for i in imports if i.target != i.importer
            for n in i.names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]


def test_layers_only_look_down():
    wrong = upward_imports(IMPORTS)
    assert not wrong, "\n".join(wrong)


def test_contracts_import_nothing_else():
    """Not even otsentry.errors: a DNP3 or S7 decoder written elsewhere can take the contracts alone."""
    wrong = [f"{_where(i)}: {i.target}" for i in IMPORTS
             if i.importer.startswith("otsentry.contracts") and not i.target.startswith("otsentry.contracts")]
    assert not wrong, "\n".join(wrong)


def test_no_private_names_of_other_modules():
    wrong = private_imports(IMPORTS)
    assert not wrong, "\n".join(wrong)


def _public(module: str) -> set[str] | None:
    tree = ast.parse(MODULES[module].read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return None


def test_every_module_declares_its_public_surface():
    missing = [m for m, p in MODULES.items() if p.name != "__main__.py" and _public(m) is None]
    assert not missing, "no __all__ in: " + ", ".join(missing)


def test_imports_across_packages_use_the_public_surface():
    wrong = []
    for i in IMPORTS:
        if layer_of(i.importer)[1] == layer_of(i.target)[1] or not i.names:
            continue
        public = _public(i.target)
        hidden = [n for n in i.names if public is not None and n not in public and n != "__version__"]
        if hidden:
            wrong.append(f"{_where(i)}: {i.target} does not export {', '.join(hidden)}")
    assert not wrong, "\n".join(wrong)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycles():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        if i.target in MODULES and i.target != i.importer:
            graph[i.importer].add(i.target)
    cycles = import_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("source, expected", [
    ("from otsentry.records import Alert", [("otsentry.records", ("Alert",))]),
    ("from otsentry.collectors import flows", [("otsentry.collectors.flows", ())]),
    ("def f():\n    from otsentry.pipeline import run", [("otsentry.pipeline", ("run",))]),
    ("if TYPE_CHECKING:\n    import otsentry.stream.detect", [("otsentry.stream.detect", ())]),
    ("import numpy", []),
])
def test_the_walk_sees_every_kind_of_import(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert [(i.target, i.names) for i in _imports("otsentry.detectors.m", path)] == expected


def test_the_rules_can_fail():
    """The checks pass on the tree; the same functions flag made-up violations of each rule."""
    up = [Import("otsentry.records", "otsentry.pipeline", ("run",), 1),
          Import("otsentry.stream.detect", "otsentry.pipeline", ("run",), 1),
          Import("otsentry.features.pairs", "otsentry.synth.plant", ("Host",), 1),  # a sibling of its layer
          Import("otsentry.detectors.policy", "otsentry.detectors.rules", ("RULES",), 1),  # its own package: fine
          Import("otsentry.cli.batch", "otsentry.pipeline", ("run",), 1)]  # down: fine
    assert len(upward_imports(up)) == 3 and "a sibling" in upward_imports(up)[2]
    private = [Import("otsentry.stream.index", "otsentry.stream.detect", ("_names", "__version__", "run"), 1)]
    assert private_imports(private) == ["otsentry.stream.index:1: otsentry.stream.detect._names"]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
    with pytest.raises(AssertionError):
        layer_of("otsentry.nowhere")


def test_every_public_name_exists():
    import importlib

    missing = []
    for module in MODULES:
        if module.endswith("__main__"):
            continue
        mod = importlib.import_module(module)
        for name in getattr(mod, "__all__", ()):
            if not hasattr(mod, name) and f"{module}.{name}" not in MODULES:
                missing.append(f"{module}.{name}")
    assert not missing, "in __all__ but not defined: " + ", ".join(missing)


def test_every_folder_of_code_is_a_regular_package():
    """``packages = find:`` installs only folders with an ``__init__.py``: a namespace folder would be missing
    from a wheel while every editable-install test passes."""
    missing = sorted(str(d.relative_to(ROOT.parent)) for d in {p.parent for p in ROOT.rglob("*.py")}
                     if "__pycache__" not in d.parts and not (d / "__init__.py").exists())
    assert not missing, missing


def test_the_readme_shows_these_layers():
    """The README's layer table names the same packages in the same order as LAYERS (one story, two places)."""
    import re

    text = (ROOT.parent / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", text[text.index("### Layers"):], re.M)
    shown = [tuple("otsentry" if p == "otsentry" else f"otsentry.{p}" for p in re.findall(r"`([a-z_]+)`", names))
             for _, names in rows]
    assert shown == [layer for layer in LAYERS if layer != ("otsentry.__main__",)]
