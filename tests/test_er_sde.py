"""ER-SDE-Solver (Cui et al. 2023): orders 1 to 3 with the paper's noise scale functions.

Oracles: DDIM (`eta=0` for the ODE noise function at order 1, `eta=1` for the original
SDE's, with the same key); an independent numpy loop of the official code's updates (its
integrals by adaptive quadrature in sigma, scipy's `quad`) with identical noise, float64;
closed forms of the step's integrals; the exact flow for denoisers polynomial in sigma (order
2 and `exact_third_order` exact, the published order 3 not); fitted orders of the
deterministic variant (the shared mixture problem; a Gaussian with its exact PF-ODE
solution on graded grids for order 3); one compiled program; per-sample keys; a grid from
inf; options.
"""

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import karras_np
from jaxdiff_test_utils import (
    check_one_program_and_per_sample_keys,
    gaussian_order,
    order_of_convergence,
)

import jaxdiff as jd
import jaxdiff.bench as jb
from jaxdiff.samplers._er_sde import ERSDE, NOISE_SCALES

S = jd.samplers

# phi(sigma) as the official code's customized_func writes them (numpy)
PHI = {
    "customized": lambda s: s * (np.exp(s**0.3) + 10),
    "ode": lambda s: s,
    "sde": lambda s: s**2,
    "er_sde_1": lambda s: s * (np.exp(-1 / s) + 10),
    "er_sde_2": lambda s: s**1.5,
    "er_sde_3": lambda s: s**2.5,
    "er_sde_4": lambda s: s**0.9 * np.log10(1 + 100 * s**1.5),
}


def np_denoiser(gm):
    den = jax.jit(lambda x, sigma: gm.denoiser(x, sigma))
    return lambda x, sigma: np.asarray(den(jnp.asarray(x), jnp.asarray(sigma)))


def er_sde_np(den, x, sigmas, *, order, phi, noises, s_noise=1.0, exact=False, noisy=True):
    """ER-SDE-Solver-`order` written out as the official code's `ve_*_order*` loops, with its
    integrals int 1/phi and int (s - sigma_i)/phi over [sigma_{i+1}, sigma_i] by adaptive
    quadrature; `exact` adds (sigma_i - sigma_{i-1}) D''/2 to the first derivative (the
    quadratic interpolant's exact integral). The last step returns D."""
    from scipy.integrate import quad

    def integral(f, lo, hi):
        return quad(f, lo, hi, epsabs=0.0, epsrel=1e-13, limit=200)[0]

    old, old_d = None, None
    for i in range(len(sigmas) - 1):
        s, t = sigmas[i], sigmas[i + 1]
        d = den(x, s)
        if t == 0:
            return d
        r = phi(t) / phi(s)
        x_new = r * x + (1 - r) * d
        o = min(order, i + 1)
        if o >= 2:
            d1 = (d - old) / (s - sigmas[i - 1])
            d1_used = d1
            if o >= 3:
                d2 = 2 * (d1 - old_d) / (s - sigmas[i - 2])
                s_d_int = integral(lambda u, s=s: (u - s) / phi(u), t, s)
                x_new = x_new + ((t - s) ** 2 / 2 + s_d_int * phi(t)) * d2
                if exact:
                    d1_used = d1 + (s - sigmas[i - 1]) * d2 / 2
            s_int = integral(lambda u: 1 / phi(u), t, s)
            x_new = x_new + (t - s + s_int * phi(t)) * d1_used
            old_d = d1
        if noisy:
            x_new = x_new + s_noise * np.sqrt(max(t**2 - s**2 * r**2, 0.0)) * noises[i]
        old, x = d, x_new
    return x


# --- DDIM at order 1 ---------------------------------------------------------------------------

GRID = karras_np(10)


@functools.cache
def _problem():
    """The ring mixture, 32 points of noise at sigma = 80 (float64), the key."""
    gm = jd.analytic.ring(dtype=jnp.float64)
    x = 80.0 * np.random.default_rng(0).standard_normal((32, 2))
    return gm, x, jr.key(3)


def _ours(sampler, sigmas=GRID, **kwargs):
    gm, x, key = _problem()
    return jd.sample(gm.denoiser, jnp.asarray(x), sigmas, solver=sampler, key=key, **kwargs)


