r"""Success rate against sequence length: tanh RNN, LSTM and GRU, with and without clipping.

    python -m experiments.success_rate --workdir=runs/success_rate
    python -m experiments.success_rate --workdir=runs/sr_full \
        --config=experiments/configs/success_rate.py:full

What is trained, scored and written is documented in rnn_jax/studies/success_rate.py;
the config file's docstring gives the runtime and the expected result.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from rnn_jax.studies import success_rate

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "success_rate.py"),
    "Study config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config.json, results.json, figures.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    success_rate.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
