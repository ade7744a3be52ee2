"""Several processes, one training run: JAX's multi-controller runtime, and the device layout.

JAX runs multi-host programs as one Python process per host (or per device group),
each running the same program; ``jax.distributed.initialize`` connects them through
a coordinator (process 0 listens on ``coordinator_address``), after which
``jax.devices()`` lists every process's devices and a jitted program over a
:class:`jax.sharding.Mesh` of them runs as one SPMD program, the collectives
crossing processes (on CPU through gloo, ``jax_cpu_collectives_implementation``).
See JAX's "Multi-process" guide (https://docs.jax.dev/en/latest/multi_process.html)
and ``jax.distributed.initialize``'s docstring for the runtime itself.

This module holds everything about processes, so the training loop only asks:

* :func:`check_flags` -- the three flags ``--coordinator_address``,
  ``--num_processes``, ``--process_id`` make sense together (pure; nothing runs);
* :func:`maybe_initialize` -- call ``jax.distributed.initialize`` when the flags ask
  for it, or when JAX can detect a cluster itself (:func:`detect_cluster`: SLURM,
  Open MPI, a TPU pod); otherwise do nothing (one process, as before);
* :func:`layout` / :func:`make_mesh` -- the ``("seed", "data")`` mesh over all
  processes' devices: seeds are embarrassingly parallel, so they take as many devices
  as divide ``num_seeds`` (``gcd``), and the batch is sharded over the rest;
* :func:`process_batch_rows` -- which rows of the global batch this process holds;
* :func:`is_primary` -- only process 0 writes logs, ``config.json`` and ``eval.json``
  (orbax checkpoints are written collectively by all processes).

A dead peer. A survivor in a collective with it fails at once (gloo's connection is
reset), which :func:`peer_errors_explained` turns into :class:`PeerFailedError`;
a survivor elsewhere (compiling, writing a checkpoint) is stopped by the coordination
service, which declares a process silent for ``timeout_s`` seconds dead and aborts
the others (absl FATAL "...heartbeat timeout..."). Either way JAX's shutdown barrier
then waits at most ``timeout_s`` more. So every survivor exits non-zero within
``2 * timeout_s`` of the death (plus scheduling delays on a loaded host), never hangs;
:data:`DEFAULT_TIMEOUT_S` = 60 gives 2 minutes.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from typing import Mapping, NamedTuple

import jax
import numpy as np

# Seconds without a heartbeat after which a process is declared dead (and the others
# fail), and the most a finishing process waits for its peers at shutdown. JAX's own
# defaults are 100 s and 300 s; 60 s is long enough for a loaded host to stall
# (compilation, a slow checkpoint write) without being declared dead.
DEFAULT_TIMEOUT_S = 60

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):(\d+)$")


class DistributedFlagError(ValueError):
    """The distributed flags are inconsistent (raised before anything runs)."""


def check_flags(coordinator_address: str | None, num_processes: int | None,
                process_id: int | None, timeout_s: int = DEFAULT_TIMEOUT_S, *,
                multi_process: bool = True, environ: Mapping[str, str] | None = None) -> bool:
    """Check the distributed flags; return True when they ask for ``initialize``.

    Explicit mode needs all three: ``--coordinator_address=host:port``,
    ``--num_processes >= 1`` and ``0 <= --process_id < --num_processes``. None of them
    (or ``--num_processes=1`` alone) means one process, unless a cluster is detected.
    ``multi_process=False`` (a main whose loop neither shards nor restricts its writes
    to process 0) refuses more than one process, by flags or by a detected cluster.
    Raises :class:`DistributedFlagError` naming the flag otherwise.
    """
    explicit = _check_flags(coordinator_address, num_processes, process_id, timeout_s)
    if not multi_process and ((explicit and num_processes > 1) or detect_cluster(environ)):
        raise DistributedFlagError(
            "this experiment runs as one process; --num_processes > 1 (or a multi-process "
            "cluster such as an srun with several tasks) is for experiments.train")
    return explicit


def _check_flags(coordinator_address, num_processes, process_id, timeout_s) -> bool:
    if num_processes is not None and (not isinstance(num_processes, int) or num_processes < 1):
        raise DistributedFlagError(f"--num_processes must be an int >= 1, got {num_processes!r}")
    if not isinstance(timeout_s, int) or timeout_s < 1:
        raise DistributedFlagError(f"--distributed_timeout_s must be an int >= 1, got {timeout_s!r}")
    if coordinator_address is None and process_id is None:
        if num_processes is not None and num_processes > 1:
            raise DistributedFlagError(
                f"--num_processes={num_processes} needs --coordinator_address=host:port (the "
                "address of process 0, the same on every process) and --process_id")
        return False
    if num_processes is None:
        given = "--coordinator_address" if coordinator_address is not None else "--process_id"
        raise DistributedFlagError(f"{given} needs --num_processes (and the other of "
                                   "--coordinator_address / --process_id)")
    if coordinator_address is None:
        raise DistributedFlagError("--process_id needs --coordinator_address=host:port "
                                   "(the address of process 0)")
    m = _ADDRESS.match(coordinator_address)
    if not m or not 1 <= int(m.group(2)) <= 65535:
        raise DistributedFlagError(f"--coordinator_address must be host:port with a port in "
                                   f"1..65535, got {coordinator_address!r}")
    if process_id is None:
        raise DistributedFlagError("--coordinator_address needs --process_id "
                                   f"(0..{num_processes - 1}, distinct on every process)")
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise DistributedFlagError(f"--process_id must be in 0..{num_processes - 1} "
                                   f"(--num_processes={num_processes}), got {process_id!r}")
    return True


def detect_cluster(environ: Mapping[str, str] | None = None) -> str | None:
    """The multi-process cluster JAX can configure itself from, or None.

    Only environments with more than one process count (a 1-task SLURM job runs as
    one process, as before): ``"slurm"`` (``srun`` sets SLURM_NTASKS > 1 and the
    variables JAX's SLURM detection reads), ``"ompi"`` (``mpirun`` of Open MPI with
    OMPI_COMM_WORLD_SIZE > 1) and ``"tpu"`` (a Cloud TPU pod slice: more than one
    host in TPU_WORKER_HOSTNAMES or TPU_PROCESS_ADDRESSES).
    """
    env = os.environ if environ is None else environ

    def count(name):
        try:
            return int(env.get(name, "1"))
        except ValueError:
            return 1

    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
             "SLURM_LOCALID")
    if all(v in env for v in slurm) and count("SLURM_NTASKS") > 1:
        return "slurm"
    if "OMPI_MCA_orte_hnp_uri" in env and count("OMPI_COMM_WORLD_SIZE") > 1:
        return "ompi"
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    if len([h for h in hosts.split(",") if h.strip()]) > 1:
        return "tpu"
    return None


def maybe_initialize(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, *, timeout_s: int = DEFAULT_TIMEOUT_S,
                     environ: Mapping[str, str] | None = None) -> bool:
    """Connect this process to the others if asked to or if a cluster is detected.

    Must run before any other JAX call (the backend must not exist yet). Selects
    gloo for CPU collectives (so that several CPU processes can all-reduce), then
    ``jax.distributed.initialize`` with ``heartbeat_timeout_seconds`` and
    ``shutdown_timeout_seconds`` = ``timeout_s``. Returns True if it initialized.
    """
    explicit = check_flags(coordinator_address, num_processes, process_id, timeout_s)
    cluster = None if explicit else detect_cluster(environ)
    if not explicit and cluster is None:
        return False
    if jax.distributed.is_initialized():
        raise RuntimeError("jax.distributed.initialize was already called in this process")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = dict(heartbeat_timeout_seconds=timeout_s, shutdown_timeout_seconds=timeout_s,
                  initialization_timeout=max(timeout_s, 60))
    if explicit:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id, **kwargs)
    else:
        jax.distributed.initialize(**kwargs)  # JAX reads the cluster's environment itself
    return True


def is_primary() -> bool:
    """True on the one process (index 0) that writes logs and result files."""
    return jax.process_index() == 0


class Layout(NamedTuple):
    """How a run's devices are used: ``seed_shards * data_shards == num_processes * per_process``."""
    num_processes: int
    per_process: int   # devices used on each process (config.num_devices, 0 = all local)
    seed_shards: int   # gcd(num_seeds, total devices): seeds need no communication
    data_shards: int   # the rest shard each batch (gradients are all-reduced over them)


