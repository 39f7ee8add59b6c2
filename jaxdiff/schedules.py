r"""Noise-level grids (sigma schedules) for the fixed-grid samplers.

Every schedule is a pure function `f(n, sigma_min, sigma_max, ..., dtype=None)` returning
`n + 1` noise levels in sigma-space: strictly decreasing, `n` positive levels from (about)
`sigma_max` down to (about) `sigma_min`, then a final `0` (the k-diffusion convention, as
`jaxdiff.sample` expects). `n = 1` gives `[sigma_max, 0]`. The result is a `jnp` array in the
default float dtype, or in `dtype`.

`n` (and the structural options such as `iddpm`'s `m`, or `ays`'s `model`) must be Python
numbers: they fix the shape. `sigma_min` and `sigma_max` may be traced, so a schedule can sit
inside a jitted function with `n` static, e.g. `jax.jit(karras, static_argnums=0)`; the value
checks (`0 < sigma_min < sigma_max`) then run only for concrete values.

| function | levels (`i = 0 .. n-1`, `r = i / (n - 1)`) | source |
|---|---|---|
| `karras` | `(smax^(1/rho) + r (smin^(1/rho) - smax^(1/rho)))^rho` | EDM eq. 5 |
| `exponential` | uniform in `log sigma` | `get_sigmas_exponential` |
| `logsnr_uniform` | uniform in log-SNR (the same grid as `exponential`, see its docstring) | |
| `polyexponential` | `log sigma` uniform in `(1 - r)^rho` | `get_sigmas_polyexponential` |
| `edm_ve` | geometric in `sigma^2` (EDM's VE grid; the same grid as `exponential`) | EDM Table 1 |
| `vp` | uniform in VP time `t` between `t(smax)` and `t(smin)` | EDM Table 1; `get_sigmas_vp` |
| `iddpm` | `n` of the `M` discrete iDDPM cosine levels `u_j` | EDM Table 1 |
| `kl_optimal` | `tan((1 - r) atan(smax) + r atan(smin))` | Sabour et al. 2024, AYS App. |
| `ays` | Align Your Steps' published 10-step grid, log-linearly interpolated | Sabour et al. 2024 |
| `tuned` | grids tuned for `IPNDM` by `optimize` on many mixtures | `benchmarks/tune_schedule.py` |
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ays",
    "edm_ve",
    "exponential",
    "iddpm",
    "karras",
    "kl_optimal",
    "logsnr_uniform",
    "polyexponential",
    "tuned",
    "vp",
]


# -- boundary checks --------------------------------------------------------------------------
def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return int(n)


def _check_range(sigma_min, sigma_max) -> None:
    """`0 < sigma_min < sigma_max`, both finite scalars (checked only where concrete)."""
    values = {}
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if jnp.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")
        if _is_concrete(value):
            v = float(value)
            if not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v}")
            if v <= 0:
                raise ValueError(f"{name} must be > 0, got {v}")
            values[name] = v
    if len(values) == 2 and not values["sigma_min"] < values["sigma_max"]:
        raise ValueError(
            f"sigma_min must be < sigma_max, got sigma_min={values['sigma_min']}, "
            f"sigma_max={values['sigma_max']}"
        )


def _check_positive(name, value) -> None:
    if _is_concrete(value) and not float(value) > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _dtype(dtype):
    if dtype is None:
        return jnp.result_type(float)  # the default float dtype (float64 under x64)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    return jax.dtypes.canonicalize_dtype(dtype)


def _prepare(n, sigma_min, sigma_max, dtype):
    n = _check_n(n)
    _check_range(sigma_min, sigma_max)
    dtype = _dtype(dtype)
    return n, jnp.asarray(sigma_min, dtype), jnp.asarray(sigma_max, dtype), dtype


def _append_zero(sigmas):
    return jnp.concatenate([sigmas, jnp.zeros((1,), sigmas.dtype)])


# The grids are computed by small jitted cores with `n` static: one compiled program per
# (n, dtype) instead of a dozen eagerly compiled operations; inlined under an outer `jit`.
_core = functools.partial(jax.jit, static_argnums=0)


# -- schedules --------------------------------------------------------------------------------
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
    n, sigma_min, sigma_max, dtype = _prepare(n, sigma_min, sigma_max, dtype)
    _check_positive("rho", rho)
    return _karras(n, sigma_min, sigma_max, jnp.asarray(rho, dtype))


@_core
def _karras(n, sigma_min, sigma_max, rho):
    ramp = jnp.linspace(0.0, 1.0, n, dtype=rho.dtype)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def exponential(n, sigma_min, sigma_max, *, dtype=None):
    r"""Log-uniform grid: $\log\sigma_i$ evenly spaced from $\log\sigma_{max}$ to
    $\log\sigma_{min}$ ($i = 0, \dots, n-1$), then $0$. Identical to k-diffusion's
    `get_sigmas_exponential`.

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = _prepare(n, sigma_min, sigma_max, dtype)
    return _exponential(n, sigma_min, sigma_max)


