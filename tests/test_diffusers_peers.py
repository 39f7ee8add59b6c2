"""diffusers' schedulers against jaxdiff's samplers on identical inputs, in float64, through
the harness `jaxdiff.bench._diffusers` (diffusers' own loop, its own float64 grids and
updates; the model is the exact denoiser of a 2-D mixture).

Each pair must agree to `FLOAT64` (the max-norm difference relative to the largest entry,
at every grid point): diffusers' own grid (Karras, exponential, its timestep spacings on
its `alphas_cumprod` table) is returned by the harness in sigma-space, and jaxdiff's sampler
runs on it, or on `jaxdiff.schedules`' grid for the same configuration (checked equal).
Where diffusers does something else, the test pins what it does instead.
"""

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import karras_np
from jaxdiff_test_utils import require

import jaxdiff as jd
from jaxdiff.bench._diffusers import (
    diffusers_scheduler_grid,
    run_diffusers_scheduler,
    step_normals,
)

S = jd.samplers
FLOAT64 = 1e-12
N = 8  # steps
# diffusers' schedulers call numpy on torch tensors (NumPy 2 deprecations, not ours)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.*")


@functools.cache
def _problem():
    """The mixture, 32 unit normals, and its exact denoiser jitted once (call under x64)."""
    gm = jd.analytic.ring(dtype=jnp.float64)
    z = np.random.default_rng(0).standard_normal((32, 2))
    return gm, z, jax.jit(lambda x, sigma: gm.denoiser(x, sigma))


@functools.cache
def _table() -> np.ndarray:
    """The default `beta_schedule="linear"` table (1e-4 .. 0.02, T = 1000) in float64."""
    return np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))


def _scheduler(name, **config):
    require("torch", "diffusers", why="the diffusers scheduler peers")
    import diffusers

    return getattr(diffusers, name)(**config)


def _relative(ours, theirs):
    """Max-norm difference relative to the largest entry, the worst over the leading axis
    (grid points) when given trajectories."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.ndim == 2:
        ours, theirs = ours[None], theirs[None]
    diff = np.max(np.abs(ours - theirs), axis=(1, 2)) / np.max(np.abs(theirs), axis=(1, 2))
    return float(np.max(diff))


def _theirs(scheduler, *, noise=None):
    """diffusers on its own grid from `grid[0] * z`."""
    _, z, denoiser = _problem()
    x = diffusers_scheduler_grid(scheduler, N)[0] * z
    theirs = run_diffusers_scheduler(scheduler, denoiser, x, num_steps=N, noise=noise)
    return x, theirs


def _ours(sampler, x, sigmas, *, key=None):
    """jaxdiff's trajectory (`x` at every level of `sigmas`)."""
    gm, _, _ = _problem()
    _, traj = jd.sample(
        gm.denoiser, jnp.asarray(x), jnp.asarray(sigmas), solver=sampler, key=key,
        return_trajectory=True,
    )  # fmt: skip
    return np.asarray(traj)


def _agree(ours_traj, theirs):
    return _relative(ours_traj[: theirs.steps + 1], theirs.trajectory)


# -- DPMSolverMultistepScheduler: DPM-Solver++(2M), (3M) and the SDE variant -------------------


@pytest.mark.parametrize(
    ("order", "solver_type", "sampler"),
    [
        (2, "midpoint", S.DPMpp2M()),
        (3, "midpoint", S.DPMpp3M()),
        (3, "heun", S.DPMpp3M(solver_type="heun")),
    ],
)
def test_dpm_solver_multistep_on_its_karras_grid(x64, order, solver_type, sampler):
    scheduler = _scheduler(
        "DPMSolverMultistepScheduler",
        solver_order=order,
        solver_type=solver_type,
        use_karras_sigmas=True,
    )
    x, theirs = _theirs(scheduler)
    # its grid: Karras over the whole table, [sigma(abar_999) .. sigma(abar_0)], then 0
    ab = _table()
    sigma_max, sigma_min = np.sqrt((1 - ab[[-1, 0]]) / ab[[-1, 0]])
    expected = np.asarray(jd.schedules.karras(N, sigma_min, sigma_max, dtype=jnp.float64))
    np.testing.assert_allclose(theirs.sigmas, expected, rtol=1e-13, atol=0)
    assert theirs.steps == N
    assert _agree(_ours(sampler, x, theirs.sigmas), theirs) < FLOAT64  # measured <= 1.7e-15


