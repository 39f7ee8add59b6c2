"""The benchmark's problems: exact Gaussian-mixture oracles (on EDM's sigma-space
probability-flow ODE, or as the exact velocity of a flow path), and a trained run's model."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from .. import analytic
from ..parametrizations import from_velocity
from ..processes import RectifiedFlow, TrigFlow

__all__ = ["FLOWS", "PROBLEMS", "PROCESSES", "Problem", "checkpoint_problem", "problem"]

#: flow process name -> its class: the model is then the mixture's exact velocity on that path
FLOWS: dict[str, type] = {"rectified_flow": RectifiedFlow, "trig_flow": TrigFlow}
#: the processes a problem can be posed on: `"edm"` (sigma-space, from sigma = 80) or a flow
PROCESSES: tuple[str, ...] = ("edm", *FLOWS)


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
    - `flow`: `None` for EDM's sigma-space problem (noise `80 N(0, I)` at sigma = 80), or a
      flow process (`jaxdiff.RectifiedFlow`, `TrigFlow`): then `velocity(x_t, t)` is the
      model (the mixture's exact velocity on that path), `denoiser` is
      `jaxdiff.parametrizations.from_velocity(velocity, flow)`, the samplers' grids start at
      `sigma = inf` from unit-variance noise, and the reference is a tight adaptive solve of
      the flow ODE `dx/dt = v(x, t)` from t = 1 to t = 0.
    """

    name: str
    label: str
    denoiser: Callable
    shape: tuple[int, ...]
    dtype: Any
    num_samples: int
    mixture: Any = None
    flow: Any = None
    velocity: Callable | None = None

    @property
    def process(self) -> str:
        """The process's name: `"edm"` or a key of `FLOWS`."""
        if self.flow is None:
            return "edm"
        return next(k for k, cls in FLOWS.items() if type(self.flow) is cls)

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


def problem(name: str, *, num_samples: int | None = None, process: str = "edm") -> Problem:
    """The exact problem called `name` (one of `PROBLEMS`) on `process` (one of
    `PROCESSES`: `"edm"`, the sigma-space probability-flow ODE with the mixture's exact
    denoiser; `"rectified_flow"` or `"trig_flow"`, the flow ODE of that path with the
    mixture's exact velocity, turned into a denoiser by `from_velocity`; such a problem is
    named `"NAME/PROCESS"`). Call inside `jax.enable_x64(True)`: its mixture is float64."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; expected one of: {', '.join(PROBLEMS)}")
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; expected one of: {', '.join(PROCESSES)}")
    label, make, default = PROBLEMS[name]
    n = default if num_samples is None else int(num_samples)
    if n < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples!r}")
    prob = _mixture(name, label, make, n)
    if process == "edm":
        return prob
    flow = FLOWS[process]()
    velocity = prob.mixture.process_velocity(flow)
    return dataclasses.replace(
        prob,
        name=f"{name}/{process}",
        label=f"{label}, {process.replace('_', ' ')} (exact velocity)",
        denoiser=from_velocity(velocity, flow),
        flow=flow,
        velocity=velocity,
    )


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
