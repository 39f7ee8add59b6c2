"""Tests of `jaxdiff.inverse`: linear operators, observations and posterior samplers.

References are independent of the implementation: operators against scipy's convolution,
dense matrices built by index arithmetic and the adjoint identity; guided denoisers against the
exact posterior denoiser of Gaussian priors (`jaxdiff.analytic`'s Kalman update), where PiGDM
(isotropic prior, matched variance) and TMPD (any Gaussian prior) are exact, and DPS against
its formula through `jax.grad`; the SMC sampler against exact posterior samples (a Gaussian
prior in closed form, a 2-D mixture through `posterior`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxdiff_test_utils import compiles
from scipy.signal import convolve2d

import jaxdiff as jd
from jaxdiff import inverse
from jaxdiff.analytic import FullGaussianMixture, GaussianMixture
from jaxdiff.inverse._sample import _sample

IMAGE = (4, 6, 2)  # (H, W, C)


def operators():
    rng = np.random.default_rng(0)
    mask = (rng.random(IMAGE) < 0.5).astype(np.float64)
    return {
        "mask": (inverse.Mask(mask), IMAGE),
        "blur": (inverse.Blur(rng.standard_normal((3, 5))), IMAGE),
        "blur-2d": (inverse.Blur(rng.standard_normal((5, 3))), (5, 4)),
        "downsample": (inverse.Downsample(2), IMAGE),
        "downsample-2d": (inverse.Downsample(3), (6, 3)),
        "dense": (inverse.Dense(rng.standard_normal((7, 48))), IMAGE),
    }


@pytest.mark.parametrize("name", list(operators()))
def test_operator_adjoint_matrix_and_spectrum(name, x64):
    op, shape = operators()[name]
    rng = np.random.default_rng(1)
    out = op.output_shape(shape)
    x = jnp.asarray(rng.standard_normal((3, *shape)))
    y = jnp.asarray(rng.standard_normal((3, *out)))

    @jax.jit  # one program (eager, every small op would compile on its own)
    def quantities(x, y, c, weights):
        spec = op.spectrum(shape, jnp.float64)
        basis = spec.lift(jnp.eye(spec.values.shape[0]))
        return dict(
            ax=op.apply(x),
            aty=op.transpose(y, shape),
            s=spec.values,
            u_ax=spec.u_t(op.apply(x)),
            v_x=spec.project(x),
            round_trip=spec.project(spec.lift(c)),
            v_c=spec.lift(c),
            gram=spec.weighted_gram(weights),
            exact_gram=jnp.einsum("i...,b...,j...->bij", basis, weights, basis),
        )

    num = op.spectrum(shape, jnp.float64).values.shape[0]
    c = jnp.asarray(rng.standard_normal((3, num)))
    q = jax.tree.map(np.asarray, quantities(x, y, c, jnp.asarray(rng.random((3, *shape)))))
    x, y, c = np.asarray(x), np.asarray(y), np.asarray(c)
    assert q["ax"].shape == (3, *out) and q["aty"].shape == (3, *shape)
    # <A x, y> = <x, A^T y>
    np.testing.assert_allclose(np.sum(q["ax"] * y), np.sum(x * q["aty"]), rtol=1e-12)
    # the dense matrix agrees with the application and the transpose
    matrix = np.asarray(op.as_matrix(shape))
    assert matrix.shape == (np.prod(out), np.prod(shape))
    np.testing.assert_allclose(q["ax"].reshape(3, -1), x.reshape(3, -1) @ matrix.T, atol=1e-12)
    np.testing.assert_allclose(q["aty"].reshape(3, -1), y.reshape(3, -1) @ matrix, atol=1e-12)
    # the spectrum: U^T A x = S V^T x, V orthonormal on the observed coordinates, the
    # singular values those of the matrix, V^T diag(w) V as the basis gives it
    s = q["s"]
    np.testing.assert_allclose(q["u_ax"], s * q["v_x"], atol=1e-12)
    np.testing.assert_allclose(q["round_trip"], np.where(s > 0, c, 0), atol=1e-12)
    np.testing.assert_allclose(np.sum(q["v_x"] * c), np.sum(x * q["v_c"]), rtol=1e-12)
    kept = int(np.sum(s > 0))
    np.testing.assert_allclose(
        np.sort(s[s > 0]), np.sort(np.linalg.svd(matrix, compute_uv=False)[:kept]), rtol=1e-10
    )
    gram = q["gram"] if q["gram"].ndim == 3 else jax.vmap(jnp.diag)(q["gram"])
    np.testing.assert_allclose(q["exact_gram"], gram, atol=1e-12)


def test_blur_is_scipy_convolution_per_channel(x64):
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal((3, 5))
    x = rng.standard_normal((2, *IMAGE))
    ours = inverse.Blur(kernel).apply(jnp.asarray(x))
    for b in range(2):
        for c in range(IMAGE[2]):
            ref = convolve2d(x[b, :, :, c], kernel, mode="same")
            np.testing.assert_allclose(ours[b, :, :, c], ref, atol=1e-12)
    g = np.asarray(inverse.gaussian_kernel(5, 1.2))
    assert g.shape == (5, 5) and abs(g.sum() - 1) < 1e-12 and np.allclose(g, g.T)


def test_downsample_is_block_mean(x64):
    x = np.arange(2 * 4 * 6 * 2, dtype=np.float64).reshape(2, 4, 6, 2)
    ours = inverse.Downsample(2).apply(jnp.asarray(x))
    ref = x.reshape(2, 2, 2, 3, 2, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(ours, ref)


# ------------------------------------------------------------------ exact guided denoisers


def gaussian_posterior_denoiser(mean, cov, A, y, noise_std):
    """E[x0 | x_sigma, y] for the prior N(mean, cov): the information-form update in numpy,
    then the posterior's denoiser."""
    precision = np.linalg.inv(cov) + A.T @ A / noise_std**2
    post_cov = np.linalg.inv(precision)
    post_mean = post_cov @ (np.linalg.solve(cov, mean) + A.T @ y / noise_std**2)

    def denoiser(x, sigma):
        gain = post_cov @ np.linalg.inv(post_cov + sigma**2 * np.eye(len(mean)))
        return post_mean + (np.asarray(x) - post_mean) @ gain.T

    return denoiser


