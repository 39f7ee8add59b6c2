"""Tests of `jaxdiff.analytic.FullGaussianMixture`, the oracle with full covariance matrices.

Every value is checked against an independent reference: scipy's multivariate normal, numpy's
linear solves, automatic differentiation of the log-density, the diagonal `GaussianMixture` (a
full mixture with diagonal covariances, or a rotated diagonal one) and sample moments within
standard errors.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxdiff as jd
from jaxdiff.analytic import FullGaussianMixture, GaussianMixture

NUM_SE = 5.0  # allowed deviation of a Monte-Carlo estimate, in standard errors
KS_MIN_PVALUE = 1e-3
N_SAMPLES = 20_000
SIGMAS = [0.0, 0.1, 1.0, 10.0]


def random_parts(dim=3, num_components=3, seed=0):
    """Means, correlated covariances (B B^T + 0.05 I) and unequal weights, in float64."""
    rng = np.random.default_rng(seed)
    means = 2.0 * rng.standard_normal((num_components, dim))
    b = rng.standard_normal((num_components, dim, dim)) / np.sqrt(dim)
    covariances = b @ np.swapaxes(b, -1, -2) + 0.05 * np.eye(dim)
    weights = rng.uniform(0.5, 1.5, num_components)
    return means, covariances, weights / weights.sum()


def full_mixture(dtype=None, **kwargs):
    means, covariances, weights = random_parts(**kwargs)
    dtype = dtype or jnp.result_type(float)
    return FullGaussianMixture(*(jnp.asarray(a, dtype) for a in (means, covariances, weights)))


def query_points(parts, sigma, seed, n=14):
    """n typical points of p(.; sigma) plus two far-away points (float64 numpy)."""
    means, covariances, weights = parts
    rng = np.random.default_rng(seed)
    k = rng.choice(len(weights), n, p=weights)
    dim = means.shape[1]
    chol = np.linalg.cholesky(covariances[k] + sigma**2 * np.eye(dim))
    x = means[k] + np.einsum("nij,nj->ni", chol, rng.standard_normal((n, dim)))
    return np.concatenate([x, np.full((1, dim), 8.0), np.full((1, dim), -6.0)])


def reference_log_prob(parts, x, sigma):
    """log p(x; sigma) with scipy's multivariate normal."""
    means, covariances, weights = parts
    dim = means.shape[1]
    terms = [
        np.log(w) + stats.multivariate_normal(m, c + sigma**2 * np.eye(dim)).logpdf(x)
        for m, c, w in zip(means, covariances, weights, strict=True)
    ]
    return np.logaddexp.reduce(np.stack(terms, -1), axis=-1)


def reference_denoiser(parts, x, sigma):
    """sum_k r_k [mu_k + C_k (C_k + sigma^2 I)^{-1} (x - mu_k)] with numpy solves."""
    means, covariances, weights = parts
    dim = means.shape[1]
    log_terms, posts = [], []
    for m, c, w in zip(means, covariances, weights, strict=True):
        total = c + sigma**2 * np.eye(dim)
        log_terms.append(np.log(w) + stats.multivariate_normal(m, total).logpdf(x))
        posts.append(m + (c @ np.linalg.solve(total, (x - m).T)).T)
    log_terms = np.stack(log_terms, -1)
    r = np.exp(log_terms - np.logaddexp.reduce(log_terms, axis=-1, keepdims=True))
    return np.einsum("nk,knd->nd", r, np.stack(posts))


@jax.jit
def grad_log_prob(gm, x, sigma):
    return jax.vmap(jax.grad(gm.log_prob), in_axes=(0, None))(x, sigma)


# ---------------------------------------------------------------------------- exact values


@pytest.mark.parametrize("sigma", SIGMAS)
def test_log_prob_and_denoiser_match_scipy_and_numpy(x64, sigma):
    parts = random_parts()
    gm = full_mixture(jnp.float64)
    x = query_points(parts, sigma, seed=1)
    np.testing.assert_allclose(
        gm.log_prob(x, sigma), reference_log_prob(parts, x, sigma), rtol=1e-10
    )
    np.testing.assert_allclose(
        gm.denoiser(x, sigma), reference_denoiser(parts, x, sigma), rtol=1e-9, atol=1e-10
    )