def layout(config) -> Layout:
    """The device layout of ``config`` on this process group; ValueError naming the field."""
    local = jax.local_device_count()
    if config.num_devices > local:
        raise ValueError(f"config.num_devices must be at most the {local} local devices of "
                         f"each process (0 = all), got {config.num_devices}")
    per = config.num_devices or local
    total = per * jax.process_count()
    seed_shards = math.gcd(config.num_seeds, total)
    data_shards = total // seed_shards
    if config.batch_size % data_shards:
        raise ValueError(
            f"config.batch_size ({config.batch_size}) must be divisible by the {data_shards} "
            f"data shards it is split over: {total} devices ({jax.process_count()} process(es) x "
            f"{per}; config.num_devices), of which config.num_seeds={config.num_seeds} take "
            f"a {seed_shards}-way seed axis")
    return Layout(jax.process_count(), per, seed_shards, data_shards)


def mesh_devices(per_process: int) -> list:
    """The first ``per_process`` devices of every process, process by process."""
    by_process: dict[int, list] = {}
    for d in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
        by_process.setdefault(d.process_index, []).append(d)
    return [d for p in sorted(by_process) for d in by_process[p][:per_process]]


def make_mesh(config):
    """The ``("seed", "data")`` mesh of ``config``, or None when it uses one device.

    Devices are laid out process-major and the seed axis is the outer one, so seeds
    split across processes first (no cross-process traffic) and each process's
    devices hold consecutive rows of the batch.
    """
    lay = layout(config)
    if lay.seed_shards * lay.data_shards == 1:
        return None
    grid = np.array(mesh_devices(lay.per_process), dtype=object)
    return jax.sharding.Mesh(grid.reshape(lay.seed_shards, lay.data_shards), ("seed", "data"))


