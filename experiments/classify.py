"""Train a BiLSTM + attention sequence classifier (sklearn digits or a text<TAB>label file).

    python -m experiments.classify --config=experiments/configs/classify_digits.py --workdir=/tmp/digits
    python -m experiments.classify --config=experiments/configs/classify_tsv.py \
        --config.data.path=reviews.tsv --workdir=/tmp/reviews

Writes config.json, metrics.jsonl, eval.json (test accuracy, confusion matrix),
confusion_matrix.png, attention.png and checkpoints into --workdir; re-running
resumes. All behaviour lives in rnn_jax.classify.train_and_evaluate.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from rnn_jax.classify import train_and_evaluate

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "classify_digits.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT, "Classifier config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs, eval.json).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
