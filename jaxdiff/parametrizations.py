r"""Model parametrizations: turn eps-, x0-, v-, score- and F-prediction networks into the
universal sigma-space denoiser $D(x; \sigma) \approx E[x_0 \mid x_0 + \sigma \varepsilon = x]$.

A process in EDM's form (`jaxdiff.VP`, `jaxdiff.EDM`, ...) has
$x_t = s(t)(x_0 + \sigma(t)\varepsilon)$, i.e. $x_t = \alpha_t x_0 + \sigma_t \varepsilon$ with
$\alpha_t = s$ and $\sigma_t = s\sigma$. Networks trained on such a process see $x_t$ and $t$; the
wrappers below feed them $x_t = s\,y$ at $t = t(\sigma)$ for the sigma-space input $y$ and map
their output to $D(y; \sigma)$, so every sampler serves every process. All wrappers are equinox
Modules: the network's parameters stay pytree leaves (traced, no recompilation for new weights).

Preconditioners (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models", Table 1) wrap a raw network $F$ as $D = c_{skip}\,y + c_{out}\,F(c_{in}\,y, c_{noise})$.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp

from ._processes import AbstractProcess, denoiser_from_score
from ._processes.vp import t_of_integrated_beta

__all__ = [
    "EDMPrecond",
    "VEPrecond",
    "VPPrecond",
    "from_eps",
    "from_score",
    "from_v",
    "from_x0",
]


def _check(model, process):
    if not callable(model):
        raise TypeError(f"model must be callable model(x_t, t), got {type(model).__name__}")
    if not isinstance(process, AbstractProcess):
        raise TypeError(f"process must be a jaxdiff process, got {type(process).__name__}")


class _Wrapped(eqx.Module):
    model: Any
    process: AbstractProcess

    def _inputs(self, y, sigma):
        t = self.process.t_of_sigma(sigma)
        s = self.process.scale(t)
        return s * y, t, s


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
        sigma_t = s * sigma
        return (s * x_t - sigma_t * self.model(x_t, t)) / (s**2 + sigma_t**2)


def from_eps(model: Callable, process: AbstractProcess) -> EpsDenoiser:
    r"""Denoiser of a noise-prediction network `model(x_t, t) ~ eps` (DDPM, Ho et al. 2020):
    $D(y;\sigma) = y - \sigma\,\hat\varepsilon(s y, t)$."""
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


def from_score(model: Callable, process: AbstractProcess):
    r"""Denoiser of a score network `model(x_t, t) ~ grad log p_t(x_t)` (Song et al. 2021):
    $D(y;\sigma) = y + \sigma^2 s\,\hat s(s y, t)$ (Tweedie's formula)."""
    _check(model, process)
    return denoiser_from_score(model, process)


def _check_raw(raw):
    if not callable(raw):
        raise TypeError(f"raw must be a callable network F(x, c_noise), got {type(raw).__name__}")


class EDMPrecond(eqx.Module):
    r"""EDM preconditioning: $c_{skip} = \sigma_d^2/(\sigma^2+\sigma_d^2)$,
    $c_{out} = \sigma\sigma_d/\sqrt{\sigma^2+\sigma_d^2}$, $c_{in} = 1/\sqrt{\sigma^2+\sigma_d^2}$,
    $c_{noise} = \ln(\sigma)/4$; `sigma_data = 0.5` (Karras et al. 2022, Table 1)."""

    raw: Any
    sigma_data: float = 0.5

    def __check_init__(self):
        _check_raw(self.raw)
        if not float(self.sigma_data) > 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data}")

    def coefficients(self, sigma):
        """`(c_skip, c_out, c_in, c_noise)` at `sigma`."""
        sd2 = self.sigma_data**2
        norm = jnp.sqrt(sigma**2 + sd2)
        return sd2 / (sigma**2 + sd2), sigma * self.sigma_data / norm, 1 / norm, jnp.log(sigma) / 4

    def __call__(self, x, sigma):
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        return c_skip * x + c_out * self.raw(c_in * x, c_noise)


class VPPrecond(eqx.Module):
    r"""VP preconditioning (Song et al. 2021 networks in EDM's form): $c_{skip} = 1$,
    $c_{out} = -\sigma$, $c_{in} = 1/\sqrt{\sigma^2+1}$, $c_{noise} = (M - 1)\,t(\sigma)$ with the
    VP inverse $t(\sigma)$ (`beta_d = 19.9`, `beta_min = 0.1`, `M = 1000`; Karras et al. 2022)."""

    raw: Any
    beta_d: float = 19.9
    beta_min: float = 0.1
    m: int = 1000

    def __check_init__(self):
        _check_raw(self.raw)

    def coefficients(self, sigma):
        t = t_of_integrated_beta(jnp.log1p(sigma**2), self.beta_min, self.beta_min + self.beta_d)
        return jnp.ones_like(sigma), -sigma, 1 / jnp.sqrt(sigma**2 + 1), (self.m - 1) * t

    def __call__(self, x, sigma):
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        return c_skip * x + c_out * self.raw(c_in * x, c_noise)


class VEPrecond(eqx.Module):
    r"""VE preconditioning: $c_{skip} = 1$, $c_{out} = \sigma$, $c_{in} = 1$,
    $c_{noise} = \ln(\sigma/2)$ (Karras et al. 2022, Table 1)."""

    raw: Any

    def __check_init__(self):
        _check_raw(self.raw)

    def coefficients(self, sigma):
        one = jnp.ones_like(sigma)
        return one, sigma, one, jnp.log(0.5 * sigma)

    def __call__(self, x, sigma):
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        return c_skip * x + c_out * self.raw(c_in * x, c_noise)
