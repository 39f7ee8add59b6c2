"""Flow-matching paths as processes: their EDM form, velocity conversions against closed forms,
the reverse SDE with a free diffusion, sampling from sigma = inf, exact likelihoods, bad input."""

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxdiff_test_utils import cache_size

import jaxdiff as jd

FLOWS = {
    "rectified": jd.RectifiedFlow(),
    "trig": jd.TrigFlow(),
    # a path with no closed-form t(sigma): alpha = 1 - t^2, beta = t
    "affine": jd.AffineFlow(lambda t: 1 - t**2, lambda t: t),
}
NAMES = list(FLOWS)


def mixture(dim=2):
    means = jnp.array([[-1.0, 0.5], [1.5, -0.5], [0.5, 2.0]])[:, :dim]
    variances = jnp.array([[0.05, 0.1], [0.2, 0.05], [0.1, 0.1]])[:, :dim]
    return jd.analytic.GaussianMixture(means, variances, jnp.array([0.3, 0.5, 0.2]))


@pytest.mark.parametrize("name", NAMES)
def test_process_form_and_inverse(name, x64):
    f = FLOWS[name]
    t = jnp.linspace(0.0, 1.0, 21)
    alpha, beta, _, _ = f.coefficients(t)
    assert alpha[0] == 1 and alpha[-1] == 0 and beta[0] == 0 and beta[-1] == 1
    np.testing.assert_allclose(f.scale(t), alpha)
    np.testing.assert_allclose(f.noise_std(t), beta)
    sigma = f.sigma(t)
    assert sigma[0] == 0 and sigma[-1] == np.inf
    np.testing.assert_allclose(sigma[1:-1], beta[1:-1] / alpha[1:-1], rtol=1e-14)
    np.testing.assert_allclose(f.t_of_sigma(sigma), t, atol=1e-13)
    assert f.prior_std() == 1


