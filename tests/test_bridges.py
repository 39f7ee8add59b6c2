"""Diffusion bridges (DDBM, DBIM): coefficients, h-transform, preconditioning, loss, and the
samplers' distribution on jointly Gaussian pairs, where p(x_0 | x_T) and the bridge denoiser
are exact in closed form."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxdiff_test_utils import compiles

import jaxdiff as jd
from jaxdiff import bridges as B
from jaxdiff.bridges._sample import _sample  # B.sample's compiled program

BRIDGES = {"VE": B.VE(sigma_max=80.0), "VP": B.VP(beta_d=2.0, beta_min=0.1)}


def pair(dtype=jnp.float64):
    """A 2-D jointly Gaussian (x_0, x_T), correlated within each dimension."""
    return B.GaussianPair(
        mean0=jnp.array([0.3, -0.2], dtype),
        meanT=jnp.array([0.1, 0.4], dtype),
        var0=jnp.array([0.25, 0.16], dtype),
        varT=jnp.array([0.25, 0.36], dtype),
        cov=jnp.array([0.15, -0.12], dtype),
    )


# -- coefficients and the bridge SDE ----------------------------------------------------------
def naive_coefficients(bridge, t):
    """DDBM's formulas in float64 numpy, straight from alpha, sigma and SNR."""
    t = np.asarray(t, np.float64)
    if isinstance(bridge, B.VE):
        alpha, sig2 = lambda s: np.ones_like(s), lambda s: s**2
    else:
        big_b = lambda s: bridge.beta_min * s + 0.5 * bridge.beta_d * s**2
        alpha = lambda s: np.exp(-0.5 * big_b(s))
        sig2 = lambda s: 1 - np.exp(-big_b(s))
    T = np.float64(bridge.T)
    snr = lambda s: alpha(s) ** 2 / sig2(s)
    ratio = snr(T) / snr(t)
    return ratio * alpha(t) / alpha(T), alpha(t) * (1 - ratio), sig2(t) * (1 - ratio)


@pytest.mark.parametrize("name", BRIDGES)
def test_coefficients_limits_and_closed_forms(x64, name):
    br = BRIDGES[name]
    a, b, c = br.coefficients(jnp.asarray(br.T))
    assert (float(a), float(b), float(c)) == (1.0, 0.0, 0.0)
    a, b, c = br.coefficients(jnp.asarray(1e-9))
    np.testing.assert_allclose([a, b, c], [0.0, 1.0, 0.0], atol=1e-8)
    ts = np.array([1e-3, 0.1, 0.3, 0.5, 0.9, 0.999, 0.99999]) * br.T
    got = br.coefficients(jnp.asarray(ts))
    for g, want in zip(got, naive_coefficients(br, ts), strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-12)
    if name == "VE":  # REFERENCES: mean (t^2/T^2) x_T + (1 - t^2/T^2) x_0, var t^2 (1 - t^2/T^2)
        r = ts**2 / br.T**2
        np.testing.assert_allclose(got[0], r, rtol=1e-12)
        np.testing.assert_allclose(got[1], 1 - r, rtol=1e-10)  # ours avoids 1 - r's cancellation
        np.testing.assert_allclose(got[2], ts**2 * (1 - r), rtol=1e-10)
    # log-space SNR and the derived alpha, sigma
    np.testing.assert_allclose(br.snr(ts), br.alpha(ts) ** 2 / br.sigma(ts) ** 2, rtol=1e-10)


def test_coefficients_near_T_in_float32():
    """No cancellation just below T (the solvers start at T - 1e-4)."""
    for br in BRIDGES.values():
        t = jnp.asarray(br.T - 1e-4, jnp.float32)
        got = np.array(br.coefficients(t), np.float64)
        want = np.array(naive_coefficients(br, np.float64(t)))
        np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("name", BRIDGES)
