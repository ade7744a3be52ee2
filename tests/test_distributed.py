"""Several processes on JAX's distributed runtime, proven with local CPU processes.

One 2-process run of ``experiments.train`` (each process one CPU device, gloo
collectives, a free localhost port) is shared by several checks: it equals the
1-process run with the same global batch, only process 0 wrote the logs, each process
held its half of the batch, and its checkpoint resumes in a single process. A second
2-process run checks that killing one process makes the other fail, not hang.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rnn_jax.train import distributed, loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 4  # --distributed_timeout_s of the kill test: heartbeat and shutdown timeouts

# The smallest adding run: the global batch of 4 splits 2 + 2 over the processes.
_FLAGS = ["--config=experiments/configs/adding.py", "--config.cell=lstm",
          "--config.hidden_size=4", "--config.task.name=adding_le", "--config.task.seq_len=10",
          "--config.task.eval_size=16", "--config.batch_size=4",
          "--config.optimizer.schedule=constant", "--config.optimizer.warmup_steps=0",
          "--config.optimizer.learning_rate=0.01", "--config.progress_every_s=0"]
STEPS = 4


def _config(num_steps=STEPS):
    """The config the flags above build, for the in-process 1-process runs."""
    from experiments.configs import adding
    c = adding.get_config()
    c.cell, c.hidden_size = "lstm", 4
    c.task.name, c.task.seq_len, c.task.eval_size = "adding_le", 10, 16
    c.batch_size, c.num_steps = 4, num_steps
    c.optimizer.schedule, c.optimizer.warmup_steps, c.optimizer.learning_rate = "constant", 0, 0.01
    c.progress_every_s = 0.0
    c.log_every = c.eval_every = c.checkpoint_every = STEPS
    return c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(workdir, extra, n=2):
    """Start ``n`` processes of experiments.train; returns (procs, log paths)."""
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("XLA_FLAGS", None)
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"  # one CPU device per process
    procs, logs = [], []
    for i in range(n):
        log = os.path.join(os.path.dirname(workdir), f"{os.path.basename(workdir)}.p{i}.log")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "experiments.train", *_FLAGS, *extra, f"--workdir={workdir}",
             f"--coordinator_address=localhost:{port}", f"--num_processes={n}",
             f"--process_id={i}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=open(log, "w")))
    return procs, logs


def _wait_all(procs, timeout):
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 2-process run (workdir "two") and the 1-process reference ("one"), STEPS steps."""
    root = tmp_path_factory.mktemp("dist")
    two, one = str(root / "two"), str(root / "one")
    procs, logs = _launch(two, [f"--config.num_steps={STEPS}", f"--config.log_every={STEPS}",
                                f"--config.eval_every={STEPS}",
                                f"--config.checkpoint_every={STEPS}"])
    try:
        # The reference trains in this process meanwhile (one device, same global batch).
        loop.train_and_evaluate(_config(), one)
    finally:
        codes = _wait_all(procs, timeout=240)  # a ceiling against hangs, ~30 s when idle
    texts = [open(p).read() for p in logs]
    assert codes == [0, 0], "\n".join(t[-3000:] for t in texts)
    return {"two": two, "one": one, "logs": texts}


# Tolerance of the 2-process vs 1-process comparison. The runs differ only in the
# order of float32 sums: each process sums the loss gradient over its 2 rows, gloo
# adds the two halves, where one process sums all 4 rows at once. Each gradient
# entry then differs by a few ulps (relative ~1e-7, float32 eps 6e-8 times the
# summation depth), Adam's m/sqrt(v) passes a relative error through at most ~2x, and
# 4 steps at lr 1e-2 move the parameters by ~4e-2, so the parameters agree to ~1e-8
# absolute and the losses to ~1e-6 relative. 1e-5 leaves a 10x margin and still
# catches any difference in the data (a wrong shard changes the loss at 1e-2).
RTOL = 1e-5


