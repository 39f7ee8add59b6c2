"""The bridge-solver interface: a small immutable object with `init`/`step`, run by one scan."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax

from ._process import AbstractBridge


class AbstractBridgeSolver(eqx.Module):
    """A fixed-grid sampler of a diffusion bridge, run by `jaxdiff.bridges.sample` over a
    decreasing time grid `ts` (`ts[0] < T`, last entry 0): `init` once, then `step` for every
    interval `[ts[i], ts[i+1]]`, steps `0 .. n-2` inside one `lax.scan` and the last (to t = 0)
    after it with `final=True`.

    A concrete solver implements:

    - `nfe(steps)`: denoiser evaluations of a run over `steps` intervals;
    - `stochastic`: whether a run draws noise (then `sample` requires a `key`);
    - `init(denoise, x_T, ts, bridge, key) -> (x, carry)`: the state at `ts[0]` from the
      endpoint `x_T` at `T` (and the carry, `None` if stateless);
    - `step(denoise, x, carry, i, ts, x_T, bridge, key, *, final) -> (x_next, carry, denoised)`:
      one step from `ts[i]` to `ts[i + 1]`; `denoised` is the denoiser output at `(x, ts[i])`.

    `denoise(x, t)` is the user's bridge denoiser with `x_T` bound. Options are static fields.
    """

    @property
    @abc.abstractmethod
    def stochastic(self) -> bool:
        """Whether a run draws random numbers (then `sample` requires `key`)."""

    @abc.abstractmethod
    def nfe(self, steps: int) -> int:
        """Denoiser evaluations of a run over `steps` intervals (a grid of `steps + 1` times)."""

    @abc.abstractmethod
    def init(
        self, denoise, x_T: jax.Array, ts: jax.Array, bridge: AbstractBridge, key
    ) -> tuple[jax.Array, Any]:
        """`(x at ts[0], carry)`."""

    @abc.abstractmethod
    def step(self, denoise, x, carry, i, ts, x_T, bridge: AbstractBridge, key, *, final: bool):
        """One step from `ts[i]` to `ts[i + 1]` (which is 0 when `final`)."""
