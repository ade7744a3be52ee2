"""The entry point every experiment shares: ``--config`` and ``--workdir``, then one call.

    main = define_main(train_and_evaluate, "adding.py")

defines ``--config`` (an ml_collections config file, default
``experiments/configs/<default>``, locked so that a misspelt override fails, and
overridable field by field as ``--config.<field>=...``) and ``--workdir``, and returns
``main(argv)`` for ``absl.app.run`` (run it as ``app.run(main, flags_parser=parse_flags)``:
errors are one line, see :mod:`experiments._cli`). Config values are never copied into flags.
The keys of a ``*kwargs`` field (``cell_kwargs``, ``task.kwargs``, ``model_kwargs``) are open:
``--config.cell_kwargs.forget_bias=2.0`` adds or replaces one constructor argument
(:func:`open_kwargs_fields`); every other field is locked. ``--help`` lists these flags and
every field of the chosen config (``--config=...`` before ``--help``) with its default.

Every main also takes ``--coordinator_address``, ``--num_processes``, ``--process_id``
(and ``--distributed_timeout_s``): with them, or in a detected cluster (SLURM, Open
MPI, a TPU pod), ``main`` joins JAX's multi-process runtime before any other JAX call
(:func:`rnn_jax.train.distributed.maybe_initialize`). Only mains built with
``multi_process=True`` (``experiments.train``, the engine) accept more than one process.
"""

from __future__ import annotations

import ast
import os
import re
import sys

import ml_collections
from absl import app, flags
from ml_collections import config_flags
# Its module, for the parser and flag classes that DEFINE_config_file builds (not exported).
from ml_collections.config_flags import config_flags as config_flags_impl

from experiments import _cli
from rnn_jax.train import distributed

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
_HELP_FLAGS = ("--help", "-help", "-h", "--helpshort", "-helpshort", "--helpfull", "-helpfull", "-?")

# The flags this module defines are key flags of the module that calls define_main (the
# experiment's main), so that ``--help`` lists them instead of hiding them in --helpfull.
flags.disclaim_key_flags()

parse_flags = _cli.parse_flags


def _argv() -> list[str]:
    # The argv config_flags reads its overrides from (sys.argv, --flagfile expanded).
    return flags.FLAGS.read_flags_from_files(sys.argv, force_gnu=False)


def _overrides(argv) -> list[tuple[list[str], str | None]]:
    """``[(path, value)]`` of every ``--config.<path>=<value>`` (or ``--config.<path> <value>``,
    ``--[no]config.<path>``) in argv; value None for the bare boolean forms."""
    out = []
    for i, arg in enumerate(argv):
        m = re.match(r"^--?(no)?config\.([^=]+)(=(.*))?$", arg)
        if not m:
            continue
        if m.group(3) is not None:
            value = m.group(4)
        elif m.group(1) is None and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            value = argv[i + 1]
        else:
            value = "False" if m.group(1) else None
        out.append((m.group(2).split("."), value))
    return out


def _literal(text: str | None):
    """The value an override of a new field gets: a Python literal, else the string."""
    if text is None:
        return True
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def open_kwargs_fields(config, argv) -> None:
    """Add to ``config`` (unlocked) every field that an override names below a ``*kwargs``
    field but the config lacks, with the override's value.

    Fields named ``...kwargs`` (``cell_kwargs``, ``task.kwargs``, ``model_kwargs``) hold a
    constructor's keyword arguments: their keys are open, unlike every other field. Locked
    configs refuse unknown keys and config_flags only defines an override flag for an
    existing field, so ``--config.cell_kwargs.forget_bias=2.0`` on an empty
    ``cell_kwargs`` would be refused as "no field". Adding the key first (typed from the
    value) lets config_flags parse it like any other field; misspelt fields anywhere
    else are still refused.
    """
    for path, value in _overrides(argv):
        open_at = next((i for i, name in enumerate(path[:-1]) if name.endswith("kwargs")), None)
        if open_at is None:
            continue
        node = config
        for depth, name in enumerate(path[:-1]):
            if not isinstance(node, ml_collections.ConfigDict):
                break
            if name not in node:
                if depth <= open_at:
                    break  # a misspelt field above the open one: config_flags refuses it
                node[name] = ml_collections.ConfigDict()
            node = node[name]
        else:
            if isinstance(node, ml_collections.ConfigDict) and path[-1] not in node:
                node[path[-1]] = _literal(value)