def test_two_processes_equal_one_process(runs):
    two, one = _records(runs["two"]), _records(runs["one"])
    assert [(r["step"], r["split"]) for r in two] == [(STEPS, "train"), (STEPS, "eval")]
    for a, b in zip(two, one):
        for k in ("loss", "grad_norm", "param_norm"):
            if k in b:
                np.testing.assert_allclose(a[k], b[k], rtol=RTOL, err_msg=f"{a['split']} {k}")
    # The runs did train: each step moved the parameters.
    assert one[0]["update_norm"] > 1e-3
    c = _config()
    p_two, p_one = (loop.restore_state(c, w).params for w in (runs["two"], runs["one"]))
    assert jax.tree_util.tree_structure(p_two) == jax.tree_util.tree_structure(p_one)
    for a, b in zip(jax.tree_util.tree_leaves(p_two), jax.tree_util.tree_leaves(p_one)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=RTOL, atol=1e-7)
    eval_two = json.load(open(os.path.join(runs["two"], "eval.json")))
    eval_one = json.load(open(os.path.join(runs["one"], "eval.json")))
    np.testing.assert_allclose(eval_two["loss"], eval_one["loss"], rtol=RTOL)


def test_each_process_holds_its_rows_and_only_process_0_writes(runs):
    logs = runs["logs"]
    # Process p holds rows [2p, 2p + 2) of the global batch of 4 (derived from its index).
    assert "process 0 of 2: batch rows {0: (0, 2)}" in logs[0], logs[0][-2000:]
    assert "process 1 of 2: batch rows {0: (2, 4)}" in logs[1], logs[1][-2000:]
    # One record per step and split (two writers would double them), one progress log.
    assert "step 4/4" in logs[0] and "step 4/4" not in logs[1]
    def files(workdir):  # TensorBoard names its file by time and host
        return sorted("events" if f.startswith("events.out") else f for f in os.listdir(workdir))
    assert files(runs["two"]) == files(runs["one"])


def test_resume_with_fewer_processes(runs, tmp_path):
    """A checkpoint written by 2 processes resumes in 1 and continues like the 1-process run."""
    two = str(tmp_path / "two")
    shutil.copytree(runs["two"], two)
    one = str(tmp_path / "one")
    shutil.copytree(runs["one"], one)
    c = _config(num_steps=2 * STEPS)  # the same compiled programs: nothing new to compile
    a = loop.train_and_evaluate(c, two)
    b = loop.train_and_evaluate(c, one)
    assert a["step"] == b["step"] == 2 * STEPS
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=RTOL)
    assert [r["step"] for r in _records(two)] == [STEPS, STEPS, 2 * STEPS, 2 * STEPS]


def test_killed_process_fails_the_other_within_the_bound(tmp_path):
    workdir = str(tmp_path / "killed")
    # Long enough never to finish; logs every 2 steps so we see training under way.
    # Two seeds: the seed axis splits over the processes (each trains one seed on the
    # whole batch; only the replicated metrics cross between them).
    procs, logs = _launch(workdir, ["--config.num_steps=1000000", "--config.log_every=2",
                                    "--config.num_seeds=2",
                                    "--config.eval_every=1000000",
                                    "--config.checkpoint_every=1000000",
                                    f"--distributed_timeout_s={TIMEOUT_S}"])
    try:
        metrics = os.path.join(workdir, "metrics.jsonl")
        deadline = time.monotonic() + 180
        while not (os.path.exists(metrics) and open(metrics).read().count("\n") >= 1):
            assert time.monotonic() < deadline, open(logs[0]).read()[-3000:]
            assert all(p.poll() is None for p in procs), open(logs[0]).read()[-3000:]
            time.sleep(0.2)
        procs[1].kill()
        killed = time.monotonic()
        # The bound: a collective fails at once (gloo's connection resets); at the
        # latest the coordinator declares the peer dead after TIMEOUT_S without a
        # heartbeat, and the shutdown barrier gives up after TIMEOUT_S more.
        bound = 2 * TIMEOUT_S + 10  # + 10 s for a loaded machine to get there
        code = procs[0].wait(timeout=bound + 20)
        waited = time.monotonic() - killed
    finally:
        _wait_all(procs, timeout=1)
    text = open(logs[0]).read()
    assert "process 1 of 2: batch rows {1: (0, 4)}" in open(logs[1]).read()
    assert code != 0
    assert waited < bound, (waited, text[-3000:])
    assert "PeerFailedError" in text and "one of them died" in text, text[-3000:]


