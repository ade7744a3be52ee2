"""Time one recurrent training step (forward + backward) against flax and PyTorch.

The step is: run the network over a batch, read out the last hidden state with a
linear layer, take the MSE against a target, and compute the gradients of every
parameter. Optimizer updates are left out, so only the recurrent network is timed.
Shapes are ``(B, T, I, H)``: s1 (32, 100, 32, 128), s2 (64, 1000, 32, 128),
s3 (16, 200, 64, 512), s4 (1, 1000, 8, 32) (issue 7).

Implementations, per cell (``--cells lstm,gru,rnn``):

* ``rnn_jax``: ``rnn_jax.unroll`` with its default fast path (``rnn_jax.fused``);
* ``rnn_jax-plain``: the same with ``fused=False`` (``jax.lax.scan`` over ``cell.step``
  differentiated by autodiff);
* ``rnn_jax-vmap``: ``jax.vmap`` over a per-example ``rnn_jax.unroll`` (the fast path's
  custom_vmap merges the examples into one batch for the scans, and its weight taps make
  each weight gradient one matmul over all examples; issue 11 asks <= 1.15x ``rnn_jax``);
* ``rnn_jax-resets``: ``rnn_jax`` given ``resets`` (every 25th step; issue 11 asks
  <= 1.10x ``rnn_jax``);
* ``flax``: ``flax.linen.RNN`` over ``OptimizedLSTMCell`` / ``GRUCell`` / ``SimpleCell``;
* ``torch``: ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` (oneDNN on CPU) with
  ``torch.set_flush_denormal(True)``; skipped when torch is not installed.

The JAX implementations of one shape are timed interleaved (one call of each per
round); PyTorch is timed in a worker process of its own, in two blocks between the JAX
rounds, so that its OpenMP threads never compete with a JAX call and a load change hits
all implementations alike. The ratios are the numbers to trust. Usage::

    python benchmarks/lstm_step.py                 # all four shapes, LSTM, 15 rounds
    python benchmarks/lstm_step.py --quick         # s1 and s4, 10 rounds
    python benchmarks/lstm_step.py --shapes s1,s3 --cells lstm,gru,rnn --reps 20
    python benchmarks/lstm_step.py --threads 1     # both libraries pinned to one core
    python benchmarks/lstm_step.py --impls rnn_jax,rnn_jax-vmap,rnn_jax-resets --shapes s1
"""

from __future__ import annotations

import argparse
import os
import platform
import json
import statistics
import subprocess
import sys
import time


def _early_threads(argv):
    """``--threads N`` must act before jax and torch start their thread pools."""
    for k, a in enumerate(argv):
        if a.startswith("--threads"):
            n = a.split("=", 1)[1] if "=" in a else (argv[k + 1] if k + 1 < len(argv) else "")
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"--threads must be a positive int, got {n!r}")
            os.environ["OMP_NUM_THREADS"] = n
            os.environ["MKL_NUM_THREADS"] = n
            # XLA's dot kernels keep their own thread pool even with
            # --xla_cpu_multi_thread_eigen=false (jnp.dot 2048^2 ran at the 2-core rate
            # with it), so the process is pinned to N cores instead.
            if hasattr(os, "sched_setaffinity"):
                cpus = sorted(os.sched_getaffinity(0))
                if int(n) > len(cpus):
                    raise ValueError(f"--threads must be at most the {len(cpus)} usable cores, got {n}")
                os.sched_setaffinity(0, cpus[:int(n)])
            return int(n)
    return None


THREADS = _early_threads(sys.argv[1:]) if __name__ == "__main__" else None

# torch runs in a worker process of its own (see _torch_times): with both libraries in one
# process, oneDNN's OpenMP threads spin after each torch call and took a core from the
# next JAX call (s1: rnn_jax 15.1 ms interleaved with torch, 12.9 ms without it).
TORCH_WORKER = "--torch-worker"

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import rnn_jax  # noqa: E402
from rnn_jax import cells  # noqa: E402

SHAPES = {
    "s1": (32, 100, 32, 128),
    "s2": (64, 1000, 32, 128),
    "s3": (16, 200, 64, 512),
    "s4": (1, 1000, 8, 32),
}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
OUT = 1


def flops(cell: str, B, T, I, H) -> float:
    """Matmul FLOPs of a training step: forward + two backward matmuls per weight."""
    return 2.0 * B * T * (I + H) * GATES[cell] * H * 3


def _rnn_jax_cell(cell: str, H: int):
    if cell == "lstm":
        return cells.lstm(H)
    if cell == "gru":
        return cells.gru(H, reset_after=True)  # the cuDNN/PyTorch form
    return cells.rnn(H)


