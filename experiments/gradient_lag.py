r"""Gradient norm against time lag: vanilla RNN, LSTM and GRU on the adding problem.

    python -m experiments.gradient_lag --workdir=runs/gradient_lag
    python -m experiments.gradient_lag --workdir=runs/gl500 --config.seq_len=500
    python -m experiments.gradient_lag --workdir=runs/radius \
        --config=experiments/configs/gradient_lag.py:radius

What is measured and written is documented in rnn_jax/studies/gradient_lag.py; the
config file's docstring gives the runtime and the expected result.
"""

from absl import app

from experiments._entry import define_main, parse_flags
from rnn_jax.studies import gradient_lag

main = define_main(gradient_lag.run, "gradient_lag.py")

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
