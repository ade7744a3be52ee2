"""Claiming a workdir: one run at a time, and only runs of one experiment and config.

Every experiment entry point (``train``, ``char_lm``, ``classify``, ``seq2seq``,
``forecast``, ``success_rate``, ``gradient_lag``) wraps its work in :func:`claim`::

    with workdir.claim(path, "forecast", config, resumable=()):
        ...  # write outputs

which, before anything else is written:

1. takes the lock ``<workdir>/run.lock``: an exclusive ``fcntl.flock`` on a file
   holding the owner's pid and host. A second run gets :class:`WorkdirInUseError`
   ("workdir ... in use by pid N on HOST") and writes nothing. The kernel drops an
   flock when its process dies, however it dies, so a crashed run never leaves a
   stale lock behind; the file is removed on a clean exit.
2. reads ``<workdir>/run.json`` (``{"experiment": name, "config": {...}}``, written by
   the run that made the workdir) and raises :class:`IncompatibleWorkdirError` naming
   every differing field when it holds another experiment or another config (fields in
   ``resumable`` may differ: the run length and logging cadence of a resumable run). A
   workdir written before run.json existed is checked against its ``config.json``: the
   experiment (its ``experiment`` field, or recognised by its fields), and for runs that
   do not resume every field (resuming runs leave that to their checkpoints, which store
   the same resolved config as config.json). A workdir holding ``checkpoints/`` but
   neither file is refused as unknown.
3. writes run.json with the current config.
4. for a study (``config_file=True``): writes ``<workdir>/config.json``, the config with
   the study's name under ``"_study"`` (the studies' layout, :mod:`rnn_jax.studies.resume`),
   once, when the workdir is new: its points' fingerprints are taken from that file, so it
   is never rewritten. A study workdir written before run.json existed is recognised by
   that field and compared field by field.

``renamed`` (``{"old.field": "new.field"}``) reads a workdir written before a field was
renamed under the new names, so such a run still resumes.

With several JAX processes (multi-host), only process 0 takes the lock and writes
run.json; every process runs the check.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import socket
import time
from typing import Any, Mapping, Sequence

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
CONFIG_FILE = "config.json"
STUDY_KEY = "_study"      # config.json of a study: the study's name beside its config fields


class WorkdirInUseError(RuntimeError):
    """Another live process holds the workdir's lock."""


class IncompatibleWorkdirError(ValueError):
    """The workdir holds a run of another experiment or config."""


def config_json(config) -> dict:
    """``config`` (a ConfigDict or a mapping) as plain JSON types."""
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(dict(config), default=str))


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _renamed_by(field: str, old: str, new: str) -> bool:
    """Whether dotted ``field`` is ``old`` or, when ``old`` was a dict moved elsewhere, inside
    it. (``task`` -> ``task.name``: the new ``task.name`` is not an old field.)"""
    return field == old or (field.startswith(old + ".") and not new.startswith(old + "."))


def apply_renames(saved: Mapping, renamed: Mapping[str, str] | None) -> dict:
    """``saved`` flattened to dotted fields, with each ``old`` field (or ``old.<sub>``, for a
    renamed dict) moved to ``renamed[old]`` (``renamed[old].<sub>``)."""
    flat = _flatten(saved)
    for old, new in (renamed or {}).items():
        for field in [f for f in flat if _renamed_by(f, old, new)]:
            target = new + field[len(old):]
            if target not in flat:
                flat[target] = flat.pop(field)
    return flat


# Fields added to the configs after runs were written without them, each with the value that
# does what those runs did. A saved config that lacks such a field reads as that value, so
# a new option does not strand every earlier workdir and checkpoint; a run that sets the
# field to anything else is still refused.
ADDED_FIELDS: Mapping[str, Any] = {"compute_dtype": "float32"}


def config_differences(saved: Mapping, current: Mapping, resumable: Sequence[str] = (), *,
                       label: str = "checkpoint", ignore_saved_only: bool = False) -> list[str]:
    """``"field: <label>=a, now=b"`` for each (dotted) field that differs, except those in
    ``resumable``. ``ignore_saved_only`` skips fields only ``saved`` has (derived fields
    such as the char LM's vocabulary, when comparing with an unresolved config)."""
    a, b = _flatten(saved), _flatten(current)
    out = []
    for field in sorted(set(a) | set(b)):
        if field in resumable or (ignore_saved_only and field not in b):
            continue
        va = a.get(field, ADDED_FIELDS.get(field, "<absent>"))
        vb = b.get(field, "<absent>")
        if va != vb:
            out.append(f"{field}: {label}={va!r}, now={vb!r}")
    return out