def test_closed_forms(x64):
    t = jnp.linspace(0.05, 0.95, 7)
    rf, trig = jd.RectifiedFlow(), jd.TrigFlow()
    np.testing.assert_allclose(rf.sigma(t), t / (1 - t), rtol=1e-14)
    np.testing.assert_allclose(rf.t_of_sigma(rf.sigma(t)), t, rtol=1e-14)
    np.testing.assert_allclose(trig.sigma(t), np.tan(np.pi * np.asarray(t) / 2), rtol=1e-13)
    _, _, da, db = rf.coefficients(t)
    assert np.all(da == -1) and np.all(db == 1)
    _, _, da, db = trig.coefficients(t)
    np.testing.assert_allclose(da, -np.pi / 2 * np.sin(np.pi * np.asarray(t) / 2), rtol=1e-13)
    np.testing.assert_allclose(db, np.pi / 2 * np.cos(np.pi * np.asarray(t) / 2), rtol=1e-13)
    # an AffineFlow given the linear path's functions is the rectified flow (bisection inverse)
    lin = jd.AffineFlow(lambda t: 1 - t, lambda t: t)
    s = rf.sigma(t)
    np.testing.assert_allclose(lin.t_of_sigma(s), t, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_velocity_of_a_gaussian_matches_its_linear_flow_map(name, x64):
    # x_0 ~ N(mu, v): the marginal velocity is the time derivative of the linear transport
    # map x_t = alpha mu + std_t z, std_t = sqrt(alpha^2 v + beta^2):
    #   v(x, t) = alpha' mu + (std_t' / std_t) (x - alpha mu),
    # computed here from alpha, beta alone (not through the denoiser).
    f = FLOWS[name]
    mu, var = jnp.array([0.7, -1.2]), jnp.array([0.3, 2.0])
    gm = jd.analytic.GaussianMixture(mu[None], var[None])
    velocity = gm.process_velocity(f)
    x = jr.normal(jr.key(0), (6, 2))
    for t in (0.0, 0.2, 0.6, 1.0):
        t = jnp.asarray(t)
        alpha, beta, da, db = f.coefficients(t)
        std = jnp.sqrt(alpha**2 * var + beta**2)
        dstd = (alpha * da * var + beta * db) / std
        expected = da * mu + dstd / std * (x - alpha * mu)
        np.testing.assert_allclose(velocity(x, t), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_conversions_between_velocity_denoiser_and_score(name, x64):
    f, gm = FLOWS[name], mixture()
    velocity, score = gm.process_velocity(f), gm.process_score(f)
    x = 1.5 * jr.normal(jr.key(1), (5, 2))
    for t in (0.1, 0.5, 0.9):
        t = jnp.asarray(t)
        np.testing.assert_allclose(f.score_from_velocity(velocity)(x, t), score(x, t), rtol=1e-10)
        np.testing.assert_allclose(f.velocity_from_score(score)(x, t), velocity(x, t), rtol=1e-10)
        sigma = f.sigma(t)
        y = x / f.scale(t)
        denoiser = jd.parametrizations.from_velocity(velocity, f)
        np.testing.assert_allclose(denoiser(y, sigma), gm.denoiser(y, sigma), rtol=1e-10)
    # one time per sample (as the losses call models) is each sample at its own time
    ts = jnp.array([0.0, 0.3, 0.6, 0.9, 1.0])
    one_by_one = jnp.concatenate([velocity(x[i : i + 1], ts[i]) for i in range(5)])
    np.testing.assert_allclose(velocity(x, ts), one_by_one, rtol=1e-13, atol=1e-13)
    # at t = 1 the score is -x / beta^2 whatever the data: finite from the velocity
    t = jnp.asarray(1.0)
    np.testing.assert_allclose(f.score_from_velocity(velocity)(x, t), -x, rtol=1e-12)


def test_from_velocity_is_x_minus_t_v_for_the_linear_path(x64):
    rf = jd.RectifiedFlow()
    w = jr.normal(jr.key(2), (3, 3))

    def velocity(x_t, t):
        return jnp.tanh(x_t @ w) * (1 + t)

    denoiser = jd.parametrizations.from_velocity(velocity, rf)
    y = jr.normal(jr.key(3), (4, 3))
    for t in (0.25, 0.8):
        x_t = (1 - t) * y
        np.testing.assert_allclose(
            denoiser(y, rf.sigma(t)), x_t - t * velocity(x_t, t), rtol=1e-12, atol=1e-14
        )
    # sigma = inf: y is the unit-variance noise, x_1 = y
    np.testing.assert_allclose(denoiser(y, jnp.inf), y - velocity(y, 1.0), rtol=1e-12)


def test_other_parametrizations_take_pure_noise(x64):
    # an x0-network on a flow at sigma = inf sees x_t = beta(1) y (not 0 * inf)
    rf = jd.TrigFlow()
    seen = []

    def x0_model(x_t, t):
        seen.append(t)
        return 2 * x_t

    y = jnp.ones((2, 2))
    out = jd.parametrizations.from_x0(x0_model, rf)(y, jnp.inf)
    np.testing.assert_allclose(out, 2 * y)
    np.testing.assert_allclose(seen[0], 1.0)


def test_flow_ode_transports_a_gaussian_exactly(x64):
    # the rectified-flow ODE of N(mu, v) maps noise z at t = 1 to mu + sqrt(v) z at t = 0
    mu, var = jnp.array([0.5, -1.0]), jnp.array([0.25, 1.5])
    gm = jd.analytic.GaussianMixture(mu[None], var[None])
    rf = jd.RectifiedFlow()
    z = jr.normal(jr.key(4), (8, 2))
    ode = rf.probability_flow(velocity=gm.process_velocity(rf))
    xs = jd.solve_sde(ode, z, jnp.array([1.0, 0.0]), dt=0.05, solver="tsit5")
    np.testing.assert_allclose(xs[-1], mu + jnp.sqrt(var) * z, rtol=1e-6, atol=1e-7)
    # the same through the samplers, from sigma = inf
    denoiser = jd.parametrizations.from_velocity(gm.process_velocity(rf), rf)
    x = jd.sample(denoiser, z, rf.sigma(jnp.linspace(1, 0, 41)), solver="dpmpp_3m")
    # (uniform t puts a long last step in log sigma: a few 1e-3 at 40 steps)
    np.testing.assert_allclose(x, mu + jnp.sqrt(var) * z, rtol=1e-2, atol=1e-2)


def test_reverse_sde_with_free_diffusion_keeps_the_marginals(x64):
    # SiT's SDE dx = [v - w^2/2 score] dt + w dW from pure noise: N(mu, v) at t = 0
    mu, var = 1.0, 0.25
    gm = jd.analytic.GaussianMixture(jnp.array([[mu]]), jnp.array([[var]]))
    rf = jd.RectifiedFlow()
    velocity = gm.process_velocity(rf)
    sde = rf.reverse(velocity=velocity, diffusion=lambda t: jnp.sqrt(2 * t))
    x1 = jr.normal(jr.key(5), (4000, 1))
    x0 = jd.solve_sde(sde, x1, jnp.array([1.0, 0.0]), dt=1 / 200, key=jr.key(6))[-1]
    assert abs(float(jnp.mean(x0)) - mu) < 0.04
    assert abs(float(jnp.std(x0)) - math.sqrt(var)) < 0.04
    # the drift is v - w^2/2 score, and w = 0 is the probability-flow ODE
    x, t = jnp.array([[0.3]]), jnp.asarray(0.4)
    expected = velocity(x, t) - 0.5 * (2 * t) * gm.process_score(rf)(x, t)
    np.testing.assert_allclose(sde.drift(t, x, None), expected, rtol=1e-12)
    ode = rf.reverse(velocity=velocity, diffusion=0.0)
    np.testing.assert_allclose(ode.drift(t, x, None), velocity(x, t), rtol=1e-12)
    # from a score, the default w is the forward SDE's g (Anderson's reverse SDE)
    default = rf.reverse(gm.process_score(rf))
    reverse = jd.VP.reverse(rf, gm.process_score(rf))
    np.testing.assert_allclose(default.drift(t, x, None), reverse.drift(t, x, None), rtol=1e-10)


@pytest.mark.parametrize("name", ["rectified", "trig"])
def test_likelihood_is_the_exact_density(name, x64):
    f, gm = FLOWS[name], mixture()
    x = gm.sample(jr.key(7), 6)
    result = jd.log_likelihood_flow(gm.process_velocity(f), x, f, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(result.log_p, gm.log_prob(x), atol=1e-6)
    assert result.nfe > 0
    # at t_min > 0 it is the density of the marginal at t_min
    t = 0.3
    xt = f.perturb(jr.key(8), x, t)
    result = jd.log_likelihood_flow(gm.process_velocity(f), xt, f, t_min=t, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(result.log_p, gm.process_log_prob(xt, t, f), atol=1e-6)


# ------------------------------------------------------------------------ sampling from inf


def setup_sampling():
    gm, rf = mixture(), jd.RectifiedFlow()
    denoiser = jd.parametrizations.from_velocity(gm.process_velocity(rf), rf)
    noise = jr.normal(jr.key(9), (64, 2))
    return gm, rf, denoiser, noise


def test_first_step_from_inf_is_the_exact_limit():
    gm, rf, denoiser, noise = setup_sampling()
    sigmas = rf.sigma(jnp.linspace(1.0, 0.0, 6))
    assert sigmas[0] == jnp.inf
    x, trajectory = jd.sample(denoiser, noise, sigmas, solver="euler", return_trajectory=True)
    assert trajectory.shape == (6, 64, 2)
    np.testing.assert_array_equal(trajectory[0], noise)
    np.testing.assert_allclose(trajectory[1], gm.mean() + sigmas[1] * noise, rtol=1e-5)
    np.testing.assert_array_equal(trajectory[-1], x)
    # [inf, 0]: one evaluation, the data mean
    one = jd.sample(denoiser, noise, jnp.array([jnp.inf, 0.0]), solver="heun")
    np.testing.assert_allclose(one, jnp.broadcast_to(gm.mean(), one.shape), rtol=1e-5)
    # the Euler loop of flow models: x_next = x + (t_next - t) v
    t = jnp.linspace(1.0, 0.0, 6)
    velocity, y = gm.process_velocity(rf), noise
    for i in range(5):
        y = y + (t[i + 1] - t[i]) * velocity(y, t[i])
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("solver", ["heun", "dpmpp_2m", "unipc", "lms", "dpmpp_2m_sde"])
def test_every_sampler_starts_from_inf(solver):
    gm, rf, denoiser, noise = setup_sampling()
    sigmas = rf.sigma(jnp.linspace(1.0, 0.0, 9))
    calls = []
    solver_ = jd.samplers.by_name(solver)
    x = jd.sample(
        denoiser, noise, sigmas, solver=solver_, key=jr.key(0), callback=lambda i: calls.append(i)
    )
    jax.effects_barrier()
    assert bool(jnp.all(jnp.isfinite(x)))
    assert [int(c["i"]) for c in calls] == list(range(8))
    assert float(calls[0]["sigma"]) == np.inf
    assert jd.samplers.num_evaluations(solver_, sigmas) == 1 + solver_.nfe(7)
    # the result is near the mixture (means of the samples within 0.3 of the data mean)
    assert float(jnp.max(jnp.abs(jnp.mean(x, 0) - gm.mean()))) < 0.3


def test_inf_start_with_per_sample_keys_and_no_recompile():
    _, rf, denoiser, noise = setup_sampling()
    sigmas = rf.sigma(jnp.linspace(1.0, 0.0, 5))
    keys = jd.per_sample_keys(jr.key(1), noise.shape[0])
    a = jd.sample(denoiser, noise, sigmas, solver="euler_ancestral", key=keys)
    b = jd.sample(denoiser, noise[:8], sigmas, solver="euler_ancestral", key=keys[:8])
    np.testing.assert_allclose(a[:8], b, rtol=1e-5, atol=1e-6)
    from jaxdiff.samplers import _core

    before = cache_size(_core._sample)
    jd.sample(denoiser, noise + 1, sigmas, solver="euler_ancestral", key=keys)
    assert cache_size(_core._sample) == before


def test_bad_grids_and_models():
    _, rf, denoiser, noise = setup_sampling()
    with pytest.raises(ValueError, match=r"sigmas must be finite after its first entry"):
        jd.sample(denoiser, noise, jnp.array([10.0, jnp.inf, 0.0]))
    with pytest.raises(ValueError, match=r"sigmas must be finite after its first entry"):
        jd.sample(denoiser, noise, jnp.array([jnp.inf, jnp.inf, 0.0]))
    # the bridges take no pure-noise start
    with pytest.raises(ValueError, match=r"must be finite"):
        jd._checks.check_grid(jnp.array([jnp.inf, 1.0, 0.0]))

    def wrong(x_t, t):
        return x_t[:, :1]

    with pytest.raises(ValueError, match=r"velocity\(x_t, t\) must return an array shaped like"):
        jd.sample(
            jd.parametrizations.from_velocity(wrong, rf),
            noise,
            rf.sigma(jnp.array([1.0, 0.5, 0.0])),
        )
    # a grid traced by an outer jit may not start at inf: a runtime error, not NaNs
    run = jax.jit(lambda s: jd.sample(denoiser, noise, s, solver="euler"))
    with pytest.raises(Exception, match=r"sigmas starts at inf"):
        jax.block_until_ready(run(rf.sigma(jnp.linspace(1.0, 0.0, 4))))
    assert bool(jnp.all(jnp.isfinite(run(jnp.array([5.0, 1.0, 0.0])))))


def test_bad_flows():
    with pytest.raises(ValueError, match=r"t must lie in \[0, t_max=1.0\]"):
        jd.RectifiedFlow().perturb(jr.key(0), jnp.ones((2, 2)), 1.5)
    with pytest.raises(ValueError, match="t_max must be <= 1"):
        jd.RectifiedFlow(t_max=1.5)
    with pytest.raises(ValueError, match="alpha_fn must go from alpha"):
        jd.AffineFlow(lambda t: 1 + t, lambda t: t)
    with pytest.raises(ValueError, match="beta_fn must go from beta"):
        jd.AffineFlow(lambda t: 1 - t, lambda t: 1 + t)
    with pytest.raises(TypeError, match="process must be a flow"):
        jd.parametrizations.from_velocity(lambda x, t: x, jd.VP())
    with pytest.raises(TypeError, match="exactly one of score"):
        jd.RectifiedFlow().probability_flow()
    with pytest.raises(TypeError, match="diffusion must be a callable"):
        jd.RectifiedFlow().reverse(velocity=lambda x, t: x, diffusion="big")
    gm, rf = mixture(), jd.RectifiedFlow()
    with pytest.raises(ValueError, match=r"process.t_max = 1.0 is pure noise"):
        jd.sample_ode(gm.process_score(rf), jnp.ones((2, 2)), rf)
    short = jd.RectifiedFlow(t_min=1e-3, t_max=0.999)
    x = jd.sample_ode(gm.process_score(short), jnp.ones((2, 2)), short, steps=4).x
    assert bool(jnp.all(jnp.isfinite(x)))
    with pytest.raises(TypeError, match="flow must be a flow"):
        jd.log_likelihood_flow(lambda x, t: x, jnp.ones((2, 2)), jd.VE())
