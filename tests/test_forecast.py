"""Forecasting pipeline: windows, splits, normaliser, baselines, errors, end-to-end run."""

import json
import os

import numpy as np
import pytest

from rnn_jax.apps import forecast
from rnn_jax.data import series as series_lib


def test_windows_have_no_look_ahead():
    y = np.arange(40, dtype=np.float64)  # value == index, so inputs reveal their positions
    x, t, idx = series_lib.make_windows(y, 5, 7, 30)
    assert x.shape == (23, 5) and t.shape == (23,)
    np.testing.assert_array_equal(t, idx)
    assert np.all(x.max(axis=1) < idx)          # every input strictly before its target
    for row, ti in zip(x, idx):                 # and exactly the `window` values before it
        np.testing.assert_array_equal(row, y[ti - 5:ti])


def test_split_windows_cover_each_part_chronologically():
    y = np.arange(100, dtype=np.float64)
    split = series_lib.chronological_split(100, 0.2, 0.1)
    assert split == series_lib.Split(70, 90, 100)
    w = series_lib.split_windows(y, split, 8)
    np.testing.assert_array_equal(w["train"][2], np.arange(8, 70))
    np.testing.assert_array_equal(w["val"][2], np.arange(70, 90))
    np.testing.assert_array_equal(w["test"][2], np.arange(90, 100))
    # the first test window reaches back into validation (past data), never forward
    np.testing.assert_array_equal(w["test"][0][0], np.arange(82, 90))


def test_normaliser_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    y = rng.normal(size=60)
    split = series_lib.chronological_split(60, 0.2, 0.2)
    norm = series_lib.fit_normalizer(y, split)
    assert norm.mean == pytest.approx(np.mean(y[:36])) and norm.std == pytest.approx(np.std(y[:36]))
    y2 = y.copy()
    y2[36:] = 1e6  # changing val/test must not move the statistics
    assert series_lib.fit_normalizer(y2, split) == norm
    np.testing.assert_allclose(norm.inverse(norm.transform(y)), y)


def _reference_one_step(y, idx, season, c, a):
    pers = np.array([y[t - 1] for t in idx])
    seas = np.array([y[t - season] for t in idx])
    ar = np.array([c + sum(a[i] * y[t - 1 - i] for i in range(len(a))) for t in idx])
    return pers, seas, ar


def test_baselines_match_numpy_loops():
    rng = np.random.default_rng(1)
    y = np.sin(np.arange(50) * 2 * np.pi / 6) + 0.1 * rng.normal(size=50)
    x, target, idx = series_lib.make_windows(y, 7, 30, 50)
    c, a = 0.3, np.array([0.5, -0.2, 0.1])
    pers, seas, ar = _reference_one_step(y, idx, 6, c, a)
    np.testing.assert_allclose(forecast.persistence()(x), pers)
    np.testing.assert_allclose(forecast.seasonal_naive(6)(x), seas)
    np.testing.assert_allclose(forecast.ar_predictor(np.concatenate([[c], a]))(x), ar)
    # multi-step: persistence repeats the last value, seasonal naive the last season
    H = 9
    ms = forecast.rollout(forecast.seasonal_naive(6), x, H)
    mp = forecast.rollout(forecast.persistence(), x, H)
    for n, t0 in enumerate(idx):
        np.testing.assert_allclose(ms[n], [y[t0 - 6 + (h % 6)] for h in range(H)])
        np.testing.assert_allclose(mp[n], np.full(H, y[t0 - 1]))
    # AR rollout against a recursion written out by hand
    hist = list(y[idx[0] - 7:idx[0]])
    for _ in range(H):
        hist.append(c + sum(a[i] * hist[-1 - i] for i in range(3)))
    np.testing.assert_allclose(forecast.rollout(forecast.ar_predictor(
        np.concatenate([[c], a])), x[:1], H)[0], hist[7:])
    e = forecast.errors(np.array([1.0, 2.0]), np.array([0.0, 4.0]))
    assert e == {"mse": pytest.approx(2.5), "mae": pytest.approx(1.5)}


