"""Speed and accuracy of mixed precision (``cells.with_compute_dtype``) against float32.

For each cell, one jitted training step (``value_and_grad`` of the mean square of the
outputs of ``rnn_jax.unroll``) in four variants, all in the same process and run:

- ``f32 fused``: float32, the cell's fast path (the default);
- ``f32 plain``: float32, ``fused=False`` (the scan that mixed precision runs);
- ``bf16 matmuls``: ``with_compute_dtype(cell, bfloat16)``: float32 params and carry,
  matmuls on bfloat16 operands with float32 accumulation;
- ``bf16 all``: the cell built with ``dtype=bfloat16`` (params, carry, everything).

Time: the fastest of ``--reps`` calls after compilation (the variants take turns, so load
spikes on a shared machine hit all alike; the median is printed too), and its ratio to
``f32 plain`` and ``f32 fused``. Accuracy: max |y - y64| over the outputs, relative to
max |y64|, where y64 is the float64 run of the same (float32) parameters; and the same for
the gradient of w_h.

    python benchmarks/mixed_precision.py                  # T=100, B=16, I=64, H=128
    python benchmarks/mixed_precision.py --T 200 --H 256 --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import rnn_jax  # noqa: E402
from rnn_jax import cells  # noqa: E402

MAKERS = {"lstm": cells.lstm, "gru": lambda h, dtype=jnp.float32: cells.gru(
    h, reset_after=True, dtype=dtype), "rnn": cells.rnn}


def _machine() -> dict:
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    load = os.getloadavg()
    return {"cpu": model, "cores": os.cpu_count(), "load_1_5_15": [round(x, 2) for x in load],
            "jax": jax.__version__, "backend": jax.default_backend()}


def _step(cell, fused):
    def loss(p, carry, xs):
        _, ys = rnn_jax.unroll(cell, p, carry, xs, fused=fused)
        return jnp.mean(ys.astype(jnp.float32) ** 2), ys
    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def run(kind, T, B, I, H, reps):
    make = MAKERS[kind]
    cell = make(H)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, B, I))
    carry = cell.initial_carry((B,))
    cast = lambda tree, d: jax.tree_util.tree_map(lambda a: a.astype(d), tree)
    variants = {
        "f32 fused": (cell, True, params, carry, xs),
        "f32 plain": (cell, False, params, carry, xs),
        "bf16 matmuls": (cells.with_compute_dtype(cell, jnp.bfloat16), True, params, carry, xs),
        "bf16 all": (make(H, dtype=jnp.bfloat16), True, cast(params, jnp.bfloat16),
                     cast(carry, jnp.bfloat16), xs.astype(jnp.bfloat16)),
    }
    with jax.enable_x64(True):
        c64 = make(H, dtype=jnp.float64)
        (_, y64), g64 = _step(c64, False)(cast(params, jnp.float64), cast(carry, jnp.float64),
                                          xs.astype(jnp.float64))
        y64, gw64 = np.asarray(y64), np.asarray(g64["w_h"])
    fns = {name: _step(c, fused) for name, (c, fused, *_) in variants.items()}
    args = {name: v[2:] for name, v in variants.items()}
    for name in variants:
        jax.block_until_ready(fns[name](*args[name]))  # compile
    # Round-robin: on a shared machine, load spikes then hit every variant alike.
    times = {name: [] for name in variants}
    for _ in range(reps):
        for name in variants:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[name](*args[name]))
            times[name].append(time.perf_counter() - t0)
    rows = {}
    for name in variants:
        (_, y), g = fns[name](*args[name])
        y = np.asarray(y.astype(jnp.float32), np.float64)
        gw = np.asarray(g["w_h"].astype(jnp.float32), np.float64)
        rows[name] = {"seconds": min(times[name]), "median_s": statistics.median(times[name]),
                      "y_rel_err": float(np.max(np.abs(y - y64)) / np.max(np.abs(y64))),
                      "grad_w_h_rel_err": float(np.max(np.abs(gw - gw64)) / np.max(np.abs(gw64)))}
    for r in rows.values():
        r["time_vs_f32_plain"] = r["seconds"] / rows["f32 plain"]["seconds"]
        r["time_vs_f32_fused"] = r["seconds"] / rows["f32 fused"]["seconds"]
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--I", type=int, default=64)
    ap.add_argument("--H", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args(argv)
    info = dict(_machine(), T=args.T, B=args.B, I=args.I, H=args.H, reps=args.reps)
    print(json.dumps(info))
    for kind in args.cells.split(","):
        rows = run(kind, args.T, args.B, args.I, args.H, args.reps)
        print(f"\n{kind}: T={args.T} B={args.B} I={args.I} H={args.H}")
        print(f"{'variant':14s} {'min ms':>9s} {'median':>9s} {'vs plain':>9s} {'vs fused':>9s} "
              f"{'y rel err':>10s} {'dw_h rel err':>12s}")
        for name, r in rows.items():
            print(f"{name:14s} {1e3 * r['seconds']:9.2f} {1e3 * r['median_s']:9.2f} "
                  f"{r['time_vs_f32_plain']:9.2f} "
                  f"{r['time_vs_f32_fused']:9.2f} {r['y_rel_err']:10.2e} "
                  f"{r['grad_w_h_rel_err']:12.2e}")
        print(json.dumps({"cell": kind, **rows}))
    print(json.dumps({"load_after": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
