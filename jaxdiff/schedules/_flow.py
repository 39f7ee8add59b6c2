r"""Sigma grids for flow models on the rectified-flow path $x_t = (1 - t) x_0 + t\varepsilon$
(t = 0 data, t = 1 noise): Stable Diffusion 3's static shift, Flux's resolution-dependent shift
and the exact grid of diffusers' `FlowMatchEulerDiscreteScheduler`.

A flow time $t$ and a noise level are one another's change of variables,
$\sigma = t / (1 - t)$ and $t = \sigma / (1 + \sigma)$ (`jaxdiff.RectifiedFlow`'s `sigma`
and `t_of_sigma`); $t = 1$ is $\sigma = \infty$, pure noise, where these grids start. In
sigma-space every time shift used by flow models is a rescaling: SD3's
$t' = s t / (1 + (s - 1) t)$ is $\sigma' = s\sigma$, Flux's exponential shift
$t' = e^\mu / (e^\mu + 1/t - 1)$ is $\sigma' = e^\mu\sigma$ and the linear one
$t' = \mu / (\mu + 1/t - 1)$ is $\sigma' = \mu\sigma$. So the grids are computed in sigma-space,
without the cancellation of $1 - t$ near $t = 1$.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._checks import (
    check_choice,
    check_count,
    check_float_dtype,
    check_number,
    check_positive,
    check_range,
    is_traced,
)
from ..processes import RectifiedFlow
from ._grid import core

SHIFT_TYPES = ("exponential", "linear")


# -- t <-> sigma --------------------------------------------------------------------------------
def flow_times(sigmas):
    r"""The rectified-flow times $t = \sigma / (1 + \sigma)$ of noise levels (`inf` -> 1,
    `0` -> 0), e.g. the times at which a flow network is called along a grid (diffusers'
    `timesteps` are `1000 t`). The inverse of `flow_sigmas`.

    **Arguments:** `sigmas` an array of noise levels `>= 0` (`inf` allowed).

    **Returns:** the times, an array of the same shape and floating dtype.
    """
    sigmas = jnp.asarray(sigmas)
    if not jnp.issubdtype(sigmas.dtype, jnp.floating):
        sigmas = sigmas.astype(float)
    return RectifiedFlow().t_of_sigma(sigmas)


def flow_sigmas(ts, *, dtype=None):
    r"""The noise levels $\sigma = t / (1 - t)$ of rectified-flow times `ts` in `[0, 1]`
    (`1` -> `inf`, `0` -> `0`): a decreasing time grid from 1 to 0, e.g. Meta's
    `flow_matching` `time_grid` read as `1 - ts`, becomes a sigma grid for `jaxdiff.sample`.
    The inverse of `flow_times`.

    **Arguments:** `ts` an array of times in `[0, 1]` (checked when concrete); `dtype` of the
    result (default: the dtype of `ts` if floating, else the default float dtype).

    **Returns:** the noise levels, an array of the shape of `ts`.
    """
    ts = jnp.asarray(ts)
    if dtype is None and jnp.issubdtype(ts.dtype, jnp.floating):
        dtype = ts.dtype
    dtype = check_float_dtype("dtype", dtype)
    if not is_traced(ts):
        arr = np.asarray(ts, np.float64)
        if not np.all((arr >= 0) & (arr <= 1)):
            raise ValueError(f"ts must be flow times in [0, 1], got {arr}")
    return RectifiedFlow().sigma(ts.astype(dtype))  # t / (1 - t), inf at t = 1


# -- the grids ----------------------------------------------------------------------------------
def flow(n, shift=1.0, *, terminal=None, dtype=None):
    r"""Uniform in flow time from $t = 1$ down to $t = 0$ ($t_i = 1 - i/n$) with Stable
    Diffusion 3's static shift (Esser et al. 2024, "Scaling Rectified Flow Transformers for
    High-Resolution Image Synthesis", eq. 23):

    $$t'_i = \frac{s\,t_i}{1 + (s - 1)\,t_i}, \qquad\text{i.e.}\quad \sigma'_i = s\,\sigma_i
      = s\,\frac{n - i}{i}.$$

    `shift > 1` spends more steps at high noise (SD3 uses 3.0). The first level is `inf`
    (pure noise: `x` is the unit-variance noise, see `jaxdiff.sample`), the last `0`. The
    grid of BFL's Flux `get_schedule` with the shift written $\mu = \log s$ (`flux`);
    diffusers' scheduler, as SD3's pipelines call it, stops at a small positive time before
    its last step instead (`diffusers_flow_match`).

    `terminal` in `(0, 1)` stretches the shifted times affinely in $1 - t$ so that the last
    positive time becomes `terminal`, keeping $t = 1$ (LTX-Video's schedule; diffusers'
    `shift_terminal` and its `stretch_shift_to_terminal`); it needs `n >= 2`.

    **Arguments:** `n` steps (`n + 1` levels, a Python int); `shift > 0`; `terminal`;
    `dtype` (default: the default float dtype). `shift` and `terminal` may be traced.

    **Returns:** the `n + 1` levels: `inf`, then strictly decreasing, last `0`.
    """
    n, dtype, terminal = _prepare(n, dtype, terminal)
    check_positive("shift", shift)
    return _flow_grid(n, jnp.asarray(shift, dtype), terminal)


def flux_mu(seq_len, *, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15):
    r"""Flux's resolution-dependent shift $\mu$ (Black Forest Labs' `get_lin_function`,
    diffusers' `calculate_shift`): linear in the image's sequence length (the number of
    latent patches, `(height / 16) * (width / 16)` for Flux), from `base_shift` at
    `base_seq_len` to `max_shift` at `max_seq_len` (and extrapolated beyond):

    $$\mu = \text{base\_shift} + (\text{seq\_len} - \text{base\_seq\_len})
      \frac{\text{max\_shift} - \text{base\_shift}}{\text{max\_seq\_len} - \text{base\_seq\_len}}.$$

    Computed in diffusers' order of operations, so the same float. A 1024 x 1024 Flux image
    (`seq_len = 4096`) gets `mu = 1.15`, i.e. $\sigma' = e^{1.15}\sigma \approx 3.16\,\sigma$.

    **Arguments:** `seq_len > 0`; `0 < base_seq_len < max_seq_len`; `base_shift`,
    `max_shift` finite.

    **Returns:** `mu` (a Python float for Python numbers), for `flux` or
    `diffusers_flow_match`.
    """
    check_positive("seq_len", seq_len)
    check_range("base_seq_len", base_seq_len, "max_seq_len", max_seq_len)
    check_number("base_shift", base_shift)
    check_number("max_shift", max_shift)
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return seq_len * m + b


def flux(n, mu, *, shift_type="exponential", terminal=None, dtype=None):
    r"""Uniform in flow time from $t = 1$ down to $t = 0$ with Flux's dynamic (resolution
    dependent) time shift, as diffusers' `time_shift(mu, 1.0, t)`:

    - `"exponential"` (Flux): $t' = e^\mu / (e^\mu + 1/t - 1)$, i.e. $\sigma' = e^\mu\sigma$;
    - `"linear"`: $t' = \mu / (\mu + 1/t - 1)$, i.e. $\sigma' = \mu\sigma$ (needs `mu > 0`).

    With $\sigma_i = (n - i)/i$ ($t_i = 1 - i/n$) the grid is BFL's Flux `get_schedule(n,
    seq_len)` (`mu = flux_mu(seq_len)`) and diffusers' `FluxPipeline` grid (which passes
    `sigmas = linspace(1, 1/n, n)` to the scheduler, then appends 0); `flux(n, log(s))` is
    `flow(n, s)`. `terminal` as in `flow`.

    **Arguments:** `n` steps (a Python int); `mu` finite (may be traced); `shift_type`;
    `terminal` in `(0, 1)`; `dtype`.

    **Returns:** the `n + 1` levels: `inf`, then strictly decreasing, last `0`.
    """
    n, dtype, terminal = _prepare(n, dtype, terminal)
    factor = _shift_factor(mu, shift_type)
    return _flow_grid(n, factor(jnp.asarray(mu, dtype)), terminal)


def diffusers_flow_match(
    n,
    *,
    shift=1.0,
    mu=None,
    shift_type="exponential",
    terminal=None,
    num_train_timesteps=1000,
    dtype=None,
):
    r"""The noise levels that diffusers' `FlowMatchEulerDiscreteScheduler.set_timesteps(n)`
    steps over, so that `jaxdiff.samplers.Euler` on this grid is the scheduler's
    `x_next = x + (t_next - t) v` step for step (from the same noise, with
    `jaxdiff.parametrizations.from_velocity`).

    The scheduler's times, in its own arithmetic: its training grid ends at
    `t_min = 1 / num_train_timesteps` (in float32), shifted once at construction when
    `mu is None`; `set_timesteps` spaces `n` times uniformly from 1 to that `t_min`, shifts
    them (again) by `shift` (`t' = shift t / (1 + (shift - 1) t)`) or, given `mu`
    (`use_dynamic_shifting=True`), by diffusers' `time_shift(mu, 1.0, t)` of `shift_type`
    (then `shift` is ignored, as there), stretches them to `terminal` (`shift_terminal`),
    stores them in float32, and appends 0. So the last positive time is `t_min` shifted
    twice (0.00893 for `shift = 3`, `n` any), not once (the scheduler's `sigma_min`, 0.00299),
    and the last step goes from there to 0. The levels are these float32 times as
    $\sigma = t / (1 - t)$, the first always `inf` (its time is 1 up to the float32 rounding
    of the shift).

    Compared with `flow(n, shift)`, the `n - 1` uniform steps reach a small positive time and
    the last step jumps from there to 0: the same number of levels, not the same levels.

    **Arguments:** `n` steps (a Python int; `n = 1` is `[inf, 0]`); `shift > 0`; `mu` finite
    or `None`; `shift_type` `"exponential"` or `"linear"` (with `mu`; `"linear"` needs
    `mu > 0`); `terminal` in `(0, 1)` (`n >= 2`); `num_train_timesteps` a positive int;
    `dtype`. All concrete Python numbers: the function reproduces the scheduler's float32 and
    float64 arithmetic on the host.

    **Returns:** the `n + 1` levels: `inf`, then strictly decreasing, last `0`.
    """
    n, dtype, terminal = _prepare(n, dtype, terminal, concrete=True)
    num_train = check_count("num_train_timesteps", num_train_timesteps)
    _check_concrete("shift", shift)
    check_positive("shift", shift)
    shift = float(shift)
    if mu is not None:
        _check_concrete("mu", mu)
        _shift_factor(mu, shift_type)
        mu = float(mu)
    else:
        check_choice("shift_type", shift_type, SHIFT_TYPES)

    # __init__: the training times N/N ... 1/N in float32, shifted unless dynamic
    f32 = np.float32
    ends = np.array([num_train, 1], f32) / f32(num_train)
    if mu is None:
        ends = f32(shift) * ends / (f32(1) + f32(shift - 1) * ends)
    t_max, t_min = float(ends[0]), float(ends[1])
    # set_timesteps: float64 on the host, then stored in float32
    t = np.linspace(t_max * num_train, t_min * num_train, n) / num_train
    if mu is None:
        t = shift * t / (1 + (shift - 1) * t)
    elif shift_type == "exponential":
        t = math.exp(mu) / (math.exp(mu) + (1 / t - 1))
    else:
        t = mu / (mu + (1 / t - 1))
    if terminal is not None:
        one_minus_t = 1 - t
        scale = one_minus_t[-1] / (1 - float(terminal))
        t = 1 - one_minus_t / scale
    t = t.astype(np.float32).astype(np.float64)
    sigmas = np.empty(n + 1)
    sigmas[0] = np.inf
    sigmas[1:n] = t[1:] / (1 - t[1:])
    sigmas[n] = 0.0
    return jnp.asarray(sigmas, dtype)


#: The flow grids that need only the step count (`f(n)`, options keyword-only or defaulted).
FLOW_SCHEDULES: tuple[str, ...] = ("diffusers_flow_match", "flow")


# -- shared -------------------------------------------------------------------------------------
def _check_concrete(name, value):
    if is_traced(value):
        raise TypeError(f"{name} must be a concrete number here, got a traced value")


def _prepare(n, dtype, terminal, *, concrete=False):
    n = check_count("n", n)
    dtype = check_float_dtype("dtype", dtype)
    if terminal is None:
        return n, dtype, None
    if concrete:
        _check_concrete("terminal", terminal)
    v = check_number("terminal", terminal)
    if v is not None and not 0 < v < 1:
        raise ValueError(f"terminal must be in (0, 1) (the last positive flow time), got {v}")
    if n < 2:
        raise ValueError(
            f"terminal needs n >= 2 (a positive time below t = 1 to stretch), got n={n}"
        )
    return n, dtype, jnp.asarray(terminal, dtype)


def _shift_factor(mu, shift_type):
    """The sigma-space factor of a dynamic shift: `exp` or the identity; checks `mu`."""
    check_choice("shift_type", shift_type, SHIFT_TYPES)
    v = check_number("mu", mu)
    if shift_type == "exponential":
        return jnp.exp
    if v is not None and v <= 0:
        raise ValueError(
            f"mu must be > 0 with shift_type='linear' (the shift is sigma' = mu sigma), got {v}"
        )
    return lambda m: m


@core
def _flow_grid(n, factor, terminal):
    i = jnp.arange(n + 1, dtype=factor.dtype)
    sigmas = factor * ((n - i) / i)  # t_i = 1 - i / n; i = 0: n / 0 = inf; i = n: 0
    if terminal is None:
        return sigmas
    # 1 - t'' = (1 - t') (1 - terminal) / (1 - t'_last), written in sigma without cancellation
    last = sigmas[n - 1]
    stretched = (sigmas - last + terminal * (1 + last)) / ((1 + last) * (1 - terminal))
    return sigmas.at[:n].set(stretched[:n])