@_core
def _exponential(n, sigma_min, sigma_max):
    return _append_zero(jnp.exp(jnp.linspace(jnp.log(sigma_max), jnp.log(sigma_min), n)))


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
    n, sigma_min, sigma_max, dtype = _prepare(n, sigma_min, sigma_max, dtype)
    _check_positive("rho", rho)
    return _polyexponential(n, sigma_min, sigma_max, jnp.asarray(rho, dtype))


@_core
def _polyexponential(n, sigma_min, sigma_max, rho):
    ramp = jnp.linspace(1.0, 0.0, n, dtype=rho.dtype) ** rho
    log_min = jnp.log(sigma_min)
    return _append_zero(jnp.exp(ramp * (jnp.log(sigma_max) - log_min) + log_min))


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
    n, sigma_min, sigma_max, dtype = _prepare(n, sigma_min, sigma_max, dtype)
    return _edm_ve(n, sigma_min, sigma_max)


@_core
def _edm_ve(n, sigma_min, sigma_max):
    ramp = jnp.linspace(0.0, 1.0, n, dtype=sigma_max.dtype)  # i / (n - 1), [0] for n = 1
    t = sigma_max**2 * (sigma_min**2 / sigma_max**2) ** ramp
    return _append_zero(jnp.sqrt(t))


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
    n, sigma_min, sigma_max, dtype = _prepare(n, sigma_min, sigma_max, dtype)
    if _is_concrete(beta_d) and _is_concrete(beta_min):
        if not (float(beta_d) >= 0 and float(beta_min) >= 0):
            raise ValueError(f"beta_d and beta_min must be >= 0, got {beta_d}, {beta_min}")
        if float(beta_d) + float(beta_min) <= 0:
            raise ValueError("beta_d and beta_min must not both be 0")
    beta_d, beta_min = jnp.asarray(beta_d, dtype), jnp.asarray(beta_min, dtype)
    return _vp(n, sigma_min, sigma_max, beta_d, beta_min)


@_core
def _vp(n, sigma_min, sigma_max, beta_d, beta_min):
    def t_of_sigma(sigma):
        big_l = jnp.log1p(sigma**2)
        return 2.0 * big_l / (beta_min + jnp.sqrt(beta_min**2 + 2.0 * beta_d * big_l))

    t = jnp.linspace(t_of_sigma(sigma_max), t_of_sigma(sigma_min), n)
    return _append_zero(jnp.sqrt(jnp.expm1(beta_min * t + 0.5 * beta_d * t**2)))


@functools.lru_cache(maxsize=16)
def _iddpm_levels(c1: float, c2: float, m: int) -> np.ndarray:
    """The `m + 1` iDDPM levels `u_0 > u_1 > ... > u_M = 0`, in float64 (EDM Table 1)."""

    def alpha_bar(j):
        return math.sin(0.5 * math.pi * j / m / (c2 + 1)) ** 2

    u = np.zeros(m + 1)
    for j in range(m, 0, -1):
        u[j - 1] = math.sqrt((u[j] ** 2 + 1) / max(alpha_bar(j - 1) / alpha_bar(j), c1) - 1)
    u.flags.writeable = False
    return u


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
    on the host and cached). Needs `n <= L`; a ValueError says so when `sigma_min` and
    `sigma_max` are concrete (with traced values a too-narrow range repeats levels).

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = _prepare(n, sigma_min, sigma_max, dtype)
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 2:
        raise ValueError(f"m must be an int >= 2, got {m!r}")
    if not float(c1) > 0:
        raise ValueError(f"c1 must be > 0, got {c1}")
    if not float(c2) >= 0:
        raise ValueError(f"c2 must be >= 0, got {c2}")
    u64 = _iddpm_levels(float(c1), float(c2), int(m))
    if _is_concrete(sigma_min) and _is_concrete(sigma_max):
        lo, hi = float(sigma_min), float(sigma_max)
        count = int(np.sum((u64 >= lo) & (u64 <= hi)))
        if count < n:
            raise ValueError(
                f"n must be <= the number of iDDPM levels in [sigma_min, sigma_max], got n={n} "
                f"with {count} levels in [{lo}, {hi}] (c1={c1}, c2={c2}, m={m})"
            )
    return _iddpm(n, sigma_min, sigma_max, jnp.asarray(u64, dtype))


