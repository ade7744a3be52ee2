"""Ctrl-C during training: finish the current step, save a checkpoint, stop with one line.

A training loop installs the handler, polls it between steps, and restores it::

    stop = interrupt.install()
    try:
        while ...:
            if stop.requested:
                interrupt.checkpoint_and_stop(ckpt, step, state, config)
            ...
    finally:
        stop.uninstall()

The first SIGINT only sets ``requested``: the step in flight completes (its state is
consistent with its step count, which it would not be if the interrupt landed between
a donated step and the assignment of its result). :func:`checkpoint_and_stop` then
saves the state at the current step when the newest checkpoint is older, and raises
:class:`Interrupted` (a KeyboardInterrupt) whose message says where it is; the
experiments' entry points print that line and exit with code 130. A second Ctrl-C
raises KeyboardInterrupt at once. Outside the main thread (where Python delivers no
signals) ``install`` does nothing.
"""

from __future__ import annotations

import signal
import threading

from absl import logging


class Interrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C after saving (the message says at which step and where)."""


class _Stop:
    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt("interrupted twice: stopped without saving")
        self.requested = True
        logging.warning("Ctrl-C: saving a checkpoint after the current step, then stopping "
                        "(press Ctrl-C again to stop at once)")

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def install() -> _Stop:
    """Route SIGINT to a flag (module docstring); returns the object to poll and uninstall."""
    stop = _Stop()
    if threading.current_thread() is threading.main_thread():
        stop._previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, stop._handler)
    return stop


def checkpoint_and_stop(ckpt, step: int, state, config) -> None:
    """Save ``state`` at ``step`` unless the newest checkpoint is that step, then raise
    :class:`Interrupted`."""
    latest = ckpt.latest_step()
    if step > 0 and (latest is None or latest < step):
        ckpt.save(step, state, config)
        ckpt.wait()
        what = f"saved a checkpoint at step {step} in {ckpt.directory}"
    elif latest is None:
        what = "no step was trained, nothing saved"
    else:
        what = f"the checkpoint at step {latest} in {ckpt.directory} is current"
    raise Interrupted(f"interrupted (Ctrl-C) at step {step}: {what}; run the same command "
                      "again to resume")
