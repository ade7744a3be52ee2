"""The entry point every experiment shares: ``--config`` and ``--workdir``, then one call.

    main = define_main(train_and_evaluate, "adding.py")

defines ``--config`` (an ml_collections config file, default
``experiments/configs/<default>``, locked so that a misspelt override fails, and
overridable field by field as ``--config.<field>=...``) and ``--workdir``, and returns
``main(argv)`` for ``absl.app.run`` (run it as ``app.run(main, flags_parser=parse_flags)``:
errors are one line, see :mod:`experiments._cli`). Config values are never copied into flags.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from experiments import _cli

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


parse_flags = _cli.parse_flags


def define_main(run, default_config: str):
    """Define the two flags and return ``main`` calling ``run(config, workdir)``."""
    try:
        config = config_flags.DEFINE_config_file(
            "config", os.path.join(_CONFIGS, default_config),
            "Config file; `path.py:variant` picks a variant, --config.<field>=... overrides a field.",
            lock_config=True)
    except (AttributeError, KeyError) as e:  # an override of a field the config lacks
        config = _cli.defer_override_error(e, os.path.join(_CONFIGS, default_config))
    workdir = flags.DEFINE_string("workdir", None, "Run directory: config.json, logs, results, figures.")
    flags.mark_flags_as_required(["workdir"])

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        _cli.call(run, config.value, workdir.value)

    return main