@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_sde_dpm_solver_pp_2m_with_identical_noise(x64, solver_type):
    """`algorithm_type="sde-dpmsolver++"` (order 2) is `DPMpp2MSDE(eta=1)`: the same
    standard normals, `jr.normal(jr.fold_in(key, i))` at step i, on both sides."""
    scheduler = _scheduler(
        "DPMSolverMultistepScheduler",
        algorithm_type="sde-dpmsolver++",
        solver_order=2,
        solver_type=solver_type,
        use_karras_sigmas=True,
    )
    key = jr.key(7)
    noise = step_normals(key, N, _problem()[1].shape)
    x, theirs = _theirs(scheduler, noise=noise)
    ours = _ours(S.DPMpp2MSDE(eta=1.0, solver_type=solver_type), x, theirs.sigmas, key=key)
    assert _agree(ours, theirs) < FLOAT64  # measured <= 3.4e-15
    # the noise matters: another key's normals give another sample
    _, other = _theirs(scheduler, noise=step_normals(jr.key(8), N, x.shape))
    assert _relative(ours[-1], other.x) > 1e-1  # measured 2.0


# -- UniPCMultistepScheduler ---------------------------------------------------------------------


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_on_its_default_grid(x64, variant, order):
    """diffusers' default grid (`timestep_spacing="linspace"` on the table, then 0) and
    corrector, `lower_order_final=True`; the trajectory is the predictor's output at every
    level (the corrected states are internal on both sides)."""
    scheduler = _scheduler("UniPCMultistepScheduler", solver_order=order, solver_type=variant)
    x, theirs = _theirs(scheduler)
    ours = _ours(S.UniPC(order=order, variant=variant), x, theirs.sigmas)
    if variant == "bh1":
        # diffusers (0.42) returns NaN from bh1's last step, to sigma = 0: that step is first
        # order (lower_order_final), with h = inf, and its UniP update subtracts
        # `alpha_t * B_h * pred_res` with B(h) = -h = -inf and the empty residual
        # `pred_res = 0`: -inf * 0 (bh2's B(h) = expm1(-h) = -1 there). The steps before it
        # are compared; jaxdiff's last step is the limit x -> D(x; sigma), finite.
        assert np.all(np.isnan(theirs.x)) and np.all(np.isfinite(ours[-1]))
        theirs = theirs._replace(steps=N - 1, trajectory=theirs.trajectory[:-1])
    assert _agree(ours, theirs) < FLOAT64  # measured <= 9.6e-16


# -- DEISMultistepScheduler ----------------------------------------------------------------------


def test_deis_logrho_on_its_default_grid(x64):
    """diffusers' DEIS grid ends at the table's sigma_min, not 0: the harness appends 0 and
    both trajectories are compared down to sigma_min (`lower_order_final=False`, which
    jaxdiff's DEIS has no counterpart of). Order 2 on a given grid: test_sampler_variants."""
    order = 3
    scheduler = _scheduler("DEISMultistepScheduler", solver_order=order, lower_order_final=False)
    x, theirs = _theirs(scheduler)
    ab = _table()
    assert theirs.steps == N and theirs.sigmas[N] == pytest.approx(np.sqrt((1 - ab[0]) / ab[0]))
    ours = _ours(S.DEIS(order=order), x, theirs.sigmas)
    assert _agree(ours, theirs) < FLOAT64  # measured 1.3e-14


# -- DDIMScheduler on the timestep spacings ------------------------------------------------------


@pytest.mark.parametrize(("spacing", "offset"), [("leading", 1), ("trailing", 0), ("linspace", 0)])
def test_ddim_on_each_spacing(x64, spacing, offset):
    n = 10
    scheduler = _scheduler(
        "DDIMScheduler",
        timestep_spacing=spacing,
        steps_offset=offset,
        clip_sample=False,
        set_alpha_to_one=True,
    )
    _, z, denoiser = _problem()
    grid = np.asarray(jd.schedules.discrete(_table(), n, spacing=spacing, steps_offset=offset))
    x = grid[0] * z
    theirs = run_diffusers_scheduler(scheduler, denoiser, x, num_steps=n)
    np.testing.assert_allclose(theirs.sigmas, grid, rtol=1e-13, atol=0)
    ours = _ours(S.DDIM(), x, grid)
    if spacing == "trailing":
        assert np.array_equal(theirs.levels, theirs.sigmas)
        assert _agree(ours, theirs) < FLOAT64  # measured 7.7e-16
        return
    if spacing == "leading":
        assert np.array_equal(theirs.levels, theirs.sigmas)
        assert _agree(ours, theirs) < FLOAT64  # measured 1.1e-15
        # eta = 1 (a `step` option in diffusers) with the same normals on both sides
        key = jr.key(3)
        noise = step_normals(key, n, x.shape)
        theirs = run_diffusers_scheduler(
            scheduler, denoiser, x, num_steps=n, noise=noise, step_kwargs={"eta": 1.0}
        )
        assert _agree(_ours(S.DDIM(eta=1.0), x, grid, key=key), theirs) < FLOAT64  # 2.2e-15
        return
    # linspace: diffusers' step goes from t to t - T // n (999 -> 899), while the next
    # timestep is t - (T - 1)/(n - 1) (888): the sample it returns at sigma(899) is taken
    # as a sample at sigma(888) next. jaxdiff's DDIM on the grid steps 999 -> 888 -> ...
    assert not np.allclose(theirs.levels[1:-1], grid[1:-1])
    assert _relative(ours[-1], theirs.x) > 1e-2  # measured 0.047
    # diffusers' chain, step by step with our DDIM: from the level the model is evaluated at
    # (grid[k], the VP sample read there) to the level its step lands on (levels[k + 1])
    # (its last step, to sigma = 0, is x -> D(x; sigma): the denoiser itself)
    y = x
    for k in range(n):
        y_in = y * np.sqrt((1 + grid[k] ** 2) / (1 + theirs.levels[k] ** 2))
        if k < n - 1:
            y = _ours(S.DDIM(), y_in, np.array([grid[k], theirs.levels[k + 1], 0.0]))[1]
        else:
            y = np.asarray(denoiser(jnp.asarray(y_in), jnp.float64(grid[k])))
    assert theirs.levels[n] == 0.0
    assert _relative(y, theirs.x) < FLOAT64  # measured 6.2e-16


