"""Where an LSTM training step's time goes: the fast path's forward and backward scans apart.

Times, for one shape of benchmarks/lstm_step.py, medians of jitted calls:

* ``forward``: the forward scan alone, its factors unused (XLA drops them);
* ``forward+residuals``: the forward scan that also writes the derivative factors;
* ``backward scan``: the backward scan, which writes ``dZ``;
* ``weight grads``: the matmuls after it, ``X^T dZ``, ``H_prev^T dZ`` and ``dZ W_x^T``;
* ``step``: ``jax.grad`` of a loss through ``rnn_jax.unroll`` (all of the above and the glue);

and the GFLOP/s of the forward scan's matmuls. Run it once normally and once pinned to
one core to see what the second core buys (BUILD_NOTES.md, issue 7)::

    python benchmarks/fused_parts.py --shape s1
    taskset -c 0 python benchmarks/fused_parts.py --shape s1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import rnn_jax  # noqa: E402
from rnn_jax import cells, fused  # noqa: E402

SHAPES = {"s1": (32, 100, 32, 128), "s2": (64, 1000, 32, 128), "s3": (16, 200, 64, 512),
          "s4": (1, 1000, 8, 32)}


def median_ms(fn, *args, reps: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="s1", choices=sorted(SHAPES))
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args(argv)
    B, T, I, H = SHAPES[args.shape]
    cell = cells.lstm(H)
    params = cell.init(jax.random.PRNGKey(0), I)
    xs = jax.random.normal(jax.random.PRNGKey(1), (T, B, I))
    carry = cell.initial_carry((B,))
    gates = cell.gates

    # The fast path's pieces, called as fused._sequence_fn calls them (no lengths, no
    # resets): forward(...) -> (carry, outs, factors), backward(...) -> (dcarry0, dinit,
    # dZ); the weight and input gradients are then the transposes of the taps
    # (fused._dense_taps), one matmul each.
    with_res = jax.jit(lambda p, x: fused._lstm_forward(gates, 1, p, carry, None, x, None, None,
                                                        False))
    # Only the carry and outputs used: XLA drops the factors, as in a call without grad.
    forward = jax.jit(lambda p, x: fused._lstm_forward(gates, 1, p, carry, None, x, None, None,
                                                       False)[:2])
    _, outs, res = with_res(params, xs)
    d_carry = (jnp.ones((B, H)), jnp.zeros((B, H)))
    backward = jax.jit(lambda p, outs, res: fused._lstm_backward(
        gates, 1, p, None, None, outs, res, d_carry, (jnp.zeros_like(outs[0]),)))
    dz = backward(params, outs, res)[2]
    h_prev = fused._h_prev(carry[0], outs[0])

    def tap_transposes(p, x, dz):
        _, transpose = jax.vjp(lambda p, x: fused._dense_taps(gates, p, x, h_prev, ()), p, x)
        return transpose((dz, dz))

    weights = jax.jit(tap_transposes)
    step = jax.jit(jax.grad(lambda p, x: jnp.sum(rnn_jax.unroll(cell, p, carry, x)[0][0])))

    print(f"jax {jax.__version__}  cores usable {len(os.sched_getaffinity(0))}  "
          f"LSTM {args.shape} (B, T, I, H) = {(B, T, I, H)}")
    fwd = median_ms(forward, params, xs, reps=args.reps)
    rows = [("forward", fwd), ("forward+residuals", median_ms(with_res, params, xs, reps=args.reps)),
            ("backward scan", median_ms(backward, params, outs, res, reps=args.reps)),
            ("weight grads", median_ms(weights, params, xs, dz, reps=args.reps)),
            ("step", median_ms(step, params, xs, reps=args.reps))]
    for name, ms in rows:
        print(f"  {name:<20}{ms:9.2f} ms")
    print(f"  forward matmuls: {2 * B * T * (I + H) * 4 * H / (fwd / 1e3) / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
