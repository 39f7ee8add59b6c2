"""Paired datasets for diffusion bridges: ``(x_0, x_T)`` pairs, ``x_0`` in ``Dataset.x`` and
``x_T`` in ``Dataset.cond``.

- 2-D pairings ``"A-to-B"`` for two different toys A, B (`TOYS`): the bridge carries a sample
  of B (its ``x_T``) to one of A (its ``x_0``; a bridge is sampled from ``x_T`` back to
  ``t = 0``). ``n`` samples of each toy are drawn from independent keys and paired by one of
  two couplings:

  * ``"angle"`` (default): a deterministic rank coupling; both clouds are sorted by their polar
    angle around the origin and the k-th of one is paired with the k-th of the other. The map
    is monotone in angle, so ``p(x_0 | x_T)`` is a narrow angular slice of A and the bridge
    learns a near-deterministic transport (DDBM's paired-image setting in miniature).
  * ``"independent"``: the k-th draws paired as they come, ``p(x_0 | x_T) = p(x_0)``; the
    bridge then has to ignore ``x_T`` and learns the plain transport from B to A.

- ``"digits-restore"``: ``x_0`` the clean 8x8 digits, ``x_T = degrade_digits(x_0, key)`` (a
  2x average-pool downsampling then nearest-neighbour upsampling, plus Gaussian noise of std
  0.1), the digit classes kept as labels for evaluation. A fixed 20% of the digits (chosen by
  ``jax.random.key(0)``, whatever the seed) is held out: ``part="train"`` / ``"test"`` /
  ``"all"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_count
from ._data import TOYS, Dataset, digits, digits_split, toy

__all__ = ["COUPLINGS", "PAIRINGS", "degrade_digits", "pair_dataset"]

#: The paired datasets: every ordered pair of two different toys, and the digits restoration.
PAIRINGS = (*(f"{a}-to-{b}" for a in TOYS for b in TOYS if a != b), "digits-restore")
#: How the 2-D pairings couple their two clouds (see the module docstring).
COUPLINGS = ("angle", "independent")

DEGRADE_FACTOR = 2
DEGRADE_NOISE = 0.1


def degrade_digits(
    images: jax.Array,
    key: jax.Array,
    *,
    factor: int = DEGRADE_FACTOR,
    noise: float = DEGRADE_NOISE,
) -> jax.Array:
    """The digits-restore degradation: blur by downsampling and noise, seeded by `key`.

    Each image is average-pooled over ``factor x factor`` blocks, upsampled back by repeating
    every pooled pixel (nearest neighbour), and Gaussian noise of standard deviation `noise` is
    added (images in [-1, 1]; nothing is clipped). Deterministic given `key`.

    Arguments:
        images: (N, H, W, C) images, H and W divisible by `factor`.
        key: a `jax.random` key for the noise.
        factor: the pooling factor (default 2: 8x8 -> 4x4 -> 8x8).
        noise: the noise standard deviation (default 0.1).

    Returns:
        The degraded images, float32, shaped like `images`.
    """
    images = jnp.asarray(images, jnp.float32)
    factor = check_count("factor", factor)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C), got {images.shape}")
    n, h, w, c = images.shape
    if h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not divisible by factor {factor}")
    if not float(noise) >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    pooled = images.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))
    blurred = jnp.repeat(jnp.repeat(pooled, factor, axis=1), factor, axis=2)
    return blurred + float(noise) * jax.random.normal(key, images.shape, jnp.float32)


def _angle_sorted(x: np.ndarray) -> np.ndarray:
    return x[np.argsort(np.arctan2(x[:, 1], x[:, 0]), kind="stable")]


def pair_dataset(
    name: str,
    *,
    key: jax.Array | None = None,
    n: int = 10_000,
    coupling: str = "angle",
    part: str = "all",
) -> Dataset:
    """A paired dataset for a diffusion bridge: ``x_0`` in ``.x``, ``x_T`` in ``.cond``.

    Arguments:
        name: ``"A-to-B"`` for two different toys (`PAIRINGS`; x_0 from A, x_T from B) or
            ``"digits-restore"``.
        key: draws the toys' samples, or the digits' degradation noise; defaults to
            ``jax.random.key(0)``. Use another key for held-out toy pairs.
        n: the number of 2-D pairs (unused for the digits).
        coupling: ``"angle"`` or ``"independent"``, for the 2-D pairings (see the module
            docstring; unused for the digits).
        part: for the digits, ``"train"`` (80%), ``"test"`` (the fixed held-out 20%) or
            ``"all"``; unused for the 2-D pairings.

    Returns:
        A `Dataset` named `name` with ``cond`` set; the digits keep their labels.
    """
    key = jax.random.key(0) if key is None else key
    if name == "digits-restore":
        if part not in ("all", "train", "test"):
            raise ValueError(f"part must be 'all', 'train' or 'test'; got {part!r}")
        if part == "all":
            images, labels = digits()
            dataset = Dataset(images, labels, name=name, kind="images")
        else:  # the fixed split of `jaxdiff.train.digits_split`
            dataset = digits_split()[0 if part == "train" else 1]
        cond = degrade_digits(dataset.x, key)
        return Dataset(dataset.x, dataset.labels, name=name, kind="images", cond=cond)
    source, sep, target = name.partition("-to-")
    if not sep or source not in TOYS or target not in TOYS or source == target:
        raise ValueError(f"unknown pairing {name!r}; expected one of {', '.join(PAIRINGS)}")
    if coupling not in COUPLINGS:
        raise ValueError(f"unknown coupling {coupling!r}; expected one of {', '.join(COUPLINGS)}")
    n = check_count("n", n)
    k0, kT = jax.random.split(key)
    x0 = np.asarray(toy(source, n, k0))
    xT = np.asarray(toy(target, n, kT))
    if coupling == "angle":
        x0, xT = _angle_sorted(x0), _angle_sorted(xT)
        # a random order of the pairs, so that an epoch's batches mix all angles
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 2), n))
        x0, xT = x0[perm], xT[perm]
    return Dataset(jnp.asarray(x0), None, name=name, kind="vectors", cond=jnp.asarray(xT))
