r"""CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance for
Diffusion Models")."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_model
from ._interval import check_interval, check_like, check_scale, within


class CFGPlusPlus(eqx.Module):
    r"""Classifier-free guidance that renoises with the unconditional prediction (CFG++).

    CFG++ writes DDIM's step as the guided clean estimate plus the *unconditional* noise,

    $$x_{i+1} = \hat D_\lambda + \sigma_{i+1}\,\frac{x_i - D_u(x_i)}{\sigma_i}, \qquad
    \hat D_\lambda = D_u + \lambda\,(D_c - D_u),$$

    with $\lambda \in [0, 1]$ (the paper's range; CFG's $w \approx 1 + 12.5 \lambda$ for
    Stable Diffusion). Plain CFG renoises with the guided noise $(x_i - \hat D_w)/\sigma_i$,
    which leaves the data manifold at large `w`. In sigma-space the step is the sampler's
    own step from the moved state $\hat x_i = x_i + \lambda\,(D_c - D_u)$, whose clean
    estimate is $\hat D_\lambda$ and whose noise $(\hat x_i - \hat D_\lambda)/\sigma_i$ is
    the unconditional one.

    That is how it runs in `jaxdiff.sample`, for every sampler whose step first evaluates
    the denoiser at its starting point (all but EDM's stochastic sampler, Euler or Heun with
    `s_churn > 0`, and the predictor-corrector sampler `PC`, which refuse it): the sampler
    core calls `step_start(x, sigma)` in place of that first evaluation and continues from
    `x_hat` (the contract is in
    `jaxdiff.sample`). For Euler, DDIM and Euler ancestral (the paper's samplers) this is
    CFG++ exactly; multistep samplers keep $\hat D_\lambda$ in their history, and the later
    stages of multi-stage samplers see the guided denoiser $\hat D_\lambda$ at their points.
    Called directly, `cfg(x, sigma)` is $\hat D_\lambda$, so in other code (the generic
    diffrax path, likelihoods) it is classifier-free guidance with weight $\lambda$.

    NFE: 2 network evaluations per call (1 outside the interval, where it is $D_c$ and the
    state is not moved). `scale` and `interval` are pytree leaves.
    """

    denoiser: Any
    uncond_denoiser: Any
    scale: jax.Array
    interval: tuple[jax.Array, jax.Array] | None

    def _both(self, x, sigma):
        d_c = self.denoiser(x, sigma)
        d_u = self.uncond_denoiser(x, sigma)
        check_like("uncond_denoiser", d_u, d_c, "denoiser")
        return d_c, d_u

    def step_start(self, x, sigma):
        """`(x_hat, D_lambda)`: the state a sampler's step continues from, and its clean
        estimate (see the class docstring)."""
        sigma = jnp.asarray(sigma)

        def guided():
            d_c, d_u = self._both(x, sigma)
            shift = self.scale.astype(d_c.dtype) * (d_c - d_u)
            return x + shift, d_u + shift

        return within(self.interval, sigma, guided, lambda: (x, self.denoiser(x, sigma)))

    def __call__(self, x, sigma):
        sigma = jnp.asarray(sigma)

        def guided():
            d_c, d_u = self._both(x, sigma)
            return d_u + self.scale.astype(d_c.dtype) * (d_c - d_u)

        return within(self.interval, sigma, guided, lambda: self.denoiser(x, sigma))


def cfg_pp(denoiser, uncond_denoiser, scale, *, interval=None) -> CFGPlusPlus:
    r"""CFG++ (Chung et al. 2024): classifier-free guidance whose steps renoise with the
    unconditional noise prediction, $x_{i+1} = \hat D_\lambda + \sigma_{i+1}\,(x_i -
    D_u)/\sigma_i$ on DDIM/Euler (see `CFGPlusPlus`).

    **Arguments:**

    - `denoiser`: the conditional denoiser `D_c(x, sigma)` (or a `(fn, params)` pair).
    - `uncond_denoiser`: the unconditional one, with output shaped like `denoiser`'s.
    - `scale`: $\lambda$, the paper's guidance scale, in `[0, 1]` in its experiments (`0`: the
      unconditional model; larger values are allowed).
    - `interval`: `None` or `(lo, hi)`: guide only where `lo <= sigma <= hi` (elsewhere the
      conditional model, unmoved).

    **Returns:** a denoiser (`CFGPlusPlus`) with the `step_start` hook that
    `jaxdiff.sample`'s samplers use. NFE: 2 per call (1 outside the interval).
    """
    return CFGPlusPlus(
        check_model("denoiser", denoiser, "denoiser(x, sigma)"),
        check_model("uncond_denoiser", uncond_denoiser, "uncond_denoiser(x, sigma)"),
        check_scale(scale),
        check_interval(interval),
    )