def make_rnn_jax(cell: str, shape, mode: str, key):
    """``mode``: ``"fused"``, ``"plain"``, ``"vmap"`` (per-example unroll, vmapped) or
    ``"resets"`` (the fast path with a reset every 25 steps)."""
    B, T, I, H = shape
    c = _rnn_jax_cell(cell, H)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = {"cell": c.init(k1, I),
              "w_o": jax.random.normal(k2, (H, OUT)) / np.sqrt(H)}
    xs = jax.random.normal(k3, (T, B, I))
    target = jax.random.normal(k4, (B, OUT))
    carry0 = c.initial_carry((B,))
    resets = jnp.broadcast_to((jnp.arange(T) % 25 == 0)[:, None], (T, B))

    def head(carry, p):
        h = carry[0] if isinstance(carry, tuple) else carry
        return h @ p["w_o"]

    if mode == "vmap":
        def one(p, x, y):  # x: [T, I], y: [OUT], written for one example
            carry, _ = rnn_jax.unroll(c, p["cell"], c.initial_carry(), x)
            return jnp.sum((head(carry, p) - y) ** 2)

        def loss(p, x, y):
            return jnp.sum(jax.vmap(one, (None, 1, 0))(p, x, y)) / (B * OUT)
    else:
        def loss(p, x, y):
            kw = {"resets": resets} if mode == "resets" else {}
            carry, _ = rnn_jax.unroll(c, p["cell"], carry0, x, fused=mode != "plain", **kw)
            return jnp.mean((head(carry, p) - y) ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    return step, (params, xs, target)


def make_flax(cell: str, shape, key):
    import flax.linen as nn
    B, T, I, H = shape
    cls = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "rnn": nn.SimpleCell}[cell]

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            carry, _ = nn.RNN(cls(H), return_carry=True)(x)
            h = carry[1] if isinstance(carry, tuple) else carry  # LSTM carry is (c, h)
            return nn.Dense(OUT, use_bias=False)(h)

    m = Model()
    k1, k2, k3 = jax.random.split(key, 3)
    x = jax.random.normal(k2, (B, T, I))
    y = jax.random.normal(k3, (B, OUT))
    params = m.init(k1, x)

    def loss(p, x, y):
        return jnp.mean((m.apply(p, x) - y) ** 2)

    return jax.jit(jax.value_and_grad(loss)), (params, x, y)


def make_torch(cell: str, shape, seed=0):
    """A PyTorch training step, or None without torch. Called in the worker process only."""
    try:
        import torch
    except ImportError:  # torch is an optional, benchmark-only extra
        return None
    B, T, I, H = shape
    torch.manual_seed(seed)
    net = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](I, H)
    head = torch.nn.Linear(H, OUT, bias=False)
    x = torch.randn(T, B, I)
    y = torch.randn(B, OUT)
    ps = list(net.parameters()) + list(head.parameters())

    def step():
        for p in ps:
            p.grad = None
        out, state = net(x)
        h = state[0] if isinstance(state, tuple) else state
        loss = torch.mean((head(h[-1]) - y) ** 2)
        loss.backward()
        return loss.item()

    return step


def _torch_worker(cell: str, name: str, reps: int) -> None:
    """Worker process: time ``reps`` PyTorch steps and print them, with torch's versions and
    thread settings, as one JSON line."""
    try:
        import torch
    except ImportError:
        print(json.dumps({"missing": True}))
        return
    # Flush denormals before torch starts its worker threads (shared/cpu-anchors.md).
    torch.set_flush_denormal(True)
    if THREADS:
        torch.set_num_threads(THREADS)
    out = {"version": torch.__version__, "threads": torch.get_num_threads(),
           "interop": torch.get_num_interop_threads(),
           "mkldnn": torch.backends.mkldnn.is_available()}
    if reps > 0:  # reps = 0: report the environment only
        step = make_torch(cell, SHAPES[name])
        t0 = time.perf_counter()
        step()
        out["first_s"] = time.perf_counter() - t0
        for _ in range(2):  # oneDNN settles its primitives over the first calls
            step()
        out["times"] = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            out["times"].append(1e3 * (time.perf_counter() - t0))
    print(json.dumps(out))


def _torch_times(cell: str, name: str, reps: int) -> dict | None:
    """Run :func:`_torch_worker` in a fresh process (same affinity and thread settings)."""
    argv = [sys.executable, os.path.abspath(__file__), TORCH_WORKER, cell, name, str(reps)]
    if THREADS:
        argv += ["--threads", str(THREADS)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    return None if got.get("missing") else got


def _jax_runner(fn, args):
    def call():
        jax.block_until_ready(fn(*args))
    return call


def matmul_peak(reps: int) -> float:
    """GFLOP/s of a 2048^2 float32 ``jnp.dot``: the best of ``reps``, since a peak is
    what the machine can reach and other load only ever slows a run down."""
    n = 2048
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n))
    f = jax.jit(jnp.dot)
    jax.block_until_ready(f(a, b))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, b))
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / min(times) / 1e9


def print_env(impls):
    print(f"python {platform.python_version()}  jax {jax.__version__}  "
          f"jaxlib {jax.lib.__version__ if hasattr(jax.lib, '__version__') else '?'}  "
          f"backend {jax.default_backend()}  devices {jax.devices()}")
    try:
        import flax
        print(f"flax {flax.__version__}")
    except ImportError:
        print("flax: not installed")
    info = _torch_times("rnn", "s4", 0) if "torch" in impls else None
    if info is not None:
        print(f"torch {info['version']}  threads {info['threads']}  interop {info['interop']}  "
              f"flush_denormal on  mkldnn {info['mkldnn']}  (timed in a separate process)")
    else:
        print("torch: not installed or not requested, skipped")
    print(f"cpu_count {os.cpu_count()}  sched_affinity "
          f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}  "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}  "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')!r}")