def test_ar_fit_matches_statsmodels_fitted_values():
    ar_model = pytest.importorskip("statsmodels.tsa.ar_model")
    rng = np.random.default_rng(2)
    y = np.zeros(200)
    for t in range(2, 200):  # a stationary AR(2)
        y[t] = 1.0 + 0.6 * y[t - 1] - 0.3 * y[t - 2] + rng.normal()
    params = forecast.fit_ar(y, 2)
    x, _, _ = series_lib.make_windows(y, 2, 2, 200)
    fitted = ar_model.AutoReg(y, lags=2, trend="c").fit().fittedvalues
    np.testing.assert_allclose(forecast.ar_predictor(params)(x), fitted, rtol=1e-10)
    np.testing.assert_allclose(params[1:], [0.6, -0.3], atol=0.15)


def test_too_short_series_gives_clear_error(tmp_path):
    with pytest.raises(ValueError, match="too short for the window"):
        series_lib.make_windows(np.arange(10.0), 12, 5, 10)
    split = series_lib.chronological_split(20, 0.2, 0.2)
    with pytest.raises(ValueError, match="too short for the window"):
        series_lib.split_windows(np.arange(20.0), split, 12)
    config = forecast.default_config()
    workdir = str(tmp_path / "run")
    with pytest.raises(ValueError, match="too short for the window"):
        forecast.train_and_evaluate(config, workdir, series=np.arange(15.0))
    with pytest.raises(ValueError, match="too short for the horizon"):
        forecast.train_and_evaluate(config, workdir, series=np.arange(40.0))  # 6 test < 11
    assert not os.path.exists(workdir)  # refused before writing anything


def test_bad_config_is_rejected():
    config = forecast.default_config()
    config.cells = "lstm,transformer"
    with pytest.raises(ValueError, match="config.cells"):
        forecast.validate(config)
    config = forecast.default_config()
    config.season = 30
    with pytest.raises(ValueError, match="config.season"):
        forecast.validate(config)


def test_end_to_end_tiny_run(tmp_path):
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(3)
    y = 5.0 + 2.0 * np.sin(np.arange(90) * 2 * np.pi / 6) + 0.2 * rng.normal(size=90)
    config = forecast.default_config()
    config.hidden_size = 4
    config.window, config.season, config.ar_lags, config.horizon = 6, 6, 3, 4
    config.num_steps, config.eval_every, config.batch_size = 20, 10, 16
    result = forecast.train_and_evaluate(config, str(tmp_path), series=y)
    for name in ("config.json", "metrics.jsonl", "eval.json", "forecast.png", "forecast.pdf"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "eval.json") as f:
        saved = json.load(f)
    for kind in ("one_step", "multi_step"):
        assert set(saved[kind]) == {"rnn", "lstm", "gru", "persistence", "seasonal_naive", "ar"}
        for scores in saved[kind].values():
            assert np.isfinite(scores["mse"]) and scores["mse"] >= scores["mae"] ** 2 - 1e-9
    # a clean period-6 sine: the seasonal-naive error is the noise only, far below persistence
    assert saved["one_step"]["seasonal_naive"]["mse"] < saved["one_step"]["persistence"]["mse"]
    assert saved["split"] == {"train": 62, "val": 14, "test": 14}
    assert result["one_step"]["ar"] == saved["one_step"]["ar"]
    test_y = y[76:]
    assert saved["one_step"]["persistence"]["mse"] == pytest.approx(
        np.mean((y[75:89] - test_y) ** 2))


def test_real_series_load():
    pytest.importorskip("statsmodels")
    sun = series_lib.load_series("sunspots")
    co2 = series_lib.load_series("co2")
    assert sun.shape == (309,) and co2.shape == (2284,)
    assert np.all(np.isfinite(co2)) and 300 < co2.min() < co2.max() < 400
    with pytest.raises(ValueError, match="series name"):
        series_lib.load_series("airline")
