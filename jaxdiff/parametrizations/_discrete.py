r"""Discrete-time networks (DDPM, Stable Diffusion): a denoiser from a network trained on the
timesteps of an `alphas_cumprod` table, and dynamic thresholding as a denoiser transform.

A network of this kind sees the VP variables of its chain (Ho et al. 2020, "Denoising
Diffusion Probabilistic Models"): $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,
\varepsilon$ at an integer timestep $t = 0, \dots, T-1$. In sigma-space
$\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}$ and $x_t = y/\sqrt{1+\sigma^2}$, so
`from_discrete` feeds the network $x_t$ and the timestep of $\sigma$ (k-diffusion's
`DiscreteSchedule.sigma_to_t`) and maps its output to $D(y;\sigma)$.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_callable, check_choice, check_number, is_traced
from ..discrete._chain import check_table, sigmas_from_alpha_bars

#: The outputs a discrete-time network may predict (diffusers' "epsilon", "v_prediction",
#: "sample").
PREDICTIONS: tuple[str, ...] = ("eps", "v", "x0")


def sigmas_of(alphas_cumprod) -> jax.Array:
    r"""The sigma-space noise levels of a discrete-time model's timesteps,
    $\sigma_t = \sqrt{(1 - \bar\alpha_t)/\bar\alpha_t}$, `t = 0 .. T-1` (increasing; `inf`
    where $\bar\alpha_t = 0$, the last entry of a zero-terminal-SNR table). `alphas_cumprod`
    (diffusers' `scheduler.alphas_cumprod`, k-diffusion's `alphas_cumprod`) must be strictly
    decreasing in `(0, 1)`, the last entry possibly `0`."""
    return sigmas_from_alpha_bars(check_table(alphas_cumprod))


def _timestep(sigma, alphas_cumprod, quantize: bool):
    """k-diffusion's `DiscreteSchedule.sigma_to_t`: the nearest timestep in log sigma (int32;
    the first on a tie), or the timestep interpolated linearly in log sigma between the two
    neighbouring levels (clamped to `[0, T-1]`); `sigma = inf` is timestep `T-1`."""
    log_sigmas = jnp.log(sigmas_from_alpha_bars(alphas_cumprod))  # increasing, maybe ends at inf
    last = log_sigmas.shape[0] - 1
    infinite = jnp.isinf(sigma)
    log_sigma = jnp.log(jnp.where(infinite, 1, sigma)).astype(log_sigmas.dtype)
    if quantize:
        nearest = jnp.argmin(jnp.abs(log_sigma[..., None] - log_sigmas), axis=-1)
        return jnp.where(infinite, last, nearest)
    low = jnp.clip(jnp.searchsorted(log_sigmas, log_sigma, side="right") - 1, 0, last - 1)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    # a zero-terminal table's last level is inf: w = 0 below it (no interpolation to inf)
    w = jnp.clip((lo - log_sigma) / (lo - hi), 0, 1)
    t = (1 - w) * low + w * (low + 1)
    return jnp.where(infinite, jnp.asarray(last, t.dtype), t)


def _per_sample(sigma, x) -> tuple[int, ...]:
    """The shape the coefficients of `sigma` (a scalar or `(batch,)`) take against `x`."""
    if sigma.ndim == 0:
        return ()
    x_shape = jnp.shape(x)
    if sigma.ndim != 1 or not x_shape or x_shape[0] != sigma.shape[0]:
        raise ValueError(
            f"sigma must be a scalar or have shape (batch,) matching x's leading axis: "
            f"sigma has shape {sigma.shape}, x has shape {x_shape}"
        )
    return (sigma.shape[0],) + (1,) * (len(x_shape) - 1)


class DiscreteDenoiser(eqx.Module):
    r"""The sigma-space denoiser of a discrete-time network (see `from_discrete`).

    `alphas_cumprod` is a pytree leaf (traced: a new table of the same length does not
    recompile); `prediction` and `quantize` are static. `sigmas` is the model's sigma table,
    `timestep(sigma)` the timestep the network is called at.
    """

    model: Any
    alphas_cumprod: jax.Array
    prediction: str = eqx.field(static=True)
    quantize: bool = eqx.field(static=True)

    @property
    def sigmas(self) -> jax.Array:
        """The model's noise levels in sigma-space, `t = 0 .. T-1` (increasing)."""
        return sigmas_from_alpha_bars(self.alphas_cumprod)

    def timestep(self, sigma) -> jax.Array:
        """The network's timestep at `sigma` (int32 when quantized, else float)."""
        return _timestep(jnp.asarray(sigma), self.alphas_cumprod, self.quantize)

    def __call__(self, x, sigma, **kwargs):
        """`D(x, sigma, **kwargs)`, `sigma` a scalar or shape `(batch,)`; `kwargs` (labels,
        text embeddings ...) go on to the network."""
        sigma = jnp.asarray(sigma)
        shape = _per_sample(sigma, x)
        if self.prediction == "eps" and not is_traced(sigma) and bool(jnp.any(jnp.isinf(sigma))):
            raise ValueError(
                "sigma = inf needs an x0- or v-prediction network: an eps-prediction network "
                "has no denoiser at zero SNR (from_discrete(..., prediction='eps'))"
            )
        t = self.timestep(sigma)
        dtype = jnp.result_type(x)
        s = sigma.astype(dtype)
        infinite = jnp.isinf(s)
        # x_t = y / sqrt(1 + sigma^2); at sigma = inf y is the unit-variance noise: x_t = y
        c_in = jnp.where(infinite, 1, jax.lax.rsqrt(1 + jnp.where(infinite, 0, s) ** 2))
        out = self.model(jnp.reshape(c_in, shape) * x, t, **kwargs)
        if self.prediction == "x0":
            return out.astype(dtype)
        if self.prediction == "eps":
            # no limit at sigma = inf: NaN there (traced; concrete inf is an error above)
            c_out = jnp.where(infinite, jnp.nan, s)
            return (x - jnp.reshape(c_out, shape) * out).astype(dtype)
        # v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022):
        # x0 = abar y - sqrt(1 - abar) v, abar = 1 / (1 + sigma^2), and -v at sigma = inf
        c_skip = c_in**2 * jnp.where(infinite, 0, 1)
        c_out = jnp.where(infinite, -1, -s * c_in)
        return (jnp.reshape(c_skip, shape) * x + jnp.reshape(c_out, shape) * out).astype(dtype)


