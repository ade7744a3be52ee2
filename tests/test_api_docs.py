"""The API reference (issue 18): pdoc builds it from the docstrings with no warning, and
every public function and class has a docstring; cell constructors give their shapes.

The modules are found by walking the package (``docs/build_api.py``), so a module that is
added or moved is covered without editing this file.
"""

import importlib
import importlib.util
import inspect
import pathlib
import re

import pytest

pytest.importorskip("pdoc")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _build_api():
    spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_api = _build_api()
MODULES = build_api.public_modules()


def test_every_public_module_is_found_and_no_private_one():
    assert "rnn_jax.cells.classic" in MODULES and "rnn_jax.ops" in MODULES
    assert not [m for m in MODULES if any(p.startswith("_") for p in m.split("."))]
    # Each module is given to pdoc once: through its parent or as its own spec.
    specs = build_api.pdoc_specs(MODULES)
    assert len(specs) == len(set(specs)) and specs[0] == "rnn_jax"


def test_the_reference_builds_without_warnings(tmp_path):
    found = build_api.build(tmp_path)
    assert not found, "pdoc warned:\n" + "\n".join(
        f"{w.category.__name__}: {str(w.message)[:400]}" for w in found)
    pages = {p.relative_to(tmp_path).with_suffix("").as_posix().replace("/", ".")
             for p in tmp_path.rglob("*.html")}
    assert set(MODULES) <= pages, f"no page for {sorted(set(MODULES) - pages)}"
    # A page holds the docstrings: the LSTM's equations reach rnn_jax/cells.html.
    assert "constant error carousel" in (tmp_path / "rnn_jax" / "cells.html").read_text()


def _own_doc(obj):
    """``obj``'s own docstring, or None; NamedTuples' generated ``Name(a, b)`` counts as none."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    if not doc or not doc.strip():
        return None
    if isinstance(obj, type) and re.fullmatch(rf"{re.escape(obj.__name__)}\(.*\)", doc.strip(), re.S):
        return None
    return doc


def _public(module):
    """``(name, object)`` of the functions and classes ``module`` makes public: its
    ``__all__``, or else the names without a leading ``_`` that it defines itself."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, o in vars(module).items()
                 if not n.startswith("_") and getattr(o, "__module__", None) == module.__name__]
    for name in names:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj


def test_every_public_function_and_class_has_a_docstring():
    missing = []
    for name in MODULES:
        module = importlib.import_module(name)
        if not (module.__doc__ or "").strip():
            missing.append(f"{name} (the module)")
        missing += [f"{name}.{n}" for n, obj in _public(module) if _own_doc(obj) is None]
    assert not missing, "no docstring: " + ", ".join(missing)


# A shape in brackets with a named size: [I, 4H], [*batch, H], [N], [P, 4H] ...
SHAPE = re.compile(r"\[[^\]\n]*\b(?:\d*[HIPNG]|batch|T)\b[^\]\n]*\]")


def test_cell_constructors_give_their_shapes():
    """Every public function of rnn_jax.cells that returns a Cell documents its carry
    with a shape and, unless it wraps a given cell, its params."""
    from rnn_jax.cells import Cell
    checked, bad = set(), []
    for name in [m for m in MODULES if m.startswith("rnn_jax.cells")]:
        for fname, fn in _public(importlib.import_module(name)):
            if not inspect.isfunction(fn) or inspect.signature(fn).return_annotation not in (
                    Cell, "Cell"):
                continue
            checked.add(fn)
            doc = fn.__doc__ or ""
            wraps = next(iter(inspect.signature(fn).parameters)) in ("cell", "cells")
            if not ("carry" in doc.lower() and SHAPE.search(doc)) or (
                    not wraps and "params" not in doc.lower()):
                bad.append(f"{name}.{fname}")
    # The 13 cells and wrappers of rnn_jax.cells.__all__ at least (weight_drop returns params).
    assert len(checked) >= 13, sorted(f.__name__ for f in checked)
    assert not bad, "no params/carry shapes in the docstring of " + ", ".join(sorted(set(bad)))


# reST roles in the docstrings, e.g. :func:`rnn_jax.unroll` or :class:`~rnn_jax.cells.Cell`.
ROLE = re.compile(r":(?:func|class|mod|data|attr|meth|obj|exc):`~?([\w.]+)`")


def _resolves(target: str, module) -> bool:
    """Whether ``target`` names something: as an importable dotted path, or relative to
    ``module``'s namespace (``:func:`min_gru``` inside rnn_jax.cells.modern)."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for p in parts[i:]:
                obj = getattr(obj, p)
            return True
        except AttributeError:
            break
    obj = module
    try:
        for p in parts:
            obj = getattr(obj, p)
        return True
    except AttributeError:
        return False


def test_cross_references_in_docstrings_resolve():
    """pdoc turns a role into a link when the name resolves and silently into plain code
    when it does not, so a renamed function would leave dead references: check them here."""
    refs, broken = 0, []
    for name in MODULES:
        module = importlib.import_module(name)
        objs = [("", module)] + [(n, o) for n, o in vars(module).items()
                                 if (inspect.isfunction(o) or inspect.isclass(o))
                                 and getattr(o, "__module__", None) == name]
        for qual, obj in objs:
            for target in ROLE.findall(obj.__doc__ or ""):
                refs += 1
                if not _resolves(target, module):
                    broken.append(f"{name}{'.' + qual if qual else ''}: {target}")
    assert refs > 100, refs  # the docstrings do use them; a broken regex would find none
    assert not broken, "cross-references that resolve to nothing: " + ", ".join(broken)
