"""Log-likelihoods through the probability-flow ODE, against the exact densities of Gaussian
mixtures: exact divergence, Skilling-Hutchinson, the process-time variant and bits/dim."""

import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxdiff as jd
from jaxdiff import bits_per_dim, dequantize, log_likelihood, log_likelihood_process


@pytest.mark.parametrize(
    "make",
    [
        lambda: jd.analytic.ring(dtype=jnp.float64),
        lambda: jd.analytic.random_mixture(4, 5, dtype=jnp.float64),
    ],
)
def test_exact_divergence_matches_mixture(x64, make):
    gm = make()
    x = gm.sample(jr.key(0), 32)
    res = log_likelihood(gm.denoiser, x, return_info=True)
    exact = gm.log_prob(x, sigma=0.002)
    err = np.max(np.abs(np.asarray(res.log_p - exact))) / gm.dim
    assert err < 0.02
    assert res.log_p.shape == (32,) and res.log_p.dtype == jnp.float64
    np.testing.assert_allclose(res.log_p, res.prior_log_p + res.delta_log_p)
    assert int(res.nfe) == 6 * int(res.num_steps) + 1  # Tsit5: FSAL, 6 new stages per step


def test_hutchinson_is_unbiased(x64):
    gm = jd.analytic.ring(dtype=jnp.float64)
    x = gm.sample(jr.key(0), 16)
    exact = np.asarray(log_likelihood(gm.denoiser, x))
    errs = np.stack(
        [
            np.asarray(log_likelihood(gm.denoiser, x, key=jr.key(k), num_probes=2)) - exact
            for k in range(8)
        ]
    )
    se = errs.std() / math.sqrt(errs.size)
    assert errs.std() > 0  # it is an estimate
    assert abs(errs.mean()) < 4 * se + 1e-3
    # Rademacher is the default probe
    k = jr.key(3)
    a = log_likelihood(gm.denoiser, x, key=k, num_probes=2)
    b = log_likelihood(gm.denoiser, x, key=k, num_probes=2, probe="rademacher")
    c = log_likelihood(gm.denoiser, x, key=k, num_probes=2, probe="gaussian")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert abs(float(jnp.mean(c)) - float(exact.mean())) < 0.5


@pytest.mark.slow
def test_process_variant_matches_mixture(x64):
    gm = jd.analytic.ring(dtype=jnp.float64)
    vp = jd.VP()
    t_min = 1e-5
    x = gm.sample(jr.key(0), 32) * vp.scale(t_min)
    res = log_likelihood_process(gm.process_score(vp), x, vp, t_min=t_min)
    exact = gm.process_log_prob(x, t_min, vp)
    assert np.max(np.abs(np.asarray(res.log_p - exact))) / gm.dim < 0.02


def test_bits_per_dim_of_a_gaussian_is_exact(x64):
    d, s, sigma_min = 3, 0.3, 0.002
    mu = jnp.array([[0.2, -0.1, 0.05]])
    gm = jd.analytic.GaussianMixture(mu, jnp.asarray(s**2))
    x = gm.sample(jr.key(0), 16)
    bpd = bits_per_dim(log_likelihood(gm.denoiser, x, sigma_min=sigma_min, rtol=1e-9, atol=1e-9), d)
    # the PF-ODE of a Gaussian is affine, x(sigma) = mu + r(sigma) (x - mu) with
    # r = sqrt((s^2 + sigma^2) / (s^2 + sigma_min^2)): the model's density in closed form,
    # prior N(0, sigma_max^2 I) included
    r = math.sqrt((s**2 + 80.0**2) / (s**2 + sigma_min**2))
    x_T = mu + r * (x - mu)
    log_p = -0.5 * jnp.sum(x_T**2, -1) / 80.0**2 - d * math.log(80.0 * math.sqrt(2 * math.pi))
    log_p = log_p + d * math.log(r)
    expected = -log_p / (d * math.log(2)) + 7.0  # 8-bit data in [-1, 1]: log2(256 / 2)
    np.testing.assert_allclose(bpd, expected, atol=1e-6)


def test_bits_per_dim_offsets_and_dequantize():
    assert float(bits_per_dim(0.0, 5)) == pytest.approx(7.0)
    assert float(bits_per_dim(0.0, 5, data_range=(0, 1))) == pytest.approx(8.0)
    assert float(bits_per_dim(-5 * math.log(2), 5, dequantization=None)) == pytest.approx(1.0)
    y = jnp.arange(256).reshape(1, 256)
    x = dequantize(jr.key(0), y)
    assert float(x.min()) >= -1 and float(x.max()) < 1
    assert np.all(np.floor((np.asarray(x) + 1) * 128) == np.asarray(y))


def test_bad_input():
    gm = jd.analytic.ring()
    x = gm.sample(jr.key(0), 4)
    with pytest.raises(ValueError, match="shaped like x"):
        log_likelihood(lambda x, s: x[:, :1], x)
    with pytest.raises(ValueError, match="sigma_min.*sigma_max"):
        log_likelihood(gm.denoiser, x, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="probe"):
        log_likelihood(gm.denoiser, x, key=jr.key(0), probe="cauchy")
    with pytest.raises(ValueError, match="num_probes"):
        log_likelihood(gm.denoiser, x, key=jr.key(0), num_probes=0)
    with pytest.raises(ValueError, match="batch"):
        log_likelihood(gm.denoiser, x[0])
    with pytest.raises(ValueError, match="unknown solver"):
        log_likelihood(gm.denoiser, x, solver="rk99")
    with pytest.raises(ValueError, match="t_min.*t_max"):
        log_likelihood_process(gm.process_score(jd.VP()), x, jd.VP(), t_min=0.5, t_max=0.1)
    with pytest.raises(ValueError, match="dequantization"):
        bits_per_dim(0.0, 2, dequantization="gaussian")
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(0.0, 0)
