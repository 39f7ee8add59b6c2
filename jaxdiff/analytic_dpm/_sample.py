"""Analytic-DDPM/DDIM sampling on a trajectory of a chain (`jaxdiff.sample` with the
`AnalyticDPM` sampler), and DDPM's variational bound with given reverse variances."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_choice, check_float_array, check_key, check_model
from .._deprecation import keyword_key
from ..discrete._chain import sigmas_from_alpha_bars
from ..samplers._analytic_dpm import AnalyticDPM
from ..samplers._core import sample
from ._variances import trajectory_alpha_bars


def sample_analytic(
    denoiser,
    x_T,
    alpha_bars,
    gammas,
    *,
    timesteps,
    key: jax.Array,
    kind: str = "ddpm",
    eta: float | None = None,
    data_range=None,
    return_trajectory: bool = False,
):
    r"""Analytic-DDPM (`kind="ddpm"`, $\lambda^2 = \tilde\beta$) or Analytic-DDIM
    (`kind="ddim"`, $\lambda = 0$; or any `eta`) sampling on a trajectory of the chain: one
    `jaxdiff.sample` call with the `AnalyticDPM` sampler on the sigma grid
    $[\sigma_{\tau_K}, \dots, \sigma_{\tau_1}, 0]$ (one `lax.scan`, 1 NFE per step; the last
    step returns $\hat x_0$).

    **Arguments:** `denoiser(x, sigma)`; `x_T` in `x_n` units at `timesteps[-1]` (e.g. standard
    normal noise); `alpha_bars` (shape `(N,)`); `gammas` at the trajectory's levels (shape
    `(K,)`, aligned with `timesteps`); `timesteps` increasing indices; `key`; `data_range`
    for clipping.

    **Returns:** samples in data units (`sigma = 0`), or `(samples, trajectory)` with the
    trajectory in sigma-space units (`x_n / sqrt(ab_n)`).
    """
    check_choice("kind", kind, ("ddpm", "ddim"))
    eta = (1.0 if kind == "ddpm" else 0.0) if eta is None else eta
    ab_t, _, _ = trajectory_alpha_bars(alpha_bars, timesteps)
    gammas = jnp.asarray(gammas)
    if gammas.shape != ab_t.shape:
        raise ValueError(
            f"gammas must have shape {ab_t.shape} (one per timestep), got {gammas.shape}"
        )
    x_T = check_float_array("x_T", x_T)
    sigmas = jnp.concatenate([sigmas_from_alpha_bars(ab_t)[::-1], jnp.zeros((1,), ab_t.dtype)])
    y = x_T / jnp.sqrt(ab_t[-1]).astype(x_T.dtype)
    solver = AnalyticDPM(gammas[::-1].astype(x_T.dtype), eta=eta, data_range=data_range)
    return sample(
        denoiser,
        y,
        sigmas.astype(x_T.dtype),
        solver=solver,
        key=key,
        return_trajectory=return_trajectory,
    )


# -- the bound --------------------------------------------------------------------------------


@keyword_key("nll_bound", 2)
def nll_bound(denoiser, x0, alpha_bars, *, key: jax.Array, timesteps, variances) -> jax.Array:
    r"""A one-sample Monte Carlo estimate, per data point, of DDPM's variational bound
    $-\mathrm{ELBO} \ge -\log p_\theta(x_0)$ (nats) of the model restricted to a trajectory
    (Ho et al. 2020, eq. 5; Bao et al. 2022, eq. 2), with means from the denoiser and the given
    reverse `variances` (`reverse_variances`, shape `(K,)`):

    $$L = \mathrm{KL}(q(x_{\tau_K}|x_0)\,\|\,\mathcal N(0, I))
      + \sum_{k \ge 2} \mathrm{KL}(q(x_{\tau_{k-1}}|x_{\tau_k}, x_0)\,\|\,
        p(x_{\tau_{k-1}}|x_{\tau_k}))
      - \log \mathcal N(x_0; \hat x_0(x_{\tau_1}), \sigma_1^2 I),$$

    each term with its own draw of $x_{\tau_k} \sim q(x_{\tau_k}|x_0)$ (unbiased for the sum).
    The posterior $q$ is the Markov one ($\lambda^2 = \tilde\beta_{t|s}$), so the bound is the
    DDPM (`eta = 1`) model's. `x0`, shape `(batch, ...)`; 1 denoiser evaluation per step.

    **Returns:** shape `(batch,)`.
    """
    denoiser = check_model("denoiser", denoiser, "denoiser(x, sigma)")
    check_key(key)
    x0 = check_float_array("x0", x0, batch=True)
    ab_t, ab_s, _ = trajectory_alpha_bars(alpha_bars, timesteps)
    variances = jnp.asarray(variances, x0.dtype)
    if variances.shape != ab_t.shape:
        raise ValueError(f"variances must have shape {ab_t.shape}, got {variances.shape}")
    return _nll_bound(denoiser, x0, key, ab_t.astype(x0.dtype), ab_s.astype(x0.dtype), variances)


@eqx.filter_jit
def _nll_bound(denoiser, x0, key, ab_t, ab_s, variances):
    d = math.prod(x0.shape[1:])
    axes = tuple(range(1, x0.ndim))
    keys = jr.split(key, ab_t.shape[0])

    def term(args):
        k, a_t, a_s, var = args
        eps = jr.normal(k, x0.shape, x0.dtype)
        sigma = sigmas_from_alpha_bars(a_t)
        x0_hat = denoiser(x0 + sigma * eps, sigma)
        err = jnp.sum((x0 - x0_hat) ** 2, axis=axes)
        lam2 = (1 - a_t / a_s) * (1 - a_s) / (1 - a_t)
        kappa = jnp.sqrt(a_s) - jnp.sqrt(jnp.maximum(1 - a_s - lam2, 0.0)) * jnp.sqrt(
            a_t / (1 - a_t)
        )
        kl = 0.5 * d * (jnp.log(var / lam2) + lam2 / var - 1) + kappa**2 * err / (2 * var)
        decoder = 0.5 * d * jnp.log(2 * jnp.pi * var) + err / (2 * var)
        return jnp.where(a_s == 1, decoder, kl)

    terms = jax.lax.map(term, (keys, ab_t, ab_s, variances))
    a_T = ab_t[-1]
    prior = 0.5 * (jnp.sum(a_T * x0**2, axis=axes) + d * ((1 - a_T) - 1 - jnp.log(1 - a_T)))
    return jnp.sum(terms, axis=0) + prior