SIGMAS = (0.03, 0.4, 2.5, 40.0)


def test_tmpd_full_is_exact_for_gaussian_priors(x64):
    rng = np.random.default_rng(3)
    d, m = 3, 2
    root = rng.standard_normal((d, d))
    mean, cov = rng.standard_normal(d), root @ root.T / d + 0.1 * np.eye(d)
    A, y, s = rng.standard_normal((m, d)), rng.standard_normal(m), 0.3
    prior = FullGaussianMixture(mean[None], cov[None])
    posterior = prior.posterior(A, y, s)
    reference = gaussian_posterior_denoiser(mean, cov, A, y, s)
    guided = eqx.filter_jit(
        inverse.TMPD(covariance="full", floor=0.0).denoiser(
            prior.denoiser, inverse.LinearObservation(A, y, s)
        )
    )
    exact = eqx.filter_jit(posterior.denoiser)
    x = jnp.asarray(rng.standard_normal((5, d)))
    for sigma in SIGMAS:
        ours = guided(x, jnp.asarray(sigma))
        np.testing.assert_allclose(ours, exact(x, jnp.asarray(sigma)), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ours, reference(x, sigma), rtol=1e-9, atol=1e-9)
    # one observation per row
    ys = rng.standard_normal((5, m))
    guided = inverse.TMPD(floor=0.0).denoiser(prior.denoiser, inverse.LinearObservation(A, ys, s))
    ours = eqx.filter_jit(guided)(x, jnp.asarray(0.7))
    for i in range(5):
        ref = gaussian_posterior_denoiser(mean, cov, A, ys[i], s)(x[i : i + 1], 0.7)
        np.testing.assert_allclose(ours[i : i + 1], ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["mask", "downsample"])
