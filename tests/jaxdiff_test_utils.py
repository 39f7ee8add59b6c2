"""Helpers shared by the sampler tests."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import jaxdiff as jd


def geometric_grid(n, sigma_hi=2.0, sigma_lo=0.1):
    """n + 1 sigmas: n - 1 steps geometric from sigma_hi to sigma_lo, then a last step to 0."""
    return np.append(np.geomspace(sigma_hi, sigma_lo, n), 0.0)


def order_of_convergence(sampler, ns=(16, 32, 64, 128), *, seed=0):
    """The fitted order of a deterministic sampler on the probability-flow ODE of a 2-D
    mixture: RMS error against a 4096-step Heun reference from the same noise, on grids
    geometric in sigma from 2 to 0.1 (then the last step to 0, the same map for every n).
    Call in float64."""
    gm = jd.analytic.GaussianMixture(
        jnp.array([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]]), jnp.full((3, 2), 0.3**2)
    )
    x = 2.0 * jr.normal(jr.key(seed), (256, 2), jnp.float64)
    ref = jd.sample(gm.denoiser, x, geometric_grid(4096), solver=jd.samplers.Heun())
    errs = []
    for n in ns:
        out = jd.sample(gm.denoiser, x, geometric_grid(n), solver=sampler)
        errs.append(float(jnp.sqrt(jnp.mean(jnp.sum((out - ref) ** 2, -1)))))
    jax.block_until_ready(out)
    return -np.polyfit(np.log(ns), np.log(errs), 1)[0]


@contextlib.contextmanager
def count_compilations(name_part: str):
    """Yields a list that grows by one for every XLA compilation in the block of a function
    whose name contains `name_part` (tiny ops, e.g. a dtype conversion of inputs, don't count)."""
    events = []

    def listener(event, duration, **kwargs):
        name = kwargs.get("fun_name", "")
        if event == "/jax/core/compile/backend_compile_duration" and name_part in name:
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
