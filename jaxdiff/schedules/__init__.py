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

`SCHEDULES` names these functions (the benchmarks and the command line pick schedules by
these names). `carry(sigmas, n, sigma_min, sigma_max)` carries any grid to `n` steps on another
range keeping its levels where they are in absolute sigma (as `tuned` is carried off its tuning
range). `optimize` is not a schedule itself: it tunes a grid for a sampler by gradient
descent through the compiled sampler (`OptimizedSchedule` is its result).

Flow models (`jaxdiff.RectifiedFlow`: t = 0 data, t = 1 noise) step in flow time `t`; their
grids hold the levels `sigma = t / (1 - t)` (`t = sigma / (1 + sigma)`) in the same convention,
starting at `inf` (pure noise, t = 1). Every time shift of flow models rescales sigma. With
`sigma_i = (n - i) / i`, the levels of `t_i = 1 - i / n`:

| function | levels | source |
|---|---|---|
| `flow(n, shift)` | `shift sigma_i` (`t' = shift t / (1 + (shift - 1) t)`) | SD3 (Esser 2024) |
| `flux(n, mu)` | `e^mu sigma_i` (exponential), `mu sigma_i` (linear) | Flux; diffusers |
| `diffusers_flow_match` | what `FlowMatchEulerDiscreteScheduler` steps over | diffusers |
| `tuned_flow` | from `inf`, tuned for `IPNDM` on many mixtures | `tune_schedule.py --from-noise` |

`flux_mu(seq_len)` is Flux's resolution-dependent `mu`; `flow_times(sigmas)` and
`flow_sigmas(ts)` convert between the two variables; `terminal=` stretches a flow grid to a
given last positive time (diffusers' `shift_terminal`). `FLOW_SCHEDULES` names the flow grids
that need only `n` and take a `shift` (`f(n, shift, *, ..., dtype=None)`); `tuned_flow(n)` has
no shift.

Discrete-time models (DDPM, Stable Diffusion: `jaxdiff.parametrizations.from_discrete`) step
over their own table's levels: `discrete(alphas_cumprod, n, spacing=...)` is the grid of the
timesteps diffusers' schedulers pick (`discrete_timesteps`; `SPACINGS`: leading, trailing,
linspace), and `rescale_zero_terminal_snr(alphas_cumprod)` the zero-terminal-SNR table of
Lin et al. (2024), whose trailing grids start at `inf`.

The layout: `_closed_form.py` (the closed-form grids), `_flow.py` (the flow grids),
`_tables.py` (`ays`, `tuned` and their data), `_optimize.py` (`optimize`), `_discrete.py` (the
discrete-time grids), `_grid.py` (what
they share); the discrete iDDPM chain behind `iddpm` is `jaxdiff.discrete`'s.
"""

from ._closed_form import (
    edm_ve as edm_ve,
    exponential as exponential,
    iddpm as iddpm,
    karras as karras,
    kl_optimal as kl_optimal,
    logsnr_uniform as logsnr_uniform,
    polyexponential as polyexponential,
    vp as vp,
)
from ._discrete import (
    SPACINGS as SPACINGS,
    discrete as discrete,
    discrete_timesteps as discrete_timesteps,
    rescale_zero_terminal_snr as rescale_zero_terminal_snr,
)
from ._flow import (
    FLOW_SCHEDULES as FLOW_SCHEDULES,
    diffusers_flow_match as diffusers_flow_match,
    flow as flow,
    flow_sigmas as flow_sigmas,
    flow_times as flow_times,
    flux as flux,
    flux_mu as flux_mu,
)
from ._grid import carry as carry
from ._optimize import OptimizedSchedule as OptimizedSchedule, optimize as optimize
from ._tables import ays as ays, tuned as tuned, tuned_flow as tuned_flow

#: The names of the schedule functions, each `f(n, sigma_min, sigma_max, ..., dtype=None)`.
SCHEDULES: tuple[str, ...] = (
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
)

__all__ = [
    *SCHEDULES,
    "SCHEDULES",
    "OptimizedSchedule",
    "optimize",
    "carry",
    # FLOW_SCHEDULES's names, written out: documentation tools read `__all__` statically
    "diffusers_flow_match",
    "flow",
    "FLOW_SCHEDULES",
    "flux",
    "flux_mu",
    "flow_times",
    "flow_sigmas",
    "tuned_flow",
    "discrete",
    "discrete_timesteps",
    "rescale_zero_terminal_snr",
    "SPACINGS",
]