def test_tmpd_diagonal_is_exact_for_diagonal_priors(name, x64):
    """The row-sum approximation is exact when the Jacobian is diagonal (a diagonal
    Gaussian prior) and A diag(c) A^T is diagonal (a mask, a downsampling)."""
    op, shape = operators()[name]
    rng = np.random.default_rng(4)
    d = int(np.prod(shape))
    mean, var = rng.standard_normal(d), rng.uniform(0.2, 1.5, d)
    prior = GaussianMixture(mean[None], var[None])

    def denoiser(x, sigma):
        return prior.denoiser(x.reshape(x.shape[0], -1), sigma).reshape(x.shape)

    truth = mean + np.sqrt(var) * rng.standard_normal(d)
    y = op.apply(jnp.asarray(truth.reshape(1, *shape)))[0]
    obs = inverse.LinearObservation(op, y, 0.2)
    posterior = prior.posterior(*obs.dense(shape), 0.2)
    guided = eqx.filter_jit(inverse.TMPD(covariance="diagonal", floor=0.0).denoiser(denoiser, obs))
    exact = eqx.filter_jit(posterior.denoiser)
    x = jnp.asarray(rng.standard_normal((2, *shape)))
    for sigma in SIGMAS:
        ours = guided(x, jnp.asarray(sigma)).reshape(2, -1)
        ref = exact(x.reshape(2, -1), jnp.asarray(sigma))
        np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", ["blur", "downsample", "mask"])
def test_pigdm_is_exact_for_isotropic_priors(name, x64):
    op, shape = operators()[name]
    rng = np.random.default_rng(5)
    d, v = int(np.prod(shape)), 0.6
    prior = GaussianMixture(rng.standard_normal((1, d)), v)

    def denoiser(x, sigma):
        return prior.denoiser(x.reshape(x.shape[0], -1), sigma).reshape(x.shape)

    y = jnp.asarray(rng.standard_normal(op.output_shape(shape)))
    obs = inverse.LinearObservation(op, y, 0.1)
    posterior = prior.posterior(*obs.dense(shape), 0.1)
    guided = eqx.filter_jit(inverse.PiGDM(data_var=v).denoiser(denoiser, obs))
    exact = eqx.filter_jit(posterior.denoiser)
    x = jnp.asarray(rng.standard_normal((2, *shape)))
    for sigma in SIGMAS:
        ours = guided(x, jnp.asarray(sigma)).reshape(2, -1)
        ref = exact(x.reshape(2, -1), jnp.asarray(sigma))
        np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-8)


def test_dps_is_its_formula(x64):
    """D' = D - zeta grad ||y - A D||^2 / ||y - A D||, per sample, through jax.grad."""
    op, shape = operators()["blur"]
    rng = np.random.default_rng(6)
    w = jnp.asarray(rng.standard_normal((int(np.prod(shape)),) * 2) / 8)

    def denoiser(x, sigma):  # a nonlinear denoiser, so that the Jacobian matters
        flat = x.reshape(x.shape[0], -1)
        return (jnp.tanh(flat @ w) / (1 + sigma) + flat).reshape(x.shape)

    y = jnp.asarray(rng.standard_normal(shape))
    guided = inverse.DPS(zeta=0.7).denoiser(denoiser, inverse.LinearObservation(op, y, 0.1))
    x = jnp.asarray(rng.standard_normal((3, *shape)))

    def loss(xi):
        r = y - op.apply(denoiser(xi[None], 0.5))[0]
        return jnp.sum(r**2) / jax.lax.stop_gradient(jnp.sqrt(jnp.sum(r**2)))

    expected = jax.jit(lambda x_: denoiser(x_, 0.5) - 0.7 * jax.vmap(jax.grad(loss))(x_))(x)
    ours = eqx.filter_jit(guided)(x, jnp.asarray(0.5))
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ sampling on images


@pytest.fixture(scope="module")
def image_problem():
    """A 3-component mixture prior over 4x4x1 images, 4 truths drawn from it, the noise."""
    rng = np.random.default_rng(7)
    shape = (4, 4, 1)
    prior = GaussianMixture(jnp.asarray(rng.standard_normal((3, 16)), jnp.float32), 0.05)

    def denoiser(x, sigma):
        return prior.denoiser(x.reshape(x.shape[0], -1), sigma).reshape(x.shape)

    truth = prior.sample(jr.key(0), 4).reshape(4, *shape)
    sigmas = jd.schedules.karras(12, 0.01, 10.0)
    x = 10.0 * jr.normal(jr.key(1), truth.shape)
    unconditional = jd.sample(
        denoiser, x, sigmas, solver=jd.samplers.EulerAncestral(), key=jr.key(2)
    )
    mask = jnp.asarray((rng.random(shape) < 0.5).astype(np.float32))
    return denoiser, truth, sigmas, x, unconditional, mask


