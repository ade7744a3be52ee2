"""Where metrics go: ``metrics.jsonl``, TensorBoard event files, and a progress log line.

Every value handed to :meth:`MetricsLogger.write` has one entry per seed; a record
holds the mean over seeds under the metric's name and, when there is more than one
seed, ``<name>_std`` (population std) and ``<name>_seeds`` (the per-seed list).

TensorBoard events are written with tensorboardX, a maintained pure-Python writer
that needs neither TensorFlow nor PyTorch.
"""

from __future__ import annotations

import json
import logging as std_logging
import math
import os
import time
from typing import Mapping

import numpy as np
from absl import logging


def summarize(per_seed: Mapping[str, np.ndarray]) -> dict:
    """``{name: mean, name_std: std, name_seeds: [...]}`` from arrays of shape ``[num_seeds]``."""
    out = {}
    for name, values in per_seed.items():
        v = np.asarray(values, np.float64).reshape(-1)
        out[name] = float(np.mean(v))
        if v.size > 1:
            out[f"{name}_std"] = float(np.std(v))
            out[f"{name}_seeds"] = [float(x) for x in v]
    return out


def _truncate_jsonl(path: str, max_step: int) -> None:
    """Drop records past ``max_step``: a resumed run redoes those steps."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= max_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a kill
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)


class MetricsLogger:
    """Appends records to ``<workdir>/metrics.jsonl`` and TensorBoard events in ``workdir``.

    Args:
      workdir: run directory.
      start_step: the step training (re)starts from; records past it are removed.
    """

    def __init__(self, workdir: str, *, start_step: int = 0):
        self.path = os.path.join(workdir, "metrics.jsonl")
        _truncate_jsonl(self.path, start_step)
        self._file = open(self.path, "a")
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # pragma: no cover - declared dependency
            logging.warning("tensorboardX is not installed: no TensorBoard events are written")
            self._tb = None
        else:
            # Earlier event files may hold steps past start_step, which this run redoes:
            # TensorBoard drops events at steps >= purge_step written before this file
            # (a SessionLog.START marker), as the jsonl truncation above does.
            earlier = any(n.startswith("events.out.tfevents") for n in os.listdir(workdir))
            # The suffix keeps two runs started in the same second (the file name's time
            # resolution) from writing one file.
            self._tb = SummaryWriter(logdir=workdir,
                                     purge_step=start_step + 1 if earlier else None,
                                     filename_suffix=f".{os.getpid()}.{start_step}")

    def write(self, step: int, split: str, per_seed: Mapping[str, np.ndarray]) -> dict:
        """Log one record; returns it."""
        record = {"step": int(step), "split": split, **summarize(per_seed)}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in record.items():
                if name in ("step", "split") or isinstance(value, list):
                    continue
                self._tb.add_scalar(f"{split}/{name}", value, int(step))
            self._tb.flush()
        return record

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """A log line with step, steps/s, loss and ETA at most every ``every_s`` seconds.

    The rate counts steps since the first report, so compilation time does not make
    the ETA too pessimistic.
    """

    def __init__(self, start_step: int, total_steps: int, every_s: float):
        self.total = total_steps
        self.every_s = every_s
        self._t0 = None
        self._s0 = start_step
        self._last = -math.inf

    def update(self, step: int, loss: float, *, force: bool = False) -> str | None:
        now = time.perf_counter()
        if self._t0 is None:  # first chunk done: includes compilation, start the clock here
            self._t0, self._s0 = now, step
        if not force and now - self._last < self.every_s:
            return None
        self._last = now
        elapsed = now - self._t0
        rate = (step - self._s0) / elapsed if elapsed > 0 and step > self._s0 else float("nan")
        eta = (self.total - step) / rate if rate == rate and rate > 0 else float("nan")
        line = (f"step {step}/{self.total} ({100.0 * step / self.total:.0f}%) | "
                f"{rate:.1f} steps/s | loss {loss:.4g} | ETA {_duration(eta)}")
        logging.info(line)
        return line


def write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON through a temporary file, so a crash never leaves half a file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


class _DropOrbaxInfo(std_logging.Filter):
    """orbax logs every save and restore at INFO; keep its warnings, drop the chatter."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


class quiet_orbax:
    """Context manager that hides orbax's INFO lines from absl's log handler."""

    def __enter__(self):
        self._handler, self._filter = logging.get_absl_handler(), _DropOrbaxInfo()
        self._handler.addFilter(self._filter)
        return self

    def __exit__(self, *exc):
        self._handler.removeFilter(self._filter)
        return False