@pytest.mark.parametrize("flags, message", [
    (dict(num_processes=2), "--num_processes=2 needs --coordinator_address"),
    (dict(coordinator_address="localhost:1234", num_processes=2), "needs --process_id"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=2),
     "--process_id must be in 0..1"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=-1),
     "--process_id must be in 0..1"),
    (dict(coordinator_address="localhost", num_processes=2, process_id=0),
     "--coordinator_address must be host:port"),
    (dict(process_id=0), "--process_id needs --num_processes"),
    (dict(num_processes=0), "--num_processes must be an int >= 1"),
])
def test_bad_flags_are_refused(flags, message):
    with pytest.raises(distributed.DistributedFlagError, match=message):
        distributed.check_flags(flags.get("coordinator_address"), flags.get("num_processes"),
                                flags.get("process_id"))


def test_flags_and_cluster_detection():
    assert distributed.check_flags(None, None, None) is False
    assert distributed.check_flags(None, 1, None) is False
    assert distributed.check_flags("10.0.0.1:1234", 4, 3) is True
    assert distributed.check_flags("[::1]:1234", 1, 0) is True
    slurm = dict(SLURM_JOB_ID="7", SLURM_STEP_NODELIST="n[1-2]", SLURM_PROCID="0",
                 SLURM_LOCALID="0")
    assert distributed.detect_cluster({**slurm, "SLURM_NTASKS": "2"}) == "slurm"
    assert distributed.detect_cluster({**slurm, "SLURM_NTASKS": "1"}) is None
    assert distributed.detect_cluster({"TPU_WORKER_HOSTNAMES": "h0,h1"}) == "tpu"
    assert distributed.detect_cluster({"TPU_WORKER_HOSTNAMES": "h0"}) is None
    assert distributed.detect_cluster({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "2"}) == "ompi"
    assert distributed.detect_cluster({}) is None
    # Mains that train as one process refuse several, asked for or detected.
    with pytest.raises(distributed.DistributedFlagError, match="runs as one process"):
        distributed.check_flags("localhost:1234", 2, 0, multi_process=False, environ={})
    with pytest.raises(distributed.DistributedFlagError, match="runs as one process"):
        distributed.check_flags(None, None, None, multi_process=False,
                                environ={**slurm, "SLURM_NTASKS": "2"})
    assert distributed.check_flags("localhost:1234", 1, 0, multi_process=False, environ={})
    # Nothing asked and no cluster: one process, nothing initialized.
    assert distributed.maybe_initialize(environ={}) is False


def test_main_refuses_bad_flags_before_running(tmp_path):
    """Through the real main: a usage error, exit 1, and nothing written to the workdir."""
    workdir = str(tmp_path / "w")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "experiments.train", *_FLAGS,
                           f"--workdir={workdir}", "--num_processes=2", "--process_id=5",
                           "--coordinator_address=localhost:1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "--process_id must be in 0..1" in proc.stderr
    assert not os.path.exists(workdir)


def test_batch_not_divisible_by_data_shards(monkeypatch):
    """A batch that does not split over the devices of all processes is refused by
    validate, naming config.batch_size, before anything is compiled."""
    from rnn_jax.train import config as config_lib
    c = _config()
    c.batch_size = 3
    config_lib.validate(c)  # one process, one device: any batch
    monkeypatch.setattr(jax, "process_count", lambda: 2)  # as if a second process had joined
    with pytest.raises(ValueError, match=r"config.batch_size \(3\) must be divisible by the 2 data"):
        config_lib.validate(c)
    c.num_seeds = 2  # two seeds take the two devices: the batch is not split any more
    config_lib.validate(c)
    assert distributed.layout(c) == distributed.Layout(2, 1, 2, 1)
