r"""Training losses for denoisers, score networks and noise-prediction networks.

All losses average over the batch and over the elements of each sample (a per-element mean, so
that the loss scale does not depend on the data dimension; the papers sum over elements, which
multiplies a loss by the number of elements per sample and leaves its minimiser unchanged).
Every loss draws its noise levels and noise from one explicit `key`, is jit-able, and calls the
model once on the whole batch with one noise level per sample (shape `(batch,)`).

- `edm_loss`: Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
  Models", eq. 8 with Table 1's training settings.
- `dsm_loss`: denoising score matching (Vincent 2011) for any process in EDM's form, with the
  weightings of Song et al. 2021 ("Score-Based Generative Modeling through SDEs") and Song,
  Durkan, Murray & Ermon 2021 ("Maximum Likelihood Training of Score-Based Diffusion Models").
- `ddpm_loss`: Ho et al. 2020, "Denoising Diffusion Probabilistic Models", $L_{simple}$; with the
  beta schedules `linear_betas` (Ho et al.) and `cosine_betas` (Nichol & Dhariwal 2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..processes import AbstractProcess

__all__ = ["cosine_betas", "ddpm_loss", "dsm_loss", "edm_loss", "linear_betas"]

_WEIGHTINGS = ("likelihood", "sigma2", "none")


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_model(name: str, model) -> None:
    if not callable(model):
        raise TypeError(f"{name} must be callable, got {type(model).__name__}")


def _check_x0(x0) -> jax.Array:
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise TypeError(f"x0 must be a floating array, got dtype {x0.dtype}")
    if x0.ndim < 2 or x0.shape[0] == 0:
        raise ValueError(f"x0 must be a non-empty batch of shape (batch, ...), got {x0.shape}")
    return x0


def _check_labels(labels, batch: int):
    if labels is None:
        return None
    labels = jnp.asarray(labels)
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape (batch,) = ({batch},), got {labels.shape}")
    return labels


def _call(model, x, noise, labels):
    out = model(x, noise) if labels is None else model(x, noise, labels=labels)
    if jnp.shape(out) != x.shape:
        raise ValueError(
            f"the model must return an array shaped like x {x.shape}, got {jnp.shape(out)}"
        )
    return out


def _per_sample(v, x0):
    """A `(batch,)` vector shaped `(batch, 1, ..., 1)` against `x0`."""
    return v.reshape(v.shape + (1,) * (x0.ndim - 1))


def _mean_per_sample(err):
    return jnp.mean(err, axis=tuple(range(1, err.ndim)))


def edm_loss(
    denoiser: Callable,
    x0,
    key,
    *,
    labels=None,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = 0.5,
) -> jax.Array:
    r"""The EDM training loss (Karras et al. 2022, eq. 8 and Table 1):

    $$\mathcal L = \mathbb E_{\sigma, x_0, n}\Big[\lambda(\sigma)\,
    \tfrac1d\lVert D(x_0 + n;\sigma) - x_0\rVert^2\Big],\quad
    \ln\sigma \sim \mathcal N(P_{mean}, P_{std}^2),\ n \sim \mathcal N(0, \sigma^2 I),\
    \lambda(\sigma) = \frac{\sigma^2 + \sigma_d^2}{(\sigma\,\sigma_d)^2},$$

    a per-element mean over the `d` elements of a sample (EDM sums; see the module docstring),
    then a mean over the batch. $\lambda = 1/c_{out}^2$, so the loss is about 1 at
    initialisation for an `EDMPrecond` network with a zero output, and exactly 1 at the optimum
    for Gaussian data of variance $\sigma_d^2$ per element.

    **Arguments:** `denoiser(x, sigma)` (or `denoiser(x, sigma, labels=labels)` when `labels` is
    given) with `sigma` of shape `(batch,)`, e.g. `EDMPrecond(net)`; `x0` clean data
    `(batch, ...)`; `key`; `labels` int `(batch,)` or `None`; `p_mean`, `p_std` of the log-normal
    noise levels; `sigma_data` (the data's standard deviation, as in `EDMPrecond`).

    **Returns:** the scalar loss, in `x0.dtype`.
    """
    _check_model("denoiser", denoiser)
    x0 = _check_x0(x0)
    labels = _check_labels(labels, x0.shape[0])
    if _is_concrete(p_std) and not float(p_std) > 0:
        raise ValueError(f"p_std must be > 0, got {p_std}")
    if _is_concrete(sigma_data) and not float(sigma_data) > 0:
        raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
    k_sigma, k_noise = jr.split(key)
    dtype = x0.dtype
    sigma = jnp.exp(p_mean + p_std * jr.normal(k_sigma, (x0.shape[0],), dtype)).astype(dtype)
    noise = jr.normal(k_noise, x0.shape, dtype)
    x = x0 + _per_sample(sigma, x0) * noise
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    err = (_call(denoiser, x, sigma, labels) - x0) ** 2
    return jnp.mean(weight * _mean_per_sample(err)).astype(dtype)


def dsm_loss(
    score_model: Callable,
    process: AbstractProcess,
    x0,
    key,
    *,
    weighting: str = "likelihood",
    t_eps: float = 1e-5,
    labels=None,
) -> jax.Array:
    r"""Denoising score matching (Vincent 2011) for a process in EDM's form,
    $x_t = s(t)(x_0 + \sigma(t)\varepsilon)$ (any jaxdiff process: VP, SubVP, VE, EDM, cosine):

    $$\mathcal L = \mathbb E_{t, x_0, \varepsilon}\Big[\lambda(t)\,\tfrac1d\Big\lVert
    s_\theta(x_t, t) + \frac{\varepsilon}{s(t)\sigma(t)}\Big\rVert^2\Big],
    \qquad t \sim \mathcal U(t_\varepsilon, t_{max}),$$

    since $-\varepsilon/(s\sigma) = \nabla_{x_t}\log p(x_t \mid x_0)$ (Song et al. 2021,
    "Score-Based Generative Modeling through SDEs", eq. 7; per-element mean as their
    `reduce_mean=True`). Weightings $\lambda(t)$:

    - `"sigma2"`: the marginal variance $(s\sigma)^2$, Song et al.'s default
      ($\lambda \propto 1/\mathbb E\lVert\nabla\log p(x_t\mid x_0)\rVert^2$); computed as
      $\lVert s\sigma\,s_\theta + \varepsilon\rVert^2$;
    - `"likelihood"`: $g(t)^2$, the squared diffusion coefficient of the forward SDE, for which
      the loss bounds the negative log-likelihood (Song, Durkan, Murray & Ermon 2021, "Maximum
      Likelihood Training of Score-Based Diffusion Models", Theorem 1);
    - `"none"`: $\lambda = 1$.

    `t_eps` keeps $t$ away from 0 where the target's variance $1/(s\sigma)^2$ blows up (Song et
    al. use `1e-5`); times run up to `process.t_max`.

    **Arguments:** `score_model(x_t, t)` (or `(x_t, t, labels=labels)`) with `t` of shape
    `(batch,)`, returning the score; `process`; `x0` `(batch, ...)`; `key`; `weighting`; `t_eps`
    with `0 <= t_eps < process.t_max`; `labels`.

    **Returns:** the scalar loss, in `x0.dtype`.
    """
    _check_model("score_model", score_model)
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be a jaxdiff process, got {type(process).__name__}")
    if weighting not in _WEIGHTINGS:
        raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}")
    x0 = _check_x0(x0)
    labels = _check_labels(labels, x0.shape[0])
    if _is_concrete(t_eps) and _is_concrete(process.t_max):
        if not 0 <= float(t_eps) < float(process.t_max):
            raise ValueError(f"t_eps must lie in [0, t_max={process.t_max}), got {t_eps}")
    k_t, k_noise = jr.split(key)
    dtype = x0.dtype
    t = jr.uniform(k_t, (x0.shape[0],), dtype, minval=t_eps, maxval=process.t_max)
    s, sigma = process.scale(t).astype(dtype), process.sigma(t).astype(dtype)
    std = s * sigma  # the marginal standard deviation of x_t | x0
    eps = jr.normal(k_noise, x0.shape, dtype)
    x_t = _per_sample(s, x0) * (x0 + _per_sample(sigma, x0) * eps)
    score = _call(score_model, x_t, t, labels)
    if weighting == "sigma2":
        loss = _mean_per_sample((_per_sample(std, x0) * score + eps) ** 2)
    else:
        loss = _mean_per_sample((score + eps / _per_sample(std, x0)) ** 2)
        if weighting == "likelihood":
            loss = process.diffusion_coef(t).astype(dtype) ** 2 * loss
    return jnp.mean(loss).astype(dtype)


def _check_betas(betas) -> jax.Array:
    betas = jnp.asarray(betas)
    if betas.ndim != 1 or betas.shape[0] == 0:
        raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
    if not jnp.issubdtype(betas.dtype, jnp.floating):
        raise TypeError(f"betas must be floating, got dtype {betas.dtype}")
    if _is_concrete(betas) and not (float(jnp.min(betas)) > 0 and float(jnp.max(betas)) < 1):
        raise ValueError("betas must lie in (0, 1)")
    return betas


def ddpm_loss(eps_model: Callable, x0, key, *, betas, labels=None) -> jax.Array:
    r"""DDPM's simple loss (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", eq. 14):

    $$L_{simple} = \mathbb E_{n, x_0, \varepsilon}\,\tfrac1d\big\lVert \varepsilon -
    \varepsilon_\theta(\sqrt{\bar\alpha_n}\,x_0 + \sqrt{1-\bar\alpha_n}\,\varepsilon,\ n)
    \big\rVert^2,\qquad n \sim \mathcal U\{0, \dots, N-1\},\
    \bar\alpha_n = \prod_{i \le n}(1 - \beta_i),$$

    (0-based step index: Ho et al.'s $t = n + 1$), per-element mean, then batch mean.

    **Arguments:** `eps_model(x_n, n)` (or `(x_n, n, labels=labels)`) with `n` the int32 step
    indices, shape `(batch,)`; `x0` `(batch, ...)`; `key`; `betas` the `N` betas in `(0, 1)`
    (`linear_betas()`, `cosine_betas()`); `labels`.

    **Returns:** the scalar loss, in `x0.dtype`.
    """
    _check_model("eps_model", eps_model)
    x0 = _check_x0(x0)
    labels = _check_labels(labels, x0.shape[0])
    betas = _check_betas(betas)
    dtype = x0.dtype
    alpha_bar = jnp.cumprod(1 - betas.astype(dtype))
    k_n, k_noise = jr.split(key)
    n = jr.randint(k_n, (x0.shape[0],), 0, betas.shape[0], dtype=jnp.int32)
    ab = _per_sample(alpha_bar[n], x0)
    eps = jr.normal(k_noise, x0.shape, dtype)
    x_n = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps
    err = (_call(eps_model, x_n, n, labels) - eps) ** 2
    return jnp.mean(_mean_per_sample(err)).astype(dtype)


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return int(n)


def linear_betas(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> jax.Array:
    r"""DDPM's linear schedule (Ho et al. 2020): $\beta_i$ evenly spaced from `beta_start` to
    `beta_end`, `n` values in the default float dtype. `VP(beta_min=n beta_start,
    beta_max=n beta_end)` is its continuous-time limit at $t = (i + 1)/n$."""
    n = _check_n(n)
    if not 0 < float(beta_start) <= float(beta_end) < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return jnp.asarray(np.linspace(beta_start, beta_end, n), jnp.result_type(float))


def cosine_betas(n: int = 1000, s: float = 0.008, *, max_beta: float = 0.999) -> jax.Array:
    r"""The cosine schedule (Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic
    Models", eq. 17): $\bar\alpha(t) = \cos^2\big(\frac{t/n + s}{1 + s}\frac\pi2\big)$,
    $\beta_i = \min(1 - \bar\alpha(i+1)/\bar\alpha(i), \beta_{max})$, `n` values (computed in
    float64, returned in the default float dtype)."""
    n = _check_n(n)
    if not float(s) >= 0:
        raise ValueError(f"s must be >= 0, got {s}")
    if not 0 < float(max_beta) < 1:
        raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")
    t = np.arange(n + 1, dtype=np.float64) / n
    alpha_bar = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
    return jnp.asarray(betas, jnp.result_type(float))