def misfit(op, samples, y):
    return float(jnp.mean(jnp.sum((op.apply(samples) - y).reshape(samples.shape[0], -1) ** 2, -1)))


CASES = {
    "dps": (lambda mask: inverse.Blur.gaussian(3, 0.8), {"zeta": 0.5}),
    "pigdm": (lambda mask: inverse.Downsample(2), {}),
    "tmpd": (lambda mask: inverse.Dense(np.random.default_rng(8).standard_normal((6, 16))), {}),
    "repaint": (lambda mask: inverse.Mask(mask), {"jump_length": 3, "repeats": 2}),
    "smc": (lambda mask: inverse.Mask(mask), {"num_particles": 4}),
}


@pytest.mark.parametrize("method", list(CASES))
def test_methods_fit_the_observation(method, image_problem):
    denoiser, truth, sigmas, x, unconditional, mask = image_problem
    make_op, options = CASES[method]
    op = make_op(mask)
    noise_std = 0.0 if isinstance(op, inverse.Mask) else 0.05
    y = op.apply(truth) + noise_std * jr.normal(jr.key(3), op.apply(truth).shape)
    obs = inverse.LinearObservation(op, y, noise_std)
    out = inverse.sample(denoiser, obs, x, sigmas, method=method, key=jr.key(2), **options)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert bool(jnp.all(jnp.isfinite(out)))
    # the data fit improves on unconditional samples from the same noise and key
    assert misfit(op, out, y) < 0.2 * misfit(op, unconditional, y)
    if isinstance(op, inverse.Mask):  # noise-free: the observed pixels are kept exactly
        np.testing.assert_allclose(mask * out, mask * y, atol=1e-5)
    # a new observation and a new key do not recompile
    y_new = op.apply(truth[::-1])
    with compiles(_sample) as new:
        again = inverse.sample(
            denoiser,
            inverse.LinearObservation(op, y_new, noise_std),
            x,
            sigmas,
            method=method,
            key=jr.key(9),
            **options,
        )
    assert new.count == 0
    assert not np.allclose(again, out)


@pytest.mark.parametrize("method", ["dps", "smc"])
def test_per_sample_keys_and_observations(method, x64):
    """One key and one observation per row: a row depends on its own only."""
    prior = FullGaussianMixture(
        jnp.array([[-1.0, 0.0], [1.0, 0.5]]), jnp.array([np.eye(2) * 0.1] * 2)
    )
    A = np.array([[1.0, 0.5]])
    ys = np.linspace(-1.0, 1.0, 6)[:, None]
    sigmas = jd.schedules.karras(8, 0.01, 10.0)
    x = np.asarray(10.0 * jr.normal(jr.key(0), (6, 2)))
    keys = jd.per_sample_keys(jr.key(7), 6)
    perm = np.random.default_rng(2).permutation(6)
    options = {"num_particles": 3} if method == "smc" else {}

    def run(rows):
        obs = inverse.LinearObservation(A, ys[rows], 0.1)
        return inverse.sample(
            prior.denoiser, obs, x[rows], sigmas, method=method, key=keys[rows], **options
        )

    whole, shuffled = run(np.arange(6)), run(perm)
    np.testing.assert_allclose(whole[perm], shuffled, rtol=1e-13, atol=1e-13)
    assert len(np.unique(np.round(np.asarray(whole[:, 0]), 8))) == 6


def test_repaint_schedule_and_evaluations():
    """RePaint's path: every block of `jump_length` steps is taken `repeats` times, each
    repeat jumping up from where the block ended; the last step (to 0) once, after it."""
    from jaxdiff.inverse._repaint import schedule

    starts, froms = schedule(10, 3, 3)
    level, visits = 0, np.zeros(10, int)
    for start, source in zip(starts, froms, strict=True):
        assert source == level and start <= level  # a jump up, or none
        assert source - start in (0, 3)
        visits[start] += 1
        level = start + 1
    assert level == 9  # then the last step, 9 -> 10
    np.testing.assert_array_equal(visits[:9], [3, 3, 3, 3, 3, 3, 1, 1, 1])
    np.testing.assert_array_equal(schedule(10, 3, 1)[0], np.arange(9))
    sigmas = jd.schedules.karras(10, 0.01, 10.0)
    assert inverse.num_evaluations("repaint", sigmas, jump_length=3, repeats=3) == 22
    assert inverse.num_evaluations("repaint", sigmas, solver="heun", repeats=1) == 19
    assert inverse.num_evaluations("smc", sigmas, num_particles=4) == 4 * 19
    assert inverse.num_evaluations("tmpd", sigmas) == 10


