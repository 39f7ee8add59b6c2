"""The reference variants of DPM-Solver++(3M) (`solver_type`) and DEIS (`variant`) against
diffusers' schedulers on identical inputs (float64, the exact denoiser of a 2-D mixture).

diffusers runs through the peer harness `jaxdiff.bench._diffusers.run_diffusers_scheduler`:
its own loop and updates in float64 (its float32 casts neutralized), in VP units
`sample = x / sqrt(1 + sigma^2)` for our sigma-space `x`, with `prediction_type="sample"` (the
model returns `D(x; sigma)` directly), on our grid exactly: after `set_timesteps(n)` (which
sets the step count and its `< 15` rule) their `sigmas` are replaced by our float64 grid, so
both sides step over the same levels with no float32 rounding.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import karras_np
from jaxdiff_test_utils import require, ring_peer_problem

import jaxdiff as jd
from jaxdiff.bench._diffusers import run_diffusers_scheduler

S = jd.samplers
FLOAT64 = 1e-12  # max-norm agreement relative to the largest entry; measured <= 4.2e-15
# diffusers' schedulers call numpy on torch tensors (NumPy 2 deprecations, not ours)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.*")


_problem = ring_peer_problem


def _relative(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def _diffusers_run(scheduler, sigmas, num_steps):
    """diffusers' sampling loop over the first `num_steps` intervals of the float64 grid
    `sigmas`, from our `x`: its sample in sigma-space units (`x` at `sigmas[num_steps]`)."""
    _, x, denoiser = _problem()
    return run_diffusers_scheduler(scheduler, denoiser, x, num_steps=num_steps, sigmas=sigmas).x


def _dpm_solver(**config):
    require("torch", "diffusers", why="the diffusers DPM-Solver++ peer")
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++", prediction_type="sample", final_sigmas_type="zero", **config
    )


def _ours(sampler, sigmas, *, trajectory=False):
    gm, x, _ = _problem()
    x = jnp.asarray(x)
    return jd.sample(gm.denoiser, x, sigmas, solver=sampler, return_trajectory=trajectory)


# -- DPM-Solver++(3M) and (2M) against DPMSolverMultistepScheduler -----------------------------


@pytest.mark.parametrize("lower_order_final", [True, False])  # acts below 15 steps
@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_dpmpp_3m_matches_diffusers(x64, solver_type, lower_order_final):
    sigmas = karras_np(8)
    scheduler = _dpm_solver(
        solver_order=3, solver_type=solver_type, lower_order_final=lower_order_final
    )
    theirs = _diffusers_run(scheduler, sigmas, 8)
    ours = _ours(S.DPMpp3M(solver_type=solver_type, lower_order_final=lower_order_final), sigmas)
    assert _relative(ours, theirs) < FLOAT64


def test_dpmpp_3m_matches_diffusers_from_15_steps(x64):
    # from 15 steps on, lower_order_final no longer lowers the step before the last
    sigmas = karras_np(16)
    theirs = _diffusers_run(_dpm_solver(solver_order=3), sigmas, 16)
    assert _relative(_ours(S.DPMpp3M(), sigmas), theirs) < FLOAT64


@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_dpmpp_2m_is_diffusers_midpoint(x64, solver_type):
    # DPMpp2M (k-diffusion's sample_dpmpp_2m) is diffusers' default 2M, solver_type="midpoint";
    # its "heun" 2M is a different method (measured: 0.16 apart here)
    sigmas = karras_np(8)
    theirs = _diffusers_run(_dpm_solver(solver_order=2, solver_type=solver_type), sigmas, 8)
    distance = _relative(_ours(S.DPMpp2M(), sigmas), theirs)
    if solver_type == "midpoint":
        assert distance < FLOAT64
    else:
        assert distance > 1e-2


# -- DPM-Solver++(3M) against DPMpp2M: where no third-order step is taken ------------------------


def test_dpmpp_3m_midpoint_equals_2m_without_third_order_steps(x64):
    """3M's orders on a grid of n steps: 1 at the first step, 2 at the second (warm-up), 3
    after, except 2 at step n - 2 with lower_order_final (n < 15), and 1 at the last step (to
    0). 2M's: 1, 2, 2, ..., 1. So 3M takes no third-order step on 3 steps (either setting) nor
    on 4 steps with lower_order_final, and there its second-order steps are 2M's steps in the
    midpoint form (the default), not in the heun form."""
    three_steps, four_steps = karras_np(3), karras_np(4)
    two = _ours(S.DPMpp2M(), three_steps)
    assert _relative(_ours(S.DPMpp3M(), three_steps), two) < 1e-13  # measured 1e-15
    # the heun form's warm-up step is not 2M's (measured: 0.36 apart relative, 0.97 absolute)
    heun = _ours(S.DPMpp3M(solver_type="heun"), three_steps)
    assert _relative(heun, two) > 1e-2
    two = _ours(S.DPMpp2M(), four_steps)
    assert _relative(_ours(S.DPMpp3M(), four_steps), two) < 1e-13  # measured 2e-15
    # without lower_order_final the third of 4 steps is third order: not 2M (measured 0.88)
    assert _relative(_ours(S.DPMpp3M(lower_order_final=False), four_steps), two) > 1e-2


@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_dpmpp_3m_exact_third_order_with_both_solver_types(x64, solver_type):
    # a denoiser quadratic in t = -log sigma, independent of x: from sigmas[2] on (after the
    # warm-up) exact_third_order integrates dx/dt = D - x exactly, whatever the warm-up form
    def denoiser(x, sigma):
        t = -jnp.log(sigma)
        return jnp.full_like(x, 0.3 + 0.7 * t + 1.1 * t**2)

    sigmas = np.array([2.0, 1.5, 1.2, 0.8, 0.5, 0.0])
    sampler = S.DPMpp3M(solver_type=solver_type, lower_order_final=False, exact_third_order=True)
    traj = jd.sample(denoiser, jnp.array([[1.7]]), sigmas, solver=sampler, return_trajectory=True)
    x = np.asarray(traj[1][:, 0, 0])
    t2, t4 = -np.log(sigmas[[2, 4]])

    def antiderivative(u):  # of e^{u - t4} D(u)
        return np.exp(u - t4) * ((0.3 + 0.7 * u + 1.1 * u**2) - (0.7 + 2.2 * u) + 2.2)

    flow = np.exp(t2 - t4) * x[2] + antiderivative(t4) - antiderivative(t2)
    assert x[4] == pytest.approx(flow, rel=1e-12)


def test_dpmpp_3m_solver_type_is_checked():
    with pytest.raises(ValueError, match="solver_type must be 'midpoint' or 'heun'"):
        S.DPMpp3M(solver_type="taylor")


# -- DEIS against DEISMultistepScheduler ----------------------------------------------------------


@pytest.mark.parametrize("order", [2, 3])
def test_deis_logrho_matches_diffusers(x64, order):
    """diffusers' DEIS (log-rho, `lower_order_final=False`) over the positive part of the
    grid, `sigmas[0] .. sigmas[n-1]` (its grid never reaches 0), against our trajectory there;
    then our last step, `x -> D(x; sigma_{n-1})`, from its result."""
    require("torch", "diffusers", why="the diffusers DEIS peer")
    from diffusers import DEISMultistepScheduler

    n = 8
    sigmas = karras_np(n)
    scheduler = DEISMultistepScheduler(
        solver_order=order, prediction_type="sample", lower_order_final=False
    )
    theirs = _diffusers_run(scheduler, sigmas, n - 1)
    final, traj = _ours(S.DEIS(order=order, variant="logrho"), sigmas, trajectory=True)
    assert _relative(traj[n - 1], theirs) < FLOAT64
    _, _, denoiser = _problem()
    assert _relative(final, denoiser(jnp.asarray(theirs), jnp.float64(sigmas[n - 1]))) < FLOAT64
    # the paper's rho variant (polynomial in sigma) is a different method
    rho = _ours(S.DEIS(order=order, variant="rho"), sigmas, trajectory=True)[1]
    assert _relative(rho[n - 1], theirs) > 1e-3


def test_deis_default_is_logrho_order_3():
    assert S.DEIS() == S.DEIS(order=3, variant="logrho")
    with pytest.raises(ValueError, match="DEIS variant must be 'logrho' or 'rho'"):
        S.DEIS(variant="log")
