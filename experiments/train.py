"""Train any configured model on any task.

    python -m experiments.train --config=experiments/configs/adding.py --workdir=/tmp/adding \
        [--config.hidden_size=64 --config.num_seeds=4 ...]

Re-running the same command with the same --workdir resumes from its latest checkpoint.
All behaviour lives in rnn_jax.train.train_and_evaluate; this file only parses flags.
"""

from absl import app, flags
from ml_collections import config_flags

from rnn_jax.train import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/adding.py", "Training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, eval.json).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
