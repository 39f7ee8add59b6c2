"""Analytic-DPM's reverse variances (Theorems 1 and 2, and DDPM's two fixed ones) on a
trajectory of a chain, and the optimal trajectory by dynamic programming (Sec. 4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice, check_count, check_number
from ..discrete._chain import check_alpha_bars, check_timesteps
from ..samplers._analytic_dpm import optimal_variance_step


def trajectory_alpha_bars(alpha_bars, timesteps):
    """`(ab_t, ab_s, timesteps)`: the checked chain's alpha-bars at every step of the
    trajectory and one step before (`ab_s = 1`, the data, before the first index)."""
    ab = check_alpha_bars(alpha_bars)
    ts = check_timesteps(timesteps, ab.shape[0])
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
    check_choice("kind", kind, ("analytic", "posterior", "beta"))
    ab_t, ab_s, _ = trajectory_alpha_bars(alpha_bars, timesteps)
    beta = 1 - ab_t / ab_s
    if kind == "beta":
        return beta
    if kind == "posterior":
        post = beta * (1 - ab_s) / (1 - ab_t)
        return post.at[0].set(post[1]) if post.shape[0] > 1 else post
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


def _half_range(data_range) -> float:
    try:
        a, b = data_range
    except (TypeError, ValueError):
        raise TypeError(f"data_range must be a pair (a, b), got {data_range!r}") from None
    a, b = check_number("data_range[0]", a), check_number("data_range[1]", b)
    if a is None or b is None:
        raise TypeError("data_range must be concrete numbers, got a tracer")
    if not a < b:
        raise ValueError(f"data_range must be (a, b) with a < b, got {data_range!r}")
    return (b - a) / 2


def _check_chain_gammas(gammas, num_levels: int) -> np.ndarray:
    if np.shape(gammas) != (num_levels,):
        raise ValueError(
            f"gammas must have shape ({num_levels},), one per level of the chain, "
            f"got {np.shape(gammas)}"
        )
    return np.asarray(gammas, np.float64)


# -- the optimal trajectory -------------------------------------------------------------------


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
    ab = check_alpha_bars(alpha_bars)
    ts = check_timesteps(timesteps, ab.shape[0])
    cost = _cost_matrix(ab, _check_chain_gammas(gammas, ab.shape[0]))
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
    ab = check_alpha_bars(alpha_bars)
    n = ab.shape[0]
    gammas = _check_chain_gammas(gammas, n)
    num_steps = check_count("num_steps", num_steps, minimum=2)
    if num_steps > n:
        raise ValueError(f"num_steps must be <= the chain's {n} levels, got {num_steps}")
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
