"""The gradient-estimation sampler: DDIM with the noise estimate extrapolated over two steps."""

from __future__ import annotations

import jax.numpy as jnp

from .._checks import check_positive
from ._base import AbstractSampler, to_d


class GradientEstimation(AbstractSampler):
    r"""The gradient-estimation sampler (Permenter & Yuan 2024, "Interpreting and Improving
    Diffusion Models from an Optimization Perspective", ICML 2024, Alg. 2; ComfyUI's
    `sample_gradient_estimation`).

    DDIM read as gradient descent on the distance to the data: the noise estimate
    $\epsilon_i = (x_i - D(x_i; \sigma_i))/\sigma_i$ (the PF-ODE slope $dx/d\sigma$) is the
    gradient, and the sampler replaces it by a combination with the previous step's,

    $$\bar\epsilon_i = \gamma\,\epsilon_i + (1 - \gamma)\,\epsilon_{i-1},\qquad
      x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)\,\bar\epsilon_i,$$

    where $\epsilon_{i-1}$ is the raw estimate at $(x_{i-1}, \sigma_{i-1})$ (not the previous
    $\bar\epsilon$). In denoiser form, with $\bar D_i = x_i - \sigma_i \bar\epsilon_i$, it is
    DDIM's step $x_{i+1} = \bar D_i + \tfrac{\sigma_{i+1}}{\sigma_i}(x_i - \bar D_i)$; note
    that $\bar D_i$ is *not* $\gamma D_i + (1-\gamma) D_{i-1}$, because $x$ moved between the
    two evaluations. The first step (no history) is plain DDIM; the last step, to sigma = 0,
    is `x -> D` (DDIM's, as in ComfyUI; the paper's Alg. 2 applies $\bar\epsilon$ there too).

    **Fields:** `gamma` (> 0, default 2, the paper's choice): `gamma = 1` is DDIM/Euler
    exactly; `gamma = 1 + (sigma_{i+1} - sigma_i) / (2 (sigma_i - sigma_{i-1}))` is the
    variable-step Adams–Bashforth 2 step, so `gamma = 1.5` is second order on grids whose
    step ratios tend to 1 (measured 1.98), and any other fixed `gamma` is first order. Order 1
    for the default (measured 0.9 to 1.0 on the PF-ODE of a 2-D mixture; the paper claims
    accuracy at 5 to 20 NFE, not order). Measured at NFE 10 and 20 on Karras grids from sigma
    80, 2-D mixtures: about half DDIM's error (0.093 vs 0.19 and 0.046 vs 0.084 RMS on the
    ring), as the paper reports for images. 1 denoiser evaluation per step (NFE = steps).

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the exact
    limit of its first step (DDIM's), `x_1 = D(x, inf) + sigma_1 x`, then runs it from
    `sigma_1` with a fresh history, so its second step is plain DDIM as well. (The literal
    limit of Alg. 2 would mix in $\epsilon$ at `inf`, which tends to the unit noise `x`, with
    weight `1 - gamma`: the core does not pass it on.)
    """

    gamma: float = 2.0

    def __check_init__(self):
        check_positive("gamma", self.gamma)

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def init(self, x, sigmas):
        del sigmas
        return jnp.zeros_like(x)  # the noise estimate (PF-ODE slope) at the previous step

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        del key
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:  # DDIM to sigma = 0: exactly x -> D
            return denoised, carry, denoised
        eps = to_d(x, sigma, denoised)
        w = jnp.where(i > 0, self.gamma - 1, 0).astype(x.dtype)  # 0: DDIM at the first step
        eps_bar = eps + w * (eps - carry)  # gamma eps_i + (1 - gamma) eps_{i-1}
        return x + (sigma_next - sigma) * eps_bar, eps, denoised
