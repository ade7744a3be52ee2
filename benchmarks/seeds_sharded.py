"""A sweep of seeds sharded over devices: 1 vs N host CPU devices.

    python benchmarks/seeds_sharded.py [--devices 1,2,4] [--seeds 8] [--steps 100] \
        [--hidden 32] [--batch 16] [--seq-len 20] [--repeats 3]

Each device count runs in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (the flag must be set before
JAX starts). The program is the training engine's own (``rnn_jax.train.loop``): all
seeds vmapped in one jitted program over the ``("seed", "data")`` mesh, where the seed
axis takes ``gcd(num_seeds, N)`` devices (with 8 seeds on 8 devices, 8 ways, no
communication between them). Timed: compile + first call, then the best of
``--repeats`` calls of ``--steps`` steps. The final parameters of every device count
are checked against the 1-device run.

On a CPU the "devices" share the machine's cores, and a 1-device XLA program already
uses several threads, so the gain is bounded by the cores that the 1-device run leaves
idle; on accelerators each device is a separate chip.

Measured on the shared 2-core CPU (jax 0.10.2, load 21 from other jobs), 200 steps:
1 device 1.50 s; 2 devices (seeds 2 x 1) 1.61 s; 4 devices 1.93 s; 8 devices (8 x 1)
1.87 s: no gain on 2 busy cores (see BUILD_NOTES, "Issue 16").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(a) -> dict:
    sys.path.insert(0, REPO)
    import jax
    import numpy as np

    from rnn_jax.train import training
    from rnn_jax.train import distributed, loop

    c = training.default_config()
    c.cell, c.hidden_size = "lstm", a.hidden
    c.task.name, c.task.seq_len, c.task.eval_size = "adding_le", a.seq_len, 64
    c.batch_size, c.num_seeds, c.num_steps = a.batch, a.seeds, a.steps
    c.log_every = c.eval_every = c.checkpoint_every = a.steps
    c.optimizer.clip_norm = 1.0
    training.validate_config(c)
    mesh = loop.make_mesh(c)
    programs = loop._programs(c, mesh)
    keys, _ = training.seed_keys(c)
    init = programs.init(np.asarray(keys))
    run = programs.runner(a.steps)

    def timed():
        state = jax.tree_util.tree_map(lambda x: x.copy(), init)  # runner donates its input
        jax.block_until_ready(state)
        t = time.perf_counter()
        out = jax.block_until_ready(run(state))
        return out, time.perf_counter() - t

    (state, _), first = timed()
    best = min(timed()[1] for _ in range(a.repeats))
    lay = distributed.layout(c)
    w_h = np.asarray(jax.device_get(state.params["cell"]["w_h"]))
    return {"devices": jax.device_count(), "seed_shards": lay.seed_shards,
            "data_shards": lay.data_shards, "first_s": first, "run_s": best,
            "w_h": w_h.tolist()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="1,2,4")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a)))
        return

    import numpy as np
    args = [f"--seeds={a.seeds}", f"--steps={a.steps}", f"--hidden={a.hidden}",
            f"--batch={a.batch}", f"--seq-len={a.seq_len}", f"--repeats={a.repeats}", "--child"]
    print(f"{a.seeds} seeds x {a.steps} steps, lstm H={a.hidden}, B={a.batch}, T={a.seq_len}; "
          f"{os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.1f}")
    base = None
    for n in [int(x) for x in a.devices.split(",")]:
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
        out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env,
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        w = np.asarray(r.pop("w_h"))
        base = base or (r["run_s"], w)
        diff = float(np.max(np.abs(w - base[1])))
        print(f"{r['devices']} device(s) (seed x data = {r['seed_shards']} x {r['data_shards']}): "
              f"compile+first {r['first_s']:.2f} s, run {r['run_s']:.3f} s "
              f"({a.seeds * a.steps / r['run_s']:.0f} seed-steps/s, "
              f"{base[0] / r['run_s']:.2f}x of 1 device), max |w_h - 1-device| {diff:.1e}")


if __name__ == "__main__":
    main()