def test_h_transform_and_drifts(x64, name):
    """h = grad_x log p(x_T | x_t) of the forward process; the PF-ODE and reverse SDE drifts."""
    br = BRIDGES[name]
    t, x, x_T, d = (
        0.37 * br.T,
        jnp.array([[0.7, -1.2]]),
        jnp.array([[0.2, 0.5]]),
        jnp.array([[0.1, 0.3]]),
    )
    al = lambda s: br.alpha(jnp.asarray(s))
    k = al(br.T) / al(t)
    var = br.sigma_sq(br.T) - k**2 * br.sigma_sq(t)
    logp = lambda y: jnp.sum(-0.5 * (x_T - k * y) ** 2 / var)
    np.testing.assert_allclose(br.h_transform(x, t, x_T), jax.grad(logp)(x), rtol=1e-10)
    if name == "VE":
        np.testing.assert_allclose(br.h_transform(x, t, x_T), (x_T - x) / (br.T**2 - t**2))
    a, b, c = br.coefficients(t)
    s = -(x - a * x_T - b * d) / c
    h, f, g2 = br.h_transform(x, t, x_T), br.f(t), br.g2(t)
    for w in (1.0, 2.0):
        np.testing.assert_allclose(
            br.pf_ode_drift(x, t, x_T, d, w), f * x - g2 * (s / 2 - w * h), rtol=1e-12
        )
        np.testing.assert_allclose(
            br.reverse_drift(x, t, x_T, d, w), f * x - g2 * (s - w * h), rtol=1e-12
        )
    # g^2 = d sigma^2/dt - 2 f sigma^2, f = d log alpha / dt
    np.testing.assert_allclose(jax.grad(br.log_alpha)(t), br.f(t), rtol=1e-10)
    g2_want = jax.grad(br.sigma_sq)(t) - 2 * br.f(t) * br.sigma_sq(t)
    np.testing.assert_allclose(g2_want, br.g2(t), rtol=1e-10)


@pytest.mark.parametrize("name", BRIDGES)
def test_perturb_mean_and_variance(x64, name):
    br = BRIDGES[name]
    n, t = 200_000, 0.6 * br.T
    x0, x_T = jnp.full((n, 1), 0.4), jnp.full((n, 1), -0.3)
    xt = np.asarray(br.perturb(x0, x_T, t, jr.key(0)))
    a, b, c = (float(v) for v in br.coefficients(t))
    assert abs(xt.mean() - (a * -0.3 + b * 0.4)) < 5 * np.sqrt(c / n)
    assert abs(xt.var() / c - 1) < 5 * np.sqrt(2 / n)
    # one time per sample
    ts = jnp.array([0.1, 0.5]) * br.T
    out = br.perturb(jnp.zeros((2, 3)), jnp.ones((2, 3)), ts, jr.key(1))
    assert out.shape == (2, 3)


# -- the Gaussian oracle -----------------------------------------------------------------------
@pytest.mark.parametrize("name", BRIDGES)
def test_gaussian_denoiser_against_joint_conditioning(x64, name):
    """The closed form against conditioning the 3x3 joint covariance of (x_0, x_T, x_t)."""
    br, p = BRIDGES[name], pair()
    x_T, x_t = jnp.array([[0.5, -0.7]]), jnp.array([[1.3, 0.2]])
    for t in (0.05 * br.T, 0.5 * br.T, 0.97 * br.T):
        a, b, c = (float(v) for v in br.coefficients(t))
        want = []
        for j in range(2):
            m0, mT = float(p.mean0[j]), float(p.meanT[j])
            v0, vT, r = float(p.var0[j]), float(p.varT[j]), float(p.cov[j])
            # (x_0, [x_T, x_t]) joint moments
            mean_y = np.array([mT, a * mT + b * m0])
            cov_y = np.array(
                [
                    [vT, a * vT + b * r],
                    [a * vT + b * r, a * a * vT + b * b * v0 + 2 * a * b * r + c],
                ]
            )
            cov_0y = np.array([r, a * r + b * v0])
            y = np.array([x_T[0, j], x_t[0, j]])
            want.append(m0 + cov_0y @ np.linalg.solve(cov_y, y - mean_y))
        np.testing.assert_allclose(p.denoiser(br)(x_t, t, x_T)[0], want, rtol=1e-9)
    # at t = T (b = c = 0, the booting step) x_t = x_T and the denoiser is E[x_0 | x_T]
    out = p.denoiser(br)(x_T, jnp.asarray(br.T), x_T)
    np.testing.assert_allclose(out, p.conditional(x_T)[0], rtol=1e-12)
    ends = jnp.array([0.0, br.T])  # one time per sample, at both ends
    assert np.all(np.isfinite(p.denoiser(br)(x_t.repeat(2, 0), ends, x_t.repeat(2, 0))))


