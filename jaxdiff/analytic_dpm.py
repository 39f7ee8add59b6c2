r"""Analytic-DPM: the analytic optimal reverse variance of a discrete VP diffusion chain.

Bao, Li, Zhu & Zhang (2022), "Analytic-DPM: an Analytic Estimate of the Optimal Reverse
Variance in Diffusion Probabilistic Models" (ICLR 2022).

**Chain and indexing.** `alpha_bars` has shape `(N,)`: `alpha_bars[n]` is
$\bar\alpha$ after `n + 1` noising steps (0-based, as `jaxdiff.train.ddpm_loss`; the paper's
$\bar\alpha_{n+1}$), with $\bar\alpha = 1$ for the data. A trajectory `timesteps` is an
increasing int array of indices into `alpha_bars`. In this library's sigma-space
$\sigma_n = \sqrt{\bar\beta_n/\bar\alpha_n}$ ($\bar\beta = 1 - \bar\alpha$) and
$y = x_n/\sqrt{\bar\alpha_n} = x_0 + \sigma_n\varepsilon$, so a sigma-space denoiser
$D(y;\sigma)$ gives $\hat\varepsilon = (y - D(y;\sigma_n))/\sigma_n$ and $\hat x_0 = D$.

**Optimal variance** (Theorem 1) of the reverse step $t \to s$ ($s < t$ on the trajectory;
$\alpha_{t|s} = \bar\alpha_t/\bar\alpha_s$, $\beta_{t|s} = 1 - \alpha_{t|s}$), for the
generalised (DDIM-family) posterior with variance $\lambda^2$ and the mean
$\sqrt{\bar\alpha_s}\hat x_0 + \sqrt{\bar\beta_s - \lambda^2}\,\hat\varepsilon$:

$$\sigma^{*2} = \lambda^2 + \Big(\sqrt{\bar\beta_t/\alpha_{t|s}} -
  \sqrt{\bar\beta_s - \lambda^2}\Big)^2 (1 - \Gamma_t),\qquad
  \Gamma_t = \mathbb E_{x_t}\,\lVert\hat\varepsilon(x_t, t)\rVert^2/d,$$

with $\Gamma$ here the mean square of the *eps*-prediction (the paper writes
$\bar\beta_t\,\mathbb E\lVert s_t\rVert^2/d$ with the score
$s_t = -\hat\varepsilon/\sqrt{\bar\beta_t}$; the two agree). Equivalently
$\sigma^{*2} = \lambda^2 + \kappa^2\,\mathbb E\operatorname{tr}\operatorname{Cov}(x_0|x_t)/d$
with $\kappa = \sqrt{\bar\alpha_s} - \sqrt{\bar\beta_s - \lambda^2}
\sqrt{\bar\alpha_t/\bar\beta_t}$, the coefficient of $x_0$ in the posterior mean.
DDPM: $\lambda^2 = \tilde\beta_{t|s} = \beta_{t|s}\bar\beta_s/\bar\beta_t$ (`eta = 1`);
DDIM: $\lambda = 0$ (`eta = 0`); in general $\lambda^2 = \eta^2\tilde\beta_{t|s}$.
**Clipping** (Theorem 2, data in $[a, b]^d$): $\operatorname{Var}(x_0|x_t) \le ((b-a)/2)^2$
per dimension, so $\sigma^{*2}$ is clipped to
$[\lambda^2,\ \lambda^2 + \kappa^2((b-a)/2)^2]$ (the lower end is $\Gamma_t \le 1$).

**Optimal trajectory** (Sec. 4): with the optimal variance the DDPM bound is
$L = c + \frac d2 \sum_k J(\tau_{k-1}, \tau_k)$,
$J(s, t) = \log(1 - \beta_{t|s}\Gamma_t/\bar\beta_t)$ (the rest telescopes),
minimised over the $K$-step trajectories through the first and last index by dynamic
programming in $O(K N^2)$ (`optimal_timesteps`).

**Cost:** $\Gamma$ is estimated once per chain by Monte Carlo over data (`estimate_gamma`,
`num_samples` denoiser evaluations per level); sampling (`AnalyticDPM` with `jaxdiff.sample`,
or `sample_analytic`) then costs 1 denoiser evaluation per step, as DDPM/DDIM.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._checks import check_key, check_model
from .samplers._core import sample
from .samplers.analytic_dpm import AnalyticDPM, optimal_variance_step

__all__ = [
    "AnalyticDPM",
    "alpha_bars_from_betas",
    "estimate_gamma",
    "even_timesteps",
    "nll_bound",
    "optimal_timesteps",
    "reverse_variances",
    "sample_analytic",
    "sigmas_from_alpha_bars",
    "trajectory_cost",
]


# ------------------------------------------------------------------------------ chain helpers


def alpha_bars_from_betas(betas) -> jax.Array:
    """`alpha_bars[n] = prod_{i <= n} (1 - betas[i])` (e.g. of `jaxdiff.train.linear_betas()`)."""
    betas = jnp.asarray(betas)
    if betas.ndim != 1 or betas.shape[0] == 0:
        raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
    return jnp.exp(jnp.cumsum(jnp.log1p(-betas)))


def _check_alpha_bars(alpha_bars) -> jax.Array:
    ab = jnp.asarray(alpha_bars)
    if ab.ndim != 1 or ab.shape[0] == 0:
        raise ValueError(f"alpha_bars must be a non-empty 1-D array, got shape {ab.shape}")
    if not jnp.issubdtype(ab.dtype, jnp.floating):
        raise TypeError(f"alpha_bars must be floating, got dtype {ab.dtype}")
    if not isinstance(ab, jax.core.Tracer):
        a = np.asarray(ab, np.float64)
        if not (np.all(a > 0) and np.all(a < 1)):
            raise ValueError("alpha_bars must lie in (0, 1)")
        if not np.all(np.diff(a) < 0):
            raise ValueError("alpha_bars must be strictly decreasing")
    return ab


def sigmas_from_alpha_bars(alpha_bars) -> jax.Array:
    r"""Sigma-space noise levels $\sigma_n = \sqrt{(1 - \bar\alpha_n)/\bar\alpha_n}$."""
    ab = jnp.asarray(alpha_bars)
    return jnp.sqrt((1 - ab) / ab)


def _check_timesteps(timesteps, n: int) -> np.ndarray:
    ts = np.asarray(timesteps)
    if ts.ndim != 1 or ts.shape[0] < 1 or not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"timesteps must be a non-empty 1-D int array, got {timesteps!r}")
    if ts[0] < 0 or ts[-1] >= n or not np.all(np.diff(ts) > 0):
        raise ValueError(f"timesteps must be strictly increasing indices in [0, {n}), got {ts}")
    return ts


def even_timesteps(num_levels: int, num_steps: int) -> np.ndarray:
    """`num_steps` evenly spaced indices from 0 to `num_levels - 1` (both included; rounded)."""
    if not 1 <= num_steps <= num_levels:
        raise ValueError(f"need 1 <= num_steps <= num_levels, got {num_steps}, {num_levels}")
    if num_steps == 1:
        return np.array([num_levels - 1])
    return np.round(np.linspace(0, num_levels - 1, num_steps)).astype(np.int64)


# ------------------------------------------------------------------------------ Gamma


def estimate_gamma(
    denoiser,
    data,
    key: jax.Array,
    alpha_bars,
    *,
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
    `alpha_bars`, 1-D in `(0, 1)` (the whole chain, or `alpha_bars[timesteps]`).

    **Returns:** `Gamma`, shaped like `alpha_bars`, in `data.dtype`.
    """
    denoiser = check_model("denoiser", denoiser, "denoiser(x, sigma)")
    check_key(key)
    data = jnp.asarray(data)
    if data.ndim < 2 or not jnp.issubdtype(data.dtype, jnp.floating):
        raise ValueError(f"data must be a floating array of shape (M, ...), got {data.shape}")
    ab = jnp.asarray(alpha_bars)
    if ab.ndim != 1 or ab.shape[0] == 0:
        raise ValueError(f"alpha_bars must be a non-empty 1-D array, got shape {ab.shape}")
    if num_samples is not None and (isinstance(num_samples, bool) or num_samples < 1):
        raise ValueError(f"num_samples must be a positive int or None, got {num_samples!r}")
    if estimator not in ("norm", "residual"):
        raise ValueError(f"estimator must be 'norm' or 'residual', got {estimator!r}")
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
        sigma = jnp.sqrt((1 - a) / a)
        eps = jr.normal(k_eps, x0.shape, x0.dtype)
        y = x0 + sigma * eps
        eps_hat = (y - denoiser(y, sigma)) / sigma
        if estimator == "residual":
            return 1 - jnp.mean((eps - eps_hat) ** 2)
        return jnp.mean(eps_hat**2)

    return jax.lax.map(one, (keys, ab))


