r"""Model parametrizations: turn eps-, x0-, v-, score- and F-prediction networks into the
universal sigma-space denoiser $D(x; \sigma) \approx E[x_0 \mid x_0 + \sigma \varepsilon = x]$.

A process in EDM's form (`jaxdiff.VP`, `jaxdiff.EDM`, ...) has
$x_t = s(t)(x_0 + \sigma(t)\varepsilon)$, i.e. $x_t = \alpha_t x_0 + \sigma_t \varepsilon$ with
$\alpha_t = s$ and $\sigma_t = s\sigma$. Networks trained on such a process see $x_t$ and $t$; the
wrappers below feed them $x_t = s\,y$ at $t = t(\sigma)$ for the sigma-space input $y$ and map
their output to $D(y; \sigma)$, so every sampler serves every process. All wrappers are equinox
Modules: the network's parameters stay pytree leaves (traced, no recompilation for new weights).

Preconditioners (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models", Table 1) wrap a raw network $F$ as $D = c_{skip}\,y + c_{out}\,F(c_{in}\,y, c_{noise})$;
they take `sigma` as a scalar (sampling) or one per sample, shape `(batch,)` (training), and pass
keyword arguments such as `labels=` on to $F$. `Conditional` and `ClassifierFreeGuidance` turn a
class-conditional denoiser `D(x, sigma, labels=...)` back into the `D(x, sigma)` samplers take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_callable, check_instance, is_traced
from ..processes import AbstractFlow, AbstractProcess, denoiser_from_score
from ..processes._base import process_input
from ..processes._vp import t_of_integrated_beta


def _check(model, process):
    check_callable("model", model, "model(x_t, t)")
    check_instance("process", process, AbstractProcess, "a jaxdiff process")


class _Wrapped(eqx.Module):
    model: Any
    process: AbstractProcess

    def _inputs(self, y, sigma):
        # at sigma = inf (pure noise, s = 0) y is the unit-variance noise: x_t = noise_std y
        x_t, t = process_input(self.process, y, sigma)
        return x_t, t, self.process.scale(t)


class EpsDenoiser(_Wrapped):
    """`D(y, sigma) = y - sigma eps(s y, t)`."""

    def __call__(self, y, sigma):
        x_t, t, _ = self._inputs(y, sigma)
        return y - sigma * self.model(x_t, t)


class X0Denoiser(_Wrapped):
    """`D(y, sigma) = x0(s y, t)`."""

    def __call__(self, y, sigma):
        x_t, t, _ = self._inputs(y, sigma)
        return self.model(x_t, t)


class VDenoiser(_Wrapped):
    """`D = (alpha x_t - sigma_t v) / (alpha^2 + sigma_t^2)`, `alpha = s`, `sigma_t = s sigma`."""

    def __call__(self, y, sigma):
        x_t, t, s = self._inputs(y, sigma)
        sigma_t = self.process.noise_std(t)
        return (s * x_t - sigma_t * self.model(x_t, t)) / (s**2 + sigma_t**2)


def from_eps(model: Callable, process: AbstractProcess) -> EpsDenoiser:
    r"""Denoiser of a noise-prediction network `model(x_t, t) ~ eps` (DDPM, Ho et al. 2020):
    $D(y;\sigma) = y - \sigma\,\hat\varepsilon(s y, t)$. It has no limit at `sigma = inf`
    (at zero SNR the noise prediction says nothing about $x_0$): a grid that starts from pure
    noise needs an x0-, v- or velocity-network (`from_x0`, `from_v`, `from_velocity`)."""
    _check(model, process)
    return EpsDenoiser(model, process)


def from_x0(model: Callable, process: AbstractProcess) -> X0Denoiser:
    """Denoiser of a data-prediction network `model(x_t, t) ~ x_0`."""
    _check(model, process)
    return X0Denoiser(model, process)


def from_v(model: Callable, process: AbstractProcess) -> VDenoiser:
    r"""Denoiser of a v-prediction network, $v = \alpha_t \varepsilon - \sigma_t x_0$
    (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models"):
    $x_0 = (\alpha_t x_t - \sigma_t v)/(\alpha_t^2 + \sigma_t^2)$ (the denominator is 1 for VP)."""
    _check(model, process)
    return VDenoiser(model, process)


def from_velocity(velocity: Callable, process: AbstractFlow):
    r"""Denoiser of a flow-matching velocity network `velocity(x_t, t) ~ E[v | x_t]` on an
    affine path `x_t = alpha(t) x_0 + beta(t) eps` (a `jaxdiff.RectifiedFlow`, `TrigFlow` or
    `AffineFlow`; t = 0 data, t = 1 noise):

    $$D(y;\sigma) = \frac{\beta v - \dot\beta x_t}{\dot\alpha\beta - \alpha\dot\beta},
      \qquad x_t = \alpha y,\ t = t(\sigma),$$

    i.e. `D = x_t - t v` for the linear path (Liu et al. 2023; Lipman et al. 2023). The result
    is a sigma-space denoiser for every sampler; at `sigma = inf` (t = 1, the start of a flow
    grid) `y` is the unit-variance noise and `x_t = beta(1) y`, so `jaxdiff.sample` can start
    from pure noise without offsets. For the opposite time convention (Meta's `flow_matching`,
    t = 0 noise) pass `lambda x, t: -velocity(x, 1 - t)`.
    """
    check_callable("velocity", velocity, "velocity(x_t, t)")
    check_instance("process", process, AbstractFlow, "a flow (jaxdiff.RectifiedFlow, ...)")
    return process.denoiser_from_velocity(velocity)


def from_score(model: Callable, process: AbstractProcess):
    r"""Denoiser of a score network `model(x_t, t) ~ grad log p_t(x_t)` (Song et al. 2021):
    $D(y;\sigma) = y + \sigma^2 s\,\hat s(s y, t)$ (Tweedie's formula)."""
    _check(model, process)
    return denoiser_from_score(model, process)


def _precondition(precond, x, sigma, kwargs):
    """`c_skip x + c_out F(c_in x, c_noise, **kwargs)`, sigma a scalar or one per sample.

    A per-sample `sigma` of shape `(B,)` gives coefficients of shape `(B,)`, reshaped to
    `(B, 1, ..., 1)` against `x`; `c_noise` reaches the network with shape `()` or `(B,)`.
    """
    sigma = jnp.asarray(sigma)
    c_skip, c_out, c_in, c_noise = precond.coefficients(sigma)
    if sigma.ndim:
        x_shape = jnp.shape(x)
        if sigma.ndim != 1 or not x_shape or x_shape[0] != sigma.shape[0]:
            raise ValueError(
                f"sigma must be a scalar or have shape (batch,) matching x's leading axis: "
                f"sigma has shape {sigma.shape}, x has shape {x_shape}"
            )
        per_sample = (sigma.shape[0],) + (1,) * (len(x_shape) - 1)
        c_skip, c_out, c_in = (jnp.reshape(c, per_sample) for c in (c_skip, c_out, c_in))
    return c_skip * x + c_out * precond.raw(c_in * x, c_noise, **kwargs)


class EDMPrecond(eqx.Module):
    r"""EDM preconditioning: $c_{skip} = \sigma_d^2/(\sigma^2+\sigma_d^2)$,
    $c_{out} = \sigma\sigma_d/\sqrt{\sigma^2+\sigma_d^2}$, $c_{in} = 1/\sqrt{\sigma^2+\sigma_d^2}$,
    $c_{noise} = \ln(\sigma)/4$; `sigma_data = 0.5` (Karras et al. 2022, Table 1)."""

    raw: Any
    sigma_data: float = 0.5

    def __check_init__(self):
        check_callable("raw", self.raw, "a network F(x, c_noise)")
        if not float(self.sigma_data) > 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data}")

    def coefficients(self, sigma):
        """`(c_skip, c_out, c_in, c_noise)` at `sigma`."""
        sd2 = self.sigma_data**2
        norm = jnp.sqrt(sigma**2 + sd2)
        return sd2 / (sigma**2 + sd2), sigma * self.sigma_data / norm, 1 / norm, jnp.log(sigma) / 4

    def __call__(self, x, sigma, **kwargs):
        """`D(x, sigma, **kwargs)`; `sigma` a scalar or shape `(batch,)`, `kwargs` (e.g.
        `labels=...`) passed on to the raw network."""
        return _precondition(self, x, sigma, kwargs)


class VPPrecond(eqx.Module):
    r"""VP preconditioning (Song et al. 2021 networks in EDM's form): $c_{skip} = 1$,
    $c_{out} = -\sigma$, $c_{in} = 1/\sqrt{\sigma^2+1}$, $c_{noise} = (M - 1)\,t(\sigma)$ with the
    VP inverse $t(\sigma)$ (`beta_d = 19.9`, `beta_min = 0.1`, `M = 1000`; Karras et al. 2022)."""

    raw: Any
    beta_d: float = 19.9
    beta_min: float = 0.1
    m: int = 1000

    def __check_init__(self):
        check_callable("raw", self.raw, "a network F(x, c_noise)")

    def coefficients(self, sigma):
        t = t_of_integrated_beta(jnp.log1p(sigma**2), self.beta_min, self.beta_min + self.beta_d)
        return jnp.ones_like(sigma), -sigma, 1 / jnp.sqrt(sigma**2 + 1), (self.m - 1) * t

    def __call__(self, x, sigma, **kwargs):
        """`D(x, sigma, **kwargs)`; `sigma` a scalar or shape `(batch,)`, `kwargs` (e.g.
        `labels=...`) passed on to the raw network."""
        return _precondition(self, x, sigma, kwargs)


class VEPrecond(eqx.Module):
    r"""VE preconditioning: $c_{skip} = 1$, $c_{out} = \sigma$, $c_{in} = 1$,
    $c_{noise} = \ln(\sigma/2)$ (Karras et al. 2022, Table 1)."""

    raw: Any

    def __check_init__(self):
        check_callable("raw", self.raw, "a network F(x, c_noise)")

    def coefficients(self, sigma):
        one = jnp.ones_like(sigma)
        return one, sigma, one, jnp.log(0.5 * sigma)

    def __call__(self, x, sigma, **kwargs):
        """`D(x, sigma, **kwargs)`; `sigma` a scalar or shape `(batch,)`, `kwargs` (e.g.
        `labels=...`) passed on to the raw network."""
        return _precondition(self, x, sigma, kwargs)


# -- class conditioning -----------------------------------------------------------------------
def _as_labels(labels) -> jax.Array:
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.ndim > 1:
        raise ValueError(f"labels must be a scalar or have shape (batch,), got {labels.shape}")
    if not is_traced(labels) and labels.size and int(jnp.min(labels)) < -1:
        raise ValueError(f"labels must be >= 0, or -1 for 'no label', got min {jnp.min(labels)}")
    return labels


def _batch_labels(labels, x) -> jax.Array:
    """`labels` (shape `()` or `(B,)`) broadcast to x's batch, with a shape check."""
    batch = jnp.shape(x)[0] if jnp.ndim(x) else None
    if labels.ndim == 0:
        if batch is None:
            raise ValueError("x must be batched (batch, ...) for a conditional denoiser")
        return jnp.broadcast_to(labels, (batch,))
    if batch != labels.shape[0]:
        raise ValueError(
            f"labels must have shape (batch,) matching x: labels has shape {labels.shape}, "
            f"x has shape {jnp.shape(x)}"
        )
    return labels


class Conditional(eqx.Module):
    """A class-conditional denoiser with its labels fixed: `D(x, sigma) =
    denoiser(x, sigma, labels=labels)`, the `(x, sigma)` form every sampler takes.

    `labels` (int, shape `(batch,)` or a scalar for the whole batch; `-1` for "no label") is a
    pytree leaf, so `jaxdiff.sample` with new labels of the same shape does not recompile.
    """

    denoiser: Any
    labels: jax.Array = eqx.field(converter=_as_labels)

    def __check_init__(self):
        check_callable("denoiser", self.denoiser, "denoiser(x, sigma, labels=...)")

    def __call__(self, x, sigma):
        return self.denoiser(x, sigma, labels=_batch_labels(self.labels, x))


class ClassifierFreeGuidance(eqx.Module):
    r"""Classifier-free guidance (Ho & Salimans 2021, "Classifier-Free Diffusion Guidance"),
    written for denoisers as

    $$D_w(x;\sigma) = D(x;\sigma,\varnothing) + w\,[D(x;\sigma,c) - D(x;\sigma,\varnothing)],$$

    $\varnothing$ the null label `-1` of a network trained with label dropout. `scale = w = 1`
    is the conditional denoiser, `0` the unconditional one, `w > 1` sharpens the class
    (Ho & Salimans write the same as $(1 + w')\,\varepsilon_c - w'\,\varepsilon_u$, $w = 1 + w'$).

    One network call per evaluation: `x` is concatenated with itself (labels `labels` then
    `-1`), so the sampler's NFE count is unchanged, the batch of the call doubles, and it works
    with every sampler of `jaxdiff.sample`. `labels` (int `(batch,)` or a scalar) and `scale` are
    pytree leaves: new values do not recompile.
    """

    denoiser: Any
    labels: jax.Array = eqx.field(converter=_as_labels)
    scale: jax.Array = eqx.field(converter=jnp.asarray)

    def __check_init__(self):
        check_callable("denoiser", self.denoiser, "denoiser(x, sigma, labels=...)")
        if jnp.ndim(self.scale) != 0:
            raise ValueError(f"scale must be a scalar, got shape {jnp.shape(self.scale)}")
        if not jnp.issubdtype(jnp.result_type(self.scale), jnp.number):
            raise TypeError(f"scale must be a number, got {self.scale!r}")

    def __call__(self, x, sigma):
        labels = _batch_labels(self.labels, x)
        batch = labels.shape[0]
        sigma = jnp.asarray(sigma)
        if sigma.ndim == 1:
            sigma = jnp.concatenate([sigma, sigma])
        both = self.denoiser(
            jnp.concatenate([x, x]),
            sigma,
            labels=jnp.concatenate([labels, jnp.full_like(labels, -1)]),
        )
        d_c, d_u = both[:batch], both[batch:]
        return d_u + self.scale.astype(d_u.dtype) * (d_c - d_u)
