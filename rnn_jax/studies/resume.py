"""Per-point resume for the studies: claim a workdir, save and reload finished points.

A study (``gradient_lag``, ``success_rate``) is a grid of independent points, each a pure
function of the config and the point's coordinates (every random key is derived from
``config.seed``). So a run interrupted after point k resumes by reloading points 0..k
from disk and computing only the rest, and gives the same results as an uninterrupted
run (bit for bit in the stored numbers; only wall times differ).

Layout of a study workdir::

    config.json          the study's config, plus "_study": <study name>
    points/<key>.json    one finished point: {"key", "fingerprint", "point"}

:func:`claim` writes ``config.json`` on a new workdir and, on an existing one, refuses
(ValueError, before anything is computed or written) a workdir that holds another
experiment's run or the same study with another config, naming every differing field.
:func:`save_point` writes atomically (a temporary file in the same directory, then
``os.replace``), so an interruption leaves either the whole point or nothing.
:func:`load_point` checks the point's config fingerprint, so a point written under
another config is never silently reused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping

from rnn_jax.train import workdir as workdir_lib

STUDY_KEY = "_study"
POINTS_DIR = "points"
_KEY_RE = re.compile(r"^[A-Za-z0-9_.=+-]+$")


# One reading of a config and one field-by-field comparison for every workdir check.
config_dict = workdir_lib.config_json
differences = functools.partial(workdir_lib.config_differences, label="workdir")


def fingerprint(cfg: Mapping) -> str:
    """A SHA-256 over the canonical JSON of ``cfg`` (sorted keys): equal configs, equal prints."""
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _write_json_atomic(path: str, obj) -> None:
    # Same directory as the target, so os.replace is an atomic rename on one filesystem.
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def claim(workdir: str, study: str, config) -> str:
    """Make ``workdir`` this study's, or check that it already is; return the fingerprint.

    New (or empty) workdir: creates it and writes ``config.json``. Existing
    ``config.json``: it must name the same study and hold the same config, else
    ValueError naming the differing fields (nothing is written). Run :func:`claim`
    after validating the config and before computing anything.
    """
    if not isinstance(workdir, str) or not workdir:
        raise ValueError(f"workdir must be a non-empty directory path, got {workdir!r}")
    current = config_dict(config)
    if STUDY_KEY in current:
        raise ValueError(f"config field {STUDY_KEY!r} is reserved for the study name")
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"workdir {workdir!r} holds an unreadable config.json ({e}); "
                             "refusing to overwrite it: pick a new --workdir") from e
        other = saved.get(STUDY_KEY) if isinstance(saved, dict) else None
        if other != study:
            what = f"the {other!r} study's run" if other else "another experiment's run"
            raise ValueError(f"workdir {workdir!r} holds {what} (its config.json), not a "
                             f"{study!r} study; refusing to overwrite it: pick a new --workdir")
        saved = {k: v for k, v in saved.items() if k != STUDY_KEY}
        diffs = differences(saved, current)
        if diffs:
            raise ValueError(
                f"workdir {workdir!r} holds a {study!r} run with a different config; refusing "
                "to resume or overwrite it (use a new --workdir, or the same config to resume). "
                "Differences:\n  " + "\n  ".join(diffs))
    else:
        os.makedirs(workdir, exist_ok=True)
        _write_json_atomic(path, {STUDY_KEY: study, **current})
    os.makedirs(os.path.join(workdir, POINTS_DIR), exist_ok=True)
    return fingerprint(current)


def point_path(workdir: str, key: str) -> str:
    """``<workdir>/points/<key>.json``; ``key`` must be a plain file-name-safe string."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"point key must match {_KEY_RE.pattern}, got {key!r}")
    return os.path.join(workdir, POINTS_DIR, f"{key}.json")


def save_point(workdir: str, key: str, fprint: str, point) -> None:
    """Write one finished point atomically (JSON; non-finite floats must already be None)."""
    _write_json_atomic(point_path(workdir, key), {"key": key, "fingerprint": fprint, "point": point})


def load_point(workdir: str, key: str, fprint: str):
    """The saved point ``key``, or None if it was never finished.

    A point file that is unreadable or was written under another config raises
    ValueError naming the file (never silently recomputed over, never reused).
    """
    path = point_path(workdir, key)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
        ok = isinstance(saved, dict) and saved.get("key") == key and "point" in saved
    except (OSError, ValueError) as e:
        raise ValueError(f"finished point {path} is unreadable ({e}); delete it to recompute "
                         "that point") from e
    if not ok:
        raise ValueError(f"finished point {path} is malformed (no matching 'key'/'point'); "
                         "delete it to recompute that point")
    if saved.get("fingerprint") != fprint:
        raise ValueError(f"finished point {path} was written under another config than the "
                         "workdir's config.json; delete it to recompute that point")
    return saved["point"]
