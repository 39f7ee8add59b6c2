"""Analytic-DPM (Bao et al. 2022): Gamma against its closed form on Gaussian data, the optimal
variance against DDPM's fixed ones on the variational bound, the sampler against DDPM/DDIM, and
the optimal-trajectory dynamic program."""

import itertools
import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxdiff as jd
from jaxdiff import analytic_dpm as adpm
from jaxdiff.samplers import AnalyticDPM
from jaxdiff.train import linear_betas


def _chain():
    return adpm.alpha_bars_from_betas(linear_betas(1000).astype(jnp.float64))


def test_gamma_matches_closed_form_on_gaussian_data(x64):
    # data N(mu, s^2 I): eps_hat = sigma (y - mu) / (s^2 + sigma^2) with y - mu ~ N(0, (s^2 +
    # sigma^2) I), so Gamma = sigma^2 / (s^2 + sigma^2) and each eps_hat_i^2 / Gamma ~ chi2(1);
    # 1 - Gamma = s^2 / (s^2 + sigma^2) and each (eps - eps_hat)_i^2 / (1 - Gamma) ~ chi2(1)
    s, n, d = 0.3, 1000, 3
    gm = jd.analytic.GaussianMixture(jnp.array([[0.2, -0.1, 0.0]]), jnp.asarray(s**2))
    ab = _chain()[::10]
    sig2 = (1 - ab) / ab
    exact = sig2 / (s**2 + sig2)
    data = gm.sample(jr.key(0), n)
    rel_se = math.sqrt(2 / (n * d))
    g = adpm.estimate_gamma(gm.denoiser, data, ab, key=jr.key(1))
    assert np.max(np.abs(g / exact - 1)) < 4.5 * rel_se
    g = adpm.estimate_gamma(gm.denoiser, data, ab, key=jr.key(1), estimator="residual")
    assert np.max(np.abs((1 - g) / (1 - exact) - 1)) < 4.5 * rel_se
    g = adpm.estimate_gamma(gm.denoiser, data, ab, key=jr.key(2), num_samples=n)
    assert np.max(np.abs(g / exact - 1)) < 4.5 * rel_se


@pytest.fixture(scope="module")
def setup():
    import jax

    with jax.enable_x64(True):
        gm = jd.analytic.ring(radius=0.7, std=0.1, dtype=jnp.float64)  # mostly inside [-1, 1]^2
        ab = _chain()
        data = gm.sample(jr.key(0), 4000)
        g_norm = adpm.estimate_gamma(gm.denoiser, data, ab, key=jr.key(1))
        g_res = adpm.estimate_gamma(gm.denoiser, data, ab, key=jr.key(1), estimator="residual")
        x0 = gm.sample(jr.key(2), 4000)
    return gm, ab, g_norm, g_res, x0


@pytest.mark.parametrize("num_steps", [10, 25])
def test_analytic_variance_improves_the_bound(x64, setup, num_steps):
    gm, ab, g_norm, _, x0 = setup
    ts = adpm.even_timesteps(ab.shape[0], num_steps)

    def bound(**kw):
        v = adpm.reverse_variances(ab, ts, **kw)
        nll = adpm.nll_bound(gm.denoiser, x0, ab, key=jr.key(3), timesteps=ts, variances=v)
        return float(jnp.mean(nll)) / gm.dim  # nats per dimension; common random numbers

    beta, post = bound(kind="beta"), bound(kind="posterior")
    analytic = bound(kind="analytic", gammas=g_norm[ts])
    clipped = bound(kind="analytic", gammas=g_norm[ts], data_range=(-1, 1))
    true_nll = -float(jnp.mean(gm.log_prob(x0))) / gm.dim
    assert true_nll < analytic < min(beta, post) - 0.05
    assert clipped <= analytic + 1e-3


def test_optimal_trajectory(x64, setup):
    gm, ab, _, g_res, x0 = setup
    n = ab.shape[0]
    for k in (10, 25):
        ts = adpm.optimal_timesteps(ab, g_res, k)
        even = adpm.even_timesteps(n, k)
        assert ts.shape == (k,) and ts[0] == 0 and ts[-1] == n - 1 and np.all(np.diff(ts) > 0)
        assert adpm.trajectory_cost(ab, g_res, ts) <= adpm.trajectory_cost(ab, g_res, even)

        def bound(t):
            v = adpm.reverse_variances(ab, t, kind="analytic", gammas=g_res[t])
            nll = adpm.nll_bound(gm.denoiser, x0, ab, key=jr.key(3), timesteps=t, variances=v)
            return float(jnp.mean(nll))

        assert bound(ts) < bound(even)


