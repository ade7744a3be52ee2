"""Sequence to sequence (rnn_jax.apps.seq2seq.model, rnn_jax.apps.seq2seq, rnn_jax.data.seq2seq_tasks):
NumPy references, decoding against exhaustive search, padding, the tasks, the experiment."""

import datetime
import itertools
import json
import re

import jax
import numpy as np
import pytest

from rnn_jax import layers, models
from rnn_jax.apps import seq2seq
from rnn_jax.apps.seq2seq import model as seq2seq_model
from rnn_jax.data import seq2seq_tasks as st
from rnn_jax.train.workdir import IncompatibleWorkdirError


def tiny_config(**over):
    c = seq2seq.default_config()
    c.embed_size = 3
    c.hidden_size = 4
    c.decoder_size = 5
    c.attention_size = 3
    c.update_from_flattened_dict(over)
    return c


# The tests are dominated by compilation: inputs are made in NumPy and model functions
# run under one jax.jit each, since every distinct eager op compiles separately.

def tiny_model(attend=True, vs=7, vt=6, seed=0, scale=1.0):
    """A random model; ``scale`` sharpens the readout so outputs differ clearly."""
    model = seq2seq_model.make_model(tiny_config(attention=attend), vs, vt)
    # N(0, 0.5^2) entries in the shapes of model.init's params (compiling init itself,
    # orthogonal initialisers included, would cost more than the test).
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(lambda a: (0.5 * rng.normal(size=a.shape)).astype(np.float32),
                                    jax.eval_shape(model.init, jax.random.PRNGKey(0)))
    params["readout"]["w"] = params["readout"]["w"] * scale
    return model, params


def random_source(seed, B, S, vs, lengths):
    src = np.random.default_rng(seed).integers(3, vs, size=(B, S)).astype(np.int32)
    return np.where(np.arange(S).reshape(1, S) < np.reshape(lengths, (B, 1)), src, st.PAD_ID)


# ---------------------------------------------------------------- NumPy references

def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_lstm(p, h, c, x):
    i, f, g, o = np.split(x @ p["w_x"] + h @ p["w_h"] + p["b"], 4)
    c = _sig(f) * c + _sig(i) * np.tanh(g)
    return _sig(o) * np.tanh(c), c