@pytest.mark.parametrize("sigma", SIGMAS)
def test_score_is_grad_log_prob_and_tweedie(x64, sigma):
    gm = full_mixture(jnp.float64)
    x = jnp.asarray(query_points(random_parts(), sigma, seed=2))
    score = gm.score(x, sigma)
    expected = grad_log_prob(gm, x, sigma)
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(score, expected, rtol=1e-8, atol=1e-12 * scale)
    # Tweedie: D = x + sigma^2 score.
    np.testing.assert_allclose(
        gm.denoiser(x, sigma), x + sigma**2 * score, rtol=1e-9, atol=1e-9 * (1 + sigma**2)
    )


def test_float32_agrees_with_float64(x64):
    gm64, gm32 = full_mixture(jnp.float64), full_mixture(jnp.float32)
    x = query_points(random_parts(), 0.5, seed=3)
    for method in ("log_prob", "score", "denoiser"):
        out = getattr(gm32, method)(jnp.asarray(x, jnp.float32), 0.5)
        assert out.dtype == jnp.float32
        ref = getattr(gm64, method)(x, 0.5)
        np.testing.assert_allclose(out, ref, rtol=2e-4, atol=2e-4 * float(jnp.max(jnp.abs(ref))))


@pytest.mark.parametrize("sigma", [0.0, 0.3, 3.0])
def test_full_with_diagonal_covariances_is_the_diagonal_mixture(x64, sigma):
    means, _, weights = random_parts(dim=3)
    variances = np.random.default_rng(4).uniform(0.05, 0.5, means.shape)
    diag = GaussianMixture(means, variances, weights)
    full = FullGaussianMixture(means, variances[:, :, None] * np.eye(3), weights)
    x = query_points((means, variances[:, :, None] * np.eye(3), weights), sigma, seed=4)
    for other in (full, diag.to_full()):
        assert isinstance(other, FullGaussianMixture)
        for method in ("log_prob", "score", "denoiser", "responsibilities"):
            np.testing.assert_allclose(
                getattr(other, method)(x, sigma),
                getattr(diag, method)(x, sigma),
                rtol=1e-12,
                atol=1e-12,
                err_msg=method,
            )
        np.testing.assert_allclose(other.covariance(sigma), diag.covariance(sigma), rtol=1e-12)
        u = np.array([0.3, -1.0, 0.5])
        np.testing.assert_allclose(
            other.cdf_projected(u, np.array([-1.0, 0.2]), sigma),
            diag.cdf_projected(u, np.array([-1.0, 0.2]), sigma),
            rtol=1e-12,
        )


def test_rotated_diagonal_mixture(x64):
    """x ~ p  =>  Q x follows the mixture with means Q mu_k and covariances Q diag(v_k) Q^T."""
    means, _, weights = random_parts(dim=3)
    variances = np.random.default_rng(5).uniform(0.05, 0.5, means.shape)
    q, _ = np.linalg.qr(np.random.default_rng(6).standard_normal((3, 3)))
    diag = GaussianMixture(means, variances, weights)
    rotated = FullGaussianMixture(
        means @ q.T, q @ (variances[:, :, None] * np.eye(3)) @ q.T, weights
    )
    x = query_points((means, variances[:, :, None] * np.eye(3), weights), 0.4, seed=5)
    np.testing.assert_allclose(rotated.log_prob(x @ q.T, 0.4), diag.log_prob(x, 0.4), rtol=1e-12)
    np.testing.assert_allclose(
        rotated.denoiser(x @ q.T, 0.4), diag.denoiser(x, 0.4) @ q.T, rtol=1e-10, atol=1e-12
    )


