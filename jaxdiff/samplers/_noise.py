"""Brownian noise for the SDE samplers: per-step draws, or one Brownian tree per call.

k-diffusion's SDE samplers (`sample_dpmpp_sde`, `sample_dpmpp_2m_sde`, `sample_dpmpp_3m_sde`)
take their noise from a `BrownianTreeNoiseSampler`: the normalized increment
`(W(sigma) - W(sigma_next)) / sqrt(sigma - sigma_next)` of one Brownian path `W` in the time
variable sigma. With `noise="step"` the increments of a step are drawn from the step's key
(exact in distribution, fresh per step); with `noise="tree"` they come from one
`diffrax.VirtualBrownianTree` built from the call's key, so that refining the grid with the
same key converges to one path's solution.
"""

from __future__ import annotations

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr

NOISE_KINDS = ("step", "tree")

# the tree's depth: its finest dyadic spacing is (sigma_max - sigma_min) 2^-depth (80 -> 2e-5
# in float32, 7e-8 in float64; between them it draws an exact Brownian bridge)
_DEPTH = {2: 10, 4: 22, 8: 30}
# the call's key is folded with this for the tree; steps use fold_in(key, i) with i < n
_TREE_SALT = 0x7FFFFFFF


def check_noise(noise) -> None:
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {NOISE_KINDS}, got {noise!r}")


def brownian_tree(x, sigmas, key) -> tuple[dfx.VirtualBrownianTree, jax.Array]:
    """The Brownian tree over `[sigma_min, sigma_max]` of the grid (sigma_min the smallest
    positive sigma) and its value at `sigmas[0]`, as an initial carry."""
    sigma_min, sigma_max = sigmas[-2], sigmas[0]
    # a one-step grid never draws noise; keep the interval non-empty
    sigma_max = jnp.where(sigma_max > sigma_min, sigma_max, sigma_min + 1)
    tol = (sigma_max - sigma_min) * (1.5 * 2.0 ** -_DEPTH.get(x.dtype.itemsize, 30))
    tree = dfx.VirtualBrownianTree(
        sigma_min,
        sigma_max,
        tol=tol,
        shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
        key=jr.fold_in(key, _TREE_SALT),
    )
    return tree, tree.evaluate(sigmas[0])


def normal_increment(w_from, w_to, sigma_from, sigma_to):
    """`(W(sigma_from) - W(sigma_to)) / sqrt(sigma_from - sigma_to)`: standard normal."""
    return (w_from - w_to) / jnp.sqrt(sigma_from - sigma_to)
