r"""Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image
Synthesis"; Song et al. 2021, score SDE's conditional sampling)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_model
from ._interval import check_interval, check_scale, sigma_like, within


class ClassifierGuided(eqx.Module):
    r"""A denoiser pushed along the gradient of a noisy classifier's log-probability,

    $$D_w(x;\sigma) = D(x;\sigma) + w\,\sigma^2\,\nabla_x \log p(y \mid x;\sigma),$$

    Tweedie's formula for the score $\nabla\log p + w\,\nabla\log p(y \mid \cdot)$: with the
    exact $\log p(y \mid x;\sigma)$ of the noisy data and `w = 1` this is exactly the
    conditional denoiser $E[x_0 \mid x, y]$. `w > 1` sharpens the condition. Outside the
    optional interval the output is `D` (and the gradient is not taken there).

    NFE: 1 denoiser evaluation per call, plus one forward and one backward pass of
    `log_prob` (`jax.grad`) inside the interval.
    """

    denoiser: Any
    log_prob: Any
    scale: jax.Array
    interval: tuple[jax.Array, jax.Array] | None

    def __call__(self, x, sigma):
        sigma = jnp.asarray(sigma)
        d = self.denoiser(x, sigma)

        def total(x_):
            lp = self.log_prob(x_, sigma)
            if jnp.shape(lp) != x.shape[:1]:
                raise ValueError(
                    f"log_prob(x, sigma) must return one log-probability per sample, shape "
                    f"{x.shape[:1]}, got {jnp.shape(lp)}"
                )
            return jnp.sum(lp)

        def guided():
            grad = jax.grad(total)(x).astype(d.dtype)
            return d + self.scale.astype(d.dtype) * sigma_like(sigma, x) ** 2 * grad

        return within(self.interval, sigma, guided, lambda: d)


def classifier(denoiser, log_prob, scale, *, interval=None) -> ClassifierGuided:
    r"""Classifier guidance: $D(x;\sigma) + w\,\sigma^2\,\nabla_x\log p(y \mid x;\sigma)$
    (Dhariwal & Nichol 2021; the gradient through `jax.grad`, so any differentiable JAX
    function serves, e.g. a noisy classifier's log-softmax at the wanted class, or a
    likelihood of a measurement).

    **Arguments:**

    - `denoiser`: `D(x, sigma)` (or a `(fn, params)` pair), unconditional or conditional.
    - `log_prob`: `log_prob(x, sigma) -> (batch,)`, the log-probability of the condition given
      the noisy `x` at noise level `sigma` (sigma-space, like the denoiser), or a `(fn, params)`
      pair.
    - `scale`: the guidance weight `w`; with the exact noisy `log_prob`, `w = 1` gives the exact
      conditional denoiser.
    - `interval`: `None` or `(lo, hi)`: guide only where `lo <= sigma <= hi`.

    **Returns:** a denoiser (`ClassifierGuided`). NFE: 1 per call, plus a forward and a backward
    pass of `log_prob` inside the interval.
    """
    return ClassifierGuided(
        check_model("denoiser", denoiser, "denoiser(x, sigma)"),
        check_model("log_prob", log_prob, "log_prob(x, sigma) -> (batch,)"),
        check_scale(scale),
        check_interval(interval),
    )
