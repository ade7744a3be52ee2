r"""Gradient flow while training: heatmap of log10 ||dL/dh_t|| over lag x step, tanh RNN and chrono LSTM.

    python -m experiments.training_heatmap --workdir=runs/training_heatmap

What is measured and written is documented in rnn_jax/studies/training_heatmap.py.
"""

from absl import app

from experiments._entry import define_main, parse_flags
from rnn_jax.studies import training_heatmap

main = define_main(training_heatmap.run, "training_heatmap.py")

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
