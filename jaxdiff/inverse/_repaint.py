r"""RePaint: masked inpainting with resampling."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._checks import check_count
from ._operators import Mask


def schedule(num_steps: int, jump_length: int, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """RePaint's path over the levels `0 .. num_steps - 1` of a grid (level `i` is
    `sigmas[i]`), as the down-steps taken inside the scan: `(starts, froms)`, where down-step
    `k` goes from level `starts[k]` to `starts[k] + 1` after a jump up from level `froms[k]`
    (equal to `starts[k]` when there is no jump). Every `jump_length` levels, the last
    `jump_length` steps are taken again `repeats - 1` more times, each time from the state
    noised back up (Lugmayr et al. 2022, Sec. 4.2, "jump length" and "resampling"). The last
    step, to `sigma = 0`, follows once, without jumps."""
    starts, froms = [], []
    redone = {}
    level, current = 0, 0
    while level < num_steps - 1:
        starts.append(level)
        froms.append(current)
        level += 1
        current = level
        if (
            repeats > 1
            and level % jump_length == 0
            and level < num_steps - 1
            and redone.get(level, 0) < repeats - 1
        ):
            redone[level] = redone.get(level, 0) + 1
            level -= jump_length
    return np.asarray(starts, np.int32), np.asarray(froms, np.int32)


class RePaint(eqx.Module):
    r"""RePaint: Lugmayr, Danelljan, Romero, Yu, Timofte & Van Gool 2022, "RePaint:
    Inpainting using Denoising Diffusion Probabilistic Models" (CVPR).

    For a `Mask` observation: every step of the sampler (by default `EulerAncestral()`,
    DDPM's ancestral step in sigma-space, as in the paper) is followed by replacing the
    observed pixels with the observation noised to the step's level,
    `y + sqrt(sigma_next^2 - noise_std^2) eps` (the paper's `y + sigma eps` for a noise-free
    `y`; a noisy `y` is already noised by `noise_std`, so only the rest is added, and below
    that level it is used as it is). The observed pixels of the output are `y`.
    Resampling: every `jump_length` levels, the state is noised back up `jump_length` levels
    (`x + sqrt(sigma_up^2 - sigma^2) eps`, the forward process) and those steps are taken
    again, `repeats` times in all, so that the unknown pixels harmonize with the known ones.
    Biased: the replacement is not a posterior sample of the unknown pixels given the known.

    **Options:** `jump_length` (default 5) and `repeats` (default 2; 1: no resampling).
    `solver` must be a sampler without a carry between steps (Euler, DDIM, EulerAncestral,
    Heun, DPM2 ..., not a multistep one: jumps would break its history).

    NFE: the sampler's per step, for `len(schedule(n, jump_length, repeats)[0]) + 1` steps:
    about `repeats` times the grid's `n` for a single-evaluation sampler (`nfe(n)`).
    """

    jump_length: int = eqx.field(default=5, static=True)
    repeats: int = eqx.field(default=2, static=True)

    def __check_init__(self):
        check_count("jump_length", self.jump_length)
        check_count("repeats", self.repeats)

    def num_steps(self, n: int) -> int:
        """Sampler steps taken on a grid of `n` steps (`n + 1` sigmas)."""
        return len(schedule(n, self.jump_length, self.repeats)[0]) + 1

    def check(self, observation, x, solver) -> None:
        if not isinstance(observation.operator, Mask):
            raise ValueError(
                "method 'repaint' needs an observation with a Mask operator, got "
                f"{type(observation.operator).__name__}"
            )
        carry = jax.eval_shape(
            solver.init, jax.ShapeDtypeStruct(x.shape, x.dtype), jnp.zeros(3, x.dtype)
        )
        if carry is not None:
            raise ValueError(
                f"method 'repaint' needs a sampler without a carry between steps (its jumps "
                f"break a history), got {type(solver).__name__}"
            )

    def run(self, denoiser, observation, x, sigmas, solver, key):
        def denoise(x_, sigma):
            return denoiser(x_, sigma.astype(x_.dtype))

        n = sigmas.shape[0] - 1
        mask = observation.operator.mask.astype(x.dtype)
        y = observation.y.astype(x.dtype)
        noise_var = observation.noise_std.astype(x.dtype) ** 2

        def replace(x_, sigma, k):
            std = jnp.sqrt(jnp.maximum(sigma**2 - noise_var, 0.0))
            known = y + std * jr.normal(k, x_.shape, x_.dtype)
            return mask * known + (1 - mask) * x_

        def body(x_, move):
            index, start, source = move
            k_jump, k_step, k_known = jr.split(jr.fold_in(key, index), 3)
            up = jnp.sqrt(jnp.maximum(sigmas[start] ** 2 - sigmas[source] ** 2, 0.0))
            x_ = x_ + up * jr.normal(k_jump, x_.shape, x_.dtype)
            x_next, _, _ = solver.step(denoise, x_, None, start, sigmas, k_step, final=False)
            return replace(x_next, sigmas[start + 1], k_known), None

        starts, froms = schedule(n, self.jump_length, self.repeats)
        if len(starts):
            moves = (jnp.arange(len(starts)), jnp.asarray(starts), jnp.asarray(froms))
            x, _ = jax.lax.scan(body, x, moves)
        k_last = jr.fold_in(key, len(starts))
        x, _, _ = solver.step(denoise, x, None, n - 1, sigmas, k_last, final=True)
        return mask * y + (1 - mask) * x
