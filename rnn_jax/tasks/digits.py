"""Sequential digits: scikit-learn's bundled 8x8 handwritten digits read as a sequence.

A real-data stand-in for pixel-by-pixel MNIST (Le, Jaitly & Hinton 2015, arXiv
1504.00941) that needs no download: ``sklearn.datasets.load_digits`` ships the 1797
8x8 images of the UCI optical digits set (Alpaydin & Kaynak 1995) inside the package.
scikit-learn is imported only when a digits task is built.

Batches (``output_mode="last"``)::

    inputs  [B, 64, 1] ("pixel") or [B, 8, 8] ("row") float32 in [0, 1]
    targets [B, 10] float32 one-hot digit
    lengths [B] int32

Outputs scored by ``loss``/``metrics`` are logits ``[B, 10]``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax.layers import softmax_xent
from rnn_jax.tasks._common import check_outputs, check_size, randint
from rnn_jax.tasks.base import Task

NUM_CLASSES = 10
SPLIT_SEED = 0
TEST_FRACTION_DENOMINATOR = 5  # one image in five is held out
_SHAPES = {"pixel": (64, 1), "row": (8, 8)}


@functools.lru_cache(maxsize=None)
def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, 64] float32 in [0, 1], labels [N] int32)`` of a fixed split.

    The split is a permutation of all 1797 images by ``np.random.default_rng(0)``:
    the first ``1797 // 5 = 359`` are "test", the remaining 1438 "train". Pixel
    intensities (0..16 in the data set) are divided by 16.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("the digits tasks need scikit-learn (pip install scikit-learn)") from err
    data = load_digits()
    images = np.asarray(data.data, np.float32) / 16.0
    labels = np.asarray(data.target, np.int32)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = len(labels) // TEST_FRACTION_DENOMINATOR
    idx = order[:n_test] if split == "test" else order[n_test:]
    images, labels = images[idx], labels[idx]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _as_batch(images, labels, mode):
    steps, features = _SHAPES[mode]
    n = images.shape[0]
    return {"inputs": images.reshape(n, steps, features),
            "targets": jax.nn.one_hot(labels, NUM_CLASSES),
            "lengths": jnp.full((n,), steps, jnp.int32)}


def held_out_batch(mode: str = "pixel") -> dict:
    """The whole test split as one batch, in a fixed order (for final evaluation)."""
    if mode not in _SHAPES:
        raise ValueError(f"mode must be one of {sorted(_SHAPES)}, got {mode!r}")
    images, labels = load_split("test")
    return _as_batch(jnp.asarray(images), jnp.asarray(labels), mode)


def sequential_digits(mode: str = "pixel", *, split: str = "train",
                      success_accuracy: float = 0.9) -> Task:
    """8x8 digits read one pixel per step (``mode="pixel"``, T=64, 1 feature, rows
    top to bottom, each row left to right) or one row per step (``mode="row"``, T=8,
    8 features).

    ``split="train"`` (default): ``sample`` draws training images uniformly with
    replacement. ``split="test"``: ``sample`` returns distinct test images in a random
    order (``batch_size`` at most the 359 test images; with ``batch_size=eval_size``
    it is the whole test split). The split is fixed (see :func:`load_split`).
    ``seq_len`` must be 64 ("pixel") or 8 ("row"); it is not a free variable here.

    Softmax over 10 logits, cross-entropy loss; the task metric is accuracy. There is
    no paper criterion for this data set: success is test accuracy at least
    ``success_accuracy`` (0.9, our choice), to be measured with ``split="test"`` and
    ``eval_size`` (359) images. ``baseline(T) = log 10`` is the loss of the uniform
    predictor (chance accuracy 10%).
    """
    if mode not in _SHAPES:
        raise ValueError(f"mode must be one of {sorted(_SHAPES)}, got {mode!r}")
    if not 0 < success_accuracy <= 1:
        raise ValueError(f"success_accuracy must be in (0, 1], got {success_accuracy}")
    images_np, labels_np = load_split(split)
    n_images = images_np.shape[0]
    eval_size = load_split("test")[1].shape[0]
    steps, features = _SHAPES[mode]
    name = f"digits_{mode}"

    def sample(key, batch_size, seq_len):
        batch_size = check_size("batch_size", batch_size)
        seq_len = check_size("seq_len", seq_len)
        if seq_len != steps:
            raise ValueError(f"seq_len must be {steps} for mode={mode!r}, got {seq_len}")
        if split == "test":
            if batch_size > n_images:
                raise ValueError(f"batch_size must be <= {n_images} (the test split) for "
                                 f"split='test', got {batch_size}")
            idx = jax.random.permutation(key, n_images)[:batch_size]
        else:
            idx = randint(key, (batch_size,), 0, n_images)
        # The arrays become constants of the traced program (about 0.4 MB).
        images = jnp.asarray(images_np)[idx]
        labels = jnp.asarray(labels_np)[idx]
        return _as_batch(images, labels, mode)

    def loss(outputs, batch):
        check_outputs(outputs, batch["targets"].shape, name)
        return jnp.mean(softmax_xent(outputs, jnp.argmax(batch["targets"], axis=-1)))

    def metrics(outputs, batch):
        labels = jnp.argmax(batch["targets"], axis=-1)
        return {"cross_entropy": loss(outputs, batch),
                "accuracy": jnp.mean(jnp.argmax(outputs, axis=-1) == labels)}

    return Task(name, features, NUM_CLASSES, "last", sample, loss, metrics, "accuracy", True,
                success=lambda m: m["accuracy"] >= success_accuracy, eval_size=eval_size,
                baseline=lambda seq_len: float(np.log(NUM_CLASSES)))


def pixel(**kwargs) -> Task:
    """:func:`sequential_digits` with ``mode="pixel"`` (64 steps of 1 pixel)."""
    return sequential_digits("pixel", **kwargs)


def row(**kwargs) -> Task:
    """:func:`sequential_digits` with ``mode="row"`` (8 steps of 8 pixels)."""
    return sequential_digits("row", **kwargs)