# -- preconditioning and loss ------------------------------------------------------------------
def test_preconditioning_reduces_to_edm(x64):
    sigma = jnp.array([0.01, 0.3, 2.0, 80.0])
    c_skip, c_out, c_in = B.bridge_scalings(0.0, 1.0, sigma**2, 0.5, 0.7, 0.1)
    edm = jd.parametrizations.EDMPrecond(lambda x, s: x, sigma_data=0.5)
    e_skip, e_out, e_in, _ = edm.coefficients(sigma)
    np.testing.assert_allclose([c_skip, c_out, c_in], [e_skip, e_out, e_in], rtol=1e-12)


def test_bridge_precond_and_loss(x64):
    """A zero network under BridgePrecond has loss 1 on data with the assumed moments; the
    exact denoiser beats a perturbed one; per-sample times work."""
    br = BRIDGES["VP"]
    p = B.GaussianPair(0.0, 0.0, 0.25, 0.16, 0.1)  # sigma_0 = 0.5, sigma_T = 0.4, cov 0.1
    x0, x_T = p.sample(jr.key(0), 20_000)
    zero = B.BridgePrecond(lambda x, c, xT: jnp.zeros_like(x), br, 0.5, 0.4, 0.1)
    loss = B.bridge_loss(zero, x0, x_T, br, key=jr.key(1))
    assert abs(float(loss) - 1) < 0.05
    exact = p.denoiser(br)
    worse = lambda x, t, xT: exact(x, t, xT) + 0.05
    kw = dict(sigma_data_0=0.5, sigma_data_T=0.4, cov=0.1)
    l_exact = B.bridge_loss(exact, x0, x_T, br, key=jr.key(1), **kw)
    assert float(l_exact) < float(B.bridge_loss(worse, x0, x_T, br, key=jr.key(1), **kw))
    assert float(l_exact) < 1.0
    u = B.bridge_loss(exact, x0, x_T, br, key=jr.key(1), weighting="uniform")
    assert np.isfinite(float(u)) and float(u) < float(l_exact)
    # c_noise = log(t)/4 reaches the network, one per sample
    seen = {}

    def raw(x, c_noise, xT):
        seen["c"] = c_noise
        return x

    ts = jnp.array([0.2, 0.7])
    B.BridgePrecond(raw, br)(x0[:2], ts, x_T[:2])
    np.testing.assert_allclose(seen["c"], jnp.log(ts) / 4)


# -- the samplers on the Gaussian oracle -------------------------------------------------------
N = 40_000  # residual covariance Monte Carlo error ~1-2 % (Frobenius, relative)
_RUNS = {}


def sample_error(name, solver, steps, grid="karras"):
    """(mean error in conditional std, relative Frobenius covariance error) of the sampler's
    x_0 - E[x_0 | x_T] against p(x_0 | x_T), for x_T from its marginal (cached)."""
    k = (name, solver, steps, grid)
    if k not in _RUNS:
        br, p = BRIDGES[name], pair()
        x_T = p.sample_T(jr.key(0), N)
        g = B.uniform_grid(br, steps) if grid == "uniform" else None
        x0 = B.sample(p.denoiser(br), x_T, br, steps=steps, solver=solver, key=jr.key(1), grid=g)
        m, v = p.conditional(x_T)
        r = np.asarray(x0 - m)
        cov, want = np.cov(r.T), np.diag(np.asarray(v))
        mean_err = np.max(np.abs(r.mean(0)) / np.sqrt(np.asarray(v)))
        _RUNS[k] = mean_err, np.linalg.norm(cov - want) / np.linalg.norm(want)
    return _RUNS[k]


