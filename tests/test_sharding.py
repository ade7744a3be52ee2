"""Data-parallel training over 4 simulated CPU devices equals single-device training.

XLA_FLAGS must be set before jax is imported, so the check runs in a fresh subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent("""
    import functools, json, sys, tempfile
    import jax
    import numpy as np
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from rnn_jax.train import training
    from rnn_jax.train import loop

    assert jax.device_count() == 4, jax.devices()
    c = training.default_config()
    c.cell, c.hidden_size = "lstm", 8
    c.task.name, c.task.seq_len, c.task.eval_size = "adding_le", 6, 64
    c.batch_size, c.num_steps, c.num_seeds = 8, 6, 2
    c.optimizer.name, c.optimizer.learning_rate, c.optimizer.clip_norm = "adam", 1e-2, 0.5
    c.eval_every = c.checkpoint_every = c.log_every = 6
    c.num_devices = 4

    keys, _ = training.seed_keys(c)
    states = jax.jit(jax.vmap(functools.partial(training.init_state, c)))(keys)
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    # Single device: one compile, whose HLO we also inspect.
    single = jax.jit(jax.vmap(functools.partial(training.run_steps, c, num_steps=6)))
    compiled_one = single.lower(states).compile()
    one, m_one = compiled_one(states)

    # Four devices, through the driver (which shards each batch over the "data" mesh).
    workdir = tempfile.mkdtemp()
    loop.train_and_evaluate(c, workdir)
    four = loop.restore_state(c, workdir)
    with open(workdir + "/metrics.jsonl") as f:
        m_four = [json.loads(line) for line in f][0]  # train record at step 6: chunk means
    hlo_four = jax.jit(jax.vmap(functools.partial(training.run_steps, c, num_steps=1, mesh=mesh))
                       ).lower(jax.device_put(states, replicated)).compile().as_text()

    def max_rel_diff(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / (np.abs(np.asarray(y)) + 1e-6)))
                   for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))

    print(json.dumps({
        "params_diff": max_rel_diff(four.params, one.params),
        "loss_diff": max_rel_diff(np.array(m_four["loss_seeds"]), np.asarray(m_one["loss"]).mean(1)),
        "grad_norm_diff": max_rel_diff(np.array(m_four["grad_norm_seeds"]),
                                       np.asarray(m_one["grad_norm"]).mean(1)),
        "moved": max_rel_diff(one.params, states.params),
        "all_reduce_one": "all-reduce" in compiled_one.as_text(),
        "all_reduce_four": "all-reduce" in hlo_four,
        "n_shards": len(four.params["cell"]["w_h"].sharding.device_set),
    }))
""")


def test_sharded_training_matches_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0",
           "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["moved"] > 1e-3  # training changed the params, so the comparison means something
    assert r["params_diff"] < 1e-4, r
    assert r["loss_diff"] < 1e-4 and r["grad_norm_diff"] < 1e-4, r
    # The batch really was split: the 4-device program all-reduces the gradients.
    assert r["all_reduce_four"] and not r["all_reduce_one"], r
    assert r["n_shards"] == 4  # the restored params are replicated on all 4 devices
