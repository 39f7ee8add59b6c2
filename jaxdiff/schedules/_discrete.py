r"""Grids for discrete-time models (DDPM, Stable Diffusion): the timestep spacings of diffusers'
schedulers as sigma grids, and the zero-terminal-SNR rescaling of an `alphas_cumprod` table."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice, check_count, check_float_dtype, is_traced
from ..discrete._chain import check_table

#: The timestep spacings of `discrete` (Lin et al. 2024, Table 2; diffusers' `timestep_spacing`).
SPACINGS: tuple[str, ...] = ("leading", "trailing", "linspace")


def discrete_timesteps(
    num_timesteps: int, n: int, *, spacing: str = "leading", steps_offset: int = 0
) -> np.ndarray:
    r"""The `n` timesteps (decreasing, int64, a host array) that diffusers' `DDIMScheduler`
    and `EulerDiscreteScheduler` choose from a model of `num_timesteps` (`T`) training steps
    with `timestep_spacing = spacing` (Lin et al. 2024, "Common Diffusion Noise Schedules and
    Sample Steps are Flawed", Table 2):

    - `"leading"`: $t_i = i\lfloor T/n\rfloor + \text{steps\_offset}$, `i = n-1 .. 0`
      (Stable Diffusion's configuration: `steps_offset = 1`); never reaches `T - 1`;
    - `"trailing"`: $t_i = \mathrm{round}(T - iT/n) - 1$, `i = 0 .. n-1`; starts at `T - 1`,
      the level a zero-terminal-SNR model starts from;
    - `"linspace"`: `n` values evenly spaced from `T - 1` down to 0, rounded (DDIM's rounding).

    They are computed with diffusers' own float64 arithmetic (numpy's `arange`, `linspace`
    and `round`, half to even), so they agree with diffusers to the last timestep, also for
    the few `n` where a value lands next to a tie. `steps_offset` applies to `"leading"` only,
    as in diffusers (the other spacings ignore it). Differences from diffusers: for some `n`
    (61, 103, ... with `T = 1000`) diffusers' `"trailing"` yields `n + 1` timesteps, the last
    `-1` (an index that wraps to the noisiest level); these are its first `n`.
    `EulerDiscreteScheduler` keeps `"linspace"`'s timesteps unrounded (fractional unless
    `(T - 1)/(n - 1)` is an integer; rounded, they are these) and interpolates its sigmas
    linearly in sigma between them.

    **Errors:** `n > num_timesteps`, or `"leading"` with a `steps_offset` that pushes the
    largest timestep past `T - 1`, are `ValueError`s.
    """
    num_timesteps = check_count("num_timesteps", num_timesteps, minimum=2)
    n = check_count("n", n)
    check_choice("spacing", spacing, SPACINGS)
    steps_offset = check_count("steps_offset", steps_offset, minimum=0)
    if n > num_timesteps:
        raise ValueError(
            f"n must be <= the number of timesteps ({num_timesteps}) of the model, got n={n}"
        )
    if spacing == "leading":
        ratio = num_timesteps // n
        ts = [i * ratio + steps_offset for i in range(n - 1, -1, -1)]
        if ts[0] >= num_timesteps:
            raise ValueError(
                f"steps_offset must keep the leading timesteps below {num_timesteps}: the "
                f"largest would be {ts[0]} (n={n}, steps_offset={steps_offset})"
            )
    elif spacing == "trailing":
        # numpy's float arithmetic, as diffusers: arange may give n + 1 values (ending at -1)
        ts = np.round(np.arange(num_timesteps, 0, -num_timesteps / n))[:n] - 1
    else:
        ts = np.round(np.linspace(0, num_timesteps - 1, n))[::-1]
    return np.asarray(ts, np.int64)


def discrete(
    alphas_cumprod,
    n: int,
    *,
    spacing: str = "leading",
    steps_offset: int = 0,
    dtype=None,
) -> jax.Array:
    r"""The sigma grid of a discrete-time model (`jaxdiff.parametrizations.from_discrete`)
    over the timesteps diffusers' schedulers pick with `timestep_spacing = spacing`
    (`discrete_timesteps`): `n + 1` levels, the model's own
    $\sigma_t = \sqrt{(1 - \bar\alpha_t)/\bar\alpha_t}$ at those timesteps, then `0`.

    If the first timestep has $\bar\alpha = 0$ (a zero-terminal-SNR table,
    `rescale_zero_terminal_snr`, with `"trailing"` or `"linspace"`) the grid starts at `inf`:
    `jaxdiff.sample` then starts from the unit-variance noise with the exact first step
    $x_1 = D(x, \infty) + \sigma_1 x$. Otherwise `jaxdiff.sample` starts from noise of std
    $\sigma_{t_0}$ in sigma-space, i.e. diffusers' unit-variance `latents` times
    $\sqrt{1 + \sigma_{t_0}^2}$.

    **The last step** goes to `sigma = 0`, i.e. $\bar\alpha = 1$ (the returned sample is the
    denoiser's estimate of $x_0$): that is DDIM's `set_alpha_to_one=True` (diffusers'
    `DDIMScheduler` default) and Euler's `final_sigmas_type="zero"`. With
    `set_alpha_to_one=False` (Stable Diffusion's scheduler config) diffusers' last DDIM step
    lands on $\bar\alpha_0$ instead (`sigma_0`, about 0.03 for SD, and the sample is not
    denoised to the end); a grid ending at `0` has no such step. On these grids
    `jaxdiff.sample` with `DDIM()` (Song, Meng & Ermon 2021) is diffusers' `DDIMScheduler`
    loop step for step for `"leading"`, and for `"trailing"` when `n` divides `T`: diffusers'
    DDIM steps from `t` to `t - T // n`, which is the next timestep only then (with
    `"linspace"` it is not: diffusers' DDIM then steps to a level the model is not evaluated
    at next).

    **Arguments:** `alphas_cumprod` the model's table (strictly decreasing in `(0, 1)`, the
    last entry possibly `0`; concrete: the grid is computed on the host in float64); `n`
    steps, `<= T`; `spacing` one of `"leading"`, `"trailing"`, `"linspace"`; `steps_offset`
    (`"leading"` only); `dtype` (default: the default float dtype).
    """
    if is_traced(alphas_cumprod):
        raise TypeError("alphas_cumprod must be concrete (the grid is computed on the host)")
    check_table(alphas_cumprod)
    ab = np.asarray(alphas_cumprod, np.float64)  # the host copy keeps float64 without x64
    dtype = check_float_dtype("dtype", dtype)
    ts = discrete_timesteps(ab.shape[0], n, spacing=spacing, steps_offset=steps_offset)
    chosen = ab[ts]
    with np.errstate(divide="ignore"):
        sigmas = np.sqrt((1 - chosen) / chosen)  # inf where abar = 0
    return jnp.asarray(np.append(sigmas, 0.0), dtype)


def rescale_zero_terminal_snr(alphas_cumprod) -> jax.Array:
    r"""An `alphas_cumprod` table rescaled to zero terminal SNR (Lin et al. 2024, "Common
    Diffusion Noise Schedules and Sample Steps are Flawed", Algorithm 1): $\sqrt{\bar\alpha}$
    shifted so that its last entry is exactly `0` and scaled so that its first is unchanged,

    $$\sqrt{\bar\alpha'_t} = (\sqrt{\bar\alpha_t} - \sqrt{\bar\alpha_{T-1}})
      \frac{\sqrt{\bar\alpha_0}}{\sqrt{\bar\alpha_0} - \sqrt{\bar\alpha_{T-1}}}.$$

    The paper (and diffusers' `rescale_zero_terminal_snr`) works on betas; this is the same
    map on their cumulative product (`jaxdiff.discrete.alpha_bars_from_betas` gives the table
    from betas, $\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}$ the betas back). The first entry
    is returned exactly as given. The model's last level is then `sigma = inf`:
    `discrete(..., spacing="trailing")` starts there, and a v-prediction network
    (`from_discrete(..., prediction="v")`) is exact at it. Jit-able.
    """
    ab = check_table(alphas_cumprod)
    root = jnp.sqrt(ab)
    first, last = root[0], root[-1]
    root = (root - last) * (first / (first - last))
    return (root**2).at[0].set(ab[0]).at[-1].set(0)