# ------------------------------------------------------------------------------ the lock

def _owner(path: str) -> str:
    for _ in range(20):  # the holder writes its pid right after locking: wait briefly for it
        try:
            with open(path) as f:
                info = json.load(f)
            return f"pid {info['pid']} on {info['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return "another process (its pid is not recorded yet)"


class _Lock:
    """An exclusive flock on ``<workdir>/run.lock`` (module docstring)."""

    def __init__(self, workdir: str):
        import fcntl  # POSIX only; imported here so the module imports everywhere

        self.path = os.path.join(workdir, LOCK_FILE)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise WorkdirInUseError(
                    f"workdir {os.path.abspath(workdir)} is in use by {_owner(self.path)} "
                    f"(lock file {self.path}); wait for that run to finish, or use another "
                    "--workdir") from None
            # The previous holder may have removed the file between our open and flock:
            # then we locked an orphan, and must lock the file that is there now.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        os.ftruncate(fd, 0)
        os.write(fd, info.encode() + b"\n")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still holding the lock (see the inode check above)
        os.close(self.fd)  # closing drops the flock
        self.fd = None


# ----------------------------------------------------------------------------- the check

def check(workdir: str, experiment: str, config, resumable: Sequence[str] = (), *,
          renamed: Mapping[str, str] | None = None) -> None:
    """Raise :class:`IncompatibleWorkdirError` unless ``workdir`` is new or holds a run of
    ``experiment`` with ``config`` (up to the ``resumable`` fields; a saved field in
    ``renamed`` is compared under its new name). Writes nothing."""
    where = os.path.abspath(workdir)
    current = config_json(config)
    # Only a field that the current config no longer has was renamed for it.
    flat_current = _flatten(current)
    renamed = {o: n for o, n in (renamed or {}).items()
               if not any(_renamed_by(f, o, n) for f in flat_current)}
    run_file = os.path.join(workdir, RUN_FILE)
    legacy = os.path.join(workdir, CONFIG_FILE)
    if os.path.exists(run_file):
        try:
            with open(run_file, encoding="utf-8") as f:
                saved = json.load(f)
            saved_experiment, saved_config = saved["experiment"], saved["config"]
        except (ValueError, KeyError, TypeError) as e:
            raise IncompatibleWorkdirError(
                f"{run_file} is unreadable ({type(e).__name__}: {e}); refusing to write into "
                f"{where}. Use a new --workdir") from None
        if saved_experiment != experiment:
            raise IncompatibleWorkdirError(
                f"workdir {where} holds a run of experiment {saved_experiment!r} ({run_file}), "
                f"not {experiment!r}; refusing to overwrite it. Use a new --workdir")
        diffs = config_differences(apply_renames(saved_config, renamed), current, resumable,
                                   label="workdir")
        source = RUN_FILE
    elif os.path.exists(legacy):
        try:
            with open(legacy, encoding="utf-8") as f:
                saved_config = json.load(f)
        except ValueError as e:
            raise IncompatibleWorkdirError(
                f"{legacy} is unreadable ({e}); refusing to write into {where}. Use a new "
                "--workdir") from None
        if not isinstance(saved_config, dict):
            saved_config = {}
        saved_experiment = _infer_experiment(saved_config)
        if saved_experiment != experiment:
            raise IncompatibleWorkdirError(
                f"workdir {where} holds a run of experiment {saved_experiment!r} (judged by its "
                f"config.json), not {experiment!r}; refusing to overwrite it. Use a new --workdir")
        # config.json holds the resolved config (e.g. the cosine schedule's length pinned
        # to num_steps): runs that resume leave the field-by-field check to their
        # checkpoints, which store the resolved config too. A study's config.json holds
        # exactly its config (plus its name): every field is compared.
        study = STUDY_KEY in saved_config
        saved_config = apply_renames(
            {k: v for k, v in saved_config.items() if k != STUDY_KEY}, renamed)
        diffs = [] if resumable else config_differences(
            saved_config, current, resumable, label="workdir", ignore_saved_only=not study)
        source = "config.json"
    elif os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise IncompatibleWorkdirError(
            f"workdir {where} holds checkpoints/ but no {RUN_FILE} or config.json saying which "
            f"run wrote them; refusing to overwrite them with a {experiment!r} run. Use a new "
            "--workdir")
    else:
        return
    if diffs:
        may = (f" (only {', '.join(resumable)} may change on resume)" if resumable
               else f" ({experiment} runs do not resume: every field must match)")
        raise IncompatibleWorkdirError(
            f"workdir {where} holds a {experiment!r} run with a different config ({source}); "
            f"refusing to overwrite it. Differences: {'; '.join(diffs)}. Use a new --workdir, "
            f"or the original config{may}")