def state_sharding(mesh):
    """Training states (leading seed axis): split over "seed", replicated over "data"."""
    if mesh is None:
        return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seed"))


def replicated(mesh):
    """Every device holds the whole value (what each process may read back)."""
    if mesh is None:
        return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def process_batch_rows(mesh, num_seeds: int, batch_size: int) -> dict[int, tuple[int, int]]:
    """``{seed: (first_row, end_row)}``: the batch rows this process's devices hold.

    The data of step ``s`` is a pure function of the run key and ``s``; the global
    batch ``[num_seeds, batch_size, ...]`` is sampled inside the jitted step under a
    ``("seed", "data")`` sharding constraint, so each process computes exactly these
    rows (XLA partitions the counter-based threefry sampling; see BUILD_NOTES).
    """
    if mesh is None:
        return {s: (0, batch_size) for s in range(num_seeds)}
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seed", "data"))
    rows: dict[int, tuple[int, int]] = {}
    for idx in sharding.addressable_devices_indices_map((num_seeds, batch_size)).values():
        seeds, batch = idx
        for s in range(*seeds.indices(num_seeds)):
            lo, hi, _ = batch.indices(batch_size)
            a, b = rows.get(s, (lo, hi))
            rows[s] = (min(a, lo), max(b, hi))
    return rows


class PeerFailedError(RuntimeError):
    """Another process of the run died or failed, so this one cannot go on."""


@contextlib.contextmanager
def peer_errors_explained():
    """Turn a failed cross-process collective into :class:`PeerFailedError` saying why.

    With one process it changes nothing. After the error the process still waits up to
    ``timeout_s`` at exit for JAX's shutdown barrier, which then fails (the dead peer's
    heartbeats stopped) and aborts the process with a non-zero status.
    """
    try:
        yield
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        raise PeerFailedError(
            f"process {jax.process_index()} of {jax.process_count()}: a collective with the "
            "other processes failed, most likely because one of them died or failed (see "
            "its log). Restart every process with the same --workdir to resume from the "
            f"last checkpoint. Cause: {str(e).splitlines()[0]}") from e