@_core
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
    return _append_zero(u[jnp.clip(j0 + k, 0, u.shape[0] - 1)])


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
    n, sigma_min, sigma_max, dtype = _prepare(n, sigma_min, sigma_max, dtype)
    return _kl_optimal(n, sigma_min, sigma_max)


@_core
def _kl_optimal(n, sigma_min, sigma_max):
    r = jnp.linspace(0.0, 1.0, n, dtype=sigma_max.dtype)
    sigmas = jnp.tan((1 - r) * jnp.arctan(sigma_max) + r * jnp.arctan(sigma_min))
    if n > 1:
        sigmas = sigmas.at[-1].set(sigma_min)
    return _append_zero(sigmas.at[0].set(sigma_max))


# Align Your Steps' optimized 10-step grids (11 levels, from the model's largest to its smallest
# noise level), as published with the paper (NVIDIA's AYS how-to page, also in ComfyUI's
# `AlignYourStepsScheduler`). diffusers' `AysSchedules` lists 3-decimal values within 1.5 % of
# these, with the last level replaced by 0.
_AYS_LEVELS = {
    "sd15": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177,
             1.3943805092, 0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662,
             0.0291671582),
    "sdxl": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945,
             0.8620721141, 0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177,
             0.0291671582),
    "svd": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}  # fmt: skip


def ays(n, sigma_min, sigma_max, *, model="sd15", dtype=None):
    r"""An "Align Your Steps" grid (Sabour, Fidler & Kreis 2024, "Align Your Steps: Optimizing
    Sampling Schedules in Diffusion Models"), carried to `n` levels and to
    `[sigma_min, sigma_max]`, then $0$.

    AYS publishes optimized 10-step grids per model (`model = "sd15"`, `"sdxl"`: Stable
    Diffusion 1.5 / XL, levels 14.61 ... 0.0292; `"svd"`: Stable Video Diffusion, 700 ...
    0.002), and carries them to other step counts by log-linear interpolation: $\log\sigma$
    against the normalized index $k/10$, sampled at $i/(n-1)$. Here the published 11 levels
    are first mapped affinely in $\log\sigma$ so that their ends become `sigma_max` and
    `sigma_min` (i.e. the grid keeps each level's relative position
    $(\log\sigma - \log\sigma_{last})/(\log\sigma_{first} - \log\sigma_{last})$), and then
    interpolated to `n` levels; both steps are linear in $\log\sigma$, so their order does not
    matter. So `ays(11, 0.0291671582, 14.6146412293)` returns the published SD1.5 levels
    followed by 0. (ComfyUI, and diffusers' 10-step lists, instead interpolate to `n + 1`
    levels and replace the last, the model's smallest level, by 0: their `n`-step grid is the
    first `n` levels of `ays(n + 1, ...)`, then 0.)

    The shape of the grid is the one optimized for that model and solver; for other models it
    is a heuristic (`kl_optimal` is its model-free analogue).

    **Returns:** the `n + 1` levels, last `0`.
    """
    if model not in _AYS_LEVELS:
        raise ValueError(f"model must be one of {sorted(_AYS_LEVELS)}, got {model!r}")
    n, sigma_min, sigma_max, dtype = _prepare(n, sigma_min, sigma_max, dtype)
    log_levels = np.log(np.asarray(_AYS_LEVELS[model], np.float64))
    rel = (log_levels - log_levels[-1]) / (log_levels[0] - log_levels[-1])  # 1 -> 0
    knots = np.linspace(0.0, 1.0, rel.size)
    rel_n = np.interp(np.linspace(0.0, 1.0, n), knots, rel)  # host side: n is static
    return _ays(n, sigma_min, sigma_max, jnp.asarray(rel_n, dtype))


@_core
def _ays(n, sigma_min, sigma_max, rel):
    log_min = jnp.log(sigma_min)
    sigmas = jnp.exp(log_min + rel * (jnp.log(sigma_max) - log_min))
    if n > 1:
        sigmas = sigmas.at[-1].set(sigma_min)
    return _append_zero(sigmas.at[0].set(sigma_max))