# ------------------------------------------------------------------------------ variances


def _trajectory(alpha_bars, timesteps):
    """`(ab_t, ab_s)` for every step of the trajectory, `ab_s = 1` before the first index."""
    ab = _check_alpha_bars(alpha_bars)
    ts = _check_timesteps(timesteps, ab.shape[0])
    ab_t = ab[ts]
    ab_s = jnp.concatenate([jnp.ones((1,), ab.dtype), ab_t[:-1]])
    return ab_t, ab_s, ts


def reverse_variances(
    alpha_bars,
    timesteps,
    *,
    kind: str = "analytic",
    gammas=None,
    eta: float = 1.0,
    data_range=None,
) -> jax.Array:
    r"""The reverse variances (in `x_n` units) of the steps of a trajectory: entry `k` is the
    variance of the step from `timesteps[k]` to `timesteps[k - 1]` (to the data for `k = 0`).

    - `kind="analytic"`: Analytic-DPM's $\sigma^{*2}$ with $\lambda^2 = \eta^2\tilde\beta_{t|s}$,
      `gammas` the $\Gamma$ at the trajectory's levels (shape `(K,)`, e.g.
      `estimate_gamma(..., alpha_bars[timesteps])`), clipped to
      $[\lambda^2, \lambda^2 + \kappa^2((b-a)/2)^2]$ when `data_range=(a, b)` is given.
    - `kind="posterior"`: DDPM's $\tilde\beta_{t|s} = \beta_{t|s}\bar\beta_s/\bar\beta_t$; it is
      0 for the step to the data, which takes the next step's value instead (Nichol & Dhariwal
      2021's "fixed small" convention, so that the decoder has a density).
    - `kind="beta"`: DDPM's $\beta_{t|s} = 1 - \bar\alpha_t/\bar\alpha_s$ ("fixed large").
    """
    ab_t, ab_s, _ = _trajectory(alpha_bars, timesteps)
    beta = 1 - ab_t / ab_s
    if kind == "beta":
        return beta
    if kind == "posterior":
        post = beta * (1 - ab_s) / (1 - ab_t)
        return post.at[0].set(post[1]) if post.shape[0] > 1 else post
    if kind != "analytic":
        raise ValueError(f"kind must be 'analytic', 'posterior' or 'beta', got {kind!r}")
    if gammas is None:
        raise ValueError("kind='analytic' needs gammas (shape (K,), one per timestep)")
    gammas = jnp.asarray(gammas, ab_t.dtype)
    if gammas.shape != ab_t.shape:
        raise ValueError(
            f"gammas must have shape {ab_t.shape} (one per timestep), got {gammas.shape}"
        )
    half = None if data_range is None else _half_range(data_range)
    _, var = optimal_variance_step(ab_t, ab_s, gammas, eta, half)
    return var