def test_dynamic_program_is_optimal_by_brute_force():
    rng = np.random.default_rng(0)
    ab = np.cumprod(1 - np.linspace(0.05, 0.4, 9))
    g = np.sort(rng.uniform(0.1, 0.95, 9))
    for k in (2, 3, 5):
        ts = adpm.optimal_timesteps(ab, g, k)
        costs = [
            adpm.trajectory_cost(ab, g, np.array((0, *mid, 8)))
            for mid in itertools.combinations(range(1, 8), k - 2)
        ]
        assert adpm.trajectory_cost(ab, g, ts) == pytest.approx(min(costs))


def test_sampler_reduces_to_ddpm_and_ddim(x64):
    gm = jd.analytic.ring(dtype=jnp.float64)
    sigmas = jnp.asarray(np.append(np.geomspace(20.0, 0.01, 8), 0.0))
    x = sigmas[0] * jr.normal(jr.key(0), (64, 2), jnp.float64)
    ones = jnp.ones(8)  # Gamma = 1: sigma*^2 = lambda^2
    key = jr.key(1)
    a = jd.sample(gm.denoiser, x, sigmas, solver=AnalyticDPM(ones, eta=1.0), key=key)
    b = jd.sample(gm.denoiser, x, sigmas, solver=jd.samplers.DDPM(variance="posterior"), key=key)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    a = jd.sample(gm.denoiser, x, sigmas, solver=AnalyticDPM(ones, eta=0.0), key=key)
    b = jd.sample(gm.denoiser, x, sigmas, solver=jd.samplers.DDIM())
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_sample_analytic(x64, setup):
    gm, ab, g_norm, _, _ = setup
    ts = adpm.even_timesteps(ab.shape[0], 25)
    x_T = jr.normal(jr.key(4), (2000, 2), jnp.float64)
    for kind in ("ddpm", "ddim"):
        x = adpm.sample_analytic(
            gm.denoiser, x_T, ab, g_norm[ts], timesteps=ts, key=jr.key(5), kind=kind
        )
        assert x.shape == x_T.shape and bool(jnp.all(jnp.isfinite(x)))
        # samples land near the ring (radius 0.7, mode std 0.1)
        assert abs(float(jnp.mean(jnp.linalg.norm(x, axis=-1))) - 0.7) < 0.05


def test_bad_input(x64, setup):
    gm, ab, g_norm, _, _ = setup
    with pytest.raises(ValueError, match="timesteps"):
        adpm.reverse_variances(ab, np.array([5, 3]), kind="beta")
    with pytest.raises(ValueError, match="gammas"):
        adpm.reverse_variances(ab, np.array([3, 5]), kind="analytic")
    with pytest.raises(ValueError, match="kind"):
        adpm.reverse_variances(ab, np.array([3, 5]), kind="large")
    with pytest.raises(ValueError, match="num_steps"):
        adpm.optimal_timesteps(ab, g_norm, 1)
    with pytest.raises(ValueError, match="estimator"):
        adpm.estimate_gamma(gm.denoiser, gm.sample(jr.key(0), 4), ab, key=jr.key(0), estimator="x")
    with pytest.raises(ValueError, match="one entry per step"):
        jd.sample(
            gm.denoiser,
            jnp.ones((4, 2)),
            jnp.array([2.0, 1.0, 0.0]),
            solver=AnalyticDPM(jnp.ones(5)),
            key=jr.key(0),
        )
    # the wrong kind (TypeError): float timesteps, integer data, a non-integer step count
    with pytest.raises(TypeError, match="timesteps must be an integer array"):
        adpm.reverse_variances(ab, np.array([3.0, 5.0]), kind="beta")
    with pytest.raises(TypeError, match="data must be a floating-point array"):
        adpm.estimate_gamma(gm.denoiser, jnp.ones((4, 2), int), ab, key=jr.key(0))
    with pytest.raises(TypeError, match="num_steps must be an int"):
        adpm.optimal_timesteps(ab, g_norm, 10.0)
    with pytest.raises(TypeError, match="num_samples must be an int"):
        adpm.estimate_gamma(
            gm.denoiser, gm.sample(jr.key(0), 4), ab, key=jr.key(0), num_samples=True
        )


def test_one_home():
    """Analytic-DPM's public names all live in `jd.analytic_dpm`; its sampler is also a
    `jd.samplers` class (not in the by-name registry: it needs its Gamma), and its chain is
    `jd.discrete`'s (one definition each)."""
    assert jd.analytic_dpm.AnalyticDPM is jd.samplers.AnalyticDPM
    assert AnalyticDPM not in jd.samplers.SAMPLERS.values()
    for name in ("alpha_bars_from_betas", "sigmas_from_alpha_bars", "even_timesteps"):
        assert getattr(adpm, name) is getattr(jd.discrete, name)
    assert jd.train.linear_betas is jd.discrete.linear_betas
    assert jd.train.cosine_betas is jd.discrete.cosine_betas
    assert set(adpm.__all__) <= set(dir(adpm))
