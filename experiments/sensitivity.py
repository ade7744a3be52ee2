r"""Parameter sensitivity against memory: linear recurrence with/without gamma, LSTM forget gate.

    python -m experiments.sensitivity --workdir=runs/sensitivity
    python -m experiments.sensitivity --workdir=runs/sens_short --config.seq_len=2000

What is measured and written is documented in rnn_jax/studies/sensitivity.py; the
config file's docstring gives the expected result.
"""

from absl import app

from experiments._entry import define_main, parse_flags
from rnn_jax.studies import sensitivity

main = define_main(sensitivity.run, "sensitivity.py")

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
