"""Train a character-level language model (RNN, LSTM or GRU) with truncated BPTT.

    python -m experiments.char_lm --workdir=/tmp/char_lm_lstm \
        [--config=experiments/configs/char_lm.py:gru] [--config.data.path=book.txt]

Writes config.json, metrics.jsonl, eval.json (validation bits per character),
val_bpc.png, sample.txt and checkpoints into --workdir; re-running resumes. All
behaviour lives in rnn_jax.lm.train_and_evaluate; this file only parses flags.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from rnn_jax.lm import train_and_evaluate

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "char_lm.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT, "Char-LM config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, eval.json).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
