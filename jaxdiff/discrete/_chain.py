r"""The discrete-time DDPM chain: beta schedules, the cumulative $\bar\alpha$, the chain's noise
levels in sigma-space, trajectories through it, and the iDDPM levels of EDM.

**Indexing.** A chain of `N` steps has `betas` of shape `(N,)` and
`alpha_bars[n] = prod_{i <= n} (1 - betas[i])`, $\bar\alpha$ after `n + 1` noising steps
(0-based, as `jaxdiff.train.ddpm_loss`; Ho et al.'s $t = n + 1$), with $\bar\alpha = 1$ for
the data. In this library's sigma-space $\sigma_n = \sqrt{(1 - \bar\alpha_n)/\bar\alpha_n}$ and
$y = x_n/\sqrt{\bar\alpha_n} = x_0 + \sigma_n\varepsilon$. A trajectory (`timesteps`) is a
strictly increasing int array of indices into `alpha_bars`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_count, check_float_array, check_number, check_positive, is_traced


# -- boundary checks of a chain (on the generic checks of `jaxdiff._checks`) --------------------
def check_betas(betas, name: str = "betas") -> jax.Array:
    """A non-empty 1-D floating array in `(0, 1)` (the values checked when concrete)."""
    return check_alpha_bars(betas, name, decreasing=False)


def check_alpha_bars(
    alpha_bars, name: str = "alpha_bars", *, decreasing: bool = True, zero_terminal: bool = False
):
    """A non-empty 1-D floating array in `(0, 1)`, strictly decreasing unless `decreasing` is
    False (the values checked when concrete); with `zero_terminal`, the last entry may be `0`
    (a zero-terminal-SNR table, Lin et al. 2024)."""
    ab = check_float_array(name, alpha_bars)
    if ab.ndim != 1 or ab.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {ab.shape}")
    if not is_traced(ab):
        a = np.asarray(ab, np.float64)
        head = a[:-1] if zero_terminal and a[-1] == 0 else a
        if not (np.all(head > 0) and np.all(a < 1)):
            where = " (the last entry may be 0: zero terminal SNR)" if zero_terminal else ""
            raise ValueError(f"{name} must lie in (0, 1){where}")
        if decreasing and not np.all(np.diff(a) < 0):
            raise ValueError(f"{name} must be strictly decreasing")
    return ab


def check_table(alphas_cumprod, name: str = "alphas_cumprod") -> jax.Array:
    """A discrete-time model's table (`jaxdiff.parametrizations.from_discrete`,
    `jaxdiff.schedules.discrete`): at least 2 entries, strictly decreasing in `(0, 1)`, the last
    possibly `0` (zero terminal SNR). Values checked when concrete."""
    ab = check_alpha_bars(alphas_cumprod, name, zero_terminal=True)
    if ab.shape[0] < 2:
        raise ValueError(f"{name} must have at least 2 entries, got shape {ab.shape}")
    return ab


def check_timesteps(timesteps, num_levels: int, name: str = "timesteps") -> np.ndarray:
    """A trajectory: a non-empty 1-D integer array (host side: it fixes shapes) of strictly
    increasing indices in `[0, num_levels)`; a non-integer array is a `TypeError`."""
    if is_traced(timesteps):
        raise TypeError(f"{name} must be concrete integers (they fix shapes), got a tracer")
    ts = np.asarray(timesteps)
    if not np.issubdtype(ts.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {ts.dtype}")
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {ts.shape}")
    if ts[0] < 0 or ts[-1] >= num_levels or not np.all(np.diff(ts) > 0):
        raise ValueError(
            f"{name} must be strictly increasing indices in [0, {num_levels}), got {ts}"
        )
    return ts


# -- beta schedules ---------------------------------------------------------------------------
def linear_betas(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> jax.Array:
    r"""DDPM's linear schedule (Ho et al. 2020): $\beta_i$ evenly spaced from `beta_start` to
    `beta_end`, `n` values in the default float dtype. `VP(beta_min=n beta_start,
    beta_max=n beta_end)` is its continuous-time limit at $t = (i + 1)/n$."""
    n = check_count("n", n)
    lo, hi = check_number("beta_start", beta_start), check_number("beta_end", beta_end)
    if lo is None or hi is None:
        raise TypeError("beta_start and beta_end must be concrete numbers, got a tracer")
    if not 0 < lo <= hi < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {lo}, {hi}")
    return jnp.asarray(np.linspace(lo, hi, n), jnp.result_type(float))


def cosine_alpha_bars(n: int, s: float = 0.008) -> np.ndarray:
    r"""The cosine schedule's $f(t) = \cos^2\big(\frac{t + s}{1 + s}\frac\pi2\big)$ at
    $t = i/n$, $i = 0, \dots, n$ (Nichol & Dhariwal 2021, eq. 17, before its normalisation by
    $f(0)$): `n + 1` float64 values (a read-only host array, cached), decreasing from about 1
    to about 0.

    Computed as $\sin^2\big(\frac\pi2\frac{n - i}{n(1 + s)}\big)$ (the same function), which
    keeps full relative precision where $f$ is small. Read backwards it is the $\bar\alpha_j$
    of EDM's iDDPM levels, $\sin^2\big(\frac\pi2\frac{j}{M(C_2 + 1)}\big)$ with `n = M`,
    `s = C_2` (see `iddpm_levels`).
    """
    n = check_count("n", n)
    s = _host_number("s", s)
    if not s >= 0:
        raise ValueError(f"s must be >= 0, got {s}")
    return _cosine_alpha_bars(n, s)


@functools.lru_cache(maxsize=16)
def _cosine_alpha_bars(n: int, s: float) -> np.ndarray:
    f = np.array([math.sin(0.5 * math.pi * k / n / (s + 1)) ** 2 for k in range(n, -1, -1)])
    f.flags.writeable = False
    return f


def cosine_betas(n: int = 1000, s: float = 0.008, *, max_beta: float = 0.999) -> jax.Array:
    r"""The cosine schedule (Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic
    Models", eq. 17): $\bar\alpha(t) = \cos^2\big(\frac{t/n + s}{1 + s}\frac\pi2\big)$
    (`cosine_alpha_bars`), $\beta_i = \min(1 - \bar\alpha(i+1)/\bar\alpha(i), \beta_{max})$,
    `n` values (computed in float64, returned in the default float dtype)."""
    n = check_count("n", n)
    max_beta = _host_number("max_beta", max_beta)
    if not 0 < max_beta < 1:
        raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")
    f = cosine_alpha_bars(n, s)
    betas = np.minimum(1 - f[1:] / f[:-1], max_beta)
    return jnp.asarray(betas, jnp.result_type(float))


def _host_number(name: str, value) -> float:
    v = check_number(name, value)
    if v is None:
        raise TypeError(f"{name} must be a concrete number (computed on the host), got a tracer")
    return v


# -- the chain --------------------------------------------------------------------------------
def alpha_bars_from_betas(betas) -> jax.Array:
    r"""`alpha_bars[n] = prod_{i <= n} (1 - betas[i])` (e.g. of `linear_betas()`), computed as
    $\exp\sum\log(1 - \beta_i)$; `betas` 1-D in `(0, 1)`. Jit-able."""
    betas = check_betas(betas)
    return jnp.exp(jnp.cumsum(jnp.log1p(-betas)))


def sigmas_from_alpha_bars(alpha_bars) -> jax.Array:
    r"""Sigma-space noise levels $\sigma_n = \sqrt{(1 - \bar\alpha_n)/\bar\alpha_n}$ of the chain
    (elementwise: also for one $\bar\alpha$, or traced values)."""
    ab = jnp.asarray(alpha_bars)
    return jnp.sqrt((1 - ab) / ab)


def even_timesteps(num_levels: int, num_steps: int) -> np.ndarray:
    """`num_steps` evenly spaced indices from 0 to `num_levels - 1` (both included; rounded)."""
    num_levels = check_count("num_levels", num_levels)
    num_steps = check_count("num_steps", num_steps)
    if num_steps > num_levels:
        raise ValueError(
            f"num_steps must be <= num_levels, got num_steps={num_steps}, num_levels={num_levels}"
        )
    if num_steps == 1:
        return np.array([num_levels - 1])
    return np.round(np.linspace(0, num_levels - 1, num_steps)).astype(np.int64)


# -- EDM's iDDPM levels -----------------------------------------------------------------------
def iddpm_levels(c1: float = 0.001, c2: float = 0.008, m: int = 1000) -> np.ndarray:
    r"""The `m + 1` noise levels $u_0 > u_1 > \dots > u_M = 0$ of an iDDPM cosine model in
    sigma-space (Karras et al. 2022, Table 1, "iDDPM"; Nichol & Dhariwal 2021):
    $u_{j-1} = \sqrt{(u_j^2 + 1)/\max(\bar\alpha_{j-1}/\bar\alpha_j, C_1) - 1}$ with
    $\bar\alpha_j = \sin^2(\tfrac\pi2 \tfrac{j}{M (C_2 + 1)})$, i.e. `cosine_alpha_bars(m, c2)`
    read backwards; the clip at `c1` is iDDPM's `max_beta = 1 - c1`.

    **Arguments:** `c1 > 0`, `c2 >= 0`, `m >= 2`, Python numbers (computed once on the host in
    float64 and cached). **Returns:** a read-only float64 numpy array.
    """
    c1, c2 = _host_number("c1", c1), _host_number("c2", c2)
    m = check_count("m", m, minimum=2)
    check_positive("c1", c1)
    check_positive("c2", c2, allow_zero=True)
    return _iddpm_levels(c1, c2, m)


@functools.lru_cache(maxsize=16)
def _iddpm_levels(c1: float, c2: float, m: int) -> np.ndarray:
    alpha_bar = _cosine_alpha_bars(m, c2)[::-1]  # EDM's alpha_bar_j, j = 0 .. m
    u = np.zeros(m + 1)
    for j in range(m, 0, -1):
        u[j - 1] = math.sqrt((u[j] ** 2 + 1) / max(alpha_bar[j - 1] / alpha_bar[j], c1) - 1)
    u.flags.writeable = False
    return u