# Grids tuned by `benchmarks/tune_schedule.py` (see `tuned`): for each step count n, the n
# positive levels as relative positions (log sigma_i - log sigma_min) / (log sigma_max -
# log sigma_min), from 1 down to 0.
_TUNED_KNOTS = {
    5: (1.0000, 0.6906, 0.5730, 0.3936, 0.0000),
    10: (1.0000, 0.8862, 0.7468, 0.6630, 0.5834, 0.5305, 0.4684, 0.3904, 0.2720, 0.0000),
    15: (1.0000, 0.9078, 0.7925, 0.7145, 0.6404, 0.6040, 0.5715, 0.5430, 0.5117, 0.4825,
         0.4531, 0.4068, 0.3597, 0.2969, 0.0000),
    20: (1.0000, 0.9514, 0.8984, 0.7324, 0.6839, 0.6628, 0.6400, 0.6051, 0.5844, 0.5627,
         0.5425, 0.5251, 0.5058, 0.4810, 0.4590, 0.4306, 0.4056, 0.3700, 0.2205, 0.0000),
    30: (1.0000, 0.9154, 0.8026, 0.7525, 0.7091, 0.6758, 0.6570, 0.6341, 0.6194, 0.6047,
         0.5897, 0.5776, 0.5637, 0.5524, 0.5395, 0.5290, 0.5171, 0.5056, 0.4919, 0.4784,
         0.4640, 0.4465, 0.4291, 0.4101, 0.3850, 0.3576, 0.3226, 0.2792, 0.1345, 0.0000),
}  # fmt: skip


@functools.lru_cache(maxsize=64)
def _tuned_relative(n: int) -> np.ndarray:
    """The relative log-sigma positions of the `n` positive levels of `tuned(n, ...)`."""
    if n == 1:
        return np.ones(1)
    u = np.linspace(0.0, 1.0, n)
    tuned_n = sorted(_TUNED_KNOTS)

    def shape(m):  # the m-step tuned grid as a piecewise-linear function of i / (m - 1)
        rel = np.asarray(_TUNED_KNOTS[m], np.float64)
        return np.interp(u, np.linspace(0.0, 1.0, rel.size), rel)

    if n in _TUNED_KNOTS:
        rel = np.asarray(_TUNED_KNOTS[n], np.float64)
    elif n < tuned_n[0]:
        rel = shape(tuned_n[0])
    elif n > tuned_n[-1]:
        rel = shape(tuned_n[-1])
    else:
        lo = max(m for m in tuned_n if m < n)
        hi = min(m for m in tuned_n if m > n)
        w = (math.log(n) - math.log(lo)) / (math.log(hi) - math.log(lo))
        rel = (1 - w) * shape(lo) + w * shape(hi)
    rel = rel.copy()
    rel[0], rel[-1] = 1.0, 0.0
    rel.flags.writeable = False
    return rel


def tuned(n, sigma_min, sigma_max, *, dtype=None):
    r"""Grids tuned for `jaxdiff.samplers.IPNDM` (default options) on the probability-flow
    ODE of many Gaussian mixtures, in the spirit of Align Your Steps (Sabour et al. 2024) and
    GITS (Chen et al. 2024), with the trajectory error itself as the objective.

    For each of the step counts `5, 10, 15, 20, 30`, `optimize` (200 Adam steps from
    `karras`, `objective="log_rms"`, 128 noise draws per mixture) chose the grid from
    `sigma_max = 80` to `sigma_min = 0.002` minimizing the geometric mean, over twelve random
    mixtures in 2-D and 16-D (different component counts, spreads and widths), of the RMS
    distance between an `IPNDM` solve and a 512-step Heun reference solve from the same
    noise; `benchmarks/tune_schedule.py` regenerates the numbers and checks the transfer to
    held-out mixtures (other seeds, 8-D and 32-D, the `ring`/`grid` presets). The grids are
    stored as relative positions in $\log\sigma$,
    $r_i = (\log\sigma_i - \log\sigma_{min}) / (\log\sigma_{max} - \log\sigma_{min})$, and
    mapped to `[sigma_min, sigma_max]` by the same affine map in $\log\sigma$ (so a different
    range keeps the shape, as `ays` does). At a tuned `n` the grid is the tuned one; between
    two tuned step counts $n_a < n < n_b$ it blends their grids, each interpolated linearly
    at $i/(n-1)$ against its normalized index (AYS's log-linear interpolation), with weight
    $\log(n/n_a)/\log(n_b/n_a)$; outside the tuned range it interpolates the nearest tuned
    grid. Every such blend is strictly decreasing. `n = 1` gives `[sigma_max, 0]`.

    The grids spend their steps where mixtures split into modes (roughly sigma 0.1 to 3 for
    unit-scale data) and take large steps near `sigma_max`. They suit data of roughly unit
    scale (as for EDM-preconditioned models); other samplers on them are not tuned.

    **Returns:** the `n + 1` levels, last `0`.
    """
    n, sigma_min, sigma_max, dtype = _prepare(n, sigma_min, sigma_max, dtype)
    return _ays(n, sigma_min, sigma_max, jnp.asarray(_tuned_relative(n), dtype))


# Not a schedule function itself (it tunes one), so not in __all__.
from ._optimize_schedule import (  # noqa: E402
    OptimizedSchedule as OptimizedSchedule,
    optimize as optimize,
)
