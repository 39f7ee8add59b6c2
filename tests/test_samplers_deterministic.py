"""The deterministic k-diffusion family: DPM2, LMS, DPM-Solver++(2M) and (3M).

Peer agreement with k-diffusion (float64, identical inputs), convergence order on the
probability-flow ODE of a 2-D mixture, and NFE."""

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import karras_np

import jaxdiff as jd
from jaxdiff.samplers._lms import lms_coefficients

S = jd.samplers
EULER_LIKE = 1e-9  # float64 peer tolerance (measured agreement: <= 1e-12 relative)
_HEUN_3M = functools.partial(S.DPMpp3M, solver_type="heun")  # k-diffusion's warm-up step


def _peer(sampler, kd_name, n=10, **kd_kwargs):
    from kdiffusion_peer import run_both

    x = 80 * np.random.default_rng(0).standard_normal((256, 2))
    return run_both(
        sampler, kd_name, gm=jd.analytic.ring(), sigmas=karras_np(n), x=x, kd_kwargs=kd_kwargs
    )


@pytest.mark.parametrize(
    ("sampler", "kd_name", "n", "kd_kwargs"),
    [
        (S.DPM2(), "sample_dpm_2", 10, {}),
        (S.LMS(), "sample_lms", 10, {}),
        (S.LMS(order=2), "sample_lms", 3, {"order": 2}),
        (S.DPMpp2M(), "sample_dpmpp_2m", 10, {}),
        (S.DPMpp2M(lower_order_final=False), "sample_dpmpp_2m", 10, {}),
        # k-diffusion's 3M takes its warm-up step in the heun form (DPMpp3M's default is the
        # midpoint form since 0.4.0: tests/test_sampler_variants.py) and has no
        # lower_order_final: below 15 steps it equals the option off ...
        (_HEUN_3M(lower_order_final=False), "sample_dpmpp_3m_sde", 10, {"eta": 0.0}),
        (_HEUN_3M(lower_order_final=False), "sample_dpmpp_3m_sde", 3, {"eta": 0.0}),
        # ... and from 15 steps on the option on equals it too
        (_HEUN_3M(), "sample_dpmpp_3m_sde", 15, {"eta": 0.0}),
    ],
    ids=lambda v: repr(v) if not isinstance(v, dict) else None,
)
def test_peer_kdiffusion(kdiffusion, x64, sampler, kd_name, n, kd_kwargs):
    ours, theirs = _peer(sampler, kd_name, n, **kd_kwargs)
    np.testing.assert_allclose(ours, theirs, rtol=EULER_LIKE, atol=EULER_LIKE)


def test_dpmpp_3m_lower_order_final_on_short_grids(kdiffusion, x64):
    # lower_order_final (DPM-Solver++/diffusers): the step before the last is second order
    # below 15 steps, so on 10 Karras steps it differs from k-diffusion (which equals the
    # option off)
    ours, theirs = _peer(_HEUN_3M(), "sample_dpmpp_3m_sde", 10, eta=0.0)
    assert np.max(np.abs(ours - theirs)) > 1e-3


def test_lms_coefficients_match_scipy_quad(kdiffusion, x64):
    # k-diffusion integrates the Lagrange basis with scipy.integrate.quad(epsrel=1e-4); on these
    # low-degree polynomials quad's 21-point Gauss-Kronrod rule is exact, so both agree to
    # rounding (measured <= 1e-14 relative), far inside quad's nominal 1e-4
    sigmas = karras_np(10)
    steps = jnp.arange(len(sigmas) - 1)
    for order in (1, 2, 4, 6):
        cur = np.minimum(np.arange(len(sigmas) - 1) + 1, order)
        coeffs = jax.jit(jax.vmap(lms_coefficients, (None, 0, None, 0)), static_argnums=2)
        ours = np.asarray(coeffs(jnp.asarray(sigmas), steps, order, jnp.asarray(cur)))
        for i in range(len(sigmas) - 1):
            kd = kdiffusion.linear_multistep_coeff
            theirs = [kd(cur[i], sigmas, i, j) for j in range(cur[i])]
            np.testing.assert_allclose(ours[i, : cur[i]], theirs, rtol=1e-12, atol=1e-15)
            assert np.all(ours[i, cur[i] :] == 0)


# --- convergence order -----------------------------------------------------------------------
# On the shared geometric grid (jaxdiff_test_utils.order_of_convergence) every multistep method
# started at first order measures order 2: its first step (local error O(h^2)) dominates. DPM2
# and 2M measure 2 there too (2.06, 2.02); all are checked here on one graded grid instead.


def _graded_grid(n):
    """n + 1 sigmas from 2 to 0.05 with log sigma = log 2 + (k / (n - 1))^2 log(1 / 40), then 0:
    a smoothly graded grid whose first steps are O(h^2), so that the first-order warm-up step of
    a multistep method costs O(h^4) and does not cap the measured order at 2."""
    u = (np.arange(n) / (n - 1)) ** 2
    return np.append(2.0 * np.exp(u * np.log(1 / 40)), 0.0)


