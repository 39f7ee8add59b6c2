"""The closed-form schedules: `karras`, `exponential`, `logsnr_uniform`, `polyexponential`,
`edm_ve`, `vp`, `iddpm` and `kl_optimal` (see `jaxdiff.schedules` for the contract)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._checks import check_positive, is_traced
from ..discrete._chain import iddpm_levels
from ._grid import append_zero, core, prepare


# -- the closed-form schedules ----------------------------------------------------------------
def karras(n, sigma_min, sigma_max, rho=7.0, *, dtype=None):
    r"""The grid of Karras et al. (2022), "Elucidating the Design Space of Diffusion-Based
    Generative Models", eq. 5: uniform in $\sigma^{1/\rho}$,

    $$\sigma_i = \left(\sigma_{max}^{1/\rho} + \tfrac{i}{n-1}\left(\sigma_{min}^{1/\rho}
    - \sigma_{max}^{1/\rho}\right)\right)^\rho, \quad i = 0, \dots, n-1,$$

    then $0$. `rho = 7` (EDM's choice) spends its steps near `sigma_min`; `rho = 1` is uniform in
    sigma, `rho -> inf` tends to `exponential`. Identical to k-diffusion's `get_sigmas_karras`.

    **Arguments:** `n` steps (`n + 1` levels); `sigma_min`, `sigma_max` the last positive and
    the first level; `rho > 0`; `dtype` (default: the default float dtype).

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    check_positive("rho", rho)
    return _karras(n, sigma_min, sigma_max, jnp.asarray(rho, dtype))


@core
def _karras(n, sigma_min, sigma_max, rho):
    ramp = jnp.linspace(0.0, 1.0, n, dtype=rho.dtype)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential(n, sigma_min, sigma_max, *, dtype=None):
    r"""Log-uniform grid: $\log\sigma_i$ evenly spaced from $\log\sigma_{max}$ to
    $\log\sigma_{min}$ ($i = 0, \dots, n-1$), then $0$. Identical to k-diffusion's
    `get_sigmas_exponential`.

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    return _exponential(n, sigma_min, sigma_max)


@core
def _exponential(n, sigma_min, sigma_max):
    return append_zero(jnp.exp(jnp.linspace(jnp.log(sigma_max), jnp.log(sigma_min), n)))


def logsnr_uniform(n, sigma_min, sigma_max, *, dtype=None):
    r"""Uniform in log-SNR, $\lambda = \log(\alpha_t/\sigma_t)$ (half the log signal-to-noise
    ratio, the variable of DPM-Solver), then $0$.

    For every process in EDM's form $x_t = s(t)(x_0 + \sigma(t)\varepsilon)$ (VP, VE, sub-VP,
    cosine, EDM) the signal and noise coefficients are $\alpha_t = s$, $\sigma_t = s\sigma$, so
    $\mathrm{SNR} = \alpha_t^2/\sigma_t^2 = 1/\sigma^2$ whatever the scale $s$: e.g. for VP,
    $\alpha = 1/\sqrt{1+\sigma^2}$ and $\sigma_t = \sigma/\sqrt{1+\sigma^2}$ give again
    $\lambda = -\log\sigma$. A grid uniform in log-SNR is therefore exactly the log-uniform
    grid in sigma-space: this function is `exponential` under the name the DPM-Solver and
    UniPC papers use ("time-uniform in lambda"), and returns the very same values.

    **Returns:** the `n + 1` levels, last `0`.
    """
    return exponential(n, sigma_min, sigma_max, dtype=dtype)


def polyexponential(n, sigma_min, sigma_max, rho=1.0, *, dtype=None):
    r"""Polynomial in log sigma: $\log\sigma_i = \log\sigma_{min} + (1 - \tfrac{i}{n-1})^\rho
    (\log\sigma_{max} - \log\sigma_{min})$, then $0$; `rho = 1` is `exponential`, `rho > 1`
    packs the steps towards `sigma_min`. Identical to k-diffusion's
    `get_sigmas_polyexponential`.

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    check_positive("rho", rho)
    return _polyexponential(n, sigma_min, sigma_max, jnp.asarray(rho, dtype))


@core
def _polyexponential(n, sigma_min, sigma_max, rho):
    ramp = jnp.linspace(1.0, 0.0, n, dtype=rho.dtype) ** rho
    log_min = jnp.log(sigma_min)
    return append_zero(jnp.exp(ramp * (jnp.log(sigma_max) - log_min) + log_min))