def _half_range(data_range):
    a, b = (float(v) for v in data_range)
    if not (math.isfinite(a) and math.isfinite(b) and a < b):
        raise ValueError(f"data_range must be finite with a < b, got {data_range!r}")
    return (b - a) / 2


# ------------------------------------------------------------------------------ trajectory


def _cost_matrix(alpha_bars, gammas) -> np.ndarray:
    ab = np.asarray(alpha_bars, np.float64)
    g = np.asarray(gammas, np.float64)
    # F[s, t] = log(1 - beta_{t|s} Gamma_t / bb_t), s < t; +inf elsewhere
    alpha = ab[None, :] / ab[:, None]
    arg = 1 - (1 - alpha) * g[None, :] / (1 - ab[None, :])
    # an estimate Gamma_t > 1 is clipped to 1 (sigma*^2 >= lambda^2), where the argument is
    # alpha_{t|s} bb_s / bb_t
    arg = np.maximum(arg, alpha * (1 - ab[:, None]) / (1 - ab[None, :]))
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = np.log(np.maximum(arg, 1e-300))
    mask = np.arange(ab.size)[:, None] < np.arange(ab.size)[None, :]
    return np.where(mask, cost, np.inf)


def trajectory_cost(alpha_bars, gammas, timesteps) -> float:
    r"""$\sum_k J(\tau_{k-1}, \tau_k)$, the trajectory-dependent part of the DDPM bound with
    the optimal variance (in units of $d/2$ nats); `gammas` over the whole chain, shape `(N,)`."""
    ab = _check_alpha_bars(alpha_bars)
    ts = _check_timesteps(timesteps, ab.shape[0])
    cost = _cost_matrix(ab, gammas)
    return float(np.sum(cost[ts[:-1], ts[1:]]))


