"""What a user sees when an experiment cannot run: one line, and a meaningful exit code.

    app.run(main, flags_parser=parse_flags)     # flag and config-file errors
    _cli.call(run, config, workdir)             # errors of the run itself

Exit codes: 2 for a bad flag or config value, a config file variant that does not
exist, bad data or a workdir that holds another run (the user must change the
command); 1 for a run that stopped (workdir in use by another process, non-finite
loss); 130 after Ctrl-C (the training loops save a checkpoint first). The message
is ``error: <what>`` on stderr, with no traceback; set ``RNN_JAX_TRACEBACK=1`` to
get the traceback instead (for bugs). Only errors raised on purpose by our own checks
(a ``raise`` statement in rnn_jax or experiments, see :func:`raised_by_us`) become one
line: any other ValueError or TypeError is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import re
import sys
import traceback

from absl import flags

import rnn_jax
from rnn_jax.train.workdir import WorkdirInUseError

USAGE_ERROR = 2
RUN_STOPPED = 1
INTERRUPTED = 130


def _die(message: str, code: int):
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def _want_traceback() -> bool:
    return os.environ.get("RNN_JAX_TRACEBACK", "") not in ("", "0")


def _config_file_error(text: str) -> str:
    """One line from absl's "Error whilst parsing config file" message (which embeds a
    traceback): the config path, and the exception raised by ``get_config``."""
    m = re.search(r"flag --(\w+)=(\S+?): Error whilst parsing config file", text)
    flag, spec = (m.group(1), m.group(2)) if m else ("config", "?")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else text
    path, _, variant = spec.partition(":")
    if "get_config() takes 0 positional arguments" in last:
        return (f"--{flag}={spec}: the config file {path} has no variants; use "
                f"--{flag}={path} without ':{variant}'")
    last = re.sub(r"^\w+(Error|Exception): ", "", last)
    return f"--{flag}={spec}: {last}"


_DEFERRED: list = []


def defer_override_error(error: Exception, default_config_path: str):
    """Record an override error raised while the config flag was defined (ml_collections
    reads ``--config.<field>`` overrides from sys.argv then); :func:`parse_flags` reports
    it. Returns None in place of the flag."""
    _DEFERRED.append((error, default_config_path))
    return None


def load_config(spec: str):
    """``get_config([variant])`` of the config file ``path.py[:variant]``, as config_flags
    loads it (unlocked)."""
    import runpy
    path, _, variant = spec.partition(":")
    get_config = runpy.run_path(path)["get_config"]
    return get_config(variant) if variant else get_config()


def _load_config(argv, default_path):
    """The config ``--config`` (or the default) names."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), default_path)
    return load_config(spec)


def _unknown_field(error: Exception, argv, default_path=None) -> str:
    # ml_collections' KeyError: "'name'" or "'name'\nDid you mean "other" instead of "name"?".
    while error.args and isinstance(error.args[0], Exception):  # AttributeError(KeyError(...))
        error = error.args[0]
    text = str(error.args[0]) if error.args else str(error)
    first, _, hint = text.partition("\n")
    key = first.strip("'\"")
    hint = f" ({hint.strip()})" if hint.strip() else ""
    overrides = [a for a in argv if a.startswith("--config.")]
    culprit = next((a for a in overrides
                    if key in a.split("=", 1)[0][len("--config."):].split(".")), None)
    if culprit is None:
        return f"bad --config override: {error}"
    path = culprit.split("=", 1)[0][len("--config."):]
    parent = path.rsplit(".", 1)[0] if "." in path else ""
    try:
        config = (flags.FLAGS["config"].value if default_path is None
                  else _load_config(argv, default_path))
        node = config[parent] if parent else config
        valid = f"; the fields{' of config.' + parent if parent else ''} are {sorted(node.keys())}"
    except Exception:  # noqa: BLE001 - the listing is a courtesy
        valid = ""
    return f"{culprit}: the config has no field {path!r}{hint}{valid}"


def _renamed_override(argv) -> str | None:
    """The message for an override that uses a field name issue 18 replaced (e.g.
    ``--config.learning_rate`` of the studies, now ``--config.optimizer.learning_rate``)."""
    from rnn_jax.studies.resume import RENAMED
    renamed = {old: new for fields in RENAMED.values() for old, new in fields.items()}
    for arg in argv:
        m = re.match(r"^--?(?:no)?config\.([\w.]+)(=|$)", arg)
        path = m.group(1) if m else ""
        for old, new in renamed.items():
            # task_kwargs.x -> task.kwargs.x; but optimizer.name is not the old optimizer
            if path == old or (path.startswith(old + ".") and not new.startswith(old + ".")):
                now = new + path[len(old):]
                return (f"{arg}: config.{path} was renamed config.{now} (the field names of "
                        f"experiments.train); use --config.{now}")
    return None


def parse_flags(argv):
    """``flags.FLAGS(argv)``; a bad flag, override or config file ends the process with one
    line and exit code 2."""
    if _DEFERRED:
        error, default_path = _DEFERRED[0]
        if _want_traceback():
            raise error
        _die(_renamed_override(argv) or _unknown_field(error, argv, default_path), USAGE_ERROR)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        if _want_traceback():
            raise
        if _renamed_override(argv):
            _die(_renamed_override(argv), USAGE_ERROR)
        text = str(e)
        if "Error whilst parsing config file" in text:
            _die(_config_file_error(text), USAGE_ERROR)
        _die(text.strip().splitlines()[0], USAGE_ERROR)
    except (AttributeError, KeyError) as e:  # ml_collections: an override of no field
        if _want_traceback():
            raise
        _die(_renamed_override(argv) or _unknown_field(e, argv), USAGE_ERROR)


def call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; a user-facing error ends the process with one line (module
    docstring)."""
    if _want_traceback():
        return fn(*args, **kwargs)
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt as e:
        sys.stderr.write(f"{str(e) or 'interrupted (Ctrl-C)'}\n")
        sys.exit(INTERRUPTED)
    except WorkdirInUseError as e:
        _die(str(e), RUN_STOPPED)
    except FloatingPointError as e:
        _die(str(e), RUN_STOPPED)
    except FileNotFoundError as e:  # a data or config path the user named; str(e) names it
        _die(str(e), USAGE_ERROR)
    except (ValueError, TypeError) as e:
        if not raised_by_us(e):
            raise  # a bug, or a library's error we did not anticipate: keep the traceback
        _die(str(e), USAGE_ERROR)


_OUR_CODE = tuple(os.path.dirname(os.path.abspath(f)) + os.sep for f in (rnn_jax.__file__, __file__))


def raised_by_us(error: BaseException) -> bool:
    """True when ``error`` was raised by a ``raise`` statement in rnn_jax or experiments.

    Those are the messages written for the user: config validation, data checks, workdir
    refusals, each naming what to change. A ValueError or TypeError raised anywhere else
    (inside jax, numpy or optax, or by Python itself on a line of ours, such as a call with
    a wrong argument) is a bug or an unanticipated failure, and keeps its traceback.
    The innermost frame of the traceback is where it was raised; JAX's traceback
    filtering only removes JAX's own frames, which are not ours either way.
    """
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    last = frames[-1]
    path = os.path.abspath(last.filename)
    return path.startswith(_OUR_CODE) and (last.line or "").lstrip().startswith("raise")