def bench_shape(cell: str, name: str, reps: int, impls: list[str], peak: float):
    shape = SHAPES[name]
    key = jax.random.PRNGKey(0)
    runners, compile_s = {}, {}
    for impl in impls:
        if impl == "torch":
            continue
        if impl == "flax":
            made = make_flax(cell, shape, key)
        else:
            mode = {"rnn_jax": "fused", "rnn_jax-plain": "plain", "rnn_jax-vmap": "vmap",
                    "rnn_jax-resets": "resets"}[impl]
            made = make_rnn_jax(cell, shape, mode, key)
        if made is None:
            continue
        fn, args = made
        t0 = time.perf_counter()
        compiled = fn.lower(*args).compile()
        compile_s[impl] = time.perf_counter() - t0
        runners[impl] = _jax_runner(compiled, args)
        runners[impl]()  # warm-up
    times = {k: [] for k in runners}
    # JAX implementations interleaved (one call of each per round); torch in two blocks
    # of its own between them, so that a load change hits all of them alike.
    for block in (reps // 2, reps - reps // 2):
        for _ in range(block):
            for k, r in runners.items():
                t0 = time.perf_counter()
                r()
                times[k].append(1e3 * (time.perf_counter() - t0))
        got = _torch_times(cell, name, block) if "torch" in impls else None
        if got is not None:
            times.setdefault("torch", []).extend(got["times"])
            compile_s["torch"] = got["first_s"]
    runners.update({"torch": None} if "torch" in times else {})
    med = {k: statistics.median(v) for k, v in times.items()}
    fl = flops(cell, *shape)
    print(f"\n{cell} {name} (B, T, I, H) = {shape}   {fl / 1e9:.2f} GFLOP/step")
    if "rnn_jax" in med:
        for k in ("rnn_jax-vmap", "rnn_jax-resets"):
            if k in med:
                print(f"  {k} / rnn_jax: {med[k] / med['rnn_jax']:.3f}")
    print(f"  {'impl':<15}{'median ms':>10}{'min':>9}{'max':>9}{'vs flax':>9}{'vs torch':>9}"
          f"{'% peak':>8}{'compile s':>10}")
    for k in runners:
        vf = f"{med['flax'] / med[k]:.2f}x" if "flax" in med else "-"
        vt = f"{med['torch'] / med[k]:.2f}x" if "torch" in med else "-"
        pk = 100 * fl / (med[k] / 1e3) / 1e9 / peak
        print(f"  {k:<15}{med[k]:>10.2f}{min(times[k]):>9.2f}{max(times[k]):>9.2f}"
              f"{vf:>9}{vt:>9}{pk:>7.0f}%{compile_s[k]:>10.2f}")
    return med


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=None, help="comma list of s1..s4 (default all)")
    ap.add_argument("--cells", default="lstm", help="comma list of lstm,gru,rnn")
    ap.add_argument("--impls", default="rnn_jax,rnn_jax-plain,rnn_jax-vmap,flax,torch",
                    help="comma list of rnn_jax, rnn_jax-plain, rnn_jax-vmap, rnn_jax-resets, "
                         "flax, torch")
    ap.add_argument("--reps", type=int, default=None, help="timed rounds (>= 10)")
    ap.add_argument("--quick", action="store_true", help="s1 and s4 only, 10 rounds")
    ap.add_argument("--threads", type=int, default=None,
                    help="pin the process to N cores (torch intra-op threads = N too); "
                         "1 compares both libraries on one core")
    args = ap.parse_args(argv)
    shapes = (args.shapes.split(",") if args.shapes
              else ["s1", "s4"] if args.quick else list(SHAPES))
    for s in shapes:
        if s not in SHAPES:
            raise ValueError(f"--shapes must name shapes among {sorted(SHAPES)}, got {s!r}")
    cell_names = args.cells.split(",")
    for c in cell_names:
        if c not in GATES:
            raise ValueError(f"--cells must be among {sorted(GATES)}, got {c!r}")
    impls = args.impls.split(",")
    reps = args.reps or (10 if args.quick else 15)
    if reps < 10:
        raise ValueError(f"--reps must be >= 10 for a median with min/max, got {reps}")
    print_env(impls)
    peak = matmul_peak(max(reps, 10))
    print(f"large-matmul peak (jnp.dot 2048^2 float32, best of {max(reps, 10)}): {peak:.1f} GFLOP/s")
    print("FLOP model: 2*B*T*(I+H)*G*H*3, G = 4 (LSTM), 3 (GRU), 1 (RNN)")
    for c in cell_names:
        for s in shapes:
            bench_shape(c, s, reps, impls, peak)


if __name__ == "__main__":
    if sys.argv[1:2] == [TORCH_WORKER]:
        _torch_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
