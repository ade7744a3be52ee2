r"""Train a character-level language model (RNN, LSTM or GRU) with truncated BPTT.

    python -m experiments.char_lm --workdir=/tmp/char_lm_lstm \
        [--config=experiments/configs/char_lm.py:gru] [--config.data.path=book.txt]

Writes config.json, metrics.jsonl, eval.json (validation bits per character),
val_bpc.png, sample.txt and checkpoints into --workdir; re-running resumes. All
behaviour lives in rnn_jax.apps.lm.train_and_evaluate; this file only parses flags.
"""

from absl import app

from experiments._entry import define_main, parse_flags
from rnn_jax.apps.lm import train_and_evaluate

main = define_main(train_and_evaluate, "char_lm.py")

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