def test_order_1_is_ddim(x64):
    # phi = sigma: r = sigma'/sigma, no noise: the exponential Euler step, i.e. DDIM (eta = 0)
    sampler = ERSDE(order=1, noise_scale="ode")
    assert not sampler.stochastic
    np.testing.assert_allclose(_ours(sampler), _ours(S.DDIM()), rtol=1e-13, atol=1e-13)
    # phi = sigma^2: r = (sigma'/sigma)^2, noise std sigma' sqrt(1 - (sigma'/sigma)^2): DDPM's
    # ancestral step, DDIM(eta=1), which draws its noise from the step's key alike
    sde = _ours(ERSDE(order=1, noise_scale="sde"))
    np.testing.assert_allclose(sde, _ours(S.DDIM(eta=1.0)), rtol=1e-12, atol=1e-12)


# --- the numpy loop with identical noise --------------------------------------------------------

UNEVEN = np.array([9.0, 7.5, 3.0, 2.6, 0.9, 0.2, 0.15, 0.0])


@pytest.mark.parametrize(
    ("options", "grid"),
    [
        ({}, GRID),  # the default: order 3, "customized"
        (dict(order=2, noise_scale="er_sde_4", s_noise=0.5), GRID),
        (dict(noise_scale="er_sde_1", exact_third_order=True), UNEVEN),
    ],
    ids=["default", "order2-er_sde_4-s_noise", "er_sde_1-exact-uneven"],
)
def test_matches_numpy_loop(x64, options, grid):
    gm, x, key = _problem()
    sampler = ERSDE(**options)
    noises = jb.step_normals(key, len(grid) - 1, x.shape)
    theirs = er_sde_np(
        np_denoiser(gm), x, grid, order=sampler.order, phi=PHI[sampler.noise_scale],
        noises=noises, s_noise=sampler.s_noise, exact=sampler.exact_third_order,
    )  # fmt: skip
    np.testing.assert_allclose(_ours(sampler, grid), theirs, rtol=1e-10, atol=1e-10)


def test_noise_scale_functions_are_the_official_ones(x64):
    s = jnp.array([0.002, 0.05, 0.7, 1.0, 3.0, 80.0], jnp.float64)
    for name, g in NOISE_SCALES.items():
        np.testing.assert_allclose(s * g(s), PHI[name](np.asarray(s)), rtol=1e-14)


# --- exactness and order ------------------------------------------------------------------------


def test_exact_for_denoiser_polynomial_in_sigma(x64):
    # phi = sigma (the ODE), D independent of x: order 2 integrates dx/dsigma = (x - D)/sigma
    # exactly from its second step on when D is affine in sigma, exact_third_order from its
    # third step on when D is quadratic; the published order-3 update is not exact then
    sigmas = np.array([3.0, 2.5, 1.8, 1.4, 0.9, 0.6, 0.0])
    x0 = jnp.array([[1.7], [-0.4]])

    def flow(a, b, c, x_from, s_from, s_to):
        # d(x/sigma)/dsigma = -D/sigma^2, whose primitive is a/sigma - b log sigma - c sigma
        prim = lambda s: a / s - b * np.log(s) - c * s
        return s_to * (x_from / s_from + prim(s_to) - prim(s_from))

    for (a, b, c), sampler, start, exact in [
        ((0.3, -0.7, 0.0), ERSDE(order=2, noise_scale="ode"), 1, True),
        ((0.3, -0.7, 0.4), ERSDE(noise_scale="ode", exact_third_order=True), 2, True),
        ((0.3, -0.7, 0.4), ERSDE(noise_scale="ode"), 2, False),
    ]:
        den = lambda x, sigma, a=a, b=b, c=c: jnp.full_like(x, a + b * sigma + c * sigma**2)
        traj = np.asarray(jd.sample(den, x0, sigmas, solver=sampler, return_trajectory=True)[1])
        expected = flow(a, b, c, traj[start], sigmas[start], sigmas[5])
        if exact:
            np.testing.assert_allclose(traj[5], expected, rtol=1e-12, atol=1e-12)
        else:
            assert np.max(np.abs(traj[5] - expected)) > 1e-4


