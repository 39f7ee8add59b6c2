"""Analytic-DPM's Gamma: the mean square of the eps-prediction at each level of a chain, by
Monte Carlo over data (Bao et al. 2022, eq. 8)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_choice, check_count, check_float_array, check_key, check_model
from .._deprecation import keyword_key
from ..discrete._chain import check_alpha_bars, sigmas_from_alpha_bars


@keyword_key("estimate_gamma", 2)
def estimate_gamma(
    denoiser,
    data,
    alpha_bars,
    *,
    key: jax.Array,
    num_samples: int | None = None,
    estimator: str = "norm",
) -> jax.Array:
    r"""Monte Carlo estimate of $\Gamma_n = \mathbb E\lVert\hat\varepsilon(x_n, n)\rVert^2/d$
    at every level of `alpha_bars` (Bao et al. 2022, eq. 8).

    For each level, `num_samples` data points (drawn with replacement from `data`, or all of
    `data` in order when `num_samples` is None) are noised as $y = x_0 + \sigma_n\varepsilon$,
    $\sigma_n = \sqrt{\bar\beta_n/\bar\alpha_n}$ (sigma-space, `y = x_n / sqrt(ab_n)`), and
    $\hat\varepsilon = (y - D(y;\sigma_n))/\sigma_n$. Levels are processed by `lax.map`
    (one compiled program; one batch of `num_samples` per level).

    `estimator="norm"` is the paper's $\frac1d\overline{\lVert\hat\varepsilon\rVert^2}$;
    `estimator="residual"` is $1 - \frac1d\overline{\lVert\varepsilon - \hat\varepsilon\rVert^2}$.
    The two have the same expectation for the exact (Bayes) denoiser
    ($\mathbb E[\varepsilon\cdot\hat\varepsilon] = \mathbb E\lVert\hat\varepsilon\rVert^2$),
    but "residual" has a small *relative* error in $1 - \Gamma$ at high noise, where "norm"
    has only a small absolute one (which matters for `optimal_timesteps`, whose cost is
    $\log(1 - \beta\Gamma/\bar\beta)$); for an imperfect denoiser, "residual" gives the
    variance that is optimal for the model's own mean,
    $\lambda^2 + \kappa^2\,\mathbb E\lVert x_0 - \hat x_0\rVert^2/d$ (the idea of Bao et al.'s
    follow-up, "Estimating the Optimal Covariance with Imperfect Mean", ICML 2022).

    **Arguments:** `denoiser(x, sigma)` (or `(fn, params)`); `data`, shape `(M, ...)`; `key`;
    `alpha_bars`, 1-D in `(0, 1)` (the whole chain, or `alpha_bars[timesteps]`); `num_samples`
    an int >= 1 or None; `estimator`, `"norm"` or `"residual"`.

    **Returns:** `Gamma`, shaped like `alpha_bars`, in `data.dtype`.
    """
    denoiser = check_model("denoiser", denoiser, "denoiser(x, sigma)")
    check_key(key)
    data = check_float_array("data", data, batch=True)
    if data.ndim < 2:
        raise ValueError(f"data must have shape (M, ...) with a feature axis, got {data.shape}")
    ab = check_alpha_bars(alpha_bars, decreasing=False)
    if num_samples is not None:
        num_samples = check_count("num_samples", num_samples)
    check_choice("estimator", estimator, ("norm", "residual"))
    return _estimate_gamma(denoiser, data, key, ab.astype(data.dtype), num_samples, estimator)


@eqx.filter_jit
def _estimate_gamma(denoiser, data, key, ab, num_samples, estimator):
    return _gamma_levels(denoiser, data, key, ab, num_samples, estimator)


def _gamma_levels(denoiser, data, key, ab, num_samples, estimator):
    m = data.shape[0]
    n = m if num_samples is None else int(num_samples)
    keys = jr.split(key, ab.shape[0])

    def one(args):
        k, a = args
        k_idx, k_eps = jr.split(k)
        x0 = data if num_samples is None else data[jr.randint(k_idx, (n,), 0, m)]
        sigma = sigmas_from_alpha_bars(a)
        eps = jr.normal(k_eps, x0.shape, x0.dtype)
        y = x0 + sigma * eps
        eps_hat = (y - denoiser(y, sigma)) / sigma
        if estimator == "residual":
            return 1 - jnp.mean((eps - eps_hat) ** 2)
        return jnp.mean(eps_hat**2)

    return jax.lax.map(one, (keys, ab))
