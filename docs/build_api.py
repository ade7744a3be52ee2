"""Build the API reference of rnn_jax with pdoc, from the docstrings.

    python docs/build_api.py docs/api      # then open docs/api/index.html

Every public module is documented (found by walking the package, so a module moved or
added is covered without editing this file); a module is public when no part of its
dotted name starts with ``_``. ``tests/test_api_docs.py`` runs :func:`build` and fails
on any warning. The generated HTML is not committed.
"""

import importlib
import pkgutil
import sys
import warnings
from pathlib import Path

DOCFORMAT = "google"  # Args:/Returns: sections; reST roles (:func:`x`) become links


def public_modules(package: str = "rnn_jax") -> list[str]:
    """The dotted names of ``package`` and of every public module under it, parents first."""
    pkg = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def pdoc_specs(modules: list[str]) -> list[str]:
    """The fewest module specs that make pdoc document each of ``modules`` exactly once.

    pdoc walks a package's submodules itself (only those in its ``__all__`` when it has
    one) and warns when a spec adds a module a previous spec already reached; so a
    module already reached through its parent is left out.
    """
    from pdoc import extract
    reached: set[str] = set()
    specs = []
    for name in modules:
        if name in reached:
            continue
        specs.append(name)
        mod = importlib.import_module(name)
        info = pkgutil.ModuleInfo(None, name, hasattr(mod, "__path__"))  # type: ignore[arg-type]
        reached.update(m.name for m in extract.walk_packages2([info]))
    return specs


def build(output_directory: Path, package: str = "rnn_jax") -> list[warnings.WarningMessage]:
    """Write the HTML reference into ``output_directory``; returns the warnings pdoc raised.

    The modules are imported first, so that their import-time warnings (e.g. from
    third-party libraries) are not counted as documentation warnings.
    """
    import pdoc
    import pdoc.render
    modules = public_modules(package)
    specs = pdoc_specs(modules)
    pdoc.render.configure(docformat=DOCFORMAT, search=True, show_source=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*specs, output_directory=Path(output_directory))
    return list(caught)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api")
    found = build(out)
    for w in found:
        print(f"warning: {w.category.__name__}: {w.message}", file=sys.stderr)
    print(f"wrote {out}/index.html ({len(found)} warnings)")
    sys.exit(1 if found else 0)