def test_quadrature_matches_closed_forms(x64):
    # the step's integrals against their closed forms for phi = sigma and phi = sigma^2
    from jaxdiff.samplers._er_sde import er_sde_coefficients

    for s, t in [(80.0, 40.0), (2.0, 1.9), (0.5, 0.002), (14.0, 0.7)]:
        r, c1, c2, _ = er_sde_coefficients("ode", jnp.float64(s), jnp.float64(t))
        ln = np.log(s / t)
        assert float(c1) == pytest.approx(t - s + t * ln, rel=1e-12)
        assert float(c2) == pytest.approx((t - s) ** 2 / 2 + t * ((s - t) - s * ln), rel=1e-12)
        r, c1, c2, rho = er_sde_coefficients("sde", jnp.float64(s), jnp.float64(t))
        assert float(r) == pytest.approx((t / s) ** 2, rel=1e-14)
        s1 = 1 / t - 1 / s
        assert float(c1) == pytest.approx(t - s + t**2 * s1, rel=1e-12)
        s2 = ln - s * s1
        assert float(c2) == pytest.approx((t - s) ** 2 / 2 + t**2 * s2, rel=1e-12)
        assert float(rho) == pytest.approx(t / s, rel=1e-14)


# --- order -------------------------------------------------------------------------------------


def test_order_2_convergence(x64):
    # the shared mixture problem (measured 2.02 over 16 .. 128 steps; order 1 is DDIM)
    sampler = ERSDE(order=2, noise_scale="ode")
    assert order_of_convergence(sampler, ns=(16, 32, 64)) == pytest.approx(2.0, abs=0.15)


@pytest.mark.parametrize(("exact", "measured"), [(False, 2.1), (True, 2.9)])
def test_third_order_convergence(x64, exact, measured):
    # graded grids (the warm-up costs O(h^3) there): the published ER-SDE-Solver-3 measures
    # 2.1 (local slopes 2.18, 2.06), exact_third_order 2.9 (2.87, 2.95); on the geometric grid
    # of order_of_convergence both measure 2 (2.10, 2.33): the first-order first step
    sampler = ERSDE(noise_scale="ode", exact_third_order=exact)
    assert gaussian_order(sampler) == pytest.approx(measured, abs=0.2)


# --- the program, per-sample keys, the grid from inf, options ----------------------------------


def test_one_program_per_sample_keys_and_pure_noise_start(x64):
    gm, x, key = _problem()
    sampler = ERSDE()
    out = _ours(sampler)  # the program of test_matches_numpy_loop[default]
    check_one_program_and_per_sample_keys(gm.denoiser, sampler, x, GRID, out)
    # from pure noise: x is the unit noise; NFE 1 + nfe(n - 1)
    inf_grid = np.concatenate([[np.inf], GRID[1:]])
    out = jd.sample(gm.denoiser, jnp.asarray(x / 80), inf_grid, solver=sampler, key=key)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert jd.samplers.num_evaluations(sampler, inf_grid) == 1 + sampler.nfe(9) == 10


def test_nfe_counts_denoiser_calls():
    calls = []

    def denoiser(x, sigma):
        jax.debug.callback(lambda: calls.append(1))
        return x / (1 + sigma**2)

    sampler = ERSDE()
    for n in (1, 4):
        calls.clear()
        out = jd.sample(denoiser, jnp.ones((3, 2)), karras_np(n), solver=sampler, key=jr.key(0))
        jax.block_until_ready(out)
        assert len(calls) == sampler.nfe(n) == n


def test_options():
    assert ERSDE() == ERSDE(order=3, noise_scale="customized", s_noise=1.0)
    assert ERSDE().stochastic and not ERSDE(noise_scale="ode").stochastic
    assert set(NOISE_SCALES) == set(PHI)
    with pytest.raises(ValueError, match="ERSDE order must be 1, 2 or 3"):
        ERSDE(order=4)
    with pytest.raises(ValueError, match="ERSDE order must be 1, 2 or 3"):
        ERSDE(order=True)
    with pytest.raises(ValueError, match="noise_scale must be one of"):
        ERSDE(noise_scale="sde_5")
    with pytest.raises(ValueError, match="s_noise must be >= 0"):
        ERSDE(s_noise=-1.0)
    with pytest.raises(ValueError, match="exact_third_order must be True or False"):
        ERSDE(exact_third_order="yes")
    with pytest.raises(ValueError, match="is stochastic: pass key="):
        jd.sample(lambda x, s: x, jnp.ones((2, 2)), karras_np(3), solver=ERSDE())
