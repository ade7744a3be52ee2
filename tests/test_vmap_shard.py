"""Core contract 2.0 (issue 11), part 3 of 3: vmap and shard_map. The whole contract, the
references and the tolerance are in test_core_contract.py's docstring.

References: the batched call, separate per-example grads, and the unsharded call.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax
from rnn_jax import cells

from contract_cases import ATOL, I, _close, _first_leaf, _setup

# ------------------------------------------------------------------ vmap

@pytest.mark.parametrize("name", ["lstm", "gru_after", "rnn"])
def test_vmap_of_a_per_example_unroll_equals_the_batched_call(name):
    cell, params, xs = _setup(name, batch=(3,))
    xs_b = jnp.swapaxes(xs, 0, 1)  # [B, T, I]
    lengths = jnp.array([7, 5, 2])
    resets = jnp.zeros((3, 7), bool).at[0, 3].set(True)

    def one(p, x, n, r):
        c, ys = rnn_jax.unroll(cell, p, cell.initial_carry(), x, lengths=n, resets=r)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(_first_leaf(c))

    def batched(p, x):
        c, ys = rnn_jax.unroll(cell, p, cell.initial_carry((3,)), x, lengths=lengths,
                               resets=resets.T)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(_first_leaf(c))

    vm = lambda p, x: jnp.sum(jax.vmap(one, (None, 1, 0, 0))(p, x, lengths, resets))
    assert "custom_vmap" in str(jax.make_jaxpr(lambda p: one(p, xs[:, 0], 7, resets[0]))(params))
    # Each side below is one jitted program (test time: one compilation rather than eager
    # ones per scan); the references stay separate calls, one per example.
    _close(jax.jit(jax.value_and_grad(vm, argnums=(0, 1)))(params, xs),
           jax.jit(jax.value_and_grad(batched, argnums=(0, 1)))(params, xs))
    if name != "lstm":
        return  # the two checks below exercise the shared plumbing; once is enough
    # Per-example gradients (vmap of grad) equal one grad per example.
    per = jax.jit(jax.vmap(jax.grad(one), (None, 0, 0, 0)))(params, xs_b, lengths, resets)
    grad_one = jax.jit(jax.grad(one))
    for b in range(3):
        _close(jax.tree_util.tree_map(lambda a: a[b], per),
               grad_one(params, xs_b[b], lengths[b], resets[b]))
    # Per-example params (an ensemble) still batch correctly.
    ens = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a, -a]), params)
    got = jax.jit(jax.vmap(jax.value_and_grad(one), (0, 0, 0, 0)))(ens, xs_b, lengths, resets)
    value_and_grad_one = jax.jit(jax.value_and_grad(one))
    for b in range(3):
        _close(jax.tree_util.tree_map(lambda a: a[b], got),
               value_and_grad_one(jax.tree_util.tree_map(lambda a: a[b], ens), xs_b[b],
                                  lengths[b], resets[b]))


# ------------------------------------------------------------------ shard_map

_SHARD_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, PartitionSpec as P
    import rnn_jax
    from rnn_jax import cells
    assert jax.device_count() == 2, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    out = {}
    for name, cell in [("lstm", cells.lstm(4))]:
        params = cell.init(jax.random.PRNGKey(0), 3)
        xs = jax.random.normal(jax.random.PRNGKey(1), (5, 4, 3))
        lengths = jnp.array([5, 3, 2, 4])
        for fused in (True, False):
            def local(p, x, n):
                c, ys = rnn_jax.unroll(cell, p, cell.initial_carry((x.shape[1],)), x,
                                       lengths=n, fused=fused)
                return jax.lax.psum(jnp.sum(jnp.sin(ys)), "data")
            sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(None, "data"), P("data")),
                                    out_specs=P())
            full = lambda p, x, n: jnp.sum(jnp.sin(rnn_jax.unroll(
                cell, p, cell.initial_carry((4,)), x, lengths=n, fused=fused)[1]))
            a = jax.jit(jax.value_and_grad(sharded))(params, xs, lengths)
            b = jax.value_and_grad(full)(params, xs, lengths)
            out[f"{name}-{fused}"] = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
                                         for u, v in zip(jax.tree_util.tree_leaves(a),
                                                         jax.tree_util.tree_leaves(b)))
    print(json.dumps(out))
""")


def test_unroll_inside_shard_map_equals_the_unsharded_call():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", _SHARD_SCRIPT], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    diffs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(diffs) == {"lstm-True", "lstm-False"}
    for k, d in diffs.items():
        assert d < ATOL, (k, d)
