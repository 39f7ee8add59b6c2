"""What the entry points return when they return more than one array: one kind of object, a
`NamedTuple` (a pytree that unpacks like a tuple and names its fields)."""

from __future__ import annotations

from typing import NamedTuple

import jax

__all__ = ["GenericResult", "LikelihoodResult", "SampleResult"]


class SampleResult(NamedTuple):
    """What `jaxdiff.sample` and `jaxdiff.bridges.sample` return with `return_trajectory=True`."""

    x: jax.Array  # the samples at the end of the grid (sigma = 0, or t = 0 for a bridge)
    trajectory: jax.Array  # x at every grid point, shape (n + 1, *x.shape)


class GenericResult(NamedTuple):
    """What `sample_ode`/`sample_sde` return."""

    x: jax.Array  # samples at t_min, in process space (divide by scale(t_min) for data units)
    nfe: jax.Array  # score evaluations used (per sample batch)
    num_steps: jax.Array  # solver steps taken (accepted and rejected)


class LikelihoodResult(NamedTuple):
    """What `log_likelihood(..., return_info=True)` and `log_likelihood_process` return."""

    log_p: jax.Array  # log-density at the start of the ODE, nats per sample, shape (batch,)
    prior_log_p: jax.Array  # log-density of the prior at the end point, shape (batch,)
    delta_log_p: jax.Array  # the integrated divergence, log_p - prior_log_p, shape (batch,)
    x_T: jax.Array  # the end point of the ODE (the latent), shaped like x
    nfe: jax.Array  # vector-field evaluations (each: one model call with its JVPs)
    num_steps: jax.Array  # solver steps taken (accepted and rejected)
