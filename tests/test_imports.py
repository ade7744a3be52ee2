"""The package's imports run one way, down the layers, and form no cycle.

The layers (BUILD_NOTES.md, "Map of the house"): a module may import its own layer and the
layers below it, never one above. Lazy imports inside functions count too.
"""

import ast
import pathlib

import rnn_jax

ROOT = pathlib.Path(rnn_jax.__file__).parent

# Longest matching prefix wins. A new module must be placed here: the test fails otherwise.
LAYERS = {
    # 0: the math of one step and of whole sequences
    "rnn_jax.initializers": 0, "rnn_jax.gates": 0, "rnn_jax.cells": 0, "rnn_jax._scan": 0,
    "rnn_jax.fused": 0, "rnn_jax.parallel": 0,
    # 1: the sequence engine
    "rnn_jax.ops": 1, "rnn_jax.remat": 1, "rnn_jax.padding": 1, "rnn_jax.convert": 1,
    # 1: the non-recurrent layers beside it (dense, embedding, masks, losses, attention)
    "rnn_jax.layers": 1,
    # 2: what is built on them: diagnostics, models, wrappers, tasks and data
    "rnn_jax.diagnostics": 2, "rnn_jax.models": 2, "rnn_jax.nn": 2,
    "rnn_jax.tasks": 2, "rnn_jax.data": 2, "rnn_jax.plotting": 2,
    # 3: training
    "rnn_jax.train": 3,
    # 4: applications and studies
    "rnn_jax.apps": 4, "rnn_jax.studies": 4,
}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = ROOT.parent / name.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rnn_jax."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnn_jax"):
            if node.module != "rnn_jax":
                found.add(node.module)
            # `from rnn_jax import cells` imports the module rnn_jax.cells
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if _is_module(f"{node.module}.{a.name}"))
    return found


def _graph() -> dict[str, set[str]]:
    # The package root only re-exports the public names; it is nobody's dependency.
    return {_module_name(p): _imports(p) for p in ROOT.rglob("*.py") if p != ROOT / "__init__.py"}


def _layer(name: str) -> int:
    matches = [prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")]
    assert matches, f"{name} has no layer: add it to LAYERS in {__file__}"
    return LAYERS[max(matches, key=len)]


def test_every_module_has_a_layer_and_imports_only_downwards():
    upward = [f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
              for m, deps in sorted(_graph().items()) for d in sorted(deps)
              if _layer(d) > _layer(m)]
    assert upward == []


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep == node or (node.startswith(dep + ".") and dep in graph):
                continue  # a package's own __init__ re-exporting its submodules is not a cycle
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if state.get(dep) is None:
                visit(dep, path + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_walker_finds_every_form_of_import(tmp_path):
    # The checks above are only as good as the import walker: check it on a known file.
    source = tmp_path / "m.py"
    source.write_text("from rnn_jax import ops\nimport rnn_jax.remat\n"
                      "def f():\n    from rnn_jax.train import loop\n")
    assert _imports(source) == {"rnn_jax.ops", "rnn_jax.remat", "rnn_jax.train", "rnn_jax.train.loop"}
