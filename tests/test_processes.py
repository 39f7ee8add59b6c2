"""Noising processes: inverses, SDE coefficients against s(t) and sigma(t), simulated
marginals, reverse SDE / PF-ODE on the exact oracle, conversions, jit/vmap, bad input."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxdiff as jd

PROCESSES = {
    "VP": jd.VP(),
    "SubVP": jd.SubVP(),
    "VE": jd.VE(),
    "EDM": jd.EDM(),
    "CosineVP": jd.CosineVP(),
}
NAMES = list(PROCESSES)


def times(p, n=9, dtype=None):
    return jnp.linspace(p.t_min, p.t_max, n, dtype=dtype)


@pytest.mark.parametrize("name", NAMES)
def test_t_of_sigma_inverts_sigma(name, dtype):
    p = PROCESSES[name]
    t = times(p, 33, dtype)
    sigma = p.sigma(t)
    assert sigma.dtype == dtype
    assert jnp.all(jnp.diff(sigma) > 0), "sigma(t) must increase"
    rtol = 1e-10 if dtype == jnp.float64 else 2e-5
    assert jnp.allclose(p.t_of_sigma(sigma), t, rtol=rtol, atol=rtol * p.t_max)


@pytest.mark.parametrize("name", NAMES)
def test_coefficients_agree_with_scale_and_sigma(name, x64):
    # f = d log s / dt and g^2 = s^2 d sigma^2 / dt, checked by central differences of the
    # process's own s(t), sigma(t) (float64).
    p = PROCESSES[name]
    t = times(p, 7)[1:-1]
    h = 1e-6 * p.t_max
    dlogs = (jnp.log(p.scale(t + h)) - jnp.log(p.scale(t - h))) / (2 * h)
    dsig2 = (p.sigma(t + h) ** 2 - p.sigma(t - h) ** 2) / (2 * h)
    assert jnp.allclose(p.drift_coef(t), dlogs, rtol=1e-6, atol=1e-9)
    assert jnp.allclose(p.diffusion_coef(t) ** 2, p.scale(t) ** 2 * dsig2, rtol=1e-6)
    x = jnp.ones(3)
    assert jnp.allclose(p.sde.drift(t[0], x, None), p.drift_coef(t[0]) * x)
    assert jnp.allclose(p.sde.diffusion(t[0], x, None), p.diffusion_coef(t[0]))


def test_coefficients_match_the_papers(x64):
    t = jnp.linspace(0.05, 1.0, 5)
    beta = 0.1 + t * (20.0 - 0.1)
    big_b = 0.1 * t + 0.5 * (20.0 - 0.1) * t**2
    vp, subvp, ve, edm = jd.VP(), jd.SubVP(), jd.VE(), jd.EDM()
    # Song et al. 2021: VP f = -beta/2, g = sqrt(beta); sub-VP g^2 = beta (1 - e^{-2B}),
    # marginal std 1 - e^{-B}; VE g = sigma sqrt(2 ln(smax/smin)).
    assert jnp.allclose(vp.drift_coef(t), -beta / 2)
    assert jnp.allclose(vp.diffusion_coef(t), jnp.sqrt(beta))
    assert jnp.allclose(vp.scale(t) * vp.sigma(t), jnp.sqrt(1 - jnp.exp(-big_b)))
    assert jnp.allclose(subvp.diffusion_coef(t) ** 2, beta * (1 - jnp.exp(-2 * big_b)))
    assert jnp.allclose(subvp.scale(t) * subvp.sigma(t), 1 - jnp.exp(-big_b))
    assert jnp.allclose(ve.diffusion_coef(t), ve.sigma(t) * jnp.sqrt(2 * jnp.log(50 / 0.01)))
    assert jnp.allclose(edm.diffusion_coef(t), jnp.sqrt(2 * t))
    # iDDPM cosine: alpha_bar = cos^2(((t + s)/(1 + s)) pi/2) / cos^2(s/(1+s) pi/2)
    cos = jd.CosineVP()
    ab = (
        jnp.cos((t[:-1] + 0.008) / 1.008 * jnp.pi / 2) ** 2
        / jnp.cos(0.008 / 1.008 * jnp.pi / 2) ** 2
    )
    assert jnp.allclose(cos.scale(t[:-1]) ** 2, ab)
    assert jnp.allclose(cos.sigma(t[:-1]) ** 2, 1 / ab - 1)
    assert cos.sigma(cos.t_max) == pytest.approx(118.8, rel=0.01)


@pytest.mark.parametrize("name", NAMES)
def test_forward_sde_reproduces_the_marginals(name):
    # Start at t_min from perturb(x0, t_min), simulate the forward SDE, and compare mean and
    # variance at two later times with s(t) x0 and (s(t) sigma(t))^2, within sampling error.
    p = PROCESSES[name]
    n = 20000
    x0 = 1.5
    ts = jnp.array([p.t_min, 0.5 * (p.t_min + p.t_max), p.t_max])
    start = p.perturb(jr.key(0), jnp.full((n,), x0), p.t_min)
    # the cosine schedule is stiff near t = 1 (f(t_max) is about -185): finer steps there
    dt = (p.t_max - p.t_min) / (4000 if name == "CosineVP" else 400)
    xs = jd.solve_sde(p.sde, start, ts, key=jr.key(1), dt=dt)
    for i, t in enumerate(ts):
        s, sigma = float(p.scale(t)), float(p.sigma(t))
        mean, var = float(jnp.mean(xs[i])), float(jnp.var(xs[i]))
        sd = s * sigma
        assert abs(mean - s * x0) < 5 * sd / np.sqrt(n) + 0.01 * s * x0, (t, mean, s * x0)
        assert var == pytest.approx(sd**2, rel=5 * np.sqrt(2 / n) + 0.01), (t, var, sd**2)


@pytest.mark.parametrize("name", NAMES)
def test_perturb_and_prior(name, dtype):
    p = PROCESSES[name]
    n = 20000
    t = jnp.asarray(0.3 * p.t_max, dtype)
    x = p.perturb(jr.key(0), jnp.full((n, 2), 0.7, dtype), t)
    assert x.dtype == dtype and x.shape == (n, 2)
    s, sd = float(p.scale(t)), float(p.scale(t) * p.sigma(t))
    assert float(jnp.mean(x)) == pytest.approx(0.7 * s, abs=5 * sd / np.sqrt(2 * n))
    assert float(jnp.std(x)) == pytest.approx(sd, rel=0.03)
    # one time per sample
    tb = jnp.linspace(p.t_min, p.t_max, 4, dtype=dtype)
    xb = p.perturb(jr.key(1), jnp.zeros((4, 3), dtype), tb)
    assert xb.shape == (4, 3)
    prior = p.prior_sample(jr.key(2), (n, 2), dtype)
    assert prior.dtype == dtype
    assert float(jnp.std(prior)) == pytest.approx(float(p.prior_std()), rel=0.03)
    lp = p.prior_log_prob(prior[:5])
    assert lp.shape == (5,)
    std = float(p.prior_std())
    want = -0.5 * np.sum(np.asarray(prior[:5], np.float64) ** 2, 1) / std**2 - 2 * np.log(
        std * np.sqrt(2 * np.pi)
    )
    assert np.allclose(lp, want, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_denoiser_score_conversions(name, x64):
    p = PROCESSES[name]
    gm = jd.analytic.ring()
    x = jr.normal(jr.key(0), (16, 2)) * 2
    for t in [p.t_min, 0.5 * p.t_max, p.t_max]:
        t = jnp.asarray(t)
        exact = gm.process_score(p)(x, t)
        via_denoiser = jd.score_from_denoiser(gm.denoiser, p)(x, t)
        assert jnp.allclose(via_denoiser, exact, rtol=1e-8, atol=1e-10)
        sigma = p.sigma(t)
        back = jd.denoiser_from_score(gm.process_score(p), p)(x, sigma)
        assert jnp.allclose(back, gm.denoiser(x, sigma), rtol=1e-6, atol=1e-8)
    # the method is the function (t is the last time of the loop)
    assert jnp.array_equal(p.score_from_denoiser(gm.denoiser)(x, t), via_denoiser)


def _reference_loglik(gm, sigma, n, key):
    """Mean log-density of exact samples of p(.; sigma) and its standard error."""
    ref = gm.log_prob(gm.sample_noisy(key, n, sigma), sigma)
    return float(jnp.mean(ref)), float(jnp.std(ref)) / np.sqrt(n)


def _sliced_w1(a, b, key, n_proj=64):
    u = jr.normal(key, (n_proj, a.shape[1]))
    u = u / jnp.linalg.norm(u, axis=1, keepdims=True)
    pa, pb = jnp.sort(a @ u.T, axis=0), jnp.sort(b @ u.T, axis=0)
    return float(jnp.mean(jnp.abs(pa - pb)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["VP", "VE", "SubVP"])
@pytest.mark.parametrize("kind", ["reverse", "probability_flow"])
def test_reverse_sde_and_pf_ode_reproduce_the_mixture(name, kind):
    # Driven by the exact score, both samplers must reproduce the mixture at t_min: the mean
    # log-likelihood of their samples matches that of exact samples, and their sliced
    # Wasserstein distance to exact samples is within the two-sample noise of exact samples.
    p = PROCESSES[name]
    gm = jd.analytic.ring()
    n = 2000
    score = gm.process_score(p)
    sde = p.reverse(score) if kind == "reverse" else p.probability_flow(score)
    x_T = p.prior_sample(jr.key(0), (n, 2))
    ts = jnp.array([p.t_max, p.t_min])
    solver = "euler_maruyama" if kind == "reverse" else "heun"
    xs = jd.solve_sde(sde, x_T, ts, key=jr.key(1), dt=(p.t_max - p.t_min) / 500, solver=solver)
    s_min, sigma_min = p.scale(p.t_min), p.sigma(p.t_min)
    samples = xs[-1] / s_min
    assert jnp.all(jnp.isfinite(samples))
    ll = gm.log_prob(samples, sigma_min)
    ref, ref_se = _reference_loglik(gm, sigma_min, 20000, jr.key(2))
    se = float(jnp.std(ll)) / np.sqrt(n)
    assert abs(float(jnp.mean(ll)) - ref) < 4 * np.hypot(se, ref_se) + 0.02
    # distance on samples vs the distance between two exact sample sets of the same size
    exact = [gm.sample_noisy(jr.key(10 + i), n, sigma_min) for i in range(4)]
    null = [_sliced_w1(exact[0], e, jr.key(20)) for e in exact[1:]]
    dist = _sliced_w1(samples, exact[0], jr.key(20))
    assert dist < 2.0 * max(null), (dist, null)


def test_pf_ode_float64_under_vmap(x64):
    # The whole sampling pipeline in float64, vmapped over keys: one compiled program for
    # several independent batches, each reproducing the mixture's mean log-likelihood.
    p = jd.VE()
    gm = jd.analytic.ring()
    pf = p.probability_flow(gm.process_score(p))

    def sample(key):
        x = p.prior_sample(key, (500, 2), jnp.float64)
        return jd.solve_sde(pf, x, np.array([p.t_max, p.t_min]), dt=1 / 200, solver="heun")[-1]

    xs = jax.vmap(sample)(jr.split(jr.key(3), 4))
    assert xs.shape == (4, 500, 2) and xs.dtype == jnp.float64
    ll = gm.log_prob(xs.reshape(-1, 2), p.sigma(p.t_min))
    ref, ref_se = _reference_loglik(gm, p.sigma(p.t_min), 20000, jr.key(4))
    se = float(jnp.std(ll)) / np.sqrt(ll.size)
    assert abs(float(jnp.mean(ll)) - ref) < 4 * np.hypot(se, ref_se) + 0.02


def test_reverse_sde_jit_and_recompilation():
    # A new mixture of the same shape is a new pytree leaf, not a recompilation.
    p = jd.VP()
    traces = []

    def run(gm, key):
        traces.append(1)
        sde = p.reverse(gm.process_score(p))
        x = p.prior_sample(key, (64, 2))
        # inside jit, ts is built with numpy (a jnp array made here would be traced)
        return jd.solve_sde(sde, x, np.array([p.t_max, p.t_min]), key=key, dt=0.05)[-1]

    run_jit = jax.jit(run)
    a = run_jit(jd.analytic.ring(), jr.key(0))
    b = run_jit(jd.analytic.ring(radius=3.0), jr.key(0))
    assert len(traces) == 1
    assert not jnp.allclose(a, b)
    batched = jax.vmap(lambda k: run(jd.analytic.ring(), k))(jr.split(jr.key(0), 2))
    assert batched.shape == (2, 64, 2)


def test_processes_are_pytrees_through_jit():
    @jax.jit
    def sig(p, t):
        return p.sigma(t), p.t_of_sigma(p.sigma(t))

    s1, t1 = sig(jd.VE(), 0.5)
    s2, _ = sig(jd.VE(sigma_max=100.0), 0.5)
    assert float(t1) == pytest.approx(0.5, rel=1e-6)
    assert float(s2) > float(s1)
    t = jnp.linspace(0.1, 0.9, 5)
    assert jnp.allclose(jax.vmap(jd.VP().sigma)(t), jd.VP().sigma(t))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: jd.VE(sigma_min=1.0, sigma_max=1.0), "sigma_min must be < sigma_max"),
        (lambda: jd.VE(sigma_min=5.0, sigma_max=1.0), "sigma_min must be < sigma_max"),
        (lambda: jd.EDM(sigma_min=-1.0), "sigma_min must be > 0"),
        (lambda: jd.EDM(sigma_min=80.0, sigma_max=0.002), "sigma_min must be < sigma_max"),
        (lambda: jd.VP(beta_min=20.0, beta_max=0.1), "beta_min must be <= beta_max"),
        (lambda: jd.SubVP(beta_min=-1.0), "beta_min must be >= 0"),
        (lambda: jd.VP(t_min=0.5, t_max=0.1), "t_min must be < t_max"),
        (lambda: jd.CosineVP(t_max=1.0), "t_max must be < 1"),
        (lambda: jd.CosineVP(s=-0.1), "s must lie in"),
    ],
)
def test_bad_process_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_process_calls():
    vp = jd.VP()
    with pytest.raises(ValueError, match="t must lie in"):
        vp.perturb(jr.key(0), jnp.zeros((3, 2)), 1.5)
    with pytest.raises(ValueError, match="t must be a scalar or match"):
        vp.perturb(jr.key(0), jnp.zeros((3, 2)), jnp.array([0.1, 0.2]))
    with pytest.raises(TypeError, match="score must be callable"):
        vp.reverse(3.0)
    with pytest.raises(TypeError, match="denoiser must be callable"):
        jd.score_from_denoiser(None, vp)
    with pytest.raises(TypeError, match="process must be a jaxdiff process"):
        jd.denoiser_from_score(lambda x, t: x, "vp")


def test_score_shape_is_checked():
    vp = jd.VP()
    x = jnp.ones((4, 2))
    ts = np.array([vp.t_max, vp.t_min])
    with pytest.raises(ValueError, match="score.*must return an array shaped like x"):
        jd.solve_sde(vp.reverse(lambda x, t: x[:, :1]), x, ts, key=jr.key(0), dt=0.1)
    with pytest.raises(ValueError, match="with x first"):
        jd.solve_sde(vp.probability_flow(lambda t, x: -x), x, ts, dt=0.1)
    with pytest.raises(ValueError, match="must be finite"):
        jd.VP(beta_max=float("inf"))
