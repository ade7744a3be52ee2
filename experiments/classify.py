r"""Train a BiLSTM + attention sequence classifier (sklearn digits or a text<TAB>label file).

    python -m experiments.classify --config=experiments/configs/classify_digits.py --workdir=/tmp/digits
    python -m experiments.classify --config=experiments/configs/classify_tsv.py \
        --config.data.path=reviews.tsv --workdir=/tmp/reviews

Writes config.json, metrics.jsonl, eval.json (test accuracy, confusion matrix),
confusion_matrix.png, attention.png and checkpoints into --workdir; re-running
resumes. All behaviour lives in rnn_jax.apps.classify.train_and_evaluate.
"""

from absl import app

from experiments._entry import define_main, parse_flags
from rnn_jax.apps.classify import train_and_evaluate

main = define_main(train_and_evaluate, "classify_digits.py")

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
