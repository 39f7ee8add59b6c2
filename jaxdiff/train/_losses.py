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
  beta schedules `linear_betas` (Ho et al.) and `cosine_betas` (Nichol & Dhariwal 2021), defined
  with the rest of the discrete-time chain in `jaxdiff.discrete` and re-exported here.
- `flow_matching_loss`: conditional flow matching (Lipman et al. 2023; Liu et al. 2023) on any
  affine path, with the logit-normal times of Esser et al. 2024 (Stable Diffusion 3) and the
  minibatch optimal-transport coupling of Tong et al. 2023 (OT-CFM, `ot_pairing`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import (
    check_callable,
    check_choice,
    check_float_array,
    check_instance,
    check_key,
    check_number,
    check_positive,
    is_traced,
)
from .._deprecation import keyword_key, process_after_state
from ..discrete._chain import alpha_bars_from_betas, check_betas, cosine_betas, linear_betas
from ..processes import AbstractFlow, AbstractProcess
from ..processes._flows import broadcast_coefficients
from ._coupling import OT_COUPLINGS, ot_pairing

__all__ = [
    "TIME_SAMPLINGS",
    "cosine_betas",
    "ddpm_loss",
    "dsm_loss",
    "edm_loss",
    "flow_matching_loss",
    "linear_betas",
]

_WEIGHTINGS = ("likelihood", "sigma2", "none")
#: How `flow_matching_loss` draws its times.
TIME_SAMPLINGS = ("uniform", "logit_normal")


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


@keyword_key("edm_loss", 2)
def edm_loss(
    denoiser: Callable,
    x0,
    *,
    key: jax.Array,
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
    check_callable("denoiser", denoiser, "denoiser(x, sigma)")
    x0 = check_float_array("x0", x0, batch=True, min_ndim=2)
    labels = _check_labels(labels, x0.shape[0])
    check_positive("p_std", p_std)
    check_positive("sigma_data", sigma_data)
    k_sigma, k_noise = jr.split(key)
    dtype = x0.dtype
    sigma = jnp.exp(p_mean + p_std * jr.normal(k_sigma, (x0.shape[0],), dtype)).astype(dtype)
    noise = jr.normal(k_noise, x0.shape, dtype)
    x = x0 + _per_sample(sigma, x0) * noise
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    err = (_call(denoiser, x, sigma, labels) - x0) ** 2
    return jnp.mean(weight * _mean_per_sample(err)).astype(dtype)


@keyword_key("dsm_loss", 3)
def dsm_loss(
    score_model: Callable,
    x0,
    process: AbstractProcess,
    *,
    key: jax.Array,
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
    `(batch,)`, returning the score; `x0` `(batch, ...)`; `process`; `key` (keyword-only; the
    old order `dsm_loss(score_model, process, x0, key)` warns); `weighting`; `t_eps`
    with `0 <= t_eps < process.t_max`; `labels`.

    **Returns:** the scalar loss, in `x0.dtype`.
    """
    x0, process = process_after_state(
        "dsm_loss", x0, process, AbstractProcess, "dsm_loss(score_model, x0, process, key=key)"
    )
    check_callable("score_model", score_model, "score_model(x_t, t)")
    check_instance("process", process, AbstractProcess, "a jaxdiff process")
    check_choice("weighting", weighting, _WEIGHTINGS)
    x0 = check_float_array("x0", x0, batch=True, min_ndim=2)
    labels = _check_labels(labels, x0.shape[0])
    if not is_traced((t_eps, process.t_max)):
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


@keyword_key("ddpm_loss", 2)
def ddpm_loss(eps_model: Callable, x0, *, key: jax.Array, betas, labels=None) -> jax.Array:
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
    check_callable("eps_model", eps_model, "eps_model(x_n, n)")
    x0 = check_float_array("x0", x0, batch=True, min_ndim=2)
    labels = _check_labels(labels, x0.shape[0])
    betas = check_betas(betas)
    dtype = x0.dtype
    alpha_bar = alpha_bars_from_betas(betas.astype(dtype))
    k_n, k_noise = jr.split(key)
    n = jr.randint(k_n, (x0.shape[0],), 0, betas.shape[0], dtype=jnp.int32)
    ab = _per_sample(alpha_bar[n], x0)
    eps = jr.normal(k_noise, x0.shape, dtype)
    x_n = jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * eps
    err = (_call(eps_model, x_n, n, labels) - eps) ** 2
    return jnp.mean(_mean_per_sample(err)).astype(dtype)


def flow_matching_loss(
    velocity: Callable,
    x0,
    flow: AbstractFlow,
    *,
    key: jax.Array,
    time_sampling: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    coupling: str | None = None,
    ot_epsilon: float = 0.05,
    labels=None,
) -> jax.Array:
    r"""The conditional flow-matching loss on an affine path
    $x_t = \alpha(t) x_0 + \beta(t)\varepsilon$ (Lipman et al. 2023, "Flow Matching for
    Generative Modeling"; Liu et al. 2023, "Flow Straight and Fast"; any `jaxdiff.AbstractFlow`:
    `RectifiedFlow`, `TrigFlow`, `AffineFlow`):

    $$\mathcal L = \mathbb E_{t, x_0, \varepsilon}\,\tfrac1d\big\lVert v_\theta(x_t, t) -
    (\dot\alpha(t)\,x_0 + \dot\beta(t)\,\varepsilon)\big\rVert^2,$$

    per-element mean, then batch mean. Its minimiser is the marginal velocity
    $E[\dot\alpha x_0 + \dot\beta\varepsilon \mid x_t]$ (under the joint law of $x_0$ and
    $\varepsilon$ that `coupling` makes), the field whose ODE carries the noise to the data
    (`jaxdiff.parametrizations.from_velocity` turns it into a denoiser for every sampler); for
    `RectifiedFlow` the target is $\varepsilon - x_0$. Cost: one call of `velocity` on the
    batch; a coupling adds its plan ($O(B^3)$ exact, $O(B^2)$ per Sinkhorn iteration).

    Times (`time_sampling`), mapped to `[flow.t_min, flow.t_max]`:

    - `"uniform"`: $t \sim \mathcal U$;
    - `"logit_normal"`: $t = \mathrm{sigmoid}(m + s\,n)$, $n \sim \mathcal N(0, 1)$ with
      `logit_mean` $m$ and `logit_std` $s$ (Esser et al. 2024, "Scaling Rectified Flow
      Transformers for High-Resolution Image Synthesis", Stable Diffusion 3: $m = 0$, $s = 1$),
      which puts more weight on the middle of the path.

    `coupling` pairs the batch's data and noise before the loss: `None` (independent draws),
    `"exact"` or `"sinkhorn"`, a minibatch optimal-transport plan (OT-CFM: Tong et al. 2023,
    "Improving and generalizing flow-based generative models with minibatch optimal
    transport"; see `ot_pairing`, with `ot_epsilon` its Sinkhorn regularisation). The noise is
    re-ordered, so `labels` stay with their data; with `labels` the plan pairs only within
    each label (the null label `-1` of label dropout is one more label), so that each class's
    noise stays standard normal.

    Randomness: `k_t, k_noise, k_pair = jax.random.split(key, 3)`; the times are
    `jax.random.uniform(k_t, (batch,), x0.dtype)` (or `jax.random.normal` for the logit-normal),
    then scaled to the flow's time range; the noise `jax.random.normal(k_noise, x0.shape,
    x0.dtype)`; `k_pair` draws the Sinkhorn pairing.

    **Arguments:** `velocity(x_t, t)` (or `(x_t, t, labels=labels)` when `labels` is given)
    with `t` of shape `(batch,)`, returning an array shaped like `x_t`; `x0` clean data
    `(batch, ...)`; `flow` the path; `key`; `time_sampling`; `logit_mean`, `logit_std`;
    `coupling`; `ot_epsilon`; `labels` int `(batch,)` (`-1` the null class of
    classifier-free guidance) or `None`.

    **Returns:** the scalar loss, in `x0.dtype`.
    """
    check_callable("velocity", velocity, "velocity(x_t, t)")
    check_instance("flow", flow, AbstractFlow, "a jaxdiff flow (RectifiedFlow, TrigFlow, ...)")
    check_key(key)
    check_choice("time_sampling", time_sampling, TIME_SAMPLINGS)
    if coupling is not None:
        check_choice("coupling", coupling, OT_COUPLINGS)
    check_number("logit_mean", logit_mean)
    check_positive("logit_std", logit_std)
    x0 = check_float_array("x0", x0, batch=True, min_ndim=2)
    labels = _check_labels(labels, x0.shape[0])
    k_t, k_noise, k_pair = jr.split(key, 3)
    dtype, batch = x0.dtype, x0.shape[0]
    if time_sampling == "uniform":
        u = jr.uniform(k_t, (batch,), dtype)
    else:
        u = jax.nn.sigmoid(logit_mean + logit_std * jr.normal(k_t, (batch,), dtype))
    t = (flow.t_min + (flow.t_max - flow.t_min) * u).astype(dtype)
    eps = jr.normal(k_noise, x0.shape, dtype)
    if coupling is not None:
        pairs = ot_pairing(x0, eps, method=coupling, key=k_pair, labels=labels, epsilon=ot_epsilon)
        eps = eps[pairs]
    alpha, beta, d_alpha, d_beta = broadcast_coefficients(flow, x0, t)
    x_t = alpha * x0 + beta * eps
    target = d_alpha * x0 + d_beta * eps
    err = (_call(velocity, x_t, t, labels) - target) ** 2
    return jnp.mean(_mean_per_sample(err)).astype(dtype)