def _infer_experiment(saved: Mapping) -> str:
    """The experiment that wrote a config.json without run.json: its ``experiment`` field
    (the applications), else recognised by the fields only it has."""
    if STUDY_KEY in saved:
        return str(saved[STUDY_KEY])
    if "experiment" in saved:
        return str(saved["experiment"])
    if "seq_lens" in saved:
        return "success_rate"
    if "diag_batch" in saved:
        return "gradient_lag"
    if isinstance(saved.get("task"), Mapping) and "cell" in saved:
        return "train"
    return "unknown"


def _is_main_process() -> bool:
    import jax
    return jax.process_index() == 0


def _write_json(path: str, obj, **kwargs) -> None:
    # A temporary file in the same directory, then os.replace: all of it or nothing.
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f, **kwargs)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


@contextlib.contextmanager
def claim(workdir: str, experiment: str, config, *, resumable: Sequence[str] = (),
          config_file: bool = False, renamed: Mapping[str, str] | None = None):
    """Hold ``workdir`` for one run of ``experiment`` with ``config`` (module docstring).

    Creates ``workdir`` if needed; raises :class:`WorkdirInUseError` or
    :class:`IncompatibleWorkdirError` before writing anything else. ``config_file``: a
    study's claim, which also writes ``config.json`` with ``"_study": experiment``.
    ``renamed``: fields renamed since older workdirs were written (old -> new).
    """
    if not isinstance(workdir, (str, os.PathLike)) or not os.fspath(workdir):
        raise ValueError(f"workdir must be a non-empty directory path, got {workdir!r}")
    workdir = os.fspath(workdir)
    current = config_json(config)
    if config_file and STUDY_KEY in current:
        raise ValueError(f"config field {STUDY_KEY!r} is reserved for the study name")
    if not _is_main_process():
        check(workdir, experiment, config, resumable, renamed=renamed)
        yield workdir
        return
    created = not os.path.exists(workdir)
    os.makedirs(workdir, exist_ok=True)
    run_file = os.path.join(workdir, RUN_FILE)
    config_path = os.path.join(workdir, CONFIG_FILE)
    had_run_file = os.path.exists(run_file)
    had_config = os.path.exists(config_path)
    lock = _Lock(workdir)
    try:
        check(workdir, experiment, config, resumable, renamed=renamed)
        _write_json(run_file, {"experiment": experiment, "config": current}, indent=2,
                    sort_keys=True)
        if config_file and not had_config:
            _write_json(config_path, {STUDY_KEY: experiment, **current}, indent=1,
                        allow_nan=False)
        yield workdir
    except BaseException:
        # A run that failed before writing anything of its own (bad data, a refused
        # checkpoint) leaves the workdir as it found it.
        ours = {RUN_FILE, LOCK_FILE} | ({CONFIG_FILE} if config_file and not had_config else set())
        if not had_run_file and set(os.listdir(workdir)) <= ours:
            for path in (run_file, config_path) if config_file and not had_config else (run_file,):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            lock.release()
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(workdir)
        raise
    finally:
        lock.release()


def claims(experiment: str, *, validate=None, resolve=None, resumable: Sequence[str] = (),
           config_file: bool = False, renamed: Mapping[str, str] | None = None):
    """Decorator form of :func:`claim` for ``fn(config, workdir, ...)``: validates the
    config first (``validate(config)``, so a bad config writes nothing), then claims the
    workdir for ``resolve(config)`` (default: the config as given) around the call."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(config, workdir, *args, **kwargs):
            if validate is not None:
                validate(config)
            resolved = resolve(config) if resolve is not None else config
            with claim(workdir, experiment, resolved, resumable=resumable,
                       config_file=config_file, renamed=renamed):
                return fn(config, workdir, *args, **kwargs)
        return run
    return wrap