def from_discrete(
    model: Callable,
    alphas_cumprod,
    *,
    prediction: str = "eps",
    quantize: bool = True,
) -> DiscreteDenoiser:
    r"""The sigma-space denoiser of a discrete-time network `model(x_t, timestep, **kwargs)`
    (DDPM, Ho et al. 2020; Stable Diffusion's UNet), trained on the timesteps
    `t = 0 .. T-1` of the table `alphas_cumprod` ($\bar\alpha_t$, the cumulative product of
    $1 - \beta_t$) in its own VP variables, $x_t = \sqrt{\bar\alpha_t}\,x_0 +
    \sqrt{1-\bar\alpha_t}\,\varepsilon$.

    With $\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}$ (`sigmas_of`) the network gets
    $x_t = y/\sqrt{1+\sigma^2}$ and the timestep of $\sigma$ as k-diffusion's
    `DiscreteSchedule.sigma_to_t` picks it: with `quantize=True` the nearest table level in
    $\log\sigma$ (an int32 timestep), otherwise the timestep interpolated linearly in
    $\log\sigma$ between its neighbours (a float timestep, clamped to `[0, T-1]`). On a grid of
    the table's own levels (`jaxdiff.schedules.discrete`) both give the integer timesteps.
    The output maps to $D$ as k-diffusion's `DiscreteEpsDDPMDenoiser` /
    `DiscreteVDDPMDenoiser` do, with the input $\sigma$:

    - `prediction="eps"` (diffusers' "epsilon"): $D = y - \sigma\hat\varepsilon$;
    - `prediction="v"` ("v_prediction"; Salimans & Ho 2022, "Progressive Distillation for
      Fast Sampling of Diffusion Models"): $D = y/(1+\sigma^2) - \sigma\hat v/\sqrt{1+\sigma^2}$;
    - `prediction="x0"` ("sample"): $D = \hat x_0$.

    **Pure noise.** At `sigma = inf` the network gets $x_t = y$ (the unit-variance noise) and
    timestep `T-1`. For a zero-terminal-SNR table (last $\bar\alpha = 0$; Lin et al. 2024,
    "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    `jaxdiff.schedules.rescale_zero_terminal_snr`) that is exact: `v` gives $D = -\hat v$,
    `x0` gives $\hat x_0$. An eps-prediction network has no limit there (at zero SNR the noise
    prediction says nothing about $x_0$): a concrete `sigma = inf` is a `ValueError`, a traced
    one gives NaN; a grid from pure noise needs a v- or x0-network. On a table whose last
    $\bar\alpha > 0$, `sigma = inf` is the usual approximation of starting DDPM's chain from
    pure noise at its last timestep.

    `sigma` may be a scalar (sampling) or one per sample, shape `(batch,)` (the timestep then
    has shape `(batch,)` too); jit- and vmap-able. Keyword arguments of the call go on to the
    network.
    """
    check_callable("model", model, "model(x_t, timestep)")
    check_choice("prediction", prediction, PREDICTIONS)
    if not isinstance(quantize, bool):
        raise TypeError(f"quantize must be a bool, got {type(quantize).__name__} {quantize!r}")
    return DiscreteDenoiser(model, check_table(alphas_cumprod), prediction, quantize)


