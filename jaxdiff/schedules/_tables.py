"""The shipped schedule tables: Align Your Steps' published grids (`ays`) and the grids tuned
by `benchmarks/tune_schedule.py` (`tuned`; from pure noise, `tuned_flow`), carried to any `n`
and any `[sigma_min, sigma_max]` by log-linear interpolation."""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from .._checks import check_choice, check_count, check_float_dtype, check_positive, is_traced
from ._grid import carry_levels, log_relative, prepare

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
    check_choice("model", model, sorted(_AYS_LEVELS))
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    log_levels = np.log(np.asarray(_AYS_LEVELS[model], np.float64))
    rel = (log_levels - log_levels[-1]) / (log_levels[0] - log_levels[-1])  # 1 -> 0
    knots = np.linspace(0.0, 1.0, rel.size)
    rel_n = np.interp(np.linspace(0.0, 1.0, n), knots, rel)  # host side: n is static
    return log_relative(n, sigma_min, sigma_max, jnp.asarray(rel_n, dtype))


# Grids tuned by `benchmarks/tune_schedule.py` (see `tuned`) on three ranges at once through
# `carry`: for each step count n, the n positive levels of the grid on [0.002, 80] as relative
# positions (log sigma_i - log 0.002) / (log 80 - log 0.002), from 1 down to 0.
_TUNED_KNOTS = {
    5: (1.0000, 0.6868, 0.5483, 0.3320, 0.0000),
    10: (1.0000, 0.8087, 0.7357, 0.6509, 0.5873, 0.5293, 0.4658, 0.3775, 0.2528, 0.0000),
    15: (1.0000, 0.9433, 0.8315, 0.7751, 0.6820, 0.6312, 0.5908, 0.5654, 0.5365, 0.5082, 0.4768,
         0.4290, 0.3775, 0.3024, 0.0000),
    20: (1.0000, 0.9236, 0.8890, 0.8023, 0.7539, 0.7093, 0.6671, 0.6255, 0.5998, 0.5683, 0.5455,
         0.5219, 0.4964, 0.4699, 0.4412, 0.4002, 0.3549, 0.2948, 0.1093, 0.0000),
    30: (1.0000, 0.9249, 0.8439, 0.8177, 0.7813, 0.7390, 0.7144, 0.6884, 0.6631, 0.6469, 0.6240,
         0.6092, 0.5950, 0.5809, 0.5673, 0.5552, 0.5403, 0.5278, 0.5134, 0.4985, 0.4824, 0.4638,
         0.4444, 0.4184, 0.3938, 0.3599, 0.3206, 0.2687, 0.1039, 0.0000),
}  # fmt: skip


