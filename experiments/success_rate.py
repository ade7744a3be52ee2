r"""Success rate against sequence length: tanh RNN, LSTM and GRU, with and without clipping.

    python -m experiments.success_rate --workdir=runs/success_rate
    python -m experiments.success_rate --workdir=runs/sr_full \
        --config=experiments/configs/success_rate.py:full

What is trained, scored and written is documented in rnn_jax/studies/success_rate.py;
the config file's docstring gives the runtime and the expected result.
"""

from absl import app

from experiments._entry import define_main, parse_flags
from rnn_jax.studies import success_rate

main = define_main(success_rate.run, "success_rate.py")

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
