r"""Gradient norm against time lag: vanilla RNN, LSTM and GRU on the adding problem.

    python -m experiments.gradient_lag --workdir=runs/gradient_lag
    python -m experiments.gradient_lag --workdir=runs/gl500 --config.seq_len=500
    python -m experiments.gradient_lag --workdir=runs/radius \
        --config=experiments/configs/gradient_lag.py:radius

What is measured and written is documented in rnn_jax/studies/gradient_lag.py; the
config file's docstring gives the runtime and the expected result.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from rnn_jax.studies import gradient_lag

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "gradient_lag.py"),
    "Study config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config.json, results.json, figures.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    gradient_lag.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
