r"""Minibatch optimal-transport couplings of data and noise for flow matching (OT-CFM).

Tong et al. (2023), "Improving and generalizing flow-based generative models with minibatch
optimal transport" (arXiv 2302.00482; TMLR 2024): instead of pairing each data point $x_0^i$
of a minibatch with an independent noise draw, pair the minibatch's data and noise by an
optimal-transport plan for the squared Euclidean cost
$C_{ij} = \lVert x_0^i - \varepsilon^j\rVert^2$ before the flow-matching loss. The conditional
paths then cross less, the learned marginal paths are straighter and few-step (low-NFE)
sampling improves; for large batches the learned flow approaches the dynamic
optimal-transport map between the noise and the data.

Two plans, both jit-able and run inside the compiled train step:

- `"exact"`: the optimal permutation, by the Hungarian algorithm of
  `optax.assignment.hungarian_algorithm` (pure JAX, a `lax.while_loop`; no host round trip).
  $O(B^3)$ time and $O(B^2)$ memory for a batch of $B$: fine for the small batches of 2-D toys
  and digits (B = 256: a few tens of milliseconds on a CPU core), not for thousands.
- `"sinkhorn"`: the entropic plan $\pi$ (Cuturi 2013) computed by ott-jax's log-domain
  Sinkhorn solver (an optional dependency: ``pip install 'jaxdiff[ot]'``), with regularisation
  `epsilon` times the mean cost; each data point then draws its noise from the plan's row
  $\pi_{i\cdot} / \sum_j \pi_{ij}$ (every data point keeps its place once; the noise is drawn
  with replacement). Tong et al. draw the pairs from the joint $\pi$ instead; both are samples
  of the same coupling. $O(B^2)$ per Sinkhorn iteration.

The noise is permuted, not the data, so labels and any other per-example data stay with their
examples. With `labels` (class-conditional training), data are paired only with noise that
the independent draw gave to an example of the same label: the batch's noise is split among
the labels at random, so each label's noise stays standard normal, and a class's flow is
trained on that class's own transport (pairing across classes would make the noise seen with
a class depend on the class). Nothing here is differentiated (the plan is a function of data
and noise only).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import jax.random as jr
from optax.assignment import hungarian_algorithm

from .._checks import check_choice, check_count, check_float_array, check_key, check_positive

__all__ = ["OT_COUPLINGS", "ot_pairing"]

#: The minibatch OT plans of `ot_pairing` (and of `flow_matching_loss(coupling=...)`).
OT_COUPLINGS = ("exact", "sinkhorn")


def _squared_costs(x0: jax.Array, noise: jax.Array) -> jax.Array:
    a = x0.reshape(x0.shape[0], -1)
    b = noise.reshape(noise.shape[0], -1)
    costs = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2 * a @ b.T
    return jnp.maximum(costs, 0)


def _separate(costs: jax.Array, labels: jax.Array | None) -> jax.Array:
    """`costs` with every pair of different labels made costlier than any whole matching of
    equal labels (so an optimal plan never pairs across labels)."""
    if labels is None:
        return costs
    apart = labels[:, None] != labels[None, :]
    penalty = costs.shape[0] * jnp.max(costs) + 1
    return jnp.where(apart, costs + penalty, costs)


def _exact(costs: jax.Array) -> jax.Array:
    rows, cols = hungarian_algorithm(costs)
    return jnp.zeros(costs.shape[0], jnp.int32).at[rows].set(cols.astype(jnp.int32))


def _ott():
    """ott-jax's Sinkhorn pieces, or an ImportError that names the extra to install."""
    try:
        with warnings.catch_warnings():
            # ott-jax imports jaxopt, which warns that it is no longer maintained
            warnings.simplefilter("ignore", DeprecationWarning)
            from ott.geometry.geometry import Geometry
            from ott.problems.linear.linear_problem import LinearProblem
            from ott.solvers.linear.sinkhorn import Sinkhorn
    except ImportError as err:
        raise ImportError(
            "coupling='sinkhorn' needs ott-jax (entropic optimal transport): "
            "pip install 'jaxdiff[ot]' (or pip install ott-jax)"
        ) from err
    return Geometry, LinearProblem, Sinkhorn


def _sinkhorn(costs, labels, key, epsilon, max_iterations):
    geometry, problem, solver = _ott()
    epsilon = epsilon * jnp.mean(costs)  # relative to the mean cost, before any label penalty
    geom = geometry(cost_matrix=_separate(costs, labels), epsilon=epsilon)
    plan = solver(max_iterations=max_iterations)(problem(geom)).matrix
    # each data point draws its noise from its row of the plan
    logits = jnp.log(jnp.maximum(plan, jnp.finfo(plan.dtype).tiny))
    return jr.categorical(key, logits, axis=1).astype(jnp.int32)


def ot_pairing(
    x0,
    noise,
    *,
    method: str = "exact",
    key: jax.Array | None = None,
    labels=None,
    epsilon: float = 0.05,
    max_iterations: int = 2000,
) -> jax.Array:
    r"""Indices `j` that pair `noise[j[i]]` with `x0[i]` by a minibatch optimal-transport plan
    for the squared Euclidean cost (OT-CFM: Tong et al. 2023, "Improving and generalizing
    flow-based generative models with minibatch optimal transport"; see the module docstring).

    **Arguments:** `x0` the data and `noise` the noise, batch-first float arrays of the same
    shape `(B, ...)` (flattened per example for the cost); `method` `"exact"` (the optimal
    permutation, Hungarian algorithm, $O(B^3)$) or `"sinkhorn"` (entropic OT through ott-jax,
    then one draw per row of the plan; needs `key`); `labels` int `(B,)` or `None`: pair
    only within equal labels, `x0[i]` with the noise of the examples labelled `labels[i]` (see
    the module docstring); `epsilon` the entropic regularisation as a fraction of the mean
    cost (Sinkhorn only; smaller is closer to the exact plan and needs more iterations);
    `max_iterations` of the Sinkhorn solver.

    **Returns:** int32 indices of shape `(B,)`: a permutation for `"exact"`; draws with
    replacement for `"sinkhorn"`. Jit-able; no gradient flows through the plan.
    """
    check_choice("method", method, OT_COUPLINGS)
    x0 = check_float_array("x0", x0, batch=True)
    noise = check_float_array("noise", noise, batch=True)
    if x0.shape != noise.shape:
        raise ValueError(f"x0 and noise must have the same shape, got {x0.shape} and {noise.shape}")
    if labels is not None:
        labels = jnp.asarray(labels)
        if labels.shape != x0.shape[:1]:
            raise ValueError(
                f"labels must have shape (batch,) = {x0.shape[:1]}, got {labels.shape}"
            )
    costs = jax.lax.stop_gradient(_squared_costs(x0, noise))
    if method == "exact":
        return _exact(_separate(costs, labels))
    if key is None:
        raise TypeError("method='sinkhorn' draws from the plan: pass key=")
    check_key(key)
    check_positive("epsilon", epsilon)
    max_iterations = check_count("max_iterations", max_iterations)
    return _sinkhorn(costs, labels, key, epsilon, max_iterations)