# ------------------------------------------------------------------ SMC against exact posteriors


# The SMC tests share their shapes (2-D samples, a 1 x 2 observation, 3-component mixtures,
# the grid, the batch), so that each particle count compiles one program for both.
SMC_SAMPLES = 800
SMC_SIGMAS = jd.schedules.karras(40, 0.002, 20.0)
SMC_A = np.array([[1.0, 1.0]]) / np.sqrt(2)


def smc_samples(prior, y, noise_std, num_particles):
    x = 20.0 * jr.normal(jr.key(1), (SMC_SAMPLES, 2))
    obs = inverse.LinearObservation(SMC_A, y, noise_std)
    return inverse.sample(
        prior.denoiser,
        obs,
        x,
        SMC_SIGMAS,
        method="smc",
        key=jr.key(num_particles),
        num_particles=num_particles,
    )


def test_smc_converges_to_gaussian_posterior(x64):
    """Against the closed-form posterior of a correlated Gaussian prior (three identical
    components): the samples whitened by the exact posterior must be N(0, I); the errors of
    their mean and covariance (in standard errors) shrink with the particles (SMC's bias is
    O(1 / num_particles)) and are near the Monte Carlo error at 32."""
    mean, cov = np.array([0.5, -0.3]), np.array([[1.0, 0.6], [0.6, 0.8]])
    A, y, s = SMC_A, np.array([1.1]), 0.1
    post_cov = np.linalg.inv(np.linalg.inv(cov) + A.T @ A / s**2)
    post_mean = post_cov @ (np.linalg.solve(cov, mean) + A.T @ y / s**2)
    chol = np.linalg.cholesky(post_cov)
    prior = FullGaussianMixture(np.stack([mean] * 3), np.stack([cov] * 3))
    errors = {}
    for k in (1, 4, 32):
        white = np.linalg.solve(chol, (np.asarray(smc_samples(prior, y, s, k)) - post_mean).T)
        # |mean| ~ chi_2 / sqrt(n) and cov - I ~ sqrt(2 / n) when exact
        mean_se = np.sqrt(SMC_SAMPLES) * np.linalg.norm(white.mean(1))
        cov_se = np.max(np.abs(np.cov(white) - np.eye(2))) * np.sqrt(SMC_SAMPLES / 2)
        errors[k] = (round(mean_se, 2), round(cov_se, 2))
    assert errors[32][0] < 5.0 and errors[32][1] < 4.0, errors
    assert errors[1][0] > 2 * errors[4][0] and errors[4][0] > 3 * errors[32][0], errors
    assert errors[1][1] > 3 * errors[32][1], errors


def test_smc_converges_to_mixture_posterior(x64):
    """Against exact samples of the posterior of a 2-D, 3-component mixture (`posterior`,
    the Kalman update per component): the sliced Wasserstein distance falls with the
    particles, to within 3x the distance between two exact sample sets at 32."""
    means = jnp.array([[-1.5, 0.0], [1.5, 0.5], [0.0, -1.5]])
    covariances = jnp.array(
        [[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.05], [-0.05, 0.3]], [[0.25, 0.0], [0.0, 0.1]]]
    )
    prior = FullGaussianMixture(means, covariances)
    y, s = np.array([0.2]), 0.2
    posterior = prior.posterior(SMC_A, y, s)
    exact = posterior.sample(jr.key(10), SMC_SAMPLES)
    keys = jr.split(jr.key(0), 4)
    distance = jax.jit(
        lambda a, b: jnp.mean(jax.vmap(lambda k: jd.metrics.sliced_wasserstein(a, b, key=k))(keys))
    )
    floor = distance(exact, posterior.sample(jr.key(11), SMC_SAMPLES))
    ratios, weights = {}, {}
    for k in (1, 32):
        samples = smc_samples(prior, y, s, k)
        ratios[k] = float(distance(samples, exact) / floor)
        # E[responsibilities] over the posterior is its component weights exactly
        weights[k] = np.max(np.abs(posterior.responsibilities(samples).mean(0) - posterior.weights))
    assert ratios[32] < 3.0 and ratios[1] > 2 * ratios[32], ratios
    assert weights[32] < 0.06 and weights[1] > 2 * weights[32], weights