# (solver, steps, tolerance on the relative covariance error). Measured with N = 40k
# (VE / VP): DDBM 80 steps 0.037 / 0.070; DBIM eta 0, 100 steps 0.055 / 0.045; eta 1, 200 steps
# 0.057 / 0.025; order 2, 29 steps 0.077 / 0.049; order 3, 29 steps 0.017 / 0.056. Monte Carlo
# error about 0.015. Mean errors are all below 0.02 conditional standard deviations.
DISTRIBUTION_CASES = [
    (B.DDBM(), 80, 0.12),
    (B.DBIM(eta=0.0), 100, 0.10),
    (B.DBIM(eta=1.0), 200, 0.10),
    (B.DBIM(order=2), 29, 0.12),
    (B.DBIM(order=3), 29, 0.10),
]


@pytest.mark.slow
@pytest.mark.parametrize("name", BRIDGES)
@pytest.mark.parametrize(("solver", "steps", "tol"), DISTRIBUTION_CASES, ids=lambda c: repr(c))
def test_samplers_reproduce_conditional(x64, name, solver, steps, tol):
    mean_err, cov_err = sample_error(name, solver, steps)
    assert mean_err < 0.05, (mean_err, cov_err)
    assert cov_err < tol, (mean_err, cov_err)


@pytest.mark.slow
@pytest.mark.parametrize("name", BRIDGES)
def test_dbim_beats_ddbm_at_equal_cost(x64, name):
    """About 30 denoiser calls: DDBM 10 steps (29 NFE) against DBIM 29 steps (30 NFE).
    Measured (VE / VP): DDBM 0.53 / 0.41; DBIM order 1: 0.19 / 0.15, order 2: 0.077 / 0.049,
    order 3: 0.017 / 0.056."""
    ddbm = B.DDBM()
    assert ddbm.nfe(10) == 29
    e_ddbm = sample_error(name, ddbm, 10)[1]
    for order in (1, 2, 3):
        dbim = B.DBIM(order=order)
        assert dbim.nfe(29) == 30
        e_dbim = sample_error(name, dbim, 29)[1]
        assert e_dbim <= e_ddbm, (order, e_dbim, e_ddbm)


@pytest.mark.slow
def test_uniform_grid_fails_for_ve_but_default_works(x64):
    """DBIM 100 steps on the VE bridge (T = 80): Karras grid 0.055, uniform in t 0.82 (on the
    VP bridge both work: 0.045, 0.032)."""
    default = sample_error("VE", B.DBIM(), 100)[1]
    uniform = sample_error("VE", B.DBIM(), 100, grid="uniform")[1]
    assert default < 0.10 and uniform > 0.5, (default, uniform)
    assert uniform > 5 * default


