"""Peak memory and time of an LSTM training step on long sequences, with and without
checkpointing the scan (``rnn_jax.remat.checkpointed_unroll``).

Each configuration runs in its own subprocess, so its peak resident memory
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes the Python/JAX
baseline printed alongside) is not polluted by the others. The step: B = 8, I = 32,
H = 128 LSTM over T steps, MSE of a linear readout of the last hidden state, gradients
of all parameters. A configuration that exceeds ``--mem-limit-gb`` (address-space
limit on the child) or ``--timeout`` is reported as such.

    python benchmarks/remat.py                      # T = 10k and 100k
    python benchmarks/remat.py --lengths 10000 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MODES = ("remat", "fused", "plain")

CHILD = r"""
import json, os, resource, statistics, sys, time
sys.path.insert(0, {root!r})
import jax, jax.numpy as jnp
import rnn_jax
from rnn_jax import cells, fused
from rnn_jax.remat import checkpointed_unroll

T, B, I, H, mode, reps = {T}, 8, 32, 128, {mode!r}, {reps}
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cell = cells.lstm(H)
k = jax.random.split(jax.random.PRNGKey(0), 4)
params = {{"cell": cell.init(k[0], I), "w_o": jax.random.normal(k[1], (H, 1)) / H ** 0.5}}
xs = jax.random.normal(k[2], (T, B, I))
y = jax.random.normal(k[3], (B, 1))
carry0 = cell.initial_carry((B,))

def run(p, x):
    if mode == "remat":
        return checkpointed_unroll(cell, p, carry0, x, fused=True)
    if mode == "fused":
        return fused.lstm_unroll(p, carry0, x)
    return jax.lax.scan(lambda c, xx: cell.step(p, c, xx), carry0, x)

def loss(p, x, y):
    (h, _), _ = run(p["cell"], x)
    return jnp.mean((h @ p["w_o"] - y) ** 2)

step = jax.jit(jax.value_and_grad(loss))
jax.block_until_ready((params, xs, y))
base = rss_mb()
t0 = time.perf_counter()
compiled = step.lower(params, xs, y).compile()
compile_s = time.perf_counter() - t0
jax.block_until_ready(compiled(params, xs, y))
times = []
for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params, xs, y))
    times.append(time.perf_counter() - t0)
print(json.dumps(dict(base_mb=base, peak_mb=rss_mb(), compile_s=compile_s,
                      median_s=statistics.median(times), min_s=min(times), max_s=max(times))))
"""


def run_config(T: int, mode: str, reps: int, mem_gb: float, timeout: float) -> dict:
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    code = CHILD.format(root=root, T=T, mode=mode, reps=reps)

    def limit():
        import resource
        lim = int(mem_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=timeout, preexec_fn=limit if mem_gb > 0 else None)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {out.returncode}: {tail[:150]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="10000,100000", help="comma list of T")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="remat (checkpointed, fast path in segments), fused (fast path, "
                         "no remat), plain (lax.scan + autodiff, no remat)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mem-limit-gb", type=float, default=12.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    lengths = [int(v) for v in args.lengths.split(",")]
    modes = args.modes.split(",")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"--modes must be among {MODES}, got {m!r}")
    if args.reps < 1:
        raise ValueError(f"--reps must be >= 1, got {args.reps}")
    print(f"LSTM B=8 I=32 H=128; segment = ceil(sqrt(T)); child address-space limit "
          f"{args.mem_limit_gb} GB; {args.reps} timed steps per config")
    print(f"{'T':>8} {'mode':<7}{'peak MB':>9}{'base MB':>9}{'median s':>10}{'min s':>8}"
          f"{'max s':>8}{'compile s':>10}")
    for T in lengths:
        for m in modes:
            r = run_config(T, m, args.reps, args.mem_limit_gb, args.timeout)
            if "error" in r:
                print(f"{T:>8} {m:<7} {r['error']}", flush=True)
                continue
            print(f"{T:>8} {m:<7}{r['peak_mb']:>9.0f}{r['base_mb']:>9.0f}{r['median_s']:>10.3f}"
                  f"{r['min_s']:>8.3f}{r['max_s']:>8.3f}{r['compile_s']:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