def numpy_teacher_forced(params, src, src_len, tgt_in, attend):
    """The model of the rnn_jax.apps.seq2seq docstring, one example and one step at a time
    in float64, reading only each source's valid characters."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    H = p["enc_fw"]["w_h"].shape[0]
    out = []
    for b in range(src.shape[0]):
        x = p["src_embed"][np.asarray(src[b, :int(src_len[b])])]
        L = x.shape[0]
        fw, bw = np.zeros((L, H)), np.zeros((L, H))
        h = c = np.zeros(H)
        for j in range(L):
            h, c = _np_lstm(p["enc_fw"], h, c, x[j])
            fw[j] = h
        z_fw, h, c = h, np.zeros(H), np.zeros(H)
        for j in reversed(range(L)):
            h, c = _np_lstm(p["enc_bw"], h, c, x[j])
            bw[j] = h
        hs, z = np.concatenate([fw, bw], 1), np.concatenate([z_fw, h])
        s = np.tanh(z @ p["init"]["w"] + p["init"]["b"])
        cell = np.zeros_like(s)
        rows = []
        for y in np.asarray(tgt_in[b]):
            if attend:
                a = p["attention"]
                e = np.tanh(s @ a["w_q"] + hs @ a["w_k"] + a["b"]) @ a["v"]
                w = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
                ctx = w @ hs
            else:
                ctx = z
            s, cell = _np_lstm(p["decoder"], s, cell, np.concatenate([p["tgt_embed"][y], ctx]))
            rows.append(np.concatenate([s, ctx]) @ p["readout"]["w"] + p["readout"]["b"])
        out.append(rows)
    return np.asarray(out)


def np_log_probs(logits):
    x = np.asarray(logits, np.float64).copy()
    x[..., [st.PAD_ID, st.BOS_ID]] = -np.inf
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_additive_attention_matches_numpy():
    params = jax.jit(lambda k: layers.init_additive_attention(k, 5, 4, 3))(jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    q = rng.normal(size=(3, 5)).astype(np.float32)
    hs = rng.normal(size=(3, 6, 4)).astype(np.float32)
    lengths = np.array([6, 2, 4], np.int32)
    read = jax.jit(lambda p, q, hs, n: layers.additive_attention(p, q, layers.project_keys(p, hs), hs, n))
    ctx, w = read(params, q, hs, lengths)
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    for b, L in enumerate([6, 2, 4]):
        h = np.asarray(hs[b, :L], np.float64)
        e = np.tanh(np.asarray(q[b], np.float64) @ p["w_q"] + h @ p["w_k"] + p["b"]) @ p["v"]
        alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
        np.testing.assert_allclose(w[b, :L], alpha, rtol=1e-5, atol=1e-7)
        assert (np.asarray(w[b, L:]) == 0).all()
        np.testing.assert_allclose(ctx[b], alpha @ h, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="query must have shape"):
        read(params, q[:, :4], hs, lengths)


@pytest.mark.parametrize("attend", [True, False])
def test_teacher_forcing_matches_numpy_loop(attend):
    model, params = tiny_model(attend)
    lengths = np.array([5, 2, 3], np.int32)
    src = random_source(3, 3, 5, 7, lengths)
    tgt_in = np.random.default_rng(4).integers(0, 6, size=(3, 4)).astype(np.int32)
    tgt_in[:, 0] = st.BOS_ID
    logits, weights = jax.jit(model.apply)(params, src, lengths, tgt_in)
    ref = numpy_teacher_forced(params, np.asarray(src), np.asarray(lengths), np.asarray(tgt_in), attend)
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0 if attend else 0.0, atol=1e-5)
    assert (np.asarray(weights)[1, :, 2:] == 0).all()
    p = models.num_params(params)
    assert p == sum(a.size for a in jax.tree_util.tree_leaves(params))
    # Counted from the module docstring's shapes (E 3, H 4, D 5, A 3, Vs 7, V 6).
    E, H, D, A, Vs, V = 3, 4, 5, 3, 7, 6
    lstm = lambda i, h: i * 4 * h + h * 4 * h + 4 * h  # noqa: E731
    want = (Vs * E + V * E + 2 * lstm(E, H) + (2 * H * D + D) + lstm(E + 2 * H, D)
            + (D + 2 * H) * V + V + (D * A + 2 * H * A + A + A if attend else 0))
    assert p == want


def test_greedy_equals_beam_of_one():
    model, params = tiny_model(seed=5, scale=4.0)
    lengths = np.array([5, 1, 3, 4], np.int32)
    src = random_source(6, 4, 5, 7, lengths)
    g = jax.jit(lambda p, s, l: seq2seq_model.greedy_decode(model, p, s, l, 6))(params, src, lengths)
    b = jax.jit(lambda p, s, l: seq2seq_model.beam_search(model, p, s, l, 6, beam_size=1))(
        params, src, lengths)
    np.testing.assert_array_equal(g.tokens, b.tokens)
    np.testing.assert_array_equal(g.lengths, b.lengths)
    np.testing.assert_allclose(g.scores, b.scores, rtol=1e-5)
    np.testing.assert_allclose(g.weights, b.weights, atol=1e-6)
    # Everything after a sequence's EOS is PAD with zero attention.
    for row, n in zip(np.asarray(g.tokens), np.asarray(g.lengths)):
        assert (row[n:] == st.PAD_ID).all() and (n == 6 or row[n - 1] == st.EOS_ID)


def _all_outputs(chars, max_len):
    """Every output a decoder can emit in max_len steps: y EOS with |y| < max_len, or
    max_len characters without EOS."""
    outs = [tuple(y) + (st.EOS_ID,) for n in range(max_len) for y in itertools.product(chars, repeat=n)]
    return outs + list(itertools.product(chars, repeat=max_len))


def test_beam_search_equals_exhaustive_enumeration():
    # Target vocabulary: <pad> <s> </s> a b; 15 possible outputs of at most 3 steps.
    model, params = tiny_model(vt=5, seed=7, scale=3.0)
    L = 3
    lengths = np.array([4, 2], np.int32)
    src = random_source(8, 2, 4, 7, lengths)
    outs = _all_outputs((3, 4), L)
    assert len(outs) == 15
    # Score of every output under teacher forcing (checked above against NumPy).
    tgt_in = np.full((len(outs), L), st.PAD_ID, np.int32)
    tgt_out = np.full((len(outs), L), st.PAD_ID, np.int32)
    for i, y in enumerate(outs):
        tgt_out[i, :len(y)] = y
        tgt_in[i, :len(y)] = (st.BOS_ID,) + y[:-1]
    beam = jax.jit(lambda p, s, l, alpha, return_all: seq2seq_model.beam_search(
        model, p, s, l, L, beam_size=16, length_penalty=alpha, return_all=return_all),
        static_argnums=(3, 4))
    apply = jax.jit(model.apply)
    all_result = beam(params, src, lengths, 0.0, True)
    for b in range(2):
        rep = lambda a: np.repeat(a[b:b + 1], len(outs), axis=0)  # noqa: E731
        logits, _ = apply(params, rep(src), rep(lengths), tgt_in)
        lp = np_log_probs(logits)
        scores = {y: sum(lp[i, t, y[t]] for t in range(len(y))) for i, y in enumerate(outs)}
        # The final beam holds every output exactly once, with its exact score.
        got = {}
        for toks, score, n in zip(np.asarray(all_result.tokens[b]), np.asarray(all_result.scores[b]),
                                  np.asarray(all_result.lengths[b])):
            if np.isfinite(score):
                got[tuple(toks[:n].tolist())] = score
        assert sorted(got) == sorted(scores)
        for y in outs:
            np.testing.assert_allclose(got[y], scores[y], rtol=1e-4)
        # The answer is the exact argmax, with and without length normalisation.
        for alpha in (0.0, 1.0):
            best = beam(params, src, lengths, alpha, False)
            want = max(outs, key=lambda y: scores[y] / ((5 + len(y)) / 6) ** alpha)
            n = int(best.lengths[b])
            assert tuple(np.asarray(best.tokens[b, :n]).tolist()) == want, alpha


def test_padding_the_source_changes_nothing():
    model, params = tiny_model(seed=9, scale=3.0)
    lengths = np.array([4, 2, 3], np.int32)
    src = random_source(10, 3, 4, 7, lengths)
    # Garbage (not PAD) beyond each length, and three more columns.
    dirty = np.where(src == st.PAD_ID, 5, src)
    wide = np.concatenate([dirty, np.full((3, 3), 6, src.dtype)], axis=1)
    tgt_in = np.array([[1, 3, 4], [1, 5, 0], [1, 4, 4]], np.int32)
    for fn in (lambda s: model.apply(params, s, lengths, tgt_in),
               lambda s: seq2seq_model.greedy_decode(model, params, s, lengths, 5),
               lambda s: seq2seq_model.beam_search(model, params, s, lengths, 5, beam_size=3)):
        fn = jax.jit(fn)
        a, b = fn(src), fn(wide)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            x, y = np.asarray(x), np.asarray(y)
            if x.ndim == 3 and x.shape[-1] != y.shape[-1]:  # attention weights [.., S]
                assert (y[..., 4:] == 0).all()
                y = y[..., :4]
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------------- tasks

def test_addition_examples_are_sums():
    task = st.addition(3)
    pairs = task.sample_train(0, 0, 500) + task.test_set(200)
    digit_counts = set()
    for src, tgt in pairs:
        a, b = src.split("+")
        assert tgt == str(int(a) + int(b))
        assert a == str(int(a)) and b == str(int(b))  # no leading zeros
        digit_counts.update((len(a), len(b)))
    assert digit_counts == {1, 2, 3}
    assert max(len(s) for s, _ in pairs) <= task.max_source_len == 7
    assert max(len(t) for _, t in pairs) <= task.max_target_len == 4


# strptime formats of DATE_FORMATS (written independently of the generator); the
# ordinal suffix is removed before parsing.
STRPTIME = {"day_month_year": "%d %B %Y", "month_day_year": "%B %d, %Y", "mon_day_year": "%b %d %Y",
            "dd/mm/yyyy": "%d/%m/%Y", "yyyy.mm.dd": "%Y.%m.%d", "ordinal_of_month": "%d of %B %Y",
            "weekday_day_month_year": "%A, %d %B %Y", "dd-mon-yyyy": "%d-%b-%Y"}


@pytest.mark.parametrize("name", sorted(STRPTIME))
def test_every_date_parses_back_to_its_target(name):
    task = st.dates(1900, 2099, [name])
    pairs = task.sample_train(0, 0, 300) + task.test_set(100)
    for src, tgt in pairs:
        text = re.sub(r"^(\d+)(st|nd|rd|th) ", r"\1 ", src) if name == "ordinal_of_month" else src
        # strptime rejects impossible days (30 February, 29 February 1900), and %A must
        # agree with the date it names.
        parsed = datetime.datetime.strptime(text, STRPTIME[name]).date()
        assert parsed.isoformat() == tgt, (src, tgt)
        if name == "weekday_day_month_year":
            assert src.split(",")[0] == parsed.strftime("%A")
        assert len(src) <= task.max_source_len
    assert st.DATE_FORMATS[name](datetime.date(2026, 11, 22)) in {
        "22 November 2026", "November 22, 2026", "Nov 22 2026", "22/11/2026", "2026.11.22",
        "22nd of November 2026", "Sunday, 22 November 2026", "22-Nov-2026"}


def test_ordinal_suffixes_and_calendar():
    fmt = st.DATE_FORMATS["ordinal_of_month"]
    got = [fmt(datetime.date(2001, 1, d)).split()[0] for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)]
    assert got == ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]
    # Every day of the range can be drawn: 366 in 2000, 365 in 1900 (not a leap year).
    for year, days in ((2000, 366), (1900, 365)):
        task = st.dates(year, year, ["yyyy.mm.dd"])
        codes = task.draw(np.random.default_rng(0), 20000)
        seen = {task.render(c)[1] for c in codes}
        assert len(seen) == days and (f"{year}-02-29" in seen) == (days == 366)


@pytest.mark.parametrize("task", [st.addition(3), st.dates()], ids=["addition", "dates"])
def test_test_split_is_disjoint_from_training(task):
    test = task.test_set(300)
    assert len(set(test)) == 300 and test == task.test_set(300)  # distinct, fixed
    assert task.test_set(100) == test[:100]  # a smaller test set is a prefix
    if task.name == "addition":
        key = lambda s, t: s  # noqa: E731  the operand pair
    else:
        key = lambda s, t: t  # noqa: E731  the date, whatever its format
    held_out = {key(s, t) for s, t in test}
    for seed in (0, 1):
        train = [p for step in range(40) for p in task.sample_train(seed, step, 128)]
        assert not held_out & {key(s, t) for s, t in train}
    # Training draws are a pure function of (seed, step).
    assert task.sample_train(3, 7, 16) == task.sample_train(3, 7, 16) != task.sample_train(3, 8, 16)


def test_encode_layout_and_vocab():
    task = st.addition(2)
    arrays = st.encode(task, [("12+3", "15"), ("0+0", "0")])
    np.testing.assert_array_equal(arrays["src_len"], [4, 3])
    np.testing.assert_array_equal(arrays["tgt_len"], [3, 2])
    v = task.target_vocab
    np.testing.assert_array_equal(arrays["tgt_in"][0], [st.BOS_ID] + v.encode("15") + [st.PAD_ID])
    np.testing.assert_array_equal(arrays["tgt_out"][0], v.encode("15") + [st.EOS_ID, st.PAD_ID])
    assert v.decode(arrays["tgt_out"][0]) == "15"
    assert task.source_vocab.decode(arrays["src"][1]) == "0+0"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        st.encode(task, [("1-2", "3")])


# --------------------------------------------------------------------- experiment

def experiment_config(**over):
    c = tiny_config(batch_size=16, num_steps=20, eval_every=10, checkpoint_every=10, log_every=10,
                    beam_size=2, eval_batch_size=16)
    c.hidden_size = 8
    c.decoder_size = 8
    c.task.max_digits = 1
    c.task.test_fraction = 0.2
    c.task.num_test = 12
    c.update_from_flattened_dict(over)
    return c


def test_end_to_end_writes_outputs_and_resumes(tmp_path):
    workdir = tmp_path / "run"
    result = seq2seq.train_and_evaluate(experiment_config(), str(workdir))
    for name in ("config.json", "metrics.jsonl", "eval.json", "attention.png", "exact_match.png"):
        assert (workdir / name).exists(), name
    with open(workdir / "eval.json") as f:
        assert json.load(f)["exact_match_greedy"] == result["exact_match_greedy"]
    assert result["num_test"] == 12 and 0.0 <= result["exact_match_beam"] <= 1.0
    first = (workdir / "metrics.jsonl").read_text().splitlines()
    # Longer run in the same workdir: resumes at step 20, keeps the first 20 steps' records.
    result = seq2seq.train_and_evaluate(experiment_config(num_steps=30), str(workdir))
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert lines[:len(first)] == first
    assert [json.loads(l)["step"] for l in lines[len(first):]] == [30, 30]
    # Another model in the same workdir is refused before anything is overwritten.
    with pytest.raises(IncompatibleWorkdirError, match="attention"):
        seq2seq.train_and_evaluate(experiment_config(num_steps=30, attention=False), str(workdir))


@pytest.mark.parametrize("over,match", [
    ({"experiment": "classify"}, "config.experiment"),
    ({"hidden_size": 0}, "config.hidden_size"),
    ({"beam_size": 0}, "config.beam_size"),
    ({"length_penalty": -1.0}, "config.length_penalty"),
    ({"task.name": "sorting"}, "config.task.name"),
    ({"task.max_digits": 0}, "config.task.max_digits"),
    ({"task.test_fraction": 0.9}, "config.task.test_fraction"),
    ({"task.name": "dates", "task.min_year": 99}, "config.task.min_year"),
    ({"task.name": "dates", "task.formats": "dd/mm/yyyy,bogus"}, "config.task.formats"),
    ({"optimizer.schedule": "warmup_cosine", "optimizer.warmup_steps": 5000},
     "config.optimizer.warmup_steps"),
    ({"optimizer.name": "adagrad"}, "config.optimizer.name"),
])
def test_bad_config_names_the_field(over, match):
    c = seq2seq.default_config()
    for field, value in over.items():
        section, _, name = field.rpartition(".")
        (c[section] if section else c)[name] = value
    with pytest.raises(ValueError, match=re.escape(match)):
        seq2seq.validate(c)


def test_num_test_larger_than_the_held_out_part_fails(tmp_path):
    c = experiment_config()
    c.task.num_test = 500
    with pytest.raises(ValueError, match="config.task.num_test"):
        seq2seq.train_and_evaluate(c, str(tmp_path / "w"))


def test_shipped_configs_validate():
    from experiments.configs import seq2seq_addition, seq2seq_dates
    for module in (seq2seq_addition, seq2seq_dates):
        for variant in ("attn", "noattn"):
            c = module.get_config(variant)
            seq2seq.validate(c)
            assert c.attention == (variant == "attn")
        with pytest.raises(ValueError, match="variant"):
            module.get_config("gru")
