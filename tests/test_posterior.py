"""Tests of the exact posteriors of `jaxdiff.analytic`: conditioning a Gaussian mixture on a
linear-Gaussian observation (``posterior``) and on a class label (``class_conditional``,
``class_log_prob``, ``class_log_posterior``).

References are independent of the implementation: the textbook information-form Kalman update
in numpy, brute-force 2-D quadrature of prior x likelihood (the posterior density, its weights,
moments and denoiser at a noise level), Bayes' rule written with hand-built mixtures, and
automatic differentiation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxdiff.analytic import FullGaussianMixture, GaussianMixture

NUM_SE = 5.0


def prior_2d():
    """Three correlated 2-D components with unequal weights and class labels (0, 1, 1)."""
    means = np.array([[-1.5, 0.5], [1.0, -0.5], [0.5, 1.5]])
    covariances = np.array(
        [[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.12], [-0.12, 0.25]], [[0.15, 0.0], [0.0, 0.4]]]
    )
    weights = np.array([0.5, 0.3, 0.2])
    return means, covariances, weights


def full_2d(dtype=jnp.float64):
    means, covariances, weights = prior_2d()
    return FullGaussianMixture(
        *(jnp.asarray(a, dtype) for a in (means, covariances, weights)), labels=[0, 1, 1]
    )


# A dense 1 x 2 observation and a mask (observe the first coordinate), with two noise levels.
OBSERVATIONS = {
    "dense-0.5": (np.array([[0.8, -0.6]]), np.array([0.4]), 0.5),
    "dense-0.05": (np.array([[0.8, -0.6]]), np.array([0.4]), 0.05),
    "mask-0.05": (np.array([[1.0, 0.0]]), np.array([0.7]), 0.05),
}


def grid_2d(lo=-7.0, hi=7.0, num=401):
    axis = np.linspace(lo, hi, num)
    gx, gy = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([gx, gy], axis=-1).reshape(-1, 2), (axis[1] - axis[0]) ** 2


def prior_terms(x):
    """log w_k + log N(x; mu_k, C_k) with scipy, shape (n, K)."""
    means, covariances, weights = prior_2d()
    return np.stack(
        [
            np.log(w) + stats.multivariate_normal(m, c).logpdf(x)
            for m, c, w in zip(means, covariances, weights, strict=True)
        ],
        -1,
    )


def log_likelihood(x, A, y, noise_std):
    return stats.norm(0.0, noise_std).logpdf(y - x @ A.T).sum(-1)


# ---------------------------------------------------------------------------- one Gaussian


@pytest.mark.parametrize("kind", ["dense", "mask"])
def test_single_gaussian_is_the_kalman_update(x64, kind):
    """Against the information form: C' = (C^-1 + A^T A / s^2)^-1, mu' = C'(C^-1 mu + A^T y/s^2)."""
    rng = np.random.default_rng(0)
    d, m, s = 5, 3, 0.3
    b = rng.standard_normal((d, d))
    cov = b @ b.T / d + 0.1 * np.eye(d)
    mu = rng.standard_normal(d)
    A = rng.standard_normal((m, d)) if kind == "dense" else np.eye(d)[[0, 2, 3]]
    y = rng.standard_normal(m)
    post = FullGaussianMixture(mu[None], cov[None]).posterior(A, y, s)
    precision = np.linalg.inv(cov) + A.T @ A / s**2
    cov_post = np.linalg.inv(precision)
    mu_post = cov_post @ (np.linalg.solve(cov, mu) + A.T @ y / s**2)
    np.testing.assert_allclose(post.means[0], mu_post, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(post.covariances[0], cov_post, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(post.weights, [1.0])
    # The same from the diagonal class (to_full under the hood) when C is diagonal.
    diag = GaussianMixture(mu[None], np.diag(cov)[None])
    cov_post = np.linalg.inv(np.diag(1 / np.diag(cov)) + A.T @ A / s**2)
    np.testing.assert_allclose(diag.posterior(A, y, s).covariances[0], cov_post, rtol=1e-10)


# ---------------------------------------------------------------------------- quadrature


@pytest.mark.parametrize("name", list(OBSERVATIONS))
def test_posterior_density_weights_and_moments_match_quadrature(x64, name):
    A, y, noise_std = OBSERVATIONS[name]
    post = full_2d().posterior(A, y, noise_std)
    x, area = grid_2d()
    terms = prior_terms(x) + log_likelihood(x, A, y, noise_std)[:, None]  # (n, K)
    joint = np.logaddexp.reduce(terms, axis=-1)
    log_evidence = np.log(np.sum(np.exp(joint)) * area)
    density = np.exp(joint - log_evidence)
    # The weights: the mass of every component's share of prior x likelihood.
    np.testing.assert_allclose(
        post.weights, np.exp(terms - log_evidence).sum(0) * area, rtol=1e-8, atol=1e-12
    )
    # The density, where it matters (within 12 nats of its peak).
    log_post = np.asarray(post.log_prob(x))
    keep = log_post > log_post.max() - 12.0
    np.testing.assert_allclose(log_post[keep], np.log(density[keep]), rtol=0, atol=1e-7)
    # The moments.
    mean = density @ x * area
    np.testing.assert_allclose(post.mean(), mean, rtol=1e-8, atol=1e-10)
    centred = x - mean
    cov = np.einsum("n,ni,nj->ij", density, centred, centred) * area
    np.testing.assert_allclose(post.covariance(), cov, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.5])
def test_posterior_denoiser_is_the_conditional_mean_given_y_and_x_sigma(x64, sigma):
    """E[x0 | x_sigma = x, y] by quadrature of x0 against p(x0) p(y | x0) N(x; x0, sigma^2)."""
    A, y, noise_std = OBSERVATIONS["dense-0.5"]
    post = full_2d().posterior(A, y, noise_std)
    x0, _ = grid_2d()
    log_base = np.logaddexp.reduce(prior_terms(x0), axis=-1) + log_likelihood(x0, A, y, noise_std)
    queries = np.array([[0.0, 0.0], [1.0, -0.5], [-1.5, 1.0], [3.0, 3.0]])
    denoised = np.asarray(post.denoiser(queries, sigma))
    for x, d in zip(queries, denoised, strict=True):
        logq = log_base - 0.5 * np.sum((x - x0) ** 2, -1) / sigma**2
        q = np.exp(logq - logq.max())
        np.testing.assert_allclose(d, q @ x0 / q.sum(), rtol=1e-7, atol=1e-9)
    # Tweedie, and the large-sigma limit: the posterior mean.
    np.testing.assert_allclose(
        denoised, queries + sigma**2 * np.asarray(post.score(queries, sigma)), atol=1e-10
    )
    np.testing.assert_allclose(post.denoiser(queries, 1e6), np.tile(post.mean(), (4, 1)), atol=1e-8)


def test_posterior_samples_match_the_posterior():
    A, y, noise_std = OBSERVATIONS["dense-0.05"]
    post = full_2d(jnp.float32).posterior(A, y, noise_std)
    samples = np.asarray(post.sample(jax.random.key(0), 20_000), np.float64)
    n = samples.shape[0]
    mean = np.asarray(post.mean(), np.float64)
    cov = np.asarray(post.covariance(), np.float64)
    assert np.all(np.abs(samples.mean(0) - mean) <= NUM_SE * np.sqrt(np.diag(cov) / n))
    # The observed direction is pinned down: A x - y has the posterior's small spread.
    residual = samples @ A.T - y
    assert np.std(residual) < 2 * noise_std
    for u in (np.array([1.0, 0.0]), np.array([0.6, 0.8])):
        cdf = lambda z, u=u: np.asarray(post.cdf_projected(u, z), np.float64)
        assert stats.kstest(samples @ u, cdf).pvalue > 1e-3


# ---------------------------------------------------------------------------- mixtures


def test_mixture_weights_are_the_evidences_in_higher_dimension(x64):
    rng = np.random.default_rng(1)
    k, d, m, s = 4, 6, 3, 0.2
    means = rng.standard_normal((k, d))
    b = rng.standard_normal((k, d, d)) / np.sqrt(d)
    covariances = b @ np.swapaxes(b, -1, -2) + 0.05 * np.eye(d)
    weights = rng.dirichlet(np.ones(k))
    A, y = rng.standard_normal((m, d)), rng.standard_normal(m)
    post = FullGaussianMixture(means, covariances, weights).posterior(A, y, s)
    evidence = [
        stats.multivariate_normal(A @ mu, A @ c @ A.T + s**2 * np.eye(m)).pdf(y)
        for mu, c in zip(means, covariances, strict=True)
    ]
    expected = weights * np.array(evidence)
    np.testing.assert_allclose(post.weights, expected / expected.sum(), rtol=1e-9)
    # Every component is the Kalman update of its prior component.
    for j in range(k):
        single = FullGaussianMixture(means[j : j + 1], covariances[j : j + 1]).posterior(A, y, s)
        np.testing.assert_allclose(post.means[j], single.means[0], rtol=1e-12)
        np.testing.assert_allclose(post.covariances[j], single.covariances[0], rtol=1e-12)
    # The diagonal class conditions as its full version does.
    diag = GaussianMixture(means, np.diagonal(covariances, axis1=1, axis2=2), weights)
    a, b = diag.posterior(A, y, s), diag.to_full().posterior(A, y, s)
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(leaf_a, leaf_b, rtol=1e-12)


def test_exact_observation_noise_zero(x64):
    """noise_std = 0 with a mask: samples satisfy A x = y; it is the limit of small noise."""
    gm = full_2d()
    A, y = np.array([[1.0, 0.0]]), np.array([0.7])
    exact = gm.posterior(A, y, 0.0)
    samples = exact.sample(jax.random.key(1), 100)
    np.testing.assert_allclose(samples[:, 0], 0.7, atol=1e-12)
    nearly = gm.posterior(A, y, 1e-6)
    np.testing.assert_allclose(exact.weights, nearly.weights, rtol=1e-6)
    np.testing.assert_allclose(exact.means, nearly.means, atol=1e-6)
    x = np.array([[0.5, 0.0], [1.0, 2.0]])
    for sigma in (0.1, 1.0):
        np.testing.assert_allclose(exact.denoiser(x, sigma), nearly.denoiser(x, sigma), atol=1e-6)
    np.testing.assert_allclose(exact.denoiser(x, 0.0), x)  # the identity at sigma = 0


def test_posterior_jit_and_vmap_over_observations():
    gm = full_2d(jnp.float32)
    A, _, noise_std = OBSERVATIONS["dense-0.5"]
    ys = jnp.linspace(-1.0, 1.0, 4)[:, None]
    x = jnp.array([[0.3, -0.2], [1.0, 1.0]])

    @jax.jit
    def denoise(gm, y):
        return jax.vmap(lambda yi: gm.posterior(A, yi, noise_std).denoiser(x, 0.4))(y)

    looped = np.stack([gm.posterior(A, yi, noise_std).denoiser(x, 0.4) for yi in ys])
    np.testing.assert_allclose(denoise(gm, ys), looped, rtol=1e-5, atol=1e-6)
    # A class-conditional of a traced mixture (labels are static), and a traced label.
    conditional = jax.jit(lambda gm: gm.class_conditional(1).denoiser(x, 0.4))
    np.testing.assert_allclose(
        conditional(gm), gm.class_conditional(1).denoiser(x, 0.4), rtol=1e-5, atol=1e-6
    )
    log_prob = jax.jit(lambda label: gm.class_log_prob(x, 0.4, label))
    np.testing.assert_allclose(log_prob(1), gm.class_log_prob(x, 0.4, 1), rtol=1e-5)


# ---------------------------------------------------------------------------- classes


def hand_built(label, dtype=jnp.float64):
    """The class's components and renormalized weights, selected by hand."""
    means, covariances, weights = prior_2d()
    index = [0] if label == 0 else [1, 2]
    w = weights[index] / weights[index].sum()
    return FullGaussianMixture(means[index], covariances[index], w), weights[index].sum()


@jax.jit
def classifier_guided(gm, x, sigma, label):
    """D(x) + sigma^2 grad_x log p(label | x): classifier guidance with scale 1."""
    grad = jax.vmap(jax.grad(lambda xi: gm.class_log_prob(xi, sigma, label)))(x)
    return gm.denoiser(x, sigma) + sigma**2 * grad


@pytest.mark.parametrize("sigma", [0.0, 0.3, 2.0])
def test_class_conditionals_and_class_posteriors(x64, sigma):
    gm = full_2d()
    assert gm.classes == (0, 1) and gm.num_classes == 2
    x = np.array([[0.0, 0.0], [1.0, -0.5], [-1.5, 0.5], [0.4, 1.6], [6.0, -4.0]])
    log_post = np.asarray(gm.class_log_posterior(x, sigma))
    assert log_post.shape == (5, 2)
    np.testing.assert_allclose(np.exp(log_post).sum(-1), 1.0, rtol=1e-12)
    for column, label in enumerate(gm.classes):
        conditional = gm.class_conditional(label)
        by_hand, class_weight = hand_built(label)
        assert conditional.labels == (label,) * by_hand.num_components
        for method in ("log_prob", "denoiser"):
            np.testing.assert_allclose(
                getattr(conditional, method)(x, sigma),
                getattr(by_hand, method)(x, sigma),
                rtol=1e-12,
                err_msg=method,
            )
        # Bayes: p(c | x) = w_c p_c(x) / p(x).
        bayes = np.log(class_weight) + by_hand.log_prob(x, sigma) - gm.log_prob(x, sigma)
        np.testing.assert_allclose(
            gm.class_log_prob(x, sigma, label), bayes, rtol=1e-10, atol=1e-12
        )
        np.testing.assert_allclose(log_post[:, column], bayes, rtol=1e-10, atol=1e-12)
        if sigma > 0:
            # Classifier guidance with the exact class posterior is the conditional denoiser.
            np.testing.assert_allclose(
                classifier_guided(gm, jnp.asarray(x), sigma, label),
                by_hand.denoiser(x, sigma),
                rtol=1e-9,
                atol=1e-10,
            )
    # A per-point label array.
    labels = np.array([0, 1, 1, 0, 1])
    np.testing.assert_allclose(
        gm.class_log_prob(x, sigma, labels), log_post[np.arange(5), labels], rtol=1e-12
    )


def test_conditioning_on_class_and_observation_commute(x64):
    gm = full_2d()
    A, y, noise_std = OBSERVATIONS["dense-0.5"]
    post = gm.posterior(A, y, noise_std)
    assert post.labels == gm.labels
    x = np.array([[0.0, 0.0], [1.0, -0.5]])
    for label in gm.classes:
        a = post.class_conditional(label)
        b = gm.class_conditional(label).posterior(A, y, noise_std)
        np.testing.assert_allclose(a.denoiser(x, 0.3), b.denoiser(x, 0.3), rtol=1e-10)
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-10)


