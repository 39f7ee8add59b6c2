"""Tests of the exact Gaussian-mixture oracle `jaxdiff.analytic`.

Random checks use fixed keys (deterministic) and tolerances derived from the sampling noise:
standard errors for means, covariances and importance-sampling estimates, and a
Kolmogorov-Smirnov p-value for distributions.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import jaxdiff.analytic as an
from jaxdiff.analytic import GaussianMixture

NUM_SE = 5.0  # allowed deviation of a Monte-Carlo estimate, in standard errors
KS_MIN_PVALUE = 1e-3


class FakeProcess(eqx.Module):
    """A tiny forward process: s(t) = exp(-rate t), sigma(t) = t."""

    rate: float = 1.0

    def scale(self, t):
        return jnp.exp(-self.rate * jnp.asarray(t))

    def sigma(self, t):
        return jnp.asarray(t)


def small_mixture(dtype=None):
    """Three anisotropic 2-D components with unequal weights."""
    dtype = dtype or jnp.result_type(float)
    means = np.array([[-1.0, 0.5], [1.2, -0.3], [0.1, 1.5]])
    variances = np.array([[0.05, 0.2], [0.3, 0.02], [0.1, 0.1]])
    weights = np.array([0.5, 0.3, 0.2])
    return GaussianMixture(*(jnp.asarray(a, dtype) for a in (means, variances, weights)))


# Mixture shapes are kept few: every new shape costs compilations (the sampler's most of all).
def mixtures(dtype=None):
    return {
        "small": small_mixture(dtype),
        "ring": an.ring(dtype=dtype),
        "random": an.random_mixture(dim=5, num_components=4, seed=1, dtype=dtype),
        "ill": an.ill_conditioned(dim=4, condition=1e3, dtype=dtype),
    }


def query_points(gm, sigma, seed, n=14, scale=1.0):
    """n typical points of p(.; sigma) (drawn with numpy) plus two far-away points (tails).

    The default n gives 16 points for every test, so the compiled kernels are shared.
    """
    rng = np.random.default_rng(seed)
    means, variances, weights = (np.asarray(a, np.float64) for a in jax.tree.leaves(gm))
    k = rng.choice(gm.num_components, n, p=weights / weights.sum())
    x = means[k] + np.sqrt(variances[k] + sigma**2) * rng.standard_normal((n, gm.dim))
    far = np.stack([np.full(gm.dim, 10.0), np.full(gm.dim, -7.0)])
    return jnp.asarray(scale * np.concatenate([x, far]), gm.means.dtype)


def unit_directions(dim, num, seed):
    u = np.random.default_rng(seed).standard_normal((num, dim))
    return u / np.linalg.norm(u, axis=-1, keepdims=True)


@jax.jit
def grad_log_prob(gm, x, sigma):
    return jax.vmap(jax.grad(gm.log_prob), in_axes=(0, None))(x, sigma)


@jax.jit
def grad_process_log_prob(gm, process, x, t):
    return jax.vmap(jax.grad(lambda y, t: gm.process_log_prob(y, t, process)))(x, t)


def max_abs(a):
    return float(np.max(np.abs(np.asarray(a))))


# ---------------------------------------------------------------------------- score


@pytest.mark.parametrize("sigma", [0.0, 0.1, 1.0, 10.0])
def test_score_is_grad_log_prob_float64(x64, sigma):
    for name, gm in mixtures(jnp.float64).items():
        x = query_points(gm, sigma, seed=0)
        score = gm.score(x, sigma)
        assert score.dtype == jnp.float64
        expected = grad_log_prob(gm, x, sigma)
        np.testing.assert_allclose(
            score, expected, rtol=1e-8, atol=1e-12 * max_abs(expected), err_msg=name
        )


@pytest.mark.parametrize("sigma", [0.0, 0.1, 1.0, 10.0])
def test_score_is_grad_log_prob_float32(sigma):
    # Only two mixtures, to save compilations: float64 covers all four.
    for name in ("small", "ill"):
        gm = mixtures(jnp.float32)[name]
        x = query_points(gm, sigma, seed=1)
        score = gm.score(x, sigma)
        assert score.dtype == jnp.float32
        expected = grad_log_prob(gm, x, sigma)
        np.testing.assert_allclose(
            score, expected, rtol=1e-4, atol=1e-5 * max_abs(expected), err_msg=name
        )


@pytest.mark.parametrize("sigma", [0.1, 1.0, 10.0])
def test_score_is_denoiser_residual(x64, sigma):
    for name in ("small", "ill"):
        gm = mixtures(jnp.float64)[name]
        x = query_points(gm, sigma, seed=2)
        expected = (gm.denoiser(x, sigma) - x) / sigma**2
        np.testing.assert_allclose(
            gm.score(x, sigma), expected, rtol=1e-8, atol=1e-10 * max_abs(expected), err_msg=name
        )


def test_sigma_zero_denoiser_is_identity_and_score_is_data_score(x64):
    gm = small_mixture(jnp.float64)
    x = query_points(gm, 0.0, seed=3)
    np.testing.assert_allclose(gm.denoiser(x, 0.0), x, rtol=1e-12, atol=1e-12)
    # One component: the score is the Gaussian score (mu - x) / v.
    one = GaussianMixture(gm.means[:1], gm.variances[:1])
    np.testing.assert_allclose(
        one.score(x, 0.0), (gm.means[0] - x) / gm.variances[0], rtol=1e-12, atol=1e-12
    )


def test_far_apart_components_and_tiny_variances_are_stable(x64):
    means = np.array([[-1e3, 0.0], [1e3, 0.0]])
    x = np.array([[-1e3 + 1e-4, 2e-4], [1e3, -1e-4], [0.0, 0.0]])
    for dtype in (jnp.float32, jnp.float64):
        gm = GaussianMixture(jnp.asarray(means, dtype), jnp.asarray(1e-8, dtype))
        for sigma in (0.0, 1e-3, 1.0):
            xs = jnp.asarray(x, dtype)
            for out in (gm.log_prob(xs, sigma), gm.score(xs, sigma), gm.denoiser(xs, sigma)):
                assert out.dtype == dtype
                assert np.all(np.isfinite(np.asarray(out))), (dtype, sigma)
    # Near one mode the other contributes nothing: a single Gaussian, exactly.
    np.testing.assert_allclose(gm.score(x, 0.0)[0], (means[0] - x[0]) / 1e-8, rtol=1e-9)
    np.testing.assert_allclose(
        gm.log_prob(x, 0.0)[0],
        np.log(0.5) + stats.norm.logpdf(x[0] - means[0], scale=1e-4).sum(),
        rtol=1e-10,
    )


# ---------------------------------------------------------------------------- sampling

N_SAMPLES = 20_000  # one sample size everywhere: the sampler compiles once per mixture shape


def check_ks_projections(gm, samples, sigma, seed, num_projections=4):
    """Kolmogorov-Smirnov test of random 1-D projections against the exact projected CDF."""
    samples = np.asarray(samples, np.float64)
    for u in unit_directions(gm.dim, num_projections, seed):
        cdf = lambda z, u=u: np.asarray(gm.cdf_projected(u, z, sigma), np.float64)
        pvalue = stats.kstest(samples @ u, cdf).pvalue
        assert pvalue > KS_MIN_PVALUE, f"KS p-value {pvalue:.2e} for direction {u}"


def check_moments(gm, samples, sigma):
    """Sample mean and covariance within NUM_SE standard errors of the exact ones."""
    x = np.asarray(samples, np.float64)
    n = x.shape[0]
    mean = np.asarray(gm.mean(), np.float64)
    cov = np.asarray(gm.covariance(sigma), np.float64)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) <= NUM_SE * se_mean)
    centred = x - mean  # the exact mean, so the sample covariance is an average of iid terms
    products = centred[:, :, None] * centred[:, None, :]
    se_cov = products.std(0, ddof=1) / np.sqrt(n)
    assert np.all(np.abs(products.mean(0) - cov) <= NUM_SE * se_cov)


@pytest.mark.parametrize("name", ["small", "ring", "random"])
def test_samples_match_distribution(name):
    gm = mixtures()[name]
    samples = gm.sample(jax.random.key(5), N_SAMPLES)
    assert samples.shape == (N_SAMPLES, gm.dim)
    check_ks_projections(gm, samples, 0.0, seed=5)
    check_moments(gm, samples, 0.0)


@pytest.mark.parametrize("name", ["small", "ring", "random"])
def test_noisy_samples_match_distribution(name):
    gm = mixtures()[name]
    sigma = 0.7
    samples = gm.sample_noisy(jax.random.key(6), N_SAMPLES, sigma)
    check_ks_projections(gm, samples, sigma, seed=6)
    check_moments(gm, samples, sigma)


def test_sample_noisy_per_sample_sigma():
    gm = small_mixture()
    key = jax.random.key(7)
    n = N_SAMPLES
    # A constant per-sample sigma is the same as a scalar one.
    np.testing.assert_array_equal(
        gm.sample_noisy(key, n, jnp.full((n,), 0.4)), gm.sample_noisy(key, n, 0.4)
    )
    np.testing.assert_array_equal(gm.sample_noisy(key, n, 0.0), gm.sample(key, n))
    # Each sample follows its own noise level.
    sigmas = np.where(np.arange(n) < n // 2, 0.0, 2.0)
    samples = gm.sample_noisy(key, n, jnp.asarray(sigmas, jnp.float32))
    check_ks_projections(gm, samples[: n // 2], 0.0, seed=8, num_projections=2)
    check_ks_projections(gm, samples[n // 2 :], 2.0, seed=8, num_projections=2)


def test_samples_deterministic_per_key():
    gm = small_mixture()
    a = gm.sample(jax.random.key(9), N_SAMPLES)
    np.testing.assert_array_equal(a, gm.sample(jax.random.key(9), N_SAMPLES))
    assert not np.array_equal(a, gm.sample(jax.random.key(10), N_SAMPLES))


# ---------------------------------------------------------------------------- denoiser


@pytest.mark.parametrize(
    ("name", "sigma"), [("ring", 0.2), ("ring", 0.5), ("small", 0.3), ("random", 1.0)]
)
def test_denoiser_matches_importance_sampled_posterior_mean(name, sigma):
    """E[x0 | x] by self-normalized importance sampling (SNIS) with x0_i ~ p_data."""
    gm = mixtures()[name]
    queries = query_points(gm, sigma, seed=4)
    if name == "ring":  # one point halfway between two neighbouring modes
        queries = queries.at[0].set(gm.means[:2].mean(0))
    exact = np.asarray(gm.denoiser(queries, sigma), np.float64)
    queries = np.asarray(queries, np.float64)
    x0 = np.asarray(gm.sample(jax.random.key(5), N_SAMPLES), np.float64)
    for x, d in zip(queries[:4], exact[:4], strict=True):  # typical points (not the far ones)
        logw = -0.5 * np.sum((x - x0) ** 2, axis=-1) / sigma**2
        w = np.exp(logw - logw.max())
        w /= w.sum()
        ess = 1.0 / np.sum(w**2)
        assert ess > 200, f"effective sample size {ess:.0f} too small for a reliable check"
        estimate = w @ x0
        # Delta-method standard error of a self-normalized importance-sampling estimate.
        se = np.sqrt(np.sum(w[:, None] ** 2 * (x0 - estimate) ** 2, axis=0))
        assert np.all(np.abs(estimate - d) <= NUM_SE * se), (x, estimate, d, se)


# ---------------------------------------------------------------------------- quadrature


def grid_2d(lo, hi, num):
    axis = np.linspace(lo, hi, num)
    gx, gy = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([gx, gy], axis=-1), axis[1] - axis[0]


@pytest.mark.parametrize("sigma", [0.0, 0.5])
@pytest.mark.parametrize("name", ["ring", "small"])
def test_log_prob_integrates_to_one(x64, name, sigma):
    gm = {"ring": an.ring(dtype=jnp.float64), "small": small_mixture(jnp.float64)}[name]
    # Spacing 0.025 resolves the narrowest std (0.14) and the box is > 8 stds past every mode,
    # so the trapezoid/Riemann sum is accurate far beyond the tolerances below.
    x, h = grid_2d(-6.0, 6.0, 481)
    p = np.exp(np.asarray(gm.log_prob(jnp.asarray(x), sigma)))
    mass = p.sum() * h**2
    np.testing.assert_allclose(mass, 1.0, rtol=1e-8)
    # The exact moments agree with the quadrature ones.
    mean = np.einsum("ij,ijk->k", p, x) * h**2
    np.testing.assert_allclose(mean, gm.mean(), atol=1e-8)
    centred = x - mean
    cov = np.einsum("ij,ijk,ijl->kl", p, centred, centred) * h**2
    np.testing.assert_allclose(cov, gm.covariance(sigma), atol=1e-8)


def test_cdf_projected_matches_quadrature(x64):
    """P(u.x <= z) = int_{a <= z} int p(a u + b u_perp) db da, integrated in rotated axes."""
    gm = small_mixture(jnp.float64)
    for sigma in (0.0, 0.5):
        for angle in (0.3, 2.0):
            u = np.array([np.cos(angle), np.sin(angle)])
            u_perp = np.array([-u[1], u[0]])
            for z in (-0.7, 0.4, 1.3):
                a = np.linspace(-8.0, z, 801)
                b = np.linspace(-8.0, 8.0, 641)
                pts = a[:, None, None] * u + b[None, :, None] * u_perp
                p = np.exp(np.asarray(gm.log_prob(jnp.asarray(pts), sigma)))
                mass = integrate.simpson(np.trapezoid(p, b, axis=1), x=a)
                np.testing.assert_allclose(gm.cdf_projected(u, z, sigma), mass, atol=1e-7)
                # Scaling u by c > 0 and z by c leaves the probability unchanged.
                np.testing.assert_allclose(
                    gm.cdf_projected(3.0 * u, 3.0 * z, sigma),
                    gm.cdf_projected(u, z, sigma),
                    rtol=1e-12,
                )


# ---------------------------------------------------------------------------- processes


@pytest.mark.parametrize("t", [0.0, 0.3, 1.5])
def test_process_score_is_grad_process_log_prob(x64, t):
    process = FakeProcess()
    s = float(process.scale(t))
    # The chain rule through s(t) and sigma(t) is what is tested: two mixtures are enough.
    for name in ("small", "random"):
        gm = mixtures(jnp.float64)[name]
        score_fn = gm.process_score(process)
        assert isinstance(score_fn, eqx.Module)
        x = query_points(gm, t, seed=11, scale=s)  # typical points of p_t
        expected = grad_process_log_prob(gm, process, x, jnp.full(x.shape[:-1], t))
        atol = 1e-12 * max_abs(expected)
        np.testing.assert_allclose(score_fn(x, t), expected, rtol=1e-8, atol=atol, err_msg=name)
        # Per-sample times.
        ts = jnp.linspace(0.0, 2.0, x.shape[0])
        expected = grad_process_log_prob(gm, process, x, ts)
        np.testing.assert_allclose(score_fn(x, ts), expected, rtol=1e-8, atol=atol, err_msg=name)


def test_process_log_prob_integrates_to_one(x64):
    gm = an.ring(dtype=jnp.float64)
    process = FakeProcess()
    t = 0.5  # s = 0.61, sigma = 0.5: modes at radius 1.2 with std 0.32
    x, h = grid_2d(-6.0, 6.0, 481)
    p = np.exp(np.asarray(gm.process_log_prob(jnp.asarray(x), t, process)))
    np.testing.assert_allclose(p.sum() * h**2, 1.0, rtol=1e-8)
    # It is the density of s(t) (x0 + sigma(t) eps): the mean is 0 and the covariance is
    # s^2 (Cov[x0] + sigma^2 I).
    s = float(process.scale(t))
    cov = np.einsum("ij,ijk,ijl->kl", p, x, x) * h**2
    np.testing.assert_allclose(cov, s**2 * np.asarray(gm.covariance(t)), rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------------------- jit, vmap, dtype


def test_jit_takes_mixture_as_argument_without_recompiling():
    traces = []

    @jax.jit
    def denoise(gm, x, sigma):
        traces.append(None)  # runs only while tracing
        return gm.denoiser(x, sigma)

    gm1 = an.random_mixture(dim=5, num_components=4, seed=0)
    gm2 = an.random_mixture(dim=5, num_components=4, seed=1)
    x = query_points(gm1, 0.5, seed=12)
    for gm in (gm1, gm2):
        np.testing.assert_allclose(denoise(gm, x, 0.5), gm.denoiser(x, 0.5), rtol=1e-5, atol=1e-6)
    denoise(gm1, x, 1.5)  # a new sigma value does not retrace either
    assert len(traces) == 1
    # A different number of components is a new shape, so a new trace (the counter works).
    denoise(GaussianMixture(gm1.means[:3], gm1.variances[:3]), x, 0.5)
    assert len(traces) == 2

    # The process score is a pytree too: a new mixture or process parameters reuse the program.
    score_traces = []

    @jax.jit
    def call(score_fn, x, t):
        score_traces.append(None)
        return score_fn(x, t)

    for gm, process in ((gm1, FakeProcess()), (gm2, FakeProcess()), (gm2, FakeProcess(2.0))):
        score_fn = gm.process_score(process)
        np.testing.assert_allclose(call(score_fn, x, 0.7), score_fn(x, 0.7), rtol=1e-5, atol=1e-5)
    assert len(score_traces) == 1


def test_construction_inside_jit():
    gm = small_mixture()
    x = jnp.zeros((4, 2))

    @jax.jit
    def log_prob(means, variances, weights):
        return GaussianMixture(means, variances, weights).log_prob(x, 0.3)

    np.testing.assert_allclose(
        log_prob(gm.means, gm.variances, gm.weights), gm.log_prob(x, 0.3), rtol=1e-6
    )


def test_vmap_over_batch_and_per_sample_sigma():
    gm = small_mixture()
    x = query_points(gm, 1.0, seed=13)  # (16, 2)
    sigmas = jnp.linspace(0.0, 3.0, 16)
    denoiser = gm.denoiser
    np.testing.assert_allclose(
        jax.vmap(denoiser, in_axes=(0, None))(x, 0.8), denoiser(x, 0.8), rtol=1e-6, atol=1e-6
    )
    looped = np.stack([denoiser(xi, si) for xi, si in zip(x, sigmas, strict=True)])
    np.testing.assert_allclose(jax.vmap(denoiser)(x, sigmas), looped, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(denoiser(x, sigmas), looped, rtol=1e-5, atol=1e-6)
    # Any number of leading batch dims, sigma broadcast against them (shapes only).
    assert jax.eval_shape(gm.log_prob, x[0]).shape == ()
    assert jax.eval_shape(gm.score, x.reshape(2, 8, 2), jnp.ones(8)).shape == (2, 8, 2)
    assert jax.eval_shape(gm.log_prob, x.reshape(2, 8, 2), jnp.ones((2, 1))).shape == (2, 8)
    # vmap over a stack of mixtures of the same shape.
    means, variances, weights = (np.asarray(a) for a in jax.tree.leaves(gm))
    other = GaussianMixture(means + 1.0, 2.0 * variances, weights[::-1])
    stacked = jax.tree.map(lambda a, b: np.stack([a, b]), gm, other)
    out = jax.vmap(lambda m: m.log_prob(x, 0.5))(stacked)
    np.testing.assert_allclose(out[1], other.log_prob(x, 0.5), rtol=1e-6)


def _check_dtypes(gm, dtype):
    key = jax.random.key(14)
    x = query_points(gm, 0.3, seed=14)
    process = FakeProcess()
    outputs = {
        "sample": gm.sample(key, N_SAMPLES),
        "sample_noisy": gm.sample_noisy(key, N_SAMPLES, 0.3),
        "log_prob": gm.log_prob(x),
        "log_prob_sigma": gm.log_prob(x, jnp.full((16,), 0.3, dtype)),
        "score": gm.score(x, 0.3),
        "denoiser": gm.denoiser(x, 0.3),
        "responsibilities": gm.responsibilities(x, 0.3),
        "mean": gm.mean(),
        "covariance": gm.covariance(),
        "cdf_projected": gm.cdf_projected(jnp.ones((gm.dim,), dtype), jnp.zeros((3,), dtype)),
        "process_score": gm.process_score(process)(x, 0.4),
        "process_log_prob": gm.process_log_prob(x, 0.4, process),
        "jit_denoiser": jax.jit(lambda m, y: m.denoiser(y, 0.3))(gm, x),
    }
    for name, out in outputs.items():
        assert out.dtype == dtype, (name, out.dtype)


def test_dtype_float32():
    gm = small_mixture(jnp.float32)
    assert gm.means.dtype == gm.variances.dtype == gm.weights.dtype == jnp.float32
    _check_dtypes(gm, jnp.float32)


def test_dtype_float64(x64):
    gm = small_mixture(jnp.float64)
    assert gm.means.dtype == gm.variances.dtype == gm.weights.dtype == jnp.float64
    _check_dtypes(gm, jnp.float64)
    # A float32 mixture evaluated at float32 points stays float32 even with x64 on.
    gm32 = small_mixture(jnp.float32)
    x = jnp.zeros((3, 2), jnp.float32)
    assert gm32.score(x, 0.5).dtype == jnp.float32
    assert gm32.log_prob(x).dtype == jnp.float32


# ---------------------------------------------------------------------------- construction


def test_constructor_shapes_and_defaults():
    means = jnp.array([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0]])
    gm = GaussianMixture(means, 0.5)
    assert (gm.num_components, gm.dim) == (2, 3)
    assert gm.variances.shape == (2, 3)
    np.testing.assert_allclose(gm.weights, [0.5, 0.5])
    iso = GaussianMixture(means, jnp.array([0.1, 0.2]))
    np.testing.assert_allclose(iso.variances, [[0.1] * 3, [0.2] * 3])
    shared = GaussianMixture(means, jnp.array([[0.1, 0.2, 0.3]]))
    np.testing.assert_allclose(shared.variances, [[0.1, 0.2, 0.3]] * 2)
    np.testing.assert_allclose(gm.log_weights, np.log([0.5, 0.5]))
    # Integer input becomes the default float; a zero weight is allowed.
    gm_int = GaussianMixture([[0, 1], [2, 3]], [1, 2], weights=[1, 0])
    assert gm_int.means.dtype == jnp.result_type(float)
    assert bool(jnp.isfinite(gm_int.log_prob(jnp.zeros(2))))


MEANS = [[0.0, 0.0], [1.0, 1.0]]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"means": [0.0, 1.0], "variances": 1.0}, ValueError, r"means must be a 2-D array"),
        ({"means": np.zeros((2, 2, 2)), "variances": 1.0}, ValueError, r"means must be a 2-D"),
        ({"means": [[1j, 0.0]], "variances": 1.0}, TypeError, r"means must be real"),
        ({"means": [[np.nan, 0.0]], "variances": 1.0}, ValueError, r"means must be finite"),
        ({"means": MEANS, "variances": -1.0}, ValueError, r"variances must be positive"),
        ({"means": MEANS, "variances": [0.5, 0.0]}, ValueError, r"variances must be positive"),
        ({"means": MEANS, "variances": [[1.0, -0.1], [1.0, 1.0]]}, ValueError, "positive"),
        ({"means": MEANS, "variances": [1.0, 1.0, 1.0]}, ValueError, r"variances must be .*\(3,\)"),
        ({"means": MEANS, "variances": np.ones((2, 3))}, ValueError, r"variances .*\(2, 2\)"),
        ({"means": MEANS, "variances": np.ones((2, 2, 1))}, ValueError, r"variances"),
        ({"means": MEANS, "variances": 1.0, "weights": [0.5, 0.4]}, ValueError, r"sum 0\.9"),
        ({"means": MEANS, "variances": 1.0, "weights": [1.5, -0.5]}, ValueError, "non-negative"),
        ({"means": MEANS, "variances": 1.0, "weights": [1.0]}, ValueError, r"weights .*\(2,\)"),
        ({"means": MEANS, "variances": 1.0, "weights": np.eye(2)}, ValueError, r"weights"),
    ],
)
def test_bad_constructor_input_raises(kwargs, error, match):
    with pytest.raises(error, match=match):
        GaussianMixture(**kwargs)


def test_bad_call_input_raises():
    gm = small_mixture()
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., d\) with d = 2"):
        gm.log_prob(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="x must have shape"):
        gm.score(jnp.asarray(0.0), 1.0)
    with pytest.raises(ValueError, match="u must have shape"):
        gm.cdf_projected(jnp.ones(3), 0.0)
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        gm.sample(jax.random.key(0), -1)
    with pytest.raises(TypeError, match="n must be an int"):
        gm.sample(jax.random.key(0), 2.5)
    with pytest.raises(TypeError, match="process must have"):
        gm.process_score(object())
    with pytest.raises(TypeError, match="process must have"):
        gm.process_log_prob(jnp.zeros(2), 0.1, object())


# ---------------------------------------------------------------------------- presets


def test_presets_shapes_and_weights():
    ring = an.ring(num_modes=6, radius=3.0, std=0.2)
    assert ring.means.shape == (6, 2)
    np.testing.assert_allclose(np.linalg.norm(ring.means, axis=-1), 3.0, rtol=1e-6)
    np.testing.assert_allclose(ring.variances, 0.04, rtol=1e-6)
    np.testing.assert_allclose(ring.mean(), 0.0, atol=1e-6)

    grid = an.grid(side=4, spacing=0.5, std=0.1)
    assert grid.means.shape == (16, 2)
    np.testing.assert_allclose(grid.mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(grid.means.max(0), [0.75, 0.75], rtol=1e-6)

    rand = an.random_mixture(dim=5, num_components=4, min_std=0.2, max_std=0.4)
    assert rand.means.shape == rand.variances.shape == (4, 5)
    assert np.min(rand.variances) >= 0.2**2 * (1 - 1e-6)
    assert np.max(rand.variances) <= 0.4**2 * (1 + 1e-6)

    ill = an.ill_conditioned(dim=4, condition=1e4)
    assert ill.variances.shape == (3, 4)
    ratios = np.max(ill.variances, 1) / np.min(ill.variances, 1)
    np.testing.assert_allclose(ratios, 1e4, rtol=1e-4)

    # The defaults.
    assert an.ring().means.shape == (8, 2)
    assert an.grid().means.shape == (25, 2)
    assert an.random_mixture().means.shape == (8, 16)
    ill_default = an.ill_conditioned()
    assert ill_default.variances.shape == (3, 16)
    ratios = np.max(ill_default.variances, 1) / np.min(ill_default.variances, 1)
    np.testing.assert_allclose(ratios, 1e3, rtol=1e-4)

    for gm in (ring, grid, rand, ill):
        assert gm.weights.shape == (gm.num_components,)
        np.testing.assert_allclose(gm.weights.sum(), 1.0, rtol=1e-6)
        assert np.all(np.asarray(gm.weights) > 0)


def test_presets_deterministic_given_seed():
    for make in (an.random_mixture, an.ill_conditioned):
        a, b, c = make(seed=3), make(seed=3), make(seed=4)
        for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(leaf_a, leaf_b)
        assert not np.array_equal(a.means, c.means)


def test_presets_dtype_option(x64):
    for make in (an.ring, an.grid, an.random_mixture, an.ill_conditioned):
        gm64 = make(dtype=jnp.float64)
        gm32 = make(dtype=jnp.float32)
        assert gm64.means.dtype == gm64.variances.dtype == jnp.float64
        assert gm32.means.dtype == gm32.weights.dtype == jnp.float32
        # The same mixture in both precisions.
        np.testing.assert_allclose(gm64.means, gm32.means, rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="dtype"):
        an.ring(dtype=jnp.int32)
    with pytest.raises(ValueError, match="std"):
        an.grid(std=0.0)
    with pytest.raises(ValueError, match="condition"):
        an.ill_conditioned(condition=0.5)
