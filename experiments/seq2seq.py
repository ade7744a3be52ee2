r"""Train a sequence-to-sequence model (BiLSTM encoder, LSTM decoder, additive attention).

    python -m experiments.seq2seq --config=experiments/configs/seq2seq_addition.py --workdir=/tmp/s2s_add
    python -m experiments.seq2seq --config=experiments/configs/seq2seq_dates.py:noattn \
        --workdir=/tmp/s2s_dates_noattn

Writes config.json, metrics.jsonl, eval.json (held-out exact match, greedy and beam),
exact_match.png, attention.png and checkpoints into --workdir; re-running resumes.
All behaviour lives in rnn_jax.apps.seq2seq.train_and_evaluate.
"""

from absl import app

from experiments._entry import define_main, parse_flags
from rnn_jax.apps.seq2seq import train_and_evaluate

main = define_main(train_and_evaluate, "seq2seq_addition.py")

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