# -- dynamic thresholding ---------------------------------------------------------------------
class DynamicThresholding(eqx.Module):
    """A denoiser with dynamic thresholding (see `dynamic_thresholding`); `percentile` and
    `max_value` are pytree leaves."""

    denoiser: Any
    percentile: Any
    max_value: Any

    def __call__(self, x, sigma, **kwargs):
        d = self.denoiser(x, sigma, **kwargs)
        dtype = jnp.result_type(d)
        work = jnp.promote_types(dtype, jnp.float32)  # half precision: quantile in float32
        flat = jnp.reshape(d, (d.shape[0], -1)).astype(work)
        s = jnp.quantile(jnp.abs(flat), jnp.asarray(self.percentile, work), axis=1)
        s = jnp.clip(s, 1, jnp.asarray(self.max_value, work))[:, None]
        return jnp.reshape(jnp.clip(flat, -s, s) / s, d.shape).astype(dtype)


def dynamic_thresholding(
    denoiser: Callable, percentile: float = 0.995, max_value: float = 1.0
) -> DynamicThresholding:
    r"""Dynamic thresholding (Saharia et al. 2022, "Photorealistic Text-to-Image Diffusion
    Models with Deep Language Understanding", Imagen, Sec. 2.3) as a denoiser transform: per
    sample, $s = \min(\max(1, q_p(|D|)), s_{max})$ with $q_p$ the `percentile` quantile of the
    absolute values over the flattened sample, then $D \leftarrow \mathrm{clip}(D, -s, s)/s$.
    With $s = 1$ (every $|D| \le 1$ below the quantile) it is plain clipping to `[-1, 1]`,
    and the identity when all $|D| \le 1$.

    Follows diffusers' `_threshold_sample` (DDIM, DDPM, DPM-Solver schedulers' `thresholding=
    True`, `dynamic_thresholding_ratio = percentile`, `sample_max_value = max_value`): the
    quantile interpolates linearly between order statistics (`torch.quantile`'s default, as
    `jnp.quantile`'s), it is computed in float32 for half-precision inputs, and the result
    returns in the input dtype. Differences: diffusers thresholds inside a scheduler's step,
    this wraps any denoiser, so every sampler can use it (it acts on $D$ in sigma-space, which
    is diffusers' predicted $x_0$); `max_value` must be `>= 1` (diffusers' `clamp(min=1,
    max=max_value)` returns `max_value < 1` unchanged, i.e. shrinks every sample). The
    denoiser's output must be batch-first; `sigma` and keyword arguments pass through. No
    extra network evaluations.
    """
    check_callable("denoiser", denoiser, "denoiser(x, sigma)")
    p = check_number("percentile", percentile)
    if p is not None and not 0 < p <= 1:
        raise ValueError(f"percentile must lie in (0, 1], got {p}")
    m = check_number("max_value", max_value)
    if m is not None and not m >= 1:
        raise ValueError(f"max_value must be >= 1, got {m}")
    return DynamicThresholding(denoiser, percentile, max_value)