# ------------------------------------------------------------------ bad input


def bad_input_cases():
    ones = np.ones((4, 4, 1), np.float32)

    def denoiser(x, sigma):
        return x / (1 + sigma**2)

    x, sigmas = np.zeros((2, 4, 4, 1), np.float32), np.array([2.0, 1.0, 0.0])
    dense = inverse.LinearObservation(np.ones((3, 16)), np.ones(3), 0.1)
    masked = inverse.LinearObservation(inverse.Mask(ones), ones, 0.0)

    def run(obs=dense, x=x, sigmas=sigmas, **kw):
        kw.setdefault("method", "dps")
        kw.setdefault("key", jr.key(0))
        return lambda: inverse.sample(denoiser, obs, x, sigmas, **kw)

    return {
        "y vs A": (
            ValueError,
            "y must have shape",
            lambda: inverse.LinearObservation(np.ones((3, 5)), np.ones(4), 0.1),
        ),
        "negative noise": (
            ValueError,
            "noise_std must be >= 0",
            lambda: inverse.LinearObservation(np.ones((3, 5)), np.ones(3), -0.1),
        ),
        "A not a matrix": (
            ValueError,
            "A as a matrix must be 2-D",
            lambda: inverse.LinearObservation(np.ones(3), np.ones(3), 0.1),
        ),
        "A a function": (
            TypeError,
            "A must be a matrix",
            lambda: inverse.LinearObservation(lambda v: v, np.ones(3), 0.1),
        ),
        "y vs mask": (
            ValueError,
            "y must be shaped like the mask",
            lambda: inverse.LinearObservation(inverse.Mask(ones), np.ones((4, 5, 1)), 0.1),
        ),
        "mask values": (ValueError, "mask must hold only 0", lambda: inverse.Mask(0.5 * ones)),
        "mask vs x": (
            ValueError,
            "mask must be shaped like one sample",
            run(masked, x=np.zeros((2, 5, 5, 1), np.float32)),
        ),
        "A vs x": (ValueError, "A has 16 columns", run(x=np.zeros((2, 3, 3, 1), np.float32))),
        "y rows vs x": (
            ValueError,
            "one per row of x",
            run(inverse.LinearObservation(np.ones((3, 16)), np.ones((3, 3)), 0.1)),
        ),
        "blur kernel": (ValueError, "odd sizes", lambda: inverse.Blur(np.ones((2, 3)))),
        "downsample": (
            ValueError,
            "divisible by 3",
            run(inverse.LinearObservation(inverse.Downsample(3), np.ones((1, 1, 1)), 0.1)),
        ),
        "observation": (TypeError, "observation must be a LinearObservation", run(obs=(1, 2))),
        "method name": (ValueError, "method must be one of", run(method="ddrm")),
        "method type": (TypeError, "method must be one of", run(method=3)),
        "option": (TypeError, r"unknown option\(s\) \['eta'\]", run(eta=1.0)),
        "zeta": (ValueError, "zeta must be > 0", run(zeta=-1.0)),
        "covariance": (
            ValueError,
            "covariance must be one of",
            run(method="tmpd", covariance="low"),
        ),
        "ess": (ValueError, "ess_threshold must be in", run(method="smc", ess_threshold=2.0)),
        "repaint operator": (ValueError, "needs an observation with a Mask", run(method="repaint")),
        "repaint sampler": (
            ValueError,
            "without a carry",
            run(masked, method="repaint", solver="dpmpp_2m"),
        ),
        "smc sampler": (ValueError, "ancestral sampler", run(method="smc", solver="heun")),
        "smc eta": (
            ValueError,
            "eta > 0",
            run(method="smc", solver=jd.samplers.EulerAncestral(eta=0.0)),
        ),
        "key": (ValueError, "pass key=", run(key=None)),
        "grid": (ValueError, "sigmas must be finite", run(sigmas=np.array([np.inf, 1.0, 0.0]))),
    }


@pytest.mark.parametrize("case", list(bad_input_cases()))
def test_bad_input(case):
    error, match, call = bad_input_cases()[case]
    with pytest.raises(error, match=match):
        call()
