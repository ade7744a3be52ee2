"""Parallel (``jax.lax.associative_scan``) against sequential (``jax.lax.scan``) evaluation
of the LRU, minGRU and minLSTM over time: one jitted forward + backward pass.

The step: B x T x I inputs (I = 32), a cell of width H, loss = mean of the squared
outputs, gradients of every parameter. ``sequential`` runs ``rnn_jax.unroll`` (the
plain scan over ``cell.step``); ``parallel`` runs ``cell.parallel_unroll``. Both give the
same values and gradients to float rounding (tests/test_parallel.py). Prints one JSON
line per (cell, T, mode) with the median wall time of ``--reps`` calls after one warm-up,
and the parallel/sequential ratio.

    python benchmarks/parallel_scan.py                               # T = 1k, 10k; B=8, H=128
    python benchmarks/parallel_scan.py --lengths 1000 10000 100000 --cells lru
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import rnn_jax  # noqa: E402
from rnn_jax import cells  # noqa: E402

MAKERS = {"lru": cells.lru, "min_gru": cells.min_gru, "min_lstm": cells.min_lstm}


def time_step(cell, mode, T, B, I, reps):
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    params = cell.init(k[0], I)
    xs = jax.random.normal(k[1], (T, B, I))
    carry0 = cell.initial_carry((B,))

    def loss(p):
        if mode == "parallel":
            _, ys = cell.parallel_unroll(p, carry0, xs)
        else:
            _, ys = rnn_jax.unroll(cell, p, carry0, xs)
        return jnp.mean(ys ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    t0 = time.perf_counter()
    jax.block_until_ready(step(params))
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(step(params))
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--cells", nargs="+", default=sorted(MAKERS), choices=sorted(MAKERS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--input", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    print(json.dumps({"backend": jax.default_backend(), "device": str(jax.devices()[0]),
                      "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None}))
    for name in args.cells:
        cell = MAKERS[name](args.hidden)
        for T in args.lengths:
            row = {"cell": name, "T": T, "B": args.batch, "H": args.hidden}
            for mode in ("sequential", "parallel"):
                first, med = time_step(cell, mode, T, args.batch, args.input, args.reps)
                row[mode + "_s"] = round(med, 5)
                row[mode + "_first_call_s"] = round(first, 3)
            row["parallel_over_sequential"] = round(row["parallel_s"] / row["sequential_s"], 3)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
