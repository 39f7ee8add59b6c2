"""Helpers shared by the tests: sampler convergence, compilation counts, optional dependencies."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import types

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

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


def cache_size(fn) -> int:
    """How many programs the jitted `fn` holds compiled: the size of its compilation cache.
    `fn` is a `jax.jit` function or an `equinox.filter_jit` one, whose programs live in the
    cache of the `jax.jit` it wraps (`fn._cached`). One entry per distinct signature (shapes,
    dtypes, static arguments), so a recompile adds one and a cache hit adds none."""
    jitted = getattr(fn, "_cached", fn)
    return jitted._cache_size()


@contextlib.contextmanager
def compiles(fn):
    """`with compiles(fn) as new: ...`, then `new.count` is how many programs `fn` compiled
    inside the block (the growth of `cache_size(fn)`); `assert new.count == 0` checks that
    nothing in the block recompiled `fn`. `fn` as in `cache_size`: watch the compiled program
    itself, e.g. `jaxdiff.samplers._core._sample` for `jaxdiff.sample`."""
    new = types.SimpleNamespace(count=None)
    before = cache_size(fn)
    try:
        yield new
    finally:
        new.count = cache_size(fn) - before


# pip names where they differ from the module's
_PIP_NAMES = {"k_diffusion": "k-diffusion", "jupyter_client": "jupyter-client"}


def in_ci() -> bool:
    """Whether the tests run in CI (`.ci/run` exports `CI=true`)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(*modules: str, why: str = "") -> None:
    """Skip the calling test unless the optional `modules` it needs are installed; in CI fail
    it instead, with a message naming what is missing (the test command installs every test
    dependency there, so a missing one is an error, not a reason to skip).

    "Installed" means an import spec exists; the modules are not imported here (the caller
    imports what it uses, e.g. k-diffusion's `sampling.py` alone), so an installed module
    that fails to import raises its ImportError in the test: a broken installation is an
    error, never a silent skip."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a dotted name whose parent package is missing
            found = False
        if not found:
            missing.append(name)
    if missing:
        names = ", ".join(_PIP_NAMES.get(m, m) for m in missing)
        message = f"{names} not installed{f' ({why})' if why else ''}"
        if in_ci():
            pytest.fail(f"{message}; in CI every test dependency must be installed", pytrace=False)
        pytest.skip(message)


# conftest.py compiles the suite's programs without LLVM's optimizations (a flag in XLA_FLAGS)
UNOPTIMIZED = "--xla_backend_optimization_level=0"


def with_optimized_compiles(request) -> bool:
    """For a test of a property of the programs users run (bit-for-bit results across batch
    sizes), which the suite's unoptimized compiles need not have: when this process compiles
    without optimizations, run this one test in a fresh interpreter with XLA's default
    compiler settings, fail if it fails there, and return True (the caller then returns);
    otherwise return False and let the test run here."""
    if UNOPTIMIZED not in os.environ.get("XLA_FLAGS", ""):
        return False
    import subprocess
    import sys

    env = dict(os.environ, JAXDIFF_TESTS_OPTIMIZED="1")
    flags = env.pop("XLA_FLAGS").replace(UNOPTIMIZED, "").strip()
    if flags:
        env["XLA_FLAGS"] = flags
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*cmd, request.node.nodeid],
        cwd=request.config.rootpath,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return True


def max_relative(ours, theirs) -> float:
    """Max-norm difference relative to the largest entry of `theirs` (peer comparisons)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def graded_grid(n):
    """n + 1 sigmas from 2 to 0.05, log sigma graded quadratically, then 0: its first steps are
    O(h^2), so that a first-order warm-up step does not cap the measured order at 2."""
    u = (np.arange(n) / (n - 1)) ** 2
    return np.append(2.0 * np.exp(u * np.log(1 / 40)), 0.0)


def gaussian_order(sampler, ns=(32, 64, 128), grid_fn=graded_grid):
    """The fitted order of the PF-ODE error at the last positive sigma for the data N(mu, s^2 I),
    whose exact solution is x(sigma) = mu + (x_0 - mu) sqrt(s^2 + sigma^2) / sqrt(s^2 +
    sigma_0^2), on the grids `grid_fn(n)`. Call in float64."""
    mu, sd = jnp.array([0.5, -1.0]), 0.3

    def den(x, sigma):
        return (x * sd**2 + mu * sigma**2) / (sd**2 + sigma**2)

    x0 = 2.0 * jr.normal(jr.key(0), (64, 2), jnp.float64)
    errs = []
    for n in ns:
        grid = grid_fn(n)
        traj = jd.sample(den, x0, grid, solver=sampler, return_trajectory=True)[1]
        exact = mu + (x0 - mu) * np.sqrt(sd**2 + grid[-2] ** 2) / np.sqrt(sd**2 + grid[0] ** 2)
        errs.append(float(jnp.sqrt(jnp.mean(jnp.sum((traj[-2] - exact) ** 2, -1)))))
    return -np.polyfit(np.log(ns), np.log(errs), 1)[0]


def check_one_program_and_per_sample_keys(denoiser, sampler, x, grid, out):
    """For a stochastic sampler whose `jd.sample(denoiser, x, grid, ...)` has already run (its
    output `out`): new noise or a new key compile nothing and give other samples; with
    per-sample keys, the same rows in another order give the same results (a sample depends
    on its own noise and key only). Call in float64."""
    from jaxdiff.samplers._core import _sample

    x_new = jnp.asarray(80.0 * np.random.default_rng(1).standard_normal(x.shape))
    with compiles(_sample) as new:
        again = jd.sample(denoiser, x_new, grid, solver=sampler, key=jr.key(4))
        other_key = jd.sample(denoiser, jnp.asarray(x), grid, solver=sampler, key=jr.key(4))
    assert new.count == 0
    assert bool(jnp.all(jnp.isfinite(again))) and not np.allclose(out, other_key)
    keys = jd.per_sample_keys(jr.key(7), x.shape[0])
    perm = np.random.default_rng(2).permutation(x.shape[0])
    whole = jd.sample(denoiser, jnp.asarray(x), grid, solver=sampler, key=keys)
    shuffled = jd.sample(denoiser, jnp.asarray(x[perm]), grid, solver=sampler, key=keys[perm])
    np.testing.assert_allclose(whole[perm], shuffled, rtol=1e-13, atol=1e-13)


@functools.cache
def ring_peer_problem():
    """The peer comparisons' problem: the 2-D ring in float64, 32 initial points at sigma 80
    (seed 0), and its exact denoiser jitted once (call under x64)."""
    gm = jd.analytic.ring(dtype=jnp.float64)
    x = 80.0 * np.random.default_rng(0).standard_normal((32, 2))
    return gm, x, jax.jit(lambda x_, sigma: gm.denoiser(x_, sigma))
