"""Milstein's method (Itô) for diagonal and scalar noise."""

from __future__ import annotations

from typing import ClassVar

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx


def _diffusion_values(vf):
    """The diffusion `g` behind a control-term vector field (diagonal operator or array)."""
    return vf.diagonal if isinstance(vf, lx.DiagonalLinearOperator) else vf


class DiagonalMilstein(dfx.AbstractItoSolver):
    r"""Milstein's method for Itô SDEs with diagonal or scalar noise.

    $$x_{n+1} = x_n + f\Delta t + g\Delta W + \tfrac12 (g \cdot \nabla g)(\Delta W^2 - \Delta t)$$

    Strong order 1.0, weak order 1.0; one drift and one diffusion evaluation plus one
    Jacobian-vector product of the diffusion per step (no `d x d` matrices, unlike
    `diffrax.ItoMilstein`, whose general-noise form materialises `dW dW^T`).
    For diagonal noise `g_i` must depend on `x_i` only; for scalar noise any `g` works.

    Reference: G. N. Milstein, "Approximate integration of stochastic differential
    equations", Theory Probab. Appl. 19 (1975); Kloeden & Platen (1992), §10.3.
    """

    term_structure: ClassVar = dfx.MultiTerm[tuple[dfx.AbstractTerm, dfx.AbstractTerm]]
    interpolation_cls: ClassVar = dfx.LocalLinearInterpolation

    def order(self, terms):
        return 1

    def strong_order(self, terms):
        return 1

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        drift, diffusion = terms.terms
        dt = drift.contr(t0, t1)
        dw = diffusion.contr(t0, t1)
        f_dt = drift.vf_prod(t0, y0, args, dt)
        g = lambda y: _diffusion_values(diffusion.vf(t0, y, args))
        g0 = g(y0)
        _, g_dg = jax.jvp(g, (y0,), (g0,))
        qv = jnp.abs(dt)  # the quadratic variation of the increment
        y1 = jtu.tree_map(
            lambda y, f, gi, ggi, w: y + f + gi * w + 0.5 * ggi * (w * w - qv),
            y0,
            f_dt,
            g0,
            g_dg,
            _broadcast_like(dw, y0),
        )
        dense_info = dict(y0=y0, y1=y1)
        return y1, None, dense_info, None, dfx.RESULTS.successful

    def func(self, terms, t0, y0, args):
        drift, diffusion = terms.terms
        return drift.vf(t0, y0, args), diffusion.vf(t0, y0, args)


def _broadcast_like(dw, y):
    """Scalar noise: one increment for every leaf; diagonal noise: already shaped like y."""
    if jtu.tree_structure(dw) == jtu.tree_structure(y):
        return dw
    return jtu.tree_map(lambda _: dw, y)