def optimal_timesteps(alpha_bars, gammas, num_steps: int) -> np.ndarray:
    r"""The `num_steps`-step trajectory $0 = \tau_1 < \dots < \tau_K = N - 1$ minimising
    $\sum_k J(\tau_{k-1}, \tau_k)$, $J(s,t) = \log(1 - \beta_{t|s}\Gamma_t/\bar\beta_t)$
    (Bao et al. 2022, Sec. 4), by dynamic programming: $O(K N^2)$ time, $O(K N)$ memory,
    vectorised over the predecessor in numpy float64.

    **Arguments:** `alpha_bars` and `gammas` over the whole chain (shape `(N,)`);
    `num_steps` = K with `2 <= K <= N`.

    **Returns:** the timesteps, an increasing int64 array of length K.
    """
    ab = _check_alpha_bars(alpha_bars)
    n = ab.shape[0]
    if np.shape(gammas) != (n,):
        raise ValueError(f"gammas must have shape ({n},), got {np.shape(gammas)}")
    if isinstance(num_steps, bool) or not (isinstance(num_steps, int | np.integer)):
        raise TypeError(f"num_steps must be an int, got {num_steps!r}")
    if not 2 <= num_steps <= n:
        raise ValueError(f"num_steps must lie in [2, {n}], got {num_steps}")
    cost = _cost_matrix(ab, gammas)
    # best[k, t]: least cost of a (k+1)-point path from 0 to t; arg[k, t]: its predecessor
    best = np.full((num_steps, n), np.inf)
    arg = np.zeros((num_steps, n), np.int64)
    best[0, 0] = 0.0
    for k in range(1, num_steps):
        total = best[k - 1][:, None] + cost
        arg[k] = np.argmin(total, axis=0)
        best[k] = total[arg[k], np.arange(n)]
    path = [n - 1]
    for k in range(num_steps - 1, 0, -1):
        path.append(int(arg[k, path[-1]]))
    return np.array(path[::-1], np.int64)


# ------------------------------------------------------------------------------ sampling


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
    if kind not in ("ddpm", "ddim"):
        raise ValueError(f"kind must be 'ddpm' or 'ddim', got {kind!r}")
    eta = (1.0 if kind == "ddpm" else 0.0) if eta is None else eta
    ab_t, _, _ = _trajectory(alpha_bars, timesteps)
    gammas = jnp.asarray(gammas)
    if gammas.shape != ab_t.shape:
        raise ValueError(
            f"gammas must have shape {ab_t.shape} (one per timestep), got {gammas.shape}"
        )
    x_T = jnp.asarray(x_T)
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


# ------------------------------------------------------------------------------ the bound


def nll_bound(denoiser, x0, key: jax.Array, alpha_bars, *, timesteps, variances) -> jax.Array:
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
    x0 = jnp.asarray(x0)
    ab_t, ab_s, _ = _trajectory(alpha_bars, timesteps)
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
        sigma = jnp.sqrt((1 - a_t) / a_t)
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
