"""The entry point every experiment shares: ``--config`` and ``--workdir``, then one call.

    main = define_main(train_and_evaluate, "adding.py")

defines ``--config`` (an ml_collections config file, default
``experiments/configs/<default>``, locked so that a misspelt override fails, and
overridable field by field as ``--config.<field>=...``) and ``--workdir``, and returns
``main(argv)`` for ``absl.app.run`` (run it as ``app.run(main, flags_parser=parse_flags)``:
errors are one line, see :mod:`experiments._cli`). Config values are never copied into flags.

Every main also takes ``--coordinator_address``, ``--num_processes``, ``--process_id``
(and ``--distributed_timeout_s``): with them, or in a detected cluster (SLURM, Open
MPI, a TPU pod), ``main`` joins JAX's multi-process runtime before any other JAX call
(:func:`rnn_jax.train.distributed.maybe_initialize`). Only mains built with
``multi_process=True`` (``experiments.train``, the engine) accept more than one process.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from experiments import _cli
from rnn_jax.train import distributed

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


parse_flags = _cli.parse_flags


def define_main(run, default_config: str, multi_process: bool = False):
    """Define the flags and return ``main`` calling ``run(config, workdir)``.

    ``multi_process``: ``run`` shards its work over processes and writes from process
    0 only; without it, asking for several processes is a usage error.
    """
    try:
        config = config_flags.DEFINE_config_file(
            "config", os.path.join(_CONFIGS, default_config),
            "Config file; `path.py:variant` picks a variant, --config.<field>=... overrides a field.",
            lock_config=True)
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