def _blend(knots: dict, n: int, m: int) -> tuple[np.ndarray, float, int, int]:
    """The tuned shapes of `knots` (step count -> relative positions, 1 -> 0) carried to `m`
    levels for `n` steps: `(relative positions, w, lo, hi)`, the blend of the two
    nearest tuned step counts `lo <= n <= hi` with weight `w` on `hi` (`log(n/lo) /
    log(hi/lo)`), each interpolated linearly at `i / (m - 1)` against its normalized index;
    the nearest tuned grid outside the tuned range."""
    u = np.linspace(0.0, 1.0, m)
    tuned_n = sorted(knots)

    def shape(k):  # the k-step tuned grid as a piecewise-linear function of i / (m - 1)
        rel = np.asarray(knots[k], np.float64)
        return np.interp(u, np.linspace(0.0, 1.0, rel.size), rel)

    if n <= tuned_n[0] or n >= tuned_n[-1]:
        k = tuned_n[0] if n <= tuned_n[0] else tuned_n[-1]
        return shape(k), 0.0, k, k
    if n in knots:
        return shape(n), 0.0, n, n
    lo = max(k for k in tuned_n if k < n)
    hi = min(k for k in tuned_n if k > n)
    w = (math.log(n) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (1 - w) * shape(lo) + w * shape(hi), w, lo, hi


def _frozen(rel: np.ndarray) -> np.ndarray:
    rel = rel.copy()
    rel[0], rel[-1] = 1.0, 0.0
    rel.flags.writeable = False
    return rel


@functools.lru_cache(maxsize=64)
def _tuned_relative(n: int) -> np.ndarray:
    """The relative log-sigma positions of the `n` positive levels of `tuned(n, ...)`."""
    if n == 1:
        return np.ones(1)
    if n in _TUNED_KNOTS:
        return _frozen(np.asarray(_TUNED_KNOTS[n], np.float64))
    return _frozen(_blend(_TUNED_KNOTS, n, n)[0])


# The range the tuned grids were tuned on (`benchmarks/tune_schedule.py`), for unit-scale data.
TUNED_SIGMA_MIN, TUNED_SIGMA_MAX = 0.002, 80.0


def tuned(n, sigma_min, sigma_max, *, sigma_data=1.0, dtype=None):
    r"""Grids tuned for `jaxdiff.samplers.IPNDM` (default options) on the probability-flow
    ODE of many Gaussian mixtures, in the spirit of Align Your Steps (Sabour et al. 2024) and
    GITS (Chen et al. 2024), with the trajectory error itself as the objective; anchored in
    absolute sigma, so that they hold on any range a model was trained on.

    For each of the step counts `5, 10, 15, 20, 30`, `optimize` chose the grid on
    `[0.002, 80]` minimizing the geometric mean, over twelve random mixtures in 2-D and 16-D
    (different component counts, spreads and widths) and three ranges (EDM's 80 -> 0.002,
    DDPM's 157.4 -> 0.0100, Stable Diffusion's 14.61 -> 0.0292, each reached by `carry`, see
    below), of the RMS distance between an `IPNDM` solve and a 512-step Heun reference solve
    from the same noise: first 200 Adam steps from `karras` on EDM's range alone (128 noise
    draws per mixture), then 120 Adam steps from there on the three ranges (64 draws;
    `optimize(..., ranges=...)`). `benchmarks/tune_schedule.py` regenerates the numbers and
    checks the transfer to held-out mixtures (other seeds, 8-D and 32-D, the `ring`/`grid`
    presets); `benchmarks/frontier.py` compares them with diffusers' and k-diffusion's best
    on EDM's and DDPM's ranges. Between two
    tuned step counts $n_a < n < n_b$ the grid blends their grids, each interpolated linearly
    at $i/(n-1)$ against its normalized index (AYS's log-linear interpolation), with weight
    $\log(n/n_a)/\log(n_b/n_a)$; outside the tuned range it interpolates the nearest tuned
    grid. This gives the `n`-level *tuned grid* on `[0.002, 80]`.

    **Other ranges.** Where a grid needs its steps depends on the data, not on the range: the
    tuned grids spend them where mixtures split into modes (sigma about 0.1 to 3 for
    unit-scale data) and take large steps near the top. So the tuned grid, scaled by
    `sigma_data`, is carried to `[sigma_min, sigma_max]` by `carry`: read as a density of
    levels in absolute $\log\sigma$ (one level per tuned step, continued at its end values
    beyond 0.002 and 80), whose quantiles at equal spacings of its mass are the levels. On
    `[0.002, 80]` that is the tuned grid itself; a range that starts higher (e.g. DDPM's 157)
    adds a long step at the top, one that stops higher (e.g. 0.01) drops the tuned levels
    below it and spreads their steps over the rest, and the dense region stays at the same
    sigmas. Tuned through this carrying on three ranges, the grids hold on each; other
    ranges are carried the same way, but only those three were tuned on. (Releases before
    0.4.0 stretched the tuned grid affinely in $\log\sigma$ over the range, which moved the
    dense region with it: on DDPM's 157 -> 0.01 that lost to diffusers' schedulers.)

    **Arguments:** `n` steps (a Python int); `sigma_min < sigma_max` (may be traced);
    `sigma_data`: the scale of the data (its standard deviation, as EDM's `sigma_data`; the
    tuning mixtures had unit-order scales, the default 1; a concrete positive number);
    `dtype` (default: the default float dtype).

    **Returns:** the `n + 1` levels, last `0`; `n = 1` gives `[sigma_max, 0]`.
    """
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    check_positive("sigma_data", sigma_data)
    if is_traced(sigma_data):
        raise TypeError("sigma_data must be a concrete number, not traced")
    if n == 1:
        return jnp.stack([sigma_max, jnp.zeros((), dtype)])
    log_lo, log_hi = math.log(TUNED_SIGMA_MIN), math.log(TUNED_SIGMA_MAX)
    levels = log_lo + _tuned_relative(n) * (log_hi - log_lo) + math.log(float(sigma_data))
    return carry_levels(n, sigma_min, sigma_max, jnp.asarray(levels, dtype))


# Grids from pure noise tuned by `benchmarks/tune_schedule.py --from-noise` (see
# `tuned_flow`): for each step count n (the step from inf included), the first finite level
# sigma_1 and the n - 1 finite positive levels as relative positions (log sigma_i -
# log sigma_min) / (log sigma_1 - log sigma_min), from 1 down to 0.
_TUNED_FLOW: dict[int, tuple[float, tuple[float, ...]]] = {
    5: (4.962, (1.0000, 0.8693, 0.6930, 0.0000)),
    8: (14.88, (1.0000, 0.8851, 0.7708, 0.6686, 0.5561, 0.3955, 0.0000)),
    10: (26.02, (1.0000, 0.8880, 0.7827, 0.6985, 0.6266, 0.5551, 0.4578, 0.3181, 0.0000)),
    15: (45.96, (1.0000, 0.9365, 0.8229, 0.7312, 0.6790, 0.6327, 0.6026, 0.5666, 0.5358, 0.4980,
                 0.4510, 0.3959, 0.3180, 0.0000)),
    20: (39.11, (1.0000, 0.9321, 0.8466, 0.7748, 0.7237, 0.6817, 0.6571, 0.6247, 0.6013, 0.5798,
                 0.5580, 0.5372, 0.5111, 0.4869, 0.4540, 0.4152, 0.3617, 0.2919, 0.0000)),
    30: (41.39, (1.0000, 0.9391, 0.9038, 0.8498, 0.7959, 0.7678, 0.7398, 0.7138, 0.6939, 0.6699,
                 0.6547, 0.6349, 0.6182, 0.6056, 0.5915, 0.5775, 0.5626, 0.5502, 0.5329, 0.5165,
                 0.4990, 0.4786, 0.4577, 0.4303, 0.4041, 0.3671, 0.2724, 0.1835, 0.0000)),
}  # fmt: skip


@functools.lru_cache(maxsize=64)
def _tuned_flow_levels(n: int) -> tuple[float, np.ndarray]:
    """`(sigma_1, relative positions of the n - 1 finite levels)` of `tuned_flow(n)`, n >= 3."""
    if n in _TUNED_FLOW:
        first, rel = _TUNED_FLOW[n]
        return first, _frozen(np.asarray(rel, np.float64))
    shapes = {k: rel for k, (_, rel) in _TUNED_FLOW.items()}
    rel, w, lo, hi = _blend(shapes, n, n - 1)
    log_first = (1 - w) * math.log(_TUNED_FLOW[lo][0]) + w * math.log(_TUNED_FLOW[hi][0])
    return math.exp(log_first), _frozen(rel)


def tuned_flow(n, *, sigma_min=0.002, dtype=None):
    r"""Grids from pure noise (`sigma = inf`, t = 1 of a flow) tuned for
    `jaxdiff.samplers.IPNDM` (default options) on the probability-flow ODE of many Gaussian
    mixtures: `[inf, sigma_1, ..., sigma_min, 0]`, for flow models (`jaxdiff.RectifiedFlow`,
    `TrigFlow`: every affine flow has the same sigma-space ODE) and other models that start
    from pure noise. NFE: `1 + IPNDM().nfe(n - 1) = n`.

    The first step, from `inf`, is `jaxdiff.sample`'s fixed first-order step
    (`x_1 = D(x, inf) + sigma_1 x`); for each of the step counts `5, 8, 10, 15, 20, 30`,
    `optimize` with `sigma_max=inf` (300 Adam steps at learning rate 0.02 from `[inf]` +
    `karras(n - 1, 0.002, 20)`, `objective="log_rms"`, 128 noise draws per mixture) tuned
    everything after it, `sigma_1` included, minimizing the geometric mean over
    `benchmarks/tune_schedule.py`'s twelve training mixtures in 2-D and 16-D (none of them a
    benchmark or test problem) of the RMS distance to the exact endpoint of the ODE from the
    same noise. `benchmarks/tune_schedule.py --from-noise` regenerates the numbers and checks
    the transfer to held-out mixtures. From 10 steps on, these grids put half or more of
    their levels below `sigma = 1` (unit-scale data), where `flow(n)` and
    `diffusers_flow_match(n)` have a handful and then one long last step in `log sigma`
    (from about `1/(n-1)` to 0, or to 0.001 then 0). At 5 steps the tuned grid fits the
    training set's wide mixtures and can lose to `flow(5)` on narrow 2-D modes.

    Stored per tuned `n`: `sigma_1` and the relative positions
    $r_i = (\log\sigma_i - \log\sigma_{min}) / (\log\sigma_1 - \log\sigma_{min})$ of the
    `n - 1` finite levels, mapped to `[sigma_min, sigma_1]` (another `sigma_min` keeps
    `sigma_1` and the shape). Between two tuned step counts $n_a < n < n_b$ both are
    blended with weight $\log(n/n_a)/\log(n_b/n_a)$ (`sigma_1` log-linearly, the shapes as
    in `tuned`); outside the tuned range the nearest tuned grid is interpolated. `n = 1` is
    `[inf, 0]`, `n = 2` is `[inf, sigma_min, 0]`. The levels suit data of roughly unit
    scale (`sigma_1` scales with the data).

    **Arguments:** `n` steps (a Python int); `sigma_min` the last positive level (below the
    table's `sigma_1`; may be traced); `dtype` (default: the default float dtype).

    **Returns:** the `n + 1` levels: `inf`, then strictly decreasing, last `0`.
    """
    n = check_count("n", n)
    check_positive("sigma_min", sigma_min)
    dtype = check_float_dtype("dtype", dtype)
    head = jnp.full((1,), jnp.inf, dtype)
    if n == 1:
        return jnp.concatenate([head, jnp.zeros(1, dtype)])
    if n == 2:
        return jnp.concatenate([head, jnp.asarray(sigma_min, dtype)[None], jnp.zeros(1, dtype)])
    first, rel = _tuned_flow_levels(n)
    if not is_traced(sigma_min) and not float(sigma_min) < first:
        raise ValueError(
            f"sigma_min must be < the tuned first level {first:.4g} of tuned_flow({n}), "
            f"got {float(sigma_min)}"
        )
    finite = log_relative(
        n - 1, jnp.asarray(sigma_min, dtype), jnp.asarray(first, dtype), jnp.asarray(rel, dtype)
    )
    return jnp.concatenate([head, finite])