def edm_ve(n, sigma_min, sigma_max, *, dtype=None):
    r"""EDM's discretization of the VE process (Karras et al. 2022, Table 1, "VE"): with
    $\sigma(t) = \sqrt t$, the times
    $t_i = \sigma_{max}^2 (\sigma_{min}^2/\sigma_{max}^2)^{i/(n-1)}$ are geometric in
    $\sigma^2$, and $\sigma_i = \sqrt{t_i}$; then $0$. EDM uses `sigma_min = 0.02`,
    `sigma_max = 100`.

    A grid geometric in $\sigma^2$ is geometric in $\sigma$ (its square root), so these are the
    levels of `exponential` (up to rounding); the function computes them EDM's way, as in its
    official `ablation_sampler`.

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    return _edm_ve(n, sigma_min, sigma_max)


@core
def _edm_ve(n, sigma_min, sigma_max):
    ramp = jnp.linspace(0.0, 1.0, n, dtype=sigma_max.dtype)  # i / (n - 1), [0] for n = 1
    t = sigma_max**2 * (sigma_min**2 / sigma_max**2) ** ramp
    return append_zero(jnp.sqrt(t))


def vp(n, sigma_min, sigma_max, *, beta_d=19.9, beta_min=0.1, dtype=None):
    r"""Uniform in the time of the VP process (Song et al. 2021; EDM Table 1, "VP"), then $0$.

    The VP noise level is $\sigma(t) = \sqrt{e^{B(t)} - 1}$ with
    $B(t) = \beta_{min} t + \beta_d t^2/2$ (that of `jaxdiff.VP(beta_min,
    beta_max=beta_min + beta_d)`); its inverse is
    $t(\sigma) = 2L / (\beta_{min} + \sqrt{\beta_{min}^2 + 2\beta_d L})$, $L = \log(1+\sigma^2)$.
    The times run uniformly from $t(\sigma_{max})$ to $t(\sigma_{min})$, so the levels run
    from `sigma_max` to `sigma_min` (both up to rounding).

    k-diffusion's `get_sigmas_vp(n, beta_d, beta_min, eps_s)` takes the times from `1` down to
    `eps_s`: it is this grid with `sigma_max = sigma(1)`, `sigma_min = sigma(eps_s)`. (EDM's
    official code instead keeps `t` in `[eps_s, 1]` and refits `beta_d`, `beta_min` to the two
    end levels; here the process is fixed and the time range follows the levels.)

    **Arguments:** `beta_d >= 0`, `beta_min >= 0` (not both 0): the linear beta schedule
    `beta(t) = beta_min + beta_d t`.

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    check_positive("beta_d", beta_d, allow_zero=True)
    check_positive("beta_min", beta_min, allow_zero=True)
    if not is_traced((beta_d, beta_min)) and float(beta_d) + float(beta_min) <= 0:
        raise ValueError("beta_d and beta_min must not both be 0")
    beta_d, beta_min = jnp.asarray(beta_d, dtype), jnp.asarray(beta_min, dtype)
    return _vp(n, sigma_min, sigma_max, beta_d, beta_min)


@core
def _vp(n, sigma_min, sigma_max, beta_d, beta_min):
    def t_of_sigma(sigma):
        big_l = jnp.log1p(sigma**2)
        return 2.0 * big_l / (beta_min + jnp.sqrt(beta_min**2 + 2.0 * beta_d * big_l))

    t = jnp.linspace(t_of_sigma(sigma_max), t_of_sigma(sigma_min), n)
    return append_zero(jnp.sqrt(jnp.expm1(beta_min * t + 0.5 * beta_d * t**2)))


