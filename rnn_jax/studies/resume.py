"""Per-point resume for the studies: claim a workdir, save and reload finished points.

A study (``gradient_lag``, ``success_rate``) is a grid of independent points, each a pure
function of the config and the point's coordinates (every random key is derived from
``config.seed``). So a run interrupted after point k resumes by reloading points 0..k
from disk and computing only the rest, and gives the same results as an uninterrupted
run (bit for bit in the stored numbers; only wall times differ).

Layout of a study workdir::

    config.json          the study's config, plus "_study": <study name>
    points/<key>.json    one finished point: {"key", "fingerprint", "point"}

A study claims its workdir once, with :func:`claims` (the one workdir claim,
:func:`rnn_jax.train.workdir.claim`, with ``config_file=True``): the lock and run.json, and
``config.json`` on a new workdir; on an existing one it refuses (before anything is
computed or written) a workdir that holds another experiment's run or the same study with
another config, naming every differing field. The points' fingerprint is that of the
config in config.json (:func:`workdir_fingerprint`).
:func:`save_point` writes atomically (a temporary file in the same directory, then
``os.replace``), so an interruption leaves either the whole point or nothing.
:func:`load_point` checks the point's config fingerprint, so a point written under
another config is never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping

from rnn_jax.train import workdir as workdir_lib

STUDY_KEY = workdir_lib.STUDY_KEY
POINTS_DIR = "points"
_KEY_RE = re.compile(r"^[A-Za-z0-9_.=+-]+$")


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


# Fields renamed by issue 18 so that every entry point spells the task and optimizer alike
# (``task.name``, ``task.kwargs``, ``optimizer.name``, ``optimizer.learning_rate``, ... as in
# experiments.train). A workdir
# written under the old names still resumes (its config.json is read under the new names and
# its fingerprint is that file's); a config that still uses them is refused, naming the rename.
RENAMED = {
    "success_rate": {"task": "task.name", "task_kwargs": "task.kwargs",
                     "optimizer": "optimizer.name", "learning_rate": "optimizer.learning_rate",
                     "schedule": "optimizer.schedule", "warmup_steps": "optimizer.warmup_steps",
                     "clip_norm": "optimizer.clip_norm"},
    "gradient_lag": {"task": "task.name", "learning_rate": "optimizer.learning_rate",
                     "clip_norm": "optimizer.clip_norm"},
    "training_heatmap": {"learning_rate": "optimizer.learning_rate",
                         "clip_norm": "optimizer.clip_norm"},
}


def refuse_renamed(config, study: str) -> None:
    """ValueError naming every field of ``config`` that uses a name :data:`RENAMED` replaced."""
    # "optimizer" -> "optimizer.name": the old field is the new one's parent, in use while it
    # is not a dict; any other old field is in use when present.
    old = [(o, n) for o, n in RENAMED.get(study, {}).items() if o in config
           and not (n.startswith(o + ".") and hasattr(config[o], "keys"))]
    if old:
        raise ValueError(
            "config uses field names that were renamed (issue 18): " + ", ".join(
                f"config.{o} -> config.{n}" for o, n in old)
            + f"; rename them in your config file or --config.<field> flags (see "
            f"experiments/configs/{study}.py)")


def claims(study: str, validate):
    """The studies' claim: :func:`rnn_jax.train.workdir.claims` with the study layout
    (config.json with ``"_study"``) and the renamed fields. Decorates ``run(config, workdir)``;
    inside, :func:`workdir_fingerprint` gives the points' fingerprint."""
    return workdir_lib.claims(study, validate=validate, config_file=True,
                              renamed=RENAMED.get(study))


def workdir_fingerprint(workdir: str) -> str:
    """The fingerprint of the config in ``<workdir>/config.json`` (without ``"_study"``),
    the config the workdir's points were written under."""
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"workdir {workdir!r} holds an unreadable config.json ({e}); "
                         "refusing to overwrite it: pick a new --workdir") from e
    return fingerprint({k: v for k, v in saved.items() if k != STUDY_KEY})


def claim(workdir: str, study: str, config) -> str:
    """Claim ``workdir`` for ``study`` once, release it, and return the points' fingerprint:
    the study claim of :func:`claims` as a plain call (for tools and tests; a running study
    holds its claim through :func:`claims` instead). Refuses another experiment's workdir
    or another config with :class:`rnn_jax.train.workdir.IncompatibleWorkdirError`."""
    with workdir_lib.claim(workdir, study, config, config_file=True,
                           renamed=RENAMED.get(study)):
        os.makedirs(os.path.join(workdir, POINTS_DIR), exist_ok=True)
        return workdir_fingerprint(workdir)


def point_path(workdir: str, key: str) -> str:
    """``<workdir>/points/<key>.json``; ``key`` must be a plain file-name-safe string."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"point key must match {_KEY_RE.pattern}, got {key!r}")
    return os.path.join(workdir, POINTS_DIR, f"{key}.json")


def save_point(workdir: str, key: str, fprint: str, point) -> None:
    """Write one finished point atomically (JSON; non-finite floats must already be None)."""
    os.makedirs(os.path.join(workdir, POINTS_DIR), exist_ok=True)
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
