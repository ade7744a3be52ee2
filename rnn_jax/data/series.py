"""Univariate time series for forecasting: loading, chronological splits, scaling, windows.

Two real series ship with statsmodels (an optional dependency, imported only by
:func:`load_series`):

* ``"sunspots"``: yearly mean sunspot number 1700-2008 (309 values, no gaps), with the
  roughly 11-year solar cycle;
* ``"co2"``: weekly atmospheric CO2 at Mauna Loa in ppm, 1958-03-29 to 2001-12-29
  (2,284 weeks). 59 weeks are missing; they are filled by linear interpolation in
  time between the neighbouring measured weeks (the first and last weeks are
  measured, so no extrapolation is needed). Interpolation uses only the two
  measured neighbours, so a filled value inside the training part can depend on
  at most one week after it.

Everything downstream is in NumPy and works on any 1-D float array, which is how the
tests use it with synthetic series.

Conventions: a series ``y`` of length ``n`` is split chronologically into
``[0, n_train)``, ``[n_train, n_train + n_val)`` and ``[n_train + n_val, n)``. A
forecast *window* for target index ``t`` is ``y[t - window : t]``: it only ever
contains values strictly before ``t``, and may reach back into an earlier split (that
is past data, not look-ahead).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

SERIES = ("sunspots", "co2")
SEASON = {"sunspots": 11, "co2": 52}  # period in samples: ~11-year cycle, 52 weeks a year
UNITS = {"sunspots": "sunspot number", "co2": "ppm"}


def load_series(name: str) -> np.ndarray:
    """The named statsmodels series as a float64 array ``[n]`` (see the module docstring)."""
    if name not in SERIES:
        raise ValueError(f"series name must be one of {list(SERIES)}, got {name!r}")
    try:
        import statsmodels.api as sm
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the forecasting data needs statsmodels: "
                          "pip install 'rnn_jax[data]'") from e
    if name == "sunspots":
        values = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"]
    else:
        values = sm.datasets.co2.load_pandas().data["co2"].interpolate(method="time")
    y = np.asarray(values, np.float64)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"series {name!r} still has {int(np.sum(~np.isfinite(y)))} "
                         "missing values after interpolation")
    return y


class Split(NamedTuple):
    """Boundaries of a chronological split: train ``[0, train_end)``, validation
    ``[train_end, val_end)``, test ``[val_end, n)``."""

    train_end: int
    val_end: int
    n: int


def chronological_split(n: int, val_fraction: float, test_fraction: float) -> Split:
    """Split ``n`` time steps into consecutive train/val/test parts (fractions of ``n``)."""
    for field, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < f < 1.0:
            raise ValueError(f"{field} must be in (0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got "
                         f"{val_fraction} + {test_fraction}")
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if n_test < 1 or n_val < 1 or n - n_test - n_val < 1:
        raise ValueError(f"series of length {n} is too short for val_fraction={val_fraction}"
                         f" and test_fraction={test_fraction}: every part needs >= 1 step")
    return Split(n - n_test - n_val, n - n_test, n)


class Normalizer(NamedTuple):
    """Affine scaling ``z = (y - mean) / std`` with statistics of the training part only."""

    mean: float
    std: float

    def transform(self, y):
        return (y - self.mean) / self.std

    def inverse(self, z):
        return z * self.std + self.mean


def fit_normalizer(y: np.ndarray, split: Split) -> Normalizer:
    """Mean and standard deviation of ``y[:split.train_end]`` (never val or test)."""
    train = np.asarray(y, np.float64)[: split.train_end]
    std = float(np.std(train))
    if not std > 0:
        raise ValueError("the training part of the series is constant (std 0); "
                         "it cannot be normalised")
    return Normalizer(float(np.mean(train)), std)


def make_windows(y: np.ndarray, window: int, start: int, stop: int):
    """Inputs ``y[t - window : t]`` and targets ``y[t]`` for every ``t`` in ``[start, stop)``.

    Args:
      y: series ``[n]``.
      window: number of past values each forecast sees (``>= 1``).
      start, stop: range of target indices; ``start >= window`` so that every window is
        complete, ``stop <= n``.

    Returns:
      ``(inputs [N, window], targets [N], target_index [N])`` with ``N = stop - start``.

    Raises:
      ValueError: if the series is too short for the window (``start < window`` or an
        empty range).
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"series must be 1-D [n], got shape {y.shape}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if start < window:
        raise ValueError(f"series too short for the window: the first target index {start} "
                         f"has only {start} earlier values, but window={window} needs "
                         f"{window}; use a smaller window or a longer series")
    if not start < stop <= y.shape[0]:
        raise ValueError(f"series too short for the window: need targets in [{start}, {stop})"
                         f" within a series of length {y.shape[0]} (window={window})")
    index = np.arange(start, stop)
    gather = index[:, None] + np.arange(-window, 0)[None, :]  # [N, window], all < t
    return y[gather], y[index], index


def split_windows(y: np.ndarray, split: Split, window: int) -> dict:
    """``{"train"|"val"|"test": (inputs, targets, target_index)}`` for one split.

    Training targets start at ``window`` (the first complete window); validation and
    test targets cover their whole part, their windows reaching back into the
    preceding part.
    """
    if split.train_end <= window:
        raise ValueError(f"series too short for the window: the training part has "
                         f"{split.train_end} values but window={window} needs at least "
                         f"{window + 1} (one window plus one target)")
    return {"train": make_windows(y, window, window, split.train_end),
            "val": make_windows(y, window, split.train_end, split.val_end),
            "test": make_windows(y, window, split.val_end, split.n)}