@functools.cache
def _graded_problem():
    """The mixture, the noise, and the PF-ODE solution at sigma = 0.05 (Richardson-extrapolated
    Heun at 1024 and 2048 steps: error ~4e-10, below the errors fitted here)."""
    gm = jd.analytic.GaussianMixture(
        jnp.array([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]]), jnp.full((3, 2), 0.3**2)
    )
    x = 2.0 * jr.normal(jr.key(0), (256, 2), jnp.float64)
    heun = [
        jd.sample(gm.denoiser, x, _graded_grid(n), solver=S.Heun(), return_trajectory=True)[1][-2]
        for n in (1024, 2048)
    ]
    return gm, x, (4 * heun[1] - heun[0]) / 3


def _graded_order(sampler, ns=(64, 128, 256)):
    """Fitted order of the error at sigma = 0.05 (before the last step to 0: an LMS step to 0
    extrapolates the slope over the whole last interval, an error that does not shrink as the
    grid is refined)."""
    gm, x, ref = _graded_problem()
    errs = []
    for n in ns:
        traj = jd.sample(gm.denoiser, x, _graded_grid(n), solver=sampler, return_trajectory=True)
        errs.append(float(jnp.sqrt(jnp.mean(jnp.sum((traj[1][-2] - ref) ** 2, -1)))))
    return -np.polyfit(np.log(ns), np.log(errs), 1)[0]


@pytest.mark.parametrize(
    ("sampler", "order"),
    [
        # measured fits over n = 64, 128, 256: 2.02 (DPM2), 2.04 (2M), 3.96 (LMS order 4;
        # LMS(order=3) measures 2.97)
        (S.DPM2(), 2),
        (S.DPMpp2M(), 2),
        (S.LMS(), 4),
        # the DPM-Solver++(3M) formula shared by the official code, diffusers and k-diffusion
        # halves the second-derivative term: second order (measured 1.89); the Taylor-consistent
        # coefficient is third order (measured 3.13, local ratios 3.18 -> 3.09)
        (S.DPMpp3M(), 2),
        (S.DPMpp3M(exact_third_order=True), 3),
    ],
)
def test_convergence_order(x64, sampler, order):
    assert _graded_order(sampler) == pytest.approx(order, abs=0.25)


def test_dpmpp_3m_exact_third_order_is_exact_for_quadratic_denoised(x64):
    # a denoiser quadratic in t = -log sigma, independent of x: after the warm-up (steps 0, 1)
    # the third-order update integrates dx/dt = D - x exactly; the shared formula does not
    def denoiser(x, sigma):
        t = -jnp.log(sigma)
        return jnp.full_like(x, 0.3 + 0.7 * t + 1.1 * t**2)

    sigmas = np.array([2.0, 1.5, 1.2, 0.8, 0.5, 0.0])
    x0 = jnp.array([[1.7]])
    outs = {}
    for exact in (False, True):
        sampler = S.DPMpp3M(lower_order_final=False, exact_third_order=exact)
        traj = jd.sample(denoiser, x0, sigmas, solver=sampler, return_trajectory=True)[1]
        outs[exact] = np.asarray(traj[:, 0, 0])
    # the exact flow from sigmas[2] to sigmas[4] (two third-order steps): x(t4) =
    # e^{t2 - t4} x(t2) + int_{t2}^{t4} e^{u - t4} D(u) du, and e^u (D - D' + D'') is an
    # antiderivative of e^u D for D quadratic
    t2, t4 = -np.log(sigmas[[2, 4]])

    def antiderivative(u):
        return np.exp(u - t4) * ((0.3 + 0.7 * u + 1.1 * u**2) - (0.7 + 2.2 * u) + 2.2)

    integral = antiderivative(t4) - antiderivative(t2)
    for exact in (False, True):
        flow = np.exp(t2 - t4) * outs[exact][2] + integral
        if exact:
            assert outs[exact][4] == pytest.approx(flow, rel=1e-12)
        else:
            assert abs(outs[exact][4] - flow) > 1e-3


# --- NFE and options ---------------------------------------------------------------------------


def test_nfe():
    assert [S.DPM2().nfe(n) for n in (1, 2, 5)] == [1, 3, 9]
    for sampler in (S.LMS(), S.DPMpp2M(), S.DPMpp3M()):
        assert [sampler.nfe(n) for n in (1, 2, 5)] == [1, 2, 5]


@pytest.mark.parametrize(
    "sampler",
    [
        S.LMS(order=1),
        S.DPMpp2M(lower_order_final=False),
        S.DPMpp3M(lower_order_final=False, exact_third_order=True),
    ],
    ids=repr,
)
def test_nfe_counts_denoiser_calls_with_options(sampler):
    # the contract test (test_sampler_core.py) counts the calls for the default options
    calls = []

    def denoiser(x, sigma):
        jax.debug.callback(lambda: calls.append(1))
        return x / (1 + sigma**2)

    for n in [1, 2, 5]:
        calls.clear()
        jax.block_until_ready(jd.sample(denoiser, jnp.ones((3, 2)), karras_np(n), solver=sampler))
        assert len(calls) == sampler.nfe(n)


def test_lms_order_must_be_positive():
    with pytest.raises(ValueError, match="order must be an int >= 1"):
        S.LMS(order=0)
