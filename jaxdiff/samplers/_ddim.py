"""DDIM in sigma-space."""

from __future__ import annotations

import equinox as eqx
import jax.random as jr

from ._base import AbstractSampler, ancestral_step, to_d


class DDIM(AbstractSampler):
    r"""Denoising diffusion implicit models (Song, Meng & Ermon 2021, "Denoising Diffusion
    Implicit Models"), written in sigma-space. With $\bar\alpha = 1/(1+\sigma^2)$ and
    $y = x_t/\sqrt{\bar\alpha}$, the DDIM update

    $$x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,\hat x_0
      + \sqrt{1-\bar\alpha_{t-1}-\varsigma_t^2}\,\hat\varepsilon + \varsigma_t z,\qquad
      \varsigma_t = \eta\sqrt{\tfrac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}}
      \sqrt{1-\tfrac{\bar\alpha_t}{\bar\alpha_{t-1}}}$$

    is exactly an Euler step of the probability-flow ODE to $\sigma_{down}$ followed by noise
    of std $\sigma_{up} = \eta\,\sigma'\sqrt{\sigma^2-\sigma'^2}/\sigma$ (so `eta = 0` is
    Euler's method, and `eta = 1` is DDPM's ancestral sampler with the posterior variance).
    Works for every process through the sigma-space denoiser. Order 1; 1 denoiser evaluation
    per step. Stochastic when `eta > 0`.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the
    deterministic first step `x_1 = D(x, inf) + sigma_1 x` (the limit of its step without
    the fresh noise; equal in distribution given the exact denoiser, whose `D(x, inf)` is
    the data mean), then runs it from `sigma_1`.
    """

    # static: eta > 0 decides whether the sampler is stochastic (needs a key), a structural choice
    eta: float = eqx.field(default=0.0, static=True)

    def __check_init__(self):
        if isinstance(self.eta, int | float) and not self.eta >= 0:
            raise ValueError(f"eta must be >= 0, got {self.eta!r}")

    @property
    def stochastic(self) -> bool:
        return bool(self.eta > 0)

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final or not self.stochastic:
            return x + to_d(x, sigma, denoised) * (sigma_next - sigma), carry, denoised
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, self.eta)
        x = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        return x + sigma_up * jr.normal(key, x.shape, x.dtype), carry, denoised
