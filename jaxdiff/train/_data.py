"""Datasets that ship offline and a keyed, resumable batch loader.

2-D toys are generated in code (ring of Gaussians, swiss roll, two moons, checkerboard), the
real image dataset is scikit-learn's 8x8 digits (bundled with scikit-learn, no download), and
your own arrays come in as ``.npy`` files. Batches are a pure function of ``(key, step)``, so a
run resumed at any step sees exactly the data order of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_count, check_key

__all__ = [
    "DATASETS",
    "TOYS",
    "Dataset",
    "batch_at",
    "digits",
    "load_dataset",
    "load_npy",
    "split",
    "toy",
]

#: The 2-D toy datasets by name (`toy`, `load_dataset`).
TOYS = ("ring", "swissroll", "moons", "checkerboard")
#: Every dataset `load_dataset` knows by name (a `.npy` path is the other choice):
#: "digits-train" is the digits without the fixed held-out fifth (`digits_split`).
DATASETS = (*TOYS, "digits", "digits-train")
#: The held-out fraction of the digits, and the seed of the key that chooses it (fixed,
#: independent of any run's seed): `digits_split`.
DIGITS_HELD_OUT_FRACTION = 0.2
DIGITS_HELD_OUT_SEED = 0

# ring: 8 modes of std RING_STD on a circle whose radius makes each coordinate unit-variance
# (per-coordinate variance radius**2 / 2 + std**2 = 1): exactly `jd.analytic.ring(8, RING_RADIUS,
# RING_STD)`, so the toy's score is known in closed form at every noise level.
RING_STD = 0.1
RING_RADIUS = math.sqrt(2.0 * (1.0 - RING_STD**2))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset in memory: a pytree whose leaves are ``x``, ``labels`` and ``cond``.

    Attributes:
        x: the examples, float32, shape (N, D) for vectors or (N, H, W, C) for images.
        labels: int32 class labels, shape (N,), or None.
        name: the dataset's name (a toy's name, "digits", or the .npy path).
        kind: "vectors" or "images".
        cond: an optional conditioning array paired with ``x`` example by example, shape
            (N, ...): e.g. the other end ``x_T`` of a diffusion bridge (`pair_dataset`). None
            (the default) for unpaired data.
    """

    x: jax.Array
    labels: jax.Array | None
    name: str = dataclasses.field(metadata={"static": True})
    kind: Literal["vectors", "images"] = dataclasses.field(metadata={"static": True})
    cond: jax.Array | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def num_classes(self) -> int:
        """1 + the largest label, or 0 for an unlabelled dataset."""
        return 0 if self.labels is None else int(np.max(np.asarray(self.labels))) + 1


# ------------------------------------------------------------------------------------ toys


def _ring(key: jax.Array, n: int) -> jax.Array:
    from ..analytic import ring

    return ring(8, RING_RADIUS, RING_STD, dtype=jnp.float32).sample(key, n)


def _swissroll(key: jax.Array, n: int) -> jax.Array:
    k_t, k_noise = jax.random.split(key)
    t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(k_t, (n,)))
    x = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1)
    x = x + 0.5 * jax.random.normal(k_noise, (n, 2))
    # centre and scale measured on 10^6 samples: roughly zero mean and unit std per coordinate
    return (x - jnp.array([2.0, 0.2])) / jnp.array([6.64, 6.97])


def _moons(key: jax.Array, n: int) -> jax.Array:
    k_side, k_angle, k_noise = jax.random.split(key, 3)
    angle = jnp.pi * jax.random.uniform(k_angle, (n,))
    upper = jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    lower = jnp.stack([1.0 - jnp.cos(angle), 0.5 - jnp.sin(angle)], axis=-1)
    x = jnp.where(jax.random.bernoulli(k_side, 0.5, (n, 1)), upper, lower)
    x = x + 0.05 * jax.random.normal(k_noise, (n, 2))
    return (x - jnp.array([0.5, 0.25])) / jnp.array([0.87, 0.50])


