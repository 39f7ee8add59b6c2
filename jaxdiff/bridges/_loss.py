r"""The bridge denoising loss of DDBM (Zhou et al. 2024, "Denoising Diffusion Bridge Models")."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_callable, check_choice, check_float_array, check_instance, check_range
from .._deprecation import keyword_key
from ._preconditioning import BridgePrecond, bridge_scalings
from ._process import AbstractBridge, check_x_T

__all__ = ["bridge_loss"]

_WEIGHTINGS = ("precond", "uniform")


@keyword_key("bridge_loss", 3)
def bridge_loss(
    denoiser: Callable,
    x0,
    x_T,
    bridge: AbstractBridge,
    *,
    key: jax.Array,
    weighting: str = "precond",
    t_min: float | None = None,
    sigma_data_0: float | None = None,
    sigma_data_T: float | None = None,
    cov: float | None = None,
) -> jax.Array:
    r"""DDBM's denoising bridge loss (Zhou et al. 2024, with their training settings):

    $$\mathcal L = \mathbb E_{t, (x_0, x_T), \varepsilon}\Big[\lambda(t)\,\tfrac1d
    \big\lVert D(a_t x_T + b_t x_0 + \sqrt{c_t}\,\varepsilon,\ t,\ x_T) - x_0\big\rVert^2\Big],
    \qquad t \sim \mathcal U(t_{min}, T),$$

    the model conditioned on the pair's own $x_T$. Times are uniform in $[t_{min}, T]$ (DDBM's
    `real-uniform` sampler; `t_min` defaults to `bridge.t_min`). Weighting `"precond"` is
    $\lambda = 1/c_{out}(t)^2$ (DDBM's `bridge_karras`), so the loss is about 1 for a
    `BridgePrecond` network with a zero output on data with the assumed moments; `"uniform"` is
    $\lambda = 1$. The moments in $c_{out}$ come from `denoiser` when it is a `BridgePrecond`,
    else from `sigma_data_0`, `sigma_data_T`, `cov` (defaults 0.5, 0.5, 0). Per-element mean over
    a sample, then a mean over the batch.

    **Arguments:** `denoiser(x_t, t, x_T)` with `t` of shape `(batch,)`; `x0`, `x_T` paired data
    `(batch, ...)`; `bridge`; `key` (keyword-only; the old order `bridge_loss(denoiser, x0,
    x_T, key, bridge)` warns); options as above.

    **Returns:** the scalar loss, in `x0.dtype`.
    """
    check_callable("denoiser", denoiser, "denoiser(x_t, t, x_T)")
    check_instance("bridge", bridge, AbstractBridge, "a jaxdiff.bridges bridge (VE or VP)")
    check_choice("weighting", weighting, _WEIGHTINGS)
    x0 = check_float_array("x0", x0, batch=True, min_ndim=2)
    x_T = check_x_T(x_T, like=x0).astype(x0.dtype)
    t_min = bridge.t_min if t_min is None else t_min
    check_range("t_min", t_min, "T", bridge.T)
    if isinstance(denoiser, BridgePrecond):
        defaults = (denoiser.sigma_data_0, denoiser.sigma_data_T, denoiser.cov)
    else:
        defaults = (0.5, 0.5, 0.0)
    s0, sT, s0T = (
        d if v is None else v
        for v, d in zip((sigma_data_0, sigma_data_T, cov), defaults, strict=True)
    )
    dtype = x0.dtype
    k_t, k_noise = jr.split(key)
    t = jr.uniform(k_t, (x0.shape[0],), dtype, minval=t_min, maxval=bridge.T)
    x_t = bridge.perturb(x0, x_T, t, k_noise)
    out = denoiser(x_t, t, x_T)
    if jnp.shape(out) != x0.shape:
        raise ValueError(
            f"denoiser(x_t, t, x_T) must return an array shaped like x0 {x0.shape}, "
            f"got {jnp.shape(out)}"
        )
    err = jnp.mean((out - x0) ** 2, axis=tuple(range(1, x0.ndim)))
    if weighting == "precond":
        _, c_out, _ = bridge_scalings(*bridge.coefficients(t), s0, sT, s0T)
        err = err / c_out**2
    return jnp.mean(err).astype(dtype)
