"""Parametrizations: exact eps/x0/v/score models of a mixture, wrapped, give back the exact
denoiser for every process; preconditioners reproduce D from the exact raw network."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import pytest

import jaxdiff as jd
import jaxdiff.parametrizations as P

PROCESSES = [jd.VP(), jd.SubVP(), jd.VE(), jd.EDM(), jd.CosineVP()]


def exact_models(gm, process):
    """eps, x0, v and score predictors of the mixture in process time (x_t, t)."""

    def x0(x_t, t):
        s, sigma = process.scale(t), process.sigma(t)
        return gm.denoiser(x_t / s, sigma)

    def eps(x_t, t):
        s, sigma = process.scale(t), process.sigma(t)
        return (x_t / s - x0(x_t, t)) / sigma

    def v(x_t, t):
        s, sigma = process.scale(t), process.sigma(t)
        return s * eps(x_t, t) - s * sigma * x0(x_t, t)

    return dict(eps=eps, x0=x0, v=v, score=gm.process_score(process))


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
def test_wrappers_recover_the_exact_denoiser(process, x64):
    gm = jd.analytic.ring()
    y = 3.0 * jr.normal(jr.key(0), (32, 2))
    models = exact_models(gm, process)
    wrap = dict(eps=P.from_eps, x0=P.from_x0, v=P.from_v, score=P.from_score)
    for t in [0.1 * process.t_max, 0.5 * process.t_max]:
        sigma = process.sigma(jnp.asarray(t))
        want = gm.denoiser(y, sigma)
        for name, make in wrap.items():
            got = make(models[name], process)(y, sigma)
            assert jnp.allclose(got, want, rtol=1e-7, atol=1e-8), name


@pytest.mark.parametrize("make", [P.EDMPrecond, P.VPPrecond, P.VEPrecond])
def test_preconditioners_round_trip(make, x64):
    gm = jd.analytic.ring()
    y = 3.0 * jr.normal(jr.key(1), (16, 2))
    probe = make(lambda x, c: x)  # only for its coefficients

    def exact_raw(x_in, c_noise, sigma):
        c_skip, c_out, c_in, _ = probe.coefficients(sigma)
        return (gm.denoiser(x_in / c_in, sigma) - c_skip * x_in / c_in) / c_out

    for sigma in [0.01, 0.5, 3.0, 80.0]:
        sigma = jnp.asarray(sigma)
        precond = make(lambda x_in, c_noise, s=sigma: exact_raw(x_in, c_noise, s))
        assert jnp.allclose(precond(y, sigma), gm.denoiser(y, sigma), rtol=1e-7, atol=1e-8)


def test_precond_coefficients_match_edm_table():
    s = jnp.asarray(2.0)
    c_skip, c_out, c_in, c_noise = P.EDMPrecond(lambda x, c: x).coefficients(s)
    assert jnp.allclose(
        jnp.array([c_skip, c_out, c_in, c_noise]),
        jnp.array([0.25 / 4.25, 2 * 0.5 / jnp.sqrt(4.25), 1 / jnp.sqrt(4.25), jnp.log(2.0) / 4]),
    )
    _, _, _, c_noise_vp = P.VPPrecond(lambda x, c: x).coefficients(s)
    t = jd.VP(beta_min=0.1, beta_max=20.0).t_of_sigma(s)
    assert jnp.allclose(c_noise_vp, 999 * t)
    assert jnp.allclose(P.VEPrecond(lambda x, c: x).coefficients(s)[3], jnp.log(1.0))


def test_wrappers_are_pytrees_and_check_input():
    gm = jd.analytic.ring()
    vp = jd.VP()
    den = P.from_x0(exact_models(gm, vp)["x0"], vp)
    # a pytree: arrays traced, the plain-function model static (as jd.sample passes it)
    out = eqx.filter_jit(lambda d, y: d(y, jnp.asarray(1.0)))(den, jnp.ones((4, 2)))
    assert out.shape == (4, 2)
    with pytest.raises(TypeError, match="model must be callable"):
        P.from_eps(3, vp)
    with pytest.raises(TypeError, match="process must be a jaxdiff process"):
        P.from_eps(lambda x, t: x, "vp")
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        P.EDMPrecond(lambda x, c: x, sigma_data=0.0)