def test_diagonal_mixture_labels():
    means = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    gm = GaussianMixture(means, 0.2, labels=[3, -1, 3])
    assert gm.classes == (-1, 3) and gm.labels == (3, -1, 3)
    sub = gm.class_conditional(3)
    assert isinstance(sub, GaussianMixture) and sub.num_components == 2
    np.testing.assert_allclose(sub.means, means[[0, 2]])
    np.testing.assert_allclose(sub.weights, [0.5, 0.5], rtol=1e-6)
    assert gm.to_full().labels == gm.labels
    log_post = gm.class_log_posterior(jnp.zeros((3, 2)), 0.5)
    np.testing.assert_allclose(jnp.exp(log_post).sum(-1), 1.0, rtol=1e-6)


# ---------------------------------------------------------------------------- bad input


def test_bad_posterior_input_raises():
    gm = full_2d(jnp.float32)
    A, y = np.array([[1.0, 0.0]]), np.array([0.5])
    with pytest.raises(ValueError, match=r"A must be a matrix of shape \(m, d\) with d = 2"):
        gm.posterior(np.ones((1, 3)), y, 0.1)
    with pytest.raises(ValueError, match="A must be a matrix"):
        gm.posterior(np.ones(2), y, 0.1)
    with pytest.raises(ValueError, match=r"y must have shape \(m,\) = \(1,\)"):
        gm.posterior(A, np.ones(2), 0.1)
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        gm.posterior(A, y, -0.1)
    with pytest.raises(ValueError, match="noise_std must be a scalar"):
        gm.posterior(A, y, np.ones(2))
    with pytest.raises(ValueError, match="A must be finite"):
        gm.posterior(np.array([[np.nan, 0.0]]), y, 0.1)
    with pytest.raises(ValueError, match="posterior is singular"):
        gm.posterior(np.array([[1.0, 0.0], [2.0, 0.0]]), np.zeros(2), 0.0)


def test_bad_class_input_raises():
    gm = full_2d(jnp.float32)
    x = jnp.zeros((2, 2))
    with pytest.raises(ValueError, match=r"label must be one of the classes \(0, 1\); got 5"):
        gm.class_log_prob(x, 0.5, 5)
    with pytest.raises(ValueError, match="label must be one of the classes"):
        gm.class_conditional(2)
    with pytest.raises(TypeError, match="label must be"):
        gm.class_log_prob(x, 0.5, 0.5)
    unlabelled = GaussianMixture(np.zeros((2, 2)), 1.0)
    for call in (
        lambda: unlabelled.classes,
        lambda: unlabelled.class_conditional(0),
        lambda: unlabelled.class_log_prob(x, 0.5, 0),
        lambda: unlabelled.class_log_posterior(x, 0.5),
    ):
        with pytest.raises(ValueError, match="has no class labels; build it with labels="):
            call()
    with pytest.raises(TypeError, match="labels must be integers"):
        GaussianMixture(np.zeros((2, 2)), 1.0, labels=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"labels must have shape \(K,\) = \(2,\)"):
        GaussianMixture(np.zeros((2, 2)), 1.0, labels=[0])
