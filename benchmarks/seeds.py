"""Vmapped seeds vs a Python loop over the same seeds.

    python benchmarks/seeds.py [--seeds 8] [--steps 200] [--cell lstm] [--hidden 32] \
        [--batch 32] [--seq-len 50]

Both variants train the same seeds with the same config (``rnn_jax.train.training.make_train``):
``jax.jit(jax.vmap(train))(keys)`` as one program, and ``jax.jit(train)`` called once
per key. Compilation is timed separately (first call) from the steady-state run (best
of ``--repeats`` further calls); the printed ratio is loop time / vmapped time. The
final parameters of both variants are checked to agree.

Measured on the shared 2-core CPU (jax 0.10.2; load ~4 from other jobs):
  defaults (8 seeds, LSTM H=32, B=32, T=50, 200 steps): vmapped 2.67 s, loop 2.54 s -> 0.95x
  --hidden 8 --batch 8 --seq-len 20 --steps 500:        vmapped 0.34 s, loop 1.22 s -> 3.64x
On a CPU the win is limited to models too small to keep the cores busy; on an
accelerator vmapping fills the device with work that a loop would run one seed at a
time. The vmapped program compiles ~1.3-2.6x longer than the single-seed one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from rnn_jax.train import training  # noqa: E402


def _timed(fn):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--cell", default="lstm", choices=["rnn", "lstm", "gru"])
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)

    config = training.default_config()
    config.cell, config.hidden_size = a.cell, a.hidden
    config.task.name, config.task.seq_len = "adding_le", a.seq_len
    config.batch_size, config.num_steps, config.num_seeds = a.batch, a.steps, a.seeds
    config.optimizer.clip_norm = 1.0
    train = training.make_train(config)
    keys, _ = training.seed_keys(config)

    vmapped = jax.jit(jax.vmap(train))
    (v_state, _), v_compile = _timed(lambda: vmapped(keys))
    v_run = min(_timed(lambda: vmapped(keys))[1] for _ in range(a.repeats))

    single = jax.jit(train)
    _, l_compile = _timed(lambda: single(keys[0]))

    def loop():
        return [single(k) for k in keys]

    l_run = min(_timed(loop)[1] for _ in range(a.repeats))
    l_states = loop()
    diff = max(float(np.max(np.abs(np.asarray(v_state.params["cell"]["w_h"][i])
                                   - np.asarray(s.params["cell"]["w_h"]))))
               for i, (s, _) in enumerate(l_states))

    print(f"{a.seeds} seeds x {a.steps} steps, {a.cell} H={a.hidden}, B={a.batch}, "
          f"T={a.seq_len}, {jax.device_count()} {jax.default_backend()} device(s)")
    print(f"vmapped: compile+first run {v_compile:.2f} s, run {v_run:.2f} s "
          f"({a.seeds * a.steps / v_run:.0f} seed-steps/s)")
    print(f"loop:    compile+first run {l_compile:.2f} s, run {l_run:.2f} s "
          f"({a.seeds * a.steps / l_run:.0f} seed-steps/s)")
    print(f"speedup of vmapped over loop (run time): {l_run / v_run:.2f}x; "
          f"max |w_h difference| {diff:.2e}")


if __name__ == "__main__":
    main()
