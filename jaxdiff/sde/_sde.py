"""An Itô SDE as a drift/diffusion pair."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

NoiseType = Literal["diagonal", "scalar", "general"]
_NOISE_TYPES = ("diagonal", "scalar", "general")


class SDE(eqx.Module):
    r"""An Itô stochastic differential equation

    $$dx = f(t, x, \text{args})\,dt + g(t, x, \text{args})\,dW_t,$$

    given as a drift/diffusion pair with diffrax's `(t, x, args)` signature.

    **Arguments:**

    - `drift`: `f(t, x, args)`, returns a pytree shaped like `x`.
    - `diffusion`: `g(t, x, args)`, or `None` for an ODE (zero diffusion, e.g. a
      probability-flow ODE). What it returns depends on `noise`:
        - `"diagonal"` (default): a pytree shaped like `x`; the Brownian motion has one
          independent component per entry of `x` and `g * dW` is elementwise. Solvers that
          use the derivative of `g` (Milstein, and the Itô-to-Stratonovich correction)
          assume, as usual for diagonal noise, that `g_i` depends on `x_i` only.
        - `"scalar"`: an array shaped like `x`, driven by one scalar Brownian motion.
        - `"general"`: an array of shape `x.shape + (noise_dim,)`, driven by a
          `noise_dim`-dimensional Brownian motion (`g @ dW`).
    - `noise`: one of `"diagonal"`, `"scalar"`, `"general"`.
    - `noise_dim`: the Brownian dimension for `noise="general"` (required there, and only there).
    - `additive`: declare that `g` does not depend on `x`. Additive-noise solvers (`"shark"`,
      `"sra1"`) require it, and the Itô/Stratonovich correction is skipped (it is zero).

    Scalar and general noise take a single-array state; diagonal noise takes any pytree.

    Drift and diffusion are fields of an `equinox.Module`: plain functions are static
    (hashed by identity), equinox Modules (e.g. a score network) are pytrees whose arrays are
    traced, so new weights do not recompile a solve.

    !!! example

        ```python
        import jax.numpy as jnp, jax.random as jr, jaxdiff as jd
        gbm = jd.SDE(lambda t, x, a: 0.1 * x, lambda t, x, a: 0.3 * x)
        xs = jd.solve_sde(gbm, jnp.ones(4), jnp.array([0.0, 1.0]), key=jr.key(0), dt=1e-2)
        ```
    """

    drift: Callable[[Any, Any, Any], Any]
    diffusion: Callable[[Any, Any, Any], Any] | None = None
    noise: NoiseType = eqx.field(default="diagonal", static=True)
    noise_dim: int | None = eqx.field(default=None, static=True)
    additive: bool = eqx.field(default=False, static=True)

    def __check_init__(self):
        if not callable(self.drift):
            raise TypeError(f"drift must be callable f(t, x, args), got {type(self.drift)!r}")
        if self.diffusion is not None and not callable(self.diffusion):
            raise TypeError(
                f"diffusion must be callable g(t, x, args) or None, got {type(self.diffusion)!r}"
            )
        if self.noise not in _NOISE_TYPES:
            raise ValueError(f"noise must be one of {_NOISE_TYPES}, got {self.noise!r}")
        if self.noise == "general":
            if not isinstance(self.noise_dim, int) or self.noise_dim < 1:
                raise ValueError(
                    f"noise_dim must be a positive int for noise='general', got {self.noise_dim!r}"
                )
        elif self.noise_dim is not None:
            raise ValueError(f"noise_dim is only used with noise='general' (noise={self.noise!r})")

    @property
    def is_ode(self) -> bool:
        """True when the diffusion is zero (`diffusion=None`)."""
        return self.diffusion is None

    def noise_shape(self, x0) -> Any:
        """The shape of the driving Brownian motion for a state like `x0`, as a pytree of
        `jax.ShapeDtypeStruct` (what `diffrax.VirtualBrownianTree(shape=...)` takes)."""
        leaves = jtu.tree_leaves(x0)
        dtype = jnp.result_type(*leaves) if leaves else jnp.result_type(float)
        if self.noise == "diagonal":
            return jtu.tree_map(
                lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), x0
            )
        if self.noise == "scalar":
            return jax.ShapeDtypeStruct((), dtype)
        return jax.ShapeDtypeStruct((self.noise_dim,), dtype)

    def stratonovich_correction(self, t, x, args):
        r"""The Itô-to-Stratonovich drift correction $c$ with
        $c_i = \sum_{j,k} g_{kj}\,\partial_k g_{ij}$, so that the Itô SDE
        $dx = f\,dt + g\,dW$ equals the Stratonovich SDE $dx = (f - c/2)\,dt + g \circ dW$.

        Computed with Jacobian-vector products (one per Brownian dimension for general noise).
        """
        if self.diffusion is None or self.additive:
            return jtu.tree_map(jnp.zeros_like, x)
        g = lambda y: self.diffusion(t, y, args)
        g0 = g(x)
        if self.noise in ("diagonal", "scalar"):
            return jax.jvp(g, (x,), (g0,))[1]

        def column(j):
            col = lambda y: jnp.take(g(y), j, axis=-1)
            return jax.jvp(col, (x,), (jnp.take(g0, j, axis=-1),))[1]

        return jnp.sum(jax.vmap(column)(jnp.arange(self.noise_dim)), axis=0)
