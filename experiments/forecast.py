"""Forecast a univariate series (statsmodels' sunspots or Mauna Loa CO2) with RNN/LSTM/GRU.

    python -m experiments.forecast --config=experiments/configs/forecast.py:sunspots --workdir=/tmp/sunspots
    python -m experiments.forecast --config=experiments/configs/forecast.py:co2 --workdir=/tmp/co2

Writes config.json, metrics.jsonl, eval.json (test MSE/MAE in original units for the
recurrent models and the persistence, seasonal-naive and AR baselines, one-step and
multi-step) and forecast.png/.pdf into --workdir. All behaviour lives in
rnn_jax.apps.forecast.train_and_evaluate.
"""

from absl import app

from experiments._entry import define_main, parse_flags
from rnn_jax.apps.forecast import train_and_evaluate

main = define_main(train_and_evaluate, "forecast.py")

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