class _ConfigFileParser(config_flags_impl.ConfigFileFlagParser):
    """config_flags' parser (load ``path[:variant]``), with the ``*kwargs`` fields opened to
    the overrides on the command line (:func:`open_kwargs_fields`), then locked."""

    def __init__(self, name):
        super().__init__(name=name, lock_config=False)

    def parse(self, path):
        config = super().parse(path)
        if isinstance(config, ml_collections.ConfigDict):
            open_kwargs_fields(config, _argv())
            config.lock()
        return config


def config_fields(config, prefix="config") -> list[str]:
    """``config.<field> = <default>`` for every leaf field, in the config's order."""
    lines = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            if len(value) == 0:
                lines.append(f"{prefix}.{key} = {{}}  (open: --{prefix}.{key}.<kwarg>=...)")
            lines.extend(config_fields(value, f"{prefix}.{key}"))
        else:
            lines.append(f"{prefix}.{key} = {value!r}")
    return lines


def _config_help(default_path: str) -> str:
    base = ("Config file; `path.py:variant` picks a variant, --config.<field>=... overrides a "
            "field (the keys of a *kwargs field are open).")
    argv = sys.argv
    if not any(a in _HELP_FLAGS for a in argv):
        return base
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), default_path)
    try:
        config = _cli.load_config(spec)
    except Exception as e:  # noqa: BLE001 - help must print whatever the config file does
        return f"{base}\n(the fields of {spec} could not be listed: {e})"
    fields = "\n".join(config_fields(config))
    return f"{base}\nThe fields of {os.path.relpath(spec)} and their defaults:\n{fields}"


def define_config(default_path: str, flag_values=flags.FLAGS):
    """``--config``: config_flags' file flag, locked, with open ``*kwargs`` fields."""
    flag_class = getattr(config_flags_impl, "_ConfigFlag", None)
    if flag_class is None:  # an ml_collections without it: no open kwargs fields
        return config_flags.DEFINE_config_file("config", default_path, _config_help(default_path),
                                               flag_values=flag_values, lock_config=True)
    flag = flag_class(parser=_ConfigFileParser("config"), serializer=flags.ArgumentSerializer(),
                      name="config", default=default_path,
                      help_string=_config_help(default_path), flag_values=flag_values)
    return flags.DEFINE_flag(flag, flag_values)


def define_main(run, default_config: str, multi_process: bool = False):
    """Define the flags and return ``main`` calling ``run(config, workdir)``.

    ``multi_process``: ``run`` shards its work over processes and writes from process
    0 only; without it, asking for several processes is a usage error.
    """
    try:
        config = define_config(os.path.join(_CONFIGS, default_config))
    except (AttributeError, KeyError) as e:  # an override of a field the config lacks
        config = _cli.defer_override_error(e, os.path.join(_CONFIGS, default_config))
    workdir = flags.DEFINE_string("workdir", None, "Run directory: config.json, logs, results, figures.")
    flags.mark_flags_as_required(["workdir"])
    coordinator = flags.DEFINE_string(
        "coordinator_address", None, "host:port of process 0, the same on every process "
        "(JAX's distributed runtime); with --num_processes and --process_id.")
    num_processes = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
    process_id = flags.DEFINE_integer("process_id", None, "This process: 0..num_processes-1.")
    timeout = flags.DEFINE_integer(
        "distributed_timeout_s", distributed.DEFAULT_TIMEOUT_S,
        "A peer silent this long is declared dead and every process fails.")

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:  # flag checks first: nothing has run yet
            distributed.check_flags(coordinator.value, num_processes.value, process_id.value,
                                    timeout.value, multi_process=multi_process)
        except distributed.DistributedFlagError as e:
            raise app.UsageError(str(e)) from e
        distributed.maybe_initialize(coordinator.value, num_processes.value, process_id.value,
                                     timeout_s=timeout.value)
        with distributed.peer_errors_explained():
            _cli.call(run, config.value, workdir.value)

    return main
