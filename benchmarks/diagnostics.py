"""Speed of rnn_jax.diagnostics.grad_norms against one jax.grad and against a per-lag loop.

    python -m benchmarks.diagnostics                      # LSTM, T=1000, H=128, B=16
    python -m benchmarks.diagnostics --cell=rnn --seq_len=2000 --out=/tmp/bench.json

Three timings, each jitted and measured after compilation (median of --repeats, the
three kinds interleaved so machine load hits them alike):

* ``jax.grad``: one gradient of the same loss with respect to the parameters, what a
  training step computes;
* ``grad_norms`` (plain and ``log10=True``): all T values ||dL/dcarry_t||;
* the naive reference: one forward+backward pass per t that perturbs ``carry_t`` alone
  (the O(T^2) loop the tests compare against). Timing every t at T=1000 would take
  minutes, so ``--naive_lags`` evenly spaced t are timed and the total is extrapolated
  linearly to T (each t costs the same: every pass runs the full sequence).

Targets (issue 3): grad_norms <= 3x one jax.grad, and >= 100x faster than the loop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax import cells, diagnostics


def _norm(g):
    # Scaled first: squaring a 1e-28 gradient would underflow to 0.
    m = jnp.max(jnp.abs(g))
    safe = jnp.where(m > 0, m, 1.0)
    return jnp.where(m > 0, safe * jnp.sqrt(jnp.sum(jnp.square(g / safe))), 0.0)


def _timeit(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="lstm")
    p.add_argument("--seq_len", type=int, default=1000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--input", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--naive_lags", type=int, default=10)
    p.add_argument("--out", default=None, help="optional JSON file for the numbers")
    a = p.parse_args(argv)
    for name in ("seq_len", "hidden", "input", "batch", "repeats", "naive_lags"):
        if getattr(a, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(a, name)}")

    cell = getattr(cells, a.cell)(a.hidden)
    k_p, k_x, k_w = jax.random.split(jax.random.PRNGKey(0), 3)
    params = cell.init(k_p, a.input)
    xs = jax.random.uniform(k_x, (a.seq_len, a.batch, a.input), minval=-1.0, maxval=1.0)
    w = jax.random.normal(k_w, (a.hidden, 1)) / np.sqrt(a.hidden)
    carry0 = cell.initial_carry((a.batch,))
    hidden = (lambda s: s[0]) if a.cell == "lstm" else (lambda s: s)

    def loss_fn(states):  # MSE of a linear readout of the last hidden state
        return jnp.mean((hidden(states)[-1] @ w - 0.5) ** 2)

    def loss_of_params(p):
        def body(c, x):
            c, _ = cell.step(p, c, x)
            return c, c
        return loss_fn(jax.lax.scan(body, carry0, xs)[1])

    plain_grad = jax.jit(jax.grad(loss_of_params))
    norms = jax.jit(lambda p: diagnostics.grad_norms(cell.step, p, carry0, xs, loss_fn))
    norms_log = jax.jit(lambda p: diagnostics.grad_norms(cell.step, p, carry0, xs, loss_fn,
                                                         log10=True))

    @jax.jit
    def naive_one(p, t):
        def loss_of_e(e):
            def body(c, ix):
                i, x = ix
                c, _ = cell.step(p, c, x)
                c = jax.tree_util.tree_map(lambda a_, b_: a_ + jnp.where(i == t, b_, 0.0), c, e)
                return c, c
            return loss_fn(jax.lax.scan(body, carry0, (jnp.arange(a.seq_len), xs))[1])
        g = jax.grad(loss_of_e)(jax.tree_util.tree_map(jnp.zeros_like, carry0))
        return jax.tree_util.tree_map(_norm, g)

    lags = np.linspace(0, a.seq_len - 1, a.naive_lags).round().astype(int)
    t0 = time.perf_counter()
    for f in (lambda: plain_grad(params), lambda: norms(params), lambda: norms_log(params),
              lambda: naive_one(params, 0)):
        jax.block_until_ready(f())
    compile_s = time.perf_counter() - t0

    # Check once that the fast and naive answers agree on the timed lags.
    fast = jax.tree_util.tree_leaves(norms(params))
    for t in lags[:3]:
        slow = jax.tree_util.tree_leaves(naive_one(params, int(t)))
        for f_leaf, s_leaf in zip(fast, slow):
            np.testing.assert_allclose(float(f_leaf[t]), float(s_leaf), rtol=1e-4)

    t_grad, t_norms, t_log, t_naive = [], [], [], []
    for _ in range(a.repeats):
        t_grad += _timeit(lambda: plain_grad(params), 1)
        t_norms += _timeit(lambda: norms(params), 1)
        t_log += _timeit(lambda: norms_log(params), 1)
    for t in lags:
        t_naive += _timeit(lambda: naive_one(params, int(t)), 1)

    med = statistics.median
    naive_total = med(t_naive) * a.seq_len
    res = {
        "cell": a.cell, "seq_len": a.seq_len, "hidden": a.hidden, "batch": a.batch,
        "jax_grad_ms": 1e3 * med(t_grad),
        "grad_norms_ms": 1e3 * med(t_norms),
        "grad_norms_log10_ms": 1e3 * med(t_log),
        "naive_per_lag_ms": 1e3 * med(t_naive),
        "naive_total_s_extrapolated": naive_total,
        "naive_lags_timed": int(len(lags)),
        "ratio_grad_norms_to_jax_grad": med(t_norms) / med(t_grad),
        "ratio_log10_to_jax_grad": med(t_log) / med(t_grad),
        "speedup_vs_naive": naive_total / med(t_norms),
        "speedup_log10_vs_naive": naive_total / med(t_log),
        "compile_s": compile_s,
        "backend": jax.default_backend(),
    }
    print(f"{a.cell} T={a.seq_len} H={a.hidden} B={a.batch} ({res['backend']}, median of "
          f"{a.repeats}; compile {compile_s:.1f} s)")
    print(f"  jax.grad (params)           {res['jax_grad_ms']:9.1f} ms")
    print(f"  grad_norms                  {res['grad_norms_ms']:9.1f} ms  "
          f"{res['ratio_grad_norms_to_jax_grad']:.2f}x jax.grad (target <= 3x)")
    print(f"  grad_norms(log10=True)      {res['grad_norms_log10_ms']:9.1f} ms  "
          f"{res['ratio_log10_to_jax_grad']:.2f}x jax.grad")
    print(f"  naive loop, per lag         {res['naive_per_lag_ms']:9.1f} ms  x T = "
          f"{naive_total:.1f} s (extrapolated from {len(lags)} lags)")
    print(f"  speedup over naive loop     {res['speedup_vs_naive']:9.0f}x (log10: "
          f"{res['speedup_log10_vs_naive']:.0f}x; target >= 100x)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