# -- cost, compilation, errors -----------------------------------------------------------------
class CountingDenoiser:
    """Counts the denoiser calls actually executed (concrete inputs: run under disable_jit)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, x, t, x_T):
        if not isinstance(x, jax.core.Tracer):
            self.calls += 1
        return self.inner(x, t, x_T)


@pytest.mark.parametrize(
    "solver",
    [B.DDBM(), B.DDBM(churn=0.0), B.DBIM(), B.DBIM(eta=1.0), B.DBIM(order=2), B.DBIM(order=3)],
    ids=repr,
)
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_nfe_counts_denoiser_calls(solver, steps):
    br = BRIDGES["VE"]
    den = CountingDenoiser(pair(jnp.float32).denoiser(br))
    with jax.disable_jit():
        out = B.sample(den, jnp.ones((3, 2)), br, steps=steps, solver=solver, key=jr.key(0))
    assert den.calls == solver.nfe(steps)
    assert np.all(np.isfinite(out))


def test_no_recompile_for_new_key_or_x_T_and_jit():
    br = BRIDGES["VP"]
    den = CountingDenoiser(pair(jnp.float32).denoiser(br))
    x_T = jnp.ones((8, 2))
    solver = B.DBIM(order=3)  # a carry (history) and a key (booting noise)
    with compiles(_sample) as new:
        a = B.sample(den, x_T, br, steps=6, solver=solver, key=jr.key(0))
    assert new.count == 1  # a new denoiser object (static): the check sees the compile
    with compiles(_sample) as new:
        b = B.sample(den, x_T + 1.0, br, steps=6, solver=solver, key=jr.key(1))
        B.sample(den, x_T, br, steps=6, solver=solver, key=jr.key(2))
    assert new.count == 0, f"a new key or x_T must not recompile ({new.count} compiles)"
    assert a.shape == b.shape == x_T.shape and a.dtype == jnp.float32
    # the same key gives the same result, also inside an outer jit
    run = jax.jit(lambda xT, k: B.sample(den, xT, br, steps=6, solver=solver, key=k))
    np.testing.assert_allclose(a, run(x_T, jr.key(0)), rtol=1e-5, atol=1e-5)
    x0, traj = B.sample(den, x_T, br, steps=6, solver=solver, key=jr.key(0), return_trajectory=True)
    assert traj.shape == (7, *x_T.shape)
    np.testing.assert_array_equal(traj[-1], x0)
    np.testing.assert_allclose(x0, a, rtol=1e-6)


def test_deterministic_ddbm_without_key_and_float32_matches_float64():
    br = BRIDGES["VE"]
    x_T = pair(jnp.float32).sample_T(jr.key(0), 64)
    out = B.sample(pair(jnp.float32).denoiser(br), x_T, br, steps=10, solver=B.DDBM(churn=0.0))
    with jax.enable_x64(True):
        p64 = pair(jnp.float64)
        x_T64 = jnp.asarray(np.asarray(x_T), jnp.float64)
        ref = B.sample(p64.denoiser(br), x_T64, br, steps=10, solver=B.DDBM(churn=0.0))
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3)


def test_bad_input():
    br = BRIDGES["VE"]
    den = pair(jnp.float32).denoiser(br)
    x_T = jnp.ones((4, 2))
    key = jr.key(0)
    with pytest.raises(ValueError, match="x_T is required"):
        B.sample(den, None, br, steps=5, key=key)
    with pytest.raises(TypeError, match="x_T"):
        B.sample(den, jnp.ones((4, 2), jnp.int32), br, steps=5, key=key)
    with pytest.raises(TypeError, match="x_T"):
        B.sample(den, "x", br, steps=5, key=key)
    with pytest.raises(ValueError, match="x_T is required"):
        den(x_T, 1.0)
    with pytest.raises(ValueError, match="x_T is required"):
        B.BridgePrecond(lambda x, c, xT: x, br)(x_T, 1.0)
    with pytest.raises(ValueError, match="x_T is required"):
        br.perturb(x_T, None, 1.0, key)
    with pytest.raises(ValueError, match="x_T must have the shape"):
        br.perturb(x_T, jnp.ones((3, 2)), 1.0, key)
    with pytest.raises(ValueError, match="x_T is required"):
        B.bridge_loss(den, x_T, None, br, key=key)
    with pytest.raises(ValueError, match="key="):
        B.sample(den, x_T, br, steps=5, solver=B.DBIM())
    with pytest.raises(ValueError, match="key="):
        B.sample(den, x_T, br, steps=5, solver=B.DDBM())
    with pytest.raises(ValueError, match="steps"):
        B.sample(den, x_T, br, key=key)
    with pytest.raises(ValueError, match="steps"):
        B.sample(den, x_T, br, steps=0, key=key)
    with pytest.raises(ValueError, match="start below T = 80"):
        B.sample(den, x_T, br, grid=jnp.array([80.0, 1.0, 0.0]), key=key)
    with pytest.raises(ValueError, match="end at t = 0"):
        B.sample(den, x_T, br, grid=jnp.array([70.0, 1.0]), key=key)
    with pytest.raises(ValueError, match="decreasing"):
        B.sample(den, x_T, br, grid=jnp.array([1.0, 7.0, 0.0]), key=key)
    with pytest.raises(ValueError, match="does not match"):
        B.sample(den, x_T, br, steps=3, grid=jnp.array([7.0, 1.0, 0.0]), key=key)
    with pytest.raises(TypeError, match="bridge"):
        B.sample(den, x_T, jd.VE(), steps=3, key=key)
    with pytest.raises(TypeError, match="solver"):
        B.sample(den, x_T, br, steps=3, solver=jd.samplers.Heun(), key=key)
    with pytest.raises(ValueError, match="shaped like x_T"):
        B.sample(lambda x, t, xT: x[:, :1], x_T, br, steps=3, key=key)
    with pytest.raises(ValueError, match="order"):
        B.DBIM(order=4)
    with pytest.raises(ValueError, match="eta = 0"):
        B.DBIM(eta=0.5, order=2)
    with pytest.raises(ValueError, match="churn"):
        B.DDBM(churn=1.0)
    with pytest.raises(ValueError, match="sigma_max"):
        B.VE(sigma_max=-1.0)
    with pytest.raises(ValueError, match="cov"):
        B.GaussianPair(0.0, 0.0, 0.25, 0.25, 0.3)


@pytest.mark.parametrize("bridge", [jd.bridges.VP(), jd.bridges.VE()], ids=["vp", "ve"])
def test_h_transform_is_finite_and_continuous_at_t0(bridge, x64):
    x = jnp.array([[0.5, -0.2]])
    x_T = jnp.array([[-1.0, 0.3]])
    at_0 = bridge.h_transform(x, jnp.asarray(0.0), x_T)
    near_0 = bridge.h_transform(x, jnp.asarray(1e-7 * bridge.T), x_T)
    assert bool(jnp.all(jnp.isfinite(at_0)))
    assert jnp.allclose(at_0, near_0, rtol=1e-5)
    # both forms agree where they meet (SNR_T / SNR_t = 1/2)
    for t in (0.2, 0.5, 0.8):
        t = jnp.asarray(t * bridge.T)
        a, _, c = bridge.coefficients(t)
        direct = (a * x_T - bridge.snr_ratio(t) * x) / c
        assert jnp.allclose(bridge.h_transform(x, t, x_T), direct, rtol=1e-9)


def test_shared_driver_gives_bridges_per_sample_keys_callbacks_and_names():
    """The bridges run on the samplers' driver: per-sample keys make a sample independent of
    its batch, the callback sees every step, and solvers may be given by name."""
    br = BRIDGES["VE"]
    den = pair(jnp.float32).denoiser(br)
    x_T = pair(jnp.float32).sample_T(jr.key(0), 6)
    keys = jd.per_sample_keys(jr.key(1), 6)
    solver = B.DBIM(eta=0.5)  # noise at the boot and at every step
    full = B.sample(den, x_T, br, steps=5, solver=solver, key=keys)
    alone = B.sample(den, x_T[2:3], br, steps=5, solver=solver, key=keys[2:3])
    np.testing.assert_allclose(full[2:3], alone, rtol=1e-6, atol=1e-6)
    order = jnp.array([5, 2, 0, 1, 4, 3])
    shuffled = B.sample(den, x_T[order], br, steps=5, solver=solver, key=keys[order])
    np.testing.assert_allclose(shuffled, full[order], rtol=1e-6, atol=1e-6)
    other = B.sample(den, x_T, br, steps=5, solver=solver, key=jd.per_sample_keys(jr.key(2), 6))
    assert not np.allclose(other, full)
    # callback: one call per step, with the bridge's time names
    seen = []
    out = B.sample(den, x_T, br, steps=5, solver="dbim", key=jr.key(3), callback=seen.append)
    jax.effects_barrier()
    assert [int(d["i"]) for d in seen] == list(range(5))
    assert set(seen[0]) == {"i", "t", "t_next", "x", "denoised"}
    np.testing.assert_array_equal(seen[-1]["x"], out)
    assert float(seen[-1]["t_next"]) == 0.0
    # by name: the default options
    np.testing.assert_array_equal(
        out, B.sample(den, x_T, br, steps=5, solver=B.DBIM(), key=jr.key(3))
    )
    with pytest.raises(ValueError, match="unknown solver 'dbmi'"):
        B.sample(den, x_T, br, steps=5, solver="dbmi", key=jr.key(3))
    with pytest.raises(ValueError, match="callback is not supported with per-sample keys"):
        B.sample(den, x_T, br, steps=5, key=keys, callback=print)
    # one step: no scan, still a two-point trajectory
    x0, traj = B.sample(den, x_T, br, steps=1, key=jr.key(4), return_trajectory=True)
    assert traj.shape == (2, *x_T.shape)
    np.testing.assert_array_equal(traj[-1], x0)
