"""Forecast a univariate series (statsmodels' sunspots or Mauna Loa CO2) with RNN/LSTM/GRU.

    python -m experiments.forecast --config=experiments/configs/forecast.py:sunspots --workdir=/tmp/sunspots
    python -m experiments.forecast --config=experiments/configs/forecast.py:co2 --workdir=/tmp/co2

Writes config.json, metrics.jsonl, eval.json (test MSE/MAE in original units for the
recurrent models and the persistence, seasonal-naive and AR baselines, one-step and
multi-step) and forecast.png/.pdf into --workdir. All behaviour lives in
rnn_jax.forecast.train_and_evaluate.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from rnn_jax.forecast import train_and_evaluate

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "forecast.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT, "Forecasting config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (logs, eval.json, plots).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
