"""The benchmark's problems: exact Gaussian-mixture oracles, and a trained run's model."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from .. import analytic

__all__ = ["PROBLEMS", "Problem", "checkpoint_problem", "problem"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    - `name`: its short name (the `problem` column); `label`: a longer description.
    - `denoiser`: `denoiser(x, sigma) -> E[x_0 | x]` (exact for a mixture).
    - `shape`: one sample's shape; `dtype`: the solves' dtype (float64 for exact problems, so
      that errors are truncation error, not rounding).
    - `num_samples`: samples per solve.
    - `mixture`: the `GaussianMixture` when the problem is exact (true samples and
      log-densities), else `None` (then the distribution reference is a tight solve).
    """

    name: str
    label: str
    denoiser: Callable
    shape: tuple[int, ...]
    dtype: Any
    num_samples: int
    mixture: Any = None

    @property
    def dim(self) -> int:
        size = 1
        for s in self.shape:
            size *= int(s)
        return size


def _mixture(name, label, make, num_samples):
    gm = make()
    return Problem(
        name=name,
        label=label,
        denoiser=gm.denoiser,
        shape=(int(gm.means.shape[-1]),),
        dtype=jnp.float64,
        num_samples=num_samples,
        mixture=gm,
    )


def _f64(make):
    return lambda: make(dtype=jnp.float64)


#: name -> (label, mixture factory (float64), default number of samples)
PROBLEMS: dict[str, tuple[str, Callable, int]] = {
    "ring": ("ring (2-D, 8 comp.)", _f64(analytic.ring), 1024),
    "grid": ("grid (2-D, 25 comp.)", _f64(analytic.grid), 1024),
    "mixture16": (
        "random mixture (16-D, 12 comp.)",
        lambda: analytic.random_mixture(dim=16, num_components=12, seed=0, dtype=jnp.float64),
        512,
    ),
    "mixture64": (
        "random mixture (64-D, 16 comp.)",
        lambda: analytic.random_mixture(dim=64, num_components=16, seed=1, dtype=jnp.float64),
        512,
    ),
    "ill_conditioned": (
        "ill-conditioned mixture (16-D, condition 1e3)",
        lambda: analytic.ill_conditioned(dim=16, condition=1e3, seed=0, dtype=jnp.float64),
        512,
    ),
}


def problem(name: str, *, num_samples: int | None = None) -> Problem:
    """The exact problem called `name` (one of `PROBLEMS`). Call inside
    `jax.enable_x64(True)`: its mixture is float64."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; expected one of: {', '.join(PROBLEMS)}")
    label, make, default = PROBLEMS[name]
    n = default if num_samples is None else int(num_samples)
    if n < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples!r}")
    return _mixture(name, label, make, n)


def checkpoint_problem(ckpt_dir: str | os.PathLike, *, num_samples: int = 256) -> Problem:
    """The trained model of a `jaxdiff train` run (EMA weights of its last checkpoint), as a
    float32 problem without an exact oracle: references are tight solves of the same model.

    Raises `jaxdiff.train.CheckpointError` when the run cannot be loaded.
    """
    from ..train import build_network, load_model, sampling_denoiser

    network, config = load_model(ckpt_dir, lambda c: build_network(c["network"]))
    return Problem(
        name="checkpoint",
        label=f"trained model ({os.fspath(ckpt_dir)})",
        denoiser=sampling_denoiser(network, config),
        shape=tuple(int(s) for s in config["shape"]),
        dtype=jnp.float32,
        num_samples=int(num_samples),
        mixture=None,
    )