# -- EulerDiscreteScheduler on Karras and exponential sigmas -------------------------------------


@pytest.mark.parametrize("grid", ["karras", "exponential"])
def test_euler_discrete_on_karras_and_exponential_sigmas(x64, grid):
    scheduler = _scheduler(
        "EulerDiscreteScheduler", **{f"use_{grid}_sigmas": True}
    )  # timestep_spacing="linspace": the table's whole range
    x, theirs = _theirs(scheduler)
    ab = _table()
    sigma_max, sigma_min = np.sqrt((1 - ab[[-1, 0]]) / ab[[-1, 0]])
    ours_grid = getattr(jd.schedules, grid)(N, sigma_min, sigma_max, dtype=jnp.float64)
    # float64 tables (diffusers' own float32 table puts sigma_max 5e-8 away)
    np.testing.assert_allclose(theirs.sigmas, ours_grid, rtol=1e-13, atol=0)
    assert _agree(_ours(S.Euler(), x, ours_grid), theirs) < FLOAT64  # measured <= 1.0e-15


# -- Heun and LMS on a given grid ----------------------------------------------------------------


@pytest.mark.parametrize(("name", "sampler"), [("Heun", S.Heun()), ("LMS", S.LMS())])
def test_heun_and_lms_on_a_given_grid(x64, name, sampler):
    scheduler = _scheduler(f"{name}DiscreteScheduler")
    sigmas = karras_np(6)
    _, z, denoiser = _problem()
    x = sigmas[0] * z
    theirs = run_diffusers_scheduler(scheduler, denoiser, x, sigmas=sigmas)
    assert theirs.steps == 6 and np.array_equal(theirs.sigmas, sigmas)
    assert _agree(_ours(sampler, x, sigmas), theirs) < FLOAT64  # measured <= 2.4e-15


# -- the harness's own checks --------------------------------------------------------------------


def test_harness_rejects_bad_input(x64):
    ddim = _scheduler("DDIMScheduler")
    _, z, denoiser = _problem()
    with pytest.raises(ValueError, match="sigmas: DDIMScheduler"):
        run_diffusers_scheduler(ddim, denoiser, z, sigmas=karras_np(4))
    with pytest.raises(ValueError, match="num_steps is required"):
        run_diffusers_scheduler(ddim, denoiser, z)
    with pytest.raises(TypeError, match="x must be a float64 array"):
        run_diffusers_scheduler(ddim, denoiser, z.astype(np.float32), num_steps=4)
    with pytest.raises(TypeError, match="scheduler must be one of"):
        run_diffusers_scheduler(object(), denoiser, z, num_steps=4)
    euler = _scheduler("EulerDiscreteScheduler")
    with pytest.raises(ValueError, match="strictly decreasing"):
        run_diffusers_scheduler(euler, denoiser, z, sigmas=[1.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="noise for step 0 has shape"):
        run_diffusers_scheduler(
            _scheduler("DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver++"),
            denoiser, 80.0 * z, sigmas=karras_np(4), noise=[np.zeros(3)] * 4,
        )  # fmt: skip
    import torch

    # float64 only inside a run: the scheduler given, and diffusers afterwards, are float32
    run_diffusers_scheduler(euler, denoiser, 80.0 * z, sigmas=karras_np(2))
    assert euler.alphas_cumprod.dtype == torch.float32
    assert _scheduler("EulerDiscreteScheduler").alphas_cumprod.dtype == torch.float32
    assert torch.get_default_dtype() == torch.float32
