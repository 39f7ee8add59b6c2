"""Analytic-DPM's sampler: DDPM/DDIM steps with the analytic optimal reverse variance."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ._base import AbstractSampler


def optimal_variance_step(ab_t, ab_s, gamma, eta, half_range=None):
    r"""`(lambda^2, sigma*^2)` of the reverse step `t -> s` of a VP chain, in `x_n` units
    (Bao et al. 2022, Theorem 1 and its clipping, Theorem 2):
    `lambda^2 = eta^2 beta_{t|s} bb_s / bb_t`,
    `sigma*^2 = lambda^2 + (sqrt(bb_t / alpha_{t|s}) - sqrt(bb_s - lambda^2))^2 (1 - Gamma_t)`,
    clipped below at `lambda^2` and, with `half_range = (b - a) / 2`, above at
    `lambda^2 + kappa^2 half_range^2` with
    `kappa = sqrt(ab_s) - sqrt(bb_s - lambda^2) sqrt(ab_t / bb_t)`.
    """
    bb_t, bb_s = 1 - ab_t, 1 - ab_s
    alpha = ab_t / ab_s
    lam2 = eta**2 * (1 - alpha) * bb_s / bb_t
    rest = jnp.sqrt(jnp.maximum(bb_s - lam2, 0.0))
    var = lam2 + (jnp.sqrt(bb_t / alpha) - rest) ** 2 * jnp.maximum(1 - gamma, 0.0)
    if half_range is not None:
        kappa = jnp.sqrt(ab_s) - rest * jnp.sqrt(ab_t / bb_t)
        var = jnp.minimum(var, lam2 + kappa**2 * half_range**2)
    return lam2, var


class AnalyticDPM(AbstractSampler):
    r"""Analytic-DPM (Bao, Li, Zhu & Zhang 2022, "Analytic-DPM: an Analytic Estimate of the
    Optimal Reverse Variance in Diffusion Probabilistic Models"): the DDPM (`eta = 1`,
    Analytic-DDPM) or DDIM (`eta = 0`, Analytic-DDIM) mean with the analytic optimal reverse
    variance, written in sigma-space for a variance-preserving model
    ($\bar\alpha = 1/(1+\sigma^2)$, $y = x_t/\sqrt{\bar\alpha}$).

    A step from $\sigma$ to $\sigma'$ with $\hat x_0 = D(y;\sigma)$,
    $\hat\varepsilon = (y - \hat x_0)/\sigma$ is
    $y' = \hat x_0 + \sqrt{\bar\beta' - \lambda^2}/\sqrt{\bar\alpha'}\,\hat\varepsilon
    + (\sigma^*/\sqrt{\bar\alpha'})\,z$ with $\lambda^2 = \eta^2\tilde\beta$ and
    $\sigma^{*2}$ from `optimal_variance_step` (clipped to the data range when `data_range`
    is given). The last step (to sigma = 0) returns $\hat x_0$.

    `gammas[i]` is $\Gamma = \mathbb E\lVert\hat\varepsilon\rVert^2/d$ at `sigmas[i]` (shape
    `(num_steps,)`, aligned with the grid without its final 0; see
    `jaxdiff.analytic_dpm.estimate_gamma`); it is an array field, so new values do not
    recompile. Order 1 (weak); 1 denoiser evaluation per step.

    Not in `SAMPLERS` (nor `by_name`): it cannot be built without its `gammas`. Also
    `jaxdiff.analytic_dpm.AnalyticDPM`, with the rest of Analytic-DPM.

    From a grid that starts at `sigma = inf` (pure noise) `jaxdiff.sample` takes the
    deterministic first step `x_1 = D(x, inf) + sigma_1 x` (the limit of its step without
    the fresh noise; equal in distribution given the exact denoiser, whose `D(x, inf)` is
    the data mean), then runs it from `sigma_1`.
    """

    gammas: jax.Array = eqx.field(converter=jnp.asarray)
    eta: float = 1.0
    data_range: tuple[float, float] | None = None

    stochastic: ClassVar[bool] = True

    def __check_init__(self):
        if isinstance(self.eta, int | float) and not self.eta >= 0:
            raise ValueError(f"eta must be >= 0, got {self.eta!r}")
        if jnp.ndim(self.gammas) != 1:
            raise ValueError(f"gammas must be 1-D, got shape {jnp.shape(self.gammas)}")
        if self.data_range is not None:
            a, b = self.data_range
            if not float(a) < float(b):
                raise ValueError(f"data_range must be (a, b) with a < b, got {self.data_range!r}")

    def nfe(self, num_steps: int) -> int:
        return num_steps

    def init(self, x, sigmas):
        if self.gammas.shape[0] != sigmas.shape[0] - 1:
            raise ValueError(
                f"gammas must have one entry per step ({sigmas.shape[0] - 1}), "
                f"got shape {self.gammas.shape}"
            )
        return None

    def step(self, denoise, x, carry, i, sigmas, key, *, final):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if final:
            return denoised, carry, denoised
        ab_t, ab_s = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
        half = None if self.data_range is None else (self.data_range[1] - self.data_range[0]) / 2
        gamma = self.gammas[i].astype(x.dtype)
        lam2, var = optimal_variance_step(ab_t, ab_s, gamma, self.eta, half)
        eps_hat = (x - denoised) / sigma
        mean = denoised + jnp.sqrt(jnp.maximum((1 - ab_s - lam2) / ab_s, 0.0)) * eps_hat
        noise = jnp.sqrt(var / ab_s) * jr.normal(key, x.shape, x.dtype)
        return mean + noise, carry, denoised