def test_limits_sigma_zero_and_infinity(x64):
    gm = full_mixture(jnp.float64)
    x = jnp.asarray(query_points(random_parts(), 0.0, seed=6))
    np.testing.assert_allclose(gm.denoiser(x, 0.0), x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gm.denoiser(x, jnp.inf), jnp.broadcast_to(gm.mean(), x.shape))
    # One component at sigma = 0: the Gaussian score -C^{-1} (x - mu).
    one = FullGaussianMixture(gm.means[:1], gm.covariances[:1])
    expected = -np.linalg.solve(np.asarray(gm.covariances[0]), (x - gm.means[0]).T).T
    np.testing.assert_allclose(one.score(x, 0.0), expected, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------- sampling


def test_samples_match_moments_and_projections():
    gm = full_mixture(jnp.float32)
    for sigma in (0.0, 0.7):
        samples = np.asarray(gm.sample_noisy(jax.random.key(7), N_SAMPLES, sigma), np.float64)
        assert samples.shape == (N_SAMPLES, 3)
        n = samples.shape[0]
        mean = np.asarray(gm.mean(), np.float64)
        cov = np.asarray(gm.covariance(sigma), np.float64)
        assert np.all(np.abs(samples.mean(0) - mean) <= NUM_SE * np.sqrt(np.diag(cov) / n))
        centred = samples - mean
        products = centred[:, :, None] * centred[:, None, :]
        se = products.std(0, ddof=1) / np.sqrt(n)
        assert np.all(np.abs(products.mean(0) - cov) <= NUM_SE * se)
        # Kolmogorov-Smirnov on random projections against the exact projected CDF.
        for u in np.random.default_rng(8).standard_normal((3, 3)):
            cdf = lambda z, u=u: np.asarray(gm.cdf_projected(u, z, sigma), np.float64)  # noqa: B023
            assert stats.kstest(samples @ u, cdf).pvalue > KS_MIN_PVALUE
    np.testing.assert_array_equal(gm.sample(jax.random.key(7), 5), gm.sample(jax.random.key(7), 5))


def test_exact_moments_against_the_parameters(x64):
    means, covariances, weights = random_parts()
    gm = FullGaussianMixture(means, covariances, weights)
    mean = weights @ means
    centred = means - mean
    cov = np.einsum("k,kij->ij", weights, covariances + centred[:, :, None] * centred[:, None])
    np.testing.assert_allclose(gm.mean(), mean, rtol=1e-12)
    np.testing.assert_allclose(gm.covariance(0.5), cov + 0.25 * np.eye(3), rtol=1e-12)
    # The projected CDF is that of the 1-D mixture sum_k w_k N(u.mu_k, u^T C_k u + sigma^2|u|^2).
    u, z = np.array([1.0, -2.0, 0.5]), np.linspace(-3.0, 3.0, 7)
    proj_std = np.sqrt(np.einsum("i,kij,j->k", u, covariances, u) + 0.25 * u @ u)
    expected = (weights * stats.norm.cdf((z[:, None] - means @ u) / proj_std)).sum(-1)
    np.testing.assert_allclose(gm.cdf_projected(u, z, 0.5), expected, rtol=1e-10)


# ---------------------------------------------------------------------------- processes


@jax.jit
def grad_process_log_prob(gm, process, x, t):
    return jax.vmap(jax.grad(lambda y, t: gm.process_log_prob(y, t, process)))(x, t)


def test_process_score_and_velocity(x64):
    gm = full_mixture(jnp.float64)
    process = jd.VP()
    x = jnp.asarray(query_points(random_parts(), 0.5, seed=9))
    ts = jnp.linspace(0.05, 0.9, x.shape[0])
    score_fn = gm.process_score(process)
    assert isinstance(score_fn, eqx.Module)
    expected = grad_process_log_prob(gm, process, x, ts)
    np.testing.assert_allclose(score_fn(x, ts), expected, rtol=1e-8, atol=1e-10)
    # A full mixture with diagonal covariances has the diagonal mixture's velocity.
    means, _, weights = random_parts()
    variances = np.random.default_rng(10).uniform(0.05, 0.5, means.shape)
    diag = GaussianMixture(means, variances, weights)
    flow = jd.RectifiedFlow()
    v_full = diag.to_full().process_velocity(flow)
    v_diag = diag.process_velocity(flow)
    for t in (0.0, 0.4, 1.0):
        np.testing.assert_allclose(v_full(x, t), v_diag(x, t), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- jit, vmap


def test_jit_vmap_and_construction_inside_jit():
    traces = []

    @jax.jit
    def denoise(gm, x, sigma):
        traces.append(None)
        return gm.denoiser(x, sigma)

    gm1, gm2 = full_mixture(seed=0), full_mixture(seed=1)
    x = jnp.asarray(query_points(random_parts(), 0.5, seed=11), jnp.float32)
    for gm in (gm1, gm2):
        np.testing.assert_allclose(denoise(gm, x, 0.5), gm.denoiser(x, 0.5), rtol=1e-5, atol=1e-5)
    denoise(gm1, x, 1.5)  # a new mixture or sigma: no retrace
    assert len(traces) == 1
    # Per-sample sigma through vmap and through broadcasting agree with a loop.
    sigmas = jnp.linspace(0.0, 3.0, x.shape[0])
    looped = np.stack([gm1.denoiser(xi, si) for xi, si in zip(x, sigmas, strict=True)])
    np.testing.assert_allclose(jax.vmap(gm1.denoiser)(x, sigmas), looped, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gm1.denoiser(x, sigmas), looped, rtol=1e-5, atol=1e-5)

    @jax.jit
    def log_prob(means, covariances, weights):
        return FullGaussianMixture(means, covariances, weights).log_prob(x, 0.3)

    np.testing.assert_allclose(
        log_prob(gm1.means, gm1.covariances, gm1.weights), gm1.log_prob(x, 0.3), rtol=1e-5
    )


# ---------------------------------------------------------------------------- bad input


GOOD_MEANS = np.zeros((2, 2))
GOOD_COV = np.array([[1.0, 0.5], [0.5, 1.0]])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"covariances": np.array([[1.0, 0.5], [0.4, 1.0]])}, ValueError, "must be symmetric"),
        ({"covariances": np.array([[1.0, 2.0], [2.0, 1.0]])}, ValueError, "positive definite"),
        ({"covariances": np.zeros((2, 2))}, ValueError, "positive definite"),
        ({"covariances": np.full((2, 2), np.nan)}, ValueError, "covariances must be finite"),
        (
            {"covariances": np.ones((2, 3, 3))},
            ValueError,
            r"covariances must have shape .*\(2, 2, 2\)",
        ),
        ({"covariances": np.ones(2)}, ValueError, "covariances must have shape"),
        ({"covariances": 1j * np.eye(2)}, TypeError, "covariances must be real"),
        ({"means": np.zeros(2)}, ValueError, "means must be a 2-D array"),
        ({"weights": [0.5, 0.6]}, ValueError, "weights must sum to 1"),
        ({"weights": [1.0]}, ValueError, r"weights must have shape \(K,\) = \(2,\)"),
        ({"labels": [0, 1, 2]}, ValueError, r"labels must have shape \(K,\) = \(2,\)"),
        ({"labels": [0.0, 1.0]}, TypeError, "labels must be integers"),
    ],
)
def test_bad_constructor_input_raises(kwargs, error, match):
    args = {"means": GOOD_MEANS, "covariances": GOOD_COV} | kwargs
    with pytest.raises(error, match=match):
        FullGaussianMixture(**args)


def test_bad_call_input_raises():
    gm = FullGaussianMixture(GOOD_MEANS, GOOD_COV)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., d\) with d = 2"):
        gm.denoiser(jnp.zeros((3, 3)), 0.5)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        gm.score(jnp.zeros((3, 2)), -0.1)
    with pytest.raises(ValueError, match="u must have shape"):
        gm.cdf_projected(jnp.ones(3), 0.0)
    with pytest.raises(TypeError, match="process must be a flow"):
        gm.process_velocity(jd.VP())