def iddpm(n, sigma_min, sigma_max, *, c1=0.001, c2=0.008, m=1000, dtype=None):
    r"""EDM's discretization for the iDDPM cosine model (Karras et al. 2022, Table 1, "iDDPM";
    Nichol & Dhariwal 2021): `n` of the model's `M` discrete noise levels, then $0$.

    The levels: $u_M = 0$, $u_{j-1} = \sqrt{(u_j^2 + 1)/\max(\bar\alpha_{j-1}/\bar\alpha_j,
    C_1) - 1}$ with $\bar\alpha_j = \sin^2(\tfrac\pi2 \tfrac{j}{M (C_2 + 1)})$, a strictly
    decreasing sequence. Of those in $[\sigma_{min}, \sigma_{max}]$, $u_{j_0} > \dots > u_{j_1}$
    ($L = j_1 - j_0 + 1$ of them), the grid takes $\sigma_i = u_{j_0 + k_i}$ with
    $k_i = \mathrm{round}(\tfrac{L - 1}{n - 1} i)$, rounding halves to even as EDM's official
    code (`torch.round` in `ablation_sampler`) does; the paper writes
    $\lfloor j_0 + \tfrac{M - 1 - j_0}{N - 1} i + \tfrac12 \rfloor$ (the same indices when
    $u_{M-1} \ge \sigma_{min}$, except on exact ties). The index arithmetic is done in
    integers, the levels in float64 and then cast.

    So the first level is the largest $u_j \le$ `sigma_max` and the last positive one the
    smallest $u_j \ge$ `sigma_min`, not `sigma_max`/`sigma_min` themselves (with the defaults,
    $u_{999} \approx 0.0064$). EDM uses `sigma_min = 0.002`, `sigma_max = 81`.

    **Arguments:** `c1 > 0`, `c2 >= 0`, `m >= 2` (Python numbers: the levels are computed once
    on the host and cached, by `jaxdiff.discrete.iddpm_levels`). Needs `n <= L`; a ValueError
    says so when `sigma_min` and `sigma_max` are concrete (with traced values a too-narrow
    range repeats levels).

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    u64 = iddpm_levels(c1, c2, m)  # jaxdiff.discrete: the M + 1 levels, float64, cached
    if not is_traced((sigma_min, sigma_max)):
        lo, hi = float(sigma_min), float(sigma_max)
        count = int(np.sum((u64 >= lo) & (u64 <= hi)))
        if count < n:
            raise ValueError(
                f"n must be <= the number of iDDPM levels in [sigma_min, sigma_max], got n={n} "
                f"with {count} levels in [{lo}, {hi}] (c1={c1}, c2={c2}, m={m})"
            )
    return _iddpm(n, sigma_min, sigma_max, jnp.asarray(u64, dtype))


@core
def _iddpm(n, sigma_min, sigma_max, u):
    j0 = jnp.sum(u > sigma_max, dtype=jnp.int32)  # u decreases: these come first
    j1 = jnp.sum(u >= sigma_min, dtype=jnp.int32) - 1
    if n == 1:
        k = jnp.zeros((1,), jnp.int32)
    else:
        num = (j1 - j0) * jnp.arange(n, dtype=jnp.int32)  # (L - 1) i
        q, r = num // (n - 1), num % (n - 1)
        round_up = (2 * r > n - 1) | ((2 * r == n - 1) & (q % 2 == 1))  # half to even
        k = q + round_up.astype(jnp.int32)
    return append_zero(u[jnp.clip(j0 + k, 0, u.shape[0] - 1)])


def kl_optimal(n, sigma_min, sigma_max, *, dtype=None):
    r"""The "KL-optimal" grid from Sabour et al. (2024), "Align Your Steps: Optimizing Sampling
    Schedules in Diffusion Models" (their closed-form optimum of the KL bound in the Gaussian
    case; the `kl_optimal` scheduler of ComfyUI / AUTOMATIC1111): uniform in $\arctan\sigma$,

    $$\sigma_i = \tan\left((1 - \tfrac{i}{n-1})\arctan\sigma_{max}
    + \tfrac{i}{n-1}\arctan\sigma_{min}\right), \quad i = 0, \dots, n-1,$$

    then $0$. The two end levels are set to exactly `sigma_max` and `sigma_min` (their exact
    values; `tan` near $\pi/2$ would otherwise cost `sigma_max` a few dozen ulps in float32).

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    return _kl_optimal(n, sigma_min, sigma_max)


@core
def _kl_optimal(n, sigma_min, sigma_max):
    r = jnp.linspace(0.0, 1.0, n, dtype=sigma_max.dtype)
    sigmas = jnp.tan((1 - r) * jnp.arctan(sigma_max) + r * jnp.arctan(sigma_min))
    if n > 1:
        sigmas = sigmas.at[-1].set(sigma_min)
    return append_zero(sigmas.at[0].set(sigma_max))