def _checkerboard(key: jax.Array, n: int) -> jax.Array:
    # FFJORD's checkerboard: 8 filled squares of a 4x4 board on [-4, 4]^2; each coordinate is
    # uniform on [-4, 4], std 4 / sqrt(3)
    k1, k2, k3 = jax.random.split(key, 3)
    x1 = 4.0 * jax.random.uniform(k1, (n,)) - 2.0
    x2 = jax.random.uniform(k2, (n,)) - 2.0 * jax.random.bernoulli(k3, 0.5, (n,))
    x2 = x2 + jnp.floor(x1) % 2
    return 2.0 * jnp.stack([x1, x2], axis=-1) / (4.0 / math.sqrt(3.0))


_TOY_FNS = {"ring": _ring, "swissroll": _swissroll, "moons": _moons, "checkerboard": _checkerboard}


def toy(name: str, n: int, key: jax.Array) -> jax.Array:
    """Samples of a 2-D toy distribution, each coordinate roughly zero-mean with unit std.

    Arguments:
        name: "ring" (8 Gaussians on a circle, exactly
            ``jd.analytic.ring(8, RING_RADIUS, RING_STD)``), "swissroll", "moons" or
            "checkerboard".
        n: number of samples.
        key: a `jax.random` key.

    Returns:
        float32 samples, shape (n, 2).
    """
    if name not in _TOY_FNS:
        raise ValueError(f"unknown toy {name!r}; expected one of {', '.join(TOYS)}")
    n = check_count("n", n)
    check_key(key)
    return _toy(name, n, key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _toy(name: str, n: int, key: jax.Array) -> jax.Array:
    return _TOY_FNS[name](key, n).astype(jnp.float32)


# ---------------------------------------------------------------------------- real data


def digits() -> tuple[jax.Array, jax.Array]:
    """scikit-learn's 8x8 handwritten digits (UCI; bundled with scikit-learn, no download).

    Returns:
        ``(images, labels)``: images float32 of shape (1797, 8, 8, 1), rescaled from the 0..16
        grey levels to [-1, 1]; labels int32 in 0..9, shape (1797,).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, np.float32)[..., None] / 8.0 - 1.0
    return jnp.asarray(images), jnp.asarray(bunch.target, jnp.int32)


def load_npy(path: str | os.PathLike) -> jax.Array:
    """Loads your own examples from a ``.npy`` file.

    Arguments:
        path: a ``.npy`` file holding finite real numbers of shape (N, D) (vectors),
            (N, H, W) (one-channel images; a channel axis is added) or (N, H, W, C) (images).

    Returns:
        The examples as float32, shape (N, D) or (N, H, W, C).

    Raises:
        ValueError: the file is missing or unreadable, or holds the wrong rank, dtype, no
            examples or non-finite values; the message names the path.
    """
    path = Path(path)
    expected = "expected (N, D) vectors, (N, H, W) or (N, H, W, C) images"
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r}: no such file") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"{str(path)!r} is not a readable .npy array ({err})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise ValueError(f"{str(path)!r} is not a .npy array; {expected}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{str(path)!r} holds dtype {array.dtype}; expected real numbers")
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim not in (2, 4):
        raise ValueError(f"{str(path)!r} has shape {array.shape}; {expected}")
    if array.shape[0] == 0 or 0 in array.shape:
        raise ValueError(f"{str(path)!r} has shape {array.shape}, which holds no data")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{str(path)!r} holds non-finite values (nan or inf)")
    return jnp.asarray(array)


def load_dataset(
    name_or_path: str | os.PathLike, *, key: jax.Array | None = None, n: int = 10_000
) -> Dataset:
    """A dataset by name, or your own ``.npy`` file.

    Arguments:
        name_or_path: a toy ("ring", "swissroll", "moons", "checkerboard"), "digits", or the
            path of a ``.npy`` file (see `load_npy`).
        key: the key that draws a toy's samples (one `jax.random` key, e.g.
            ``jax.random.key(seed)``; an int seed is a `TypeError`); defaults to
            ``jax.random.key(0)``. Unused for the digits and for files, but checked alike.
        n: the number of samples of a toy.

    Returns:
        A `Dataset`; only the digits carry labels.
    """
    if key is not None:
        check_key(key)
    name = os.fspath(name_or_path)
    if name in TOYS:
        key = jax.random.key(0) if key is None else key
        return Dataset(toy(name, n, key), None, name=name, kind="vectors")
    if name == "digits":
        images, labels = digits()
        return Dataset(images, labels, name="digits", kind="images")
    if name == "digits-train":
        return digits_split()[0]
    if name.endswith(".npy") or os.path.sep in name or Path(name).is_file():
        x = load_npy(name)
        return Dataset(x, None, name=name, kind="vectors" if x.ndim == 2 else "images")
    raise ValueError(
        f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}, or a path to a .npy file"
    )


def digits_split() -> tuple[Dataset, Dataset]:
    """The digits' fixed split: ``(train, held_out)``, 80% and 20% of scikit-learn's digits,
    chosen by ``jax.random.key(DIGITS_HELD_OUT_SEED)`` whatever a run's seed. A model trained
    on ``"digits-train"`` has never seen the held-out digits (which `jaxdiff restore` and the
    digits-restore bridge use); both parts are named ``"digits-train"``."""
    images, labels = digits()
    dataset = Dataset(images, labels, name="digits-train", kind="images")
    return split(dataset, DIGITS_HELD_OUT_FRACTION, jax.random.key(DIGITS_HELD_OUT_SEED))


def split(dataset: Dataset, fraction: float, key: jax.Array) -> tuple[Dataset, Dataset]:
    """Splits off a random held-out part, e.g. for measuring sample quality on unseen data.

    Arguments:
        dataset: the dataset to split.
        fraction: the held-out fraction, in (0, 1); at least one example lands on each side.
        key: a `jax.random` key choosing the held-out examples.

    Returns:
        ``(train, held_out)``, two datasets of the same name and kind.
    """
    check_key(key)
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1); got {fraction}")
    n = len(dataset)
    n_held = min(max(round(fraction * n), 1), n - 1)
    if n < 2:
        raise ValueError(f"cannot split a dataset of {n} example")
    perm = np.asarray(jax.jit(jax.random.permutation, static_argnums=1)(key, n))
    held, train = np.sort(perm[:n_held]), np.sort(perm[n_held:])
    x = np.asarray(dataset.x)
    labels = None if dataset.labels is None else np.asarray(dataset.labels)
    cond = None if dataset.cond is None else np.asarray(dataset.cond)

    def take(idx):
        part = None if labels is None else jnp.asarray(labels[idx])
        paired = None if cond is None else jnp.asarray(cond[idx])
        return Dataset(jnp.asarray(x[idx]), part, name=dataset.name, kind=dataset.kind, cond=paired)

    return take(train), take(held)


# ---------------------------------------------------------------------------------- loader


def batch_at(
    dataset: Dataset, step: jax.typing.ArrayLike, batch_size: int, key: jax.Array
) -> dict[str, jax.Array]:
    """The batch of a global training step: a pure function of ``(key, step)``.

    Example ``i`` of the stream (``i = step * batch_size + j``) belongs to epoch ``i // N`` and
    is example ``perm_e[i % N]``, with ``perm_e`` the permutation drawn from
    ``fold_in(key, e)``: every epoch visits each example once, and a run resumed at any step
    sees the same batches as an uninterrupted one. Jit-able (``step`` may be traced; it must
    keep ``step * batch_size`` below 2**31).

    Arguments:
        dataset: the examples (`Dataset`).
        step: the global step, counted from 0.
        batch_size: examples per batch, at most ``len(dataset)`` (static).
        key: the data-order key.

    Returns:
        ``{"x": (batch_size, ...)}`` plus ``"labels"`` when the dataset has labels and
        ``"cond"`` (the same examples' conditioning) when it has ``cond``.
    """
    n = dataset.x.shape[0]
    batch_size = check_count("batch_size", batch_size)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= the {n} examples of the dataset; got {batch_size}")
    i = jnp.asarray(step, jnp.int32) * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    epoch0 = i[0] // n  # a batch spans at most two epochs since batch_size <= n
    pos = i % n
    perm0 = jax.random.permutation(jax.random.fold_in(key, epoch0), n)
    perm1 = jax.random.permutation(jax.random.fold_in(key, epoch0 + 1), n)
    idx = jnp.where(i // n == epoch0, perm0[pos], perm1[pos])
    batch = {"x": jnp.take(dataset.x, idx, axis=0)}
    if dataset.labels is not None:
        batch["labels"] = jnp.take(dataset.labels, idx, axis=0)
    if dataset.cond is not None:
        batch["cond"] = jnp.take(dataset.cond, idx, axis=0)
    return batch
