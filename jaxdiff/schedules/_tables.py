"""The shipped schedule tables: Align Your Steps' published grids (`ays`) and the grids tuned
by `benchmarks/tune_schedule.py` (`tuned`), carried to any `n` and any `[sigma_min, sigma_max]`
by log-linear interpolation."""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from .._checks import check_choice
from ._grid import log_relative, prepare

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
    n, sigma_min, sigma_max, dtype = prepare(n, sigma_min, sigma_max, dtype)
    return log_relative(n, sigma_min, sigma_max, jnp.asarray(_tuned_relative(n), dtype))
