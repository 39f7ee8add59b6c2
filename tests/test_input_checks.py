"""Boundary checks: bad input fails at the call with an error naming the argument, dtypes are
kept, and traced values are checked only where an opt-in runtime check asks for it."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxdiff as jd

OU = jd.SDE(lambda t, x, a: -x, lambda t, x, a: jnp.ones_like(x), additive=True)
TS = np.array([0.0, 0.5, 1.0])


@pytest.mark.parametrize("name", ["bfloat16", "float16", "float32", "float64"])
def test_solve_sde_keeps_the_dtype_of_x0(name):
    with jax.enable_x64(name == "float64"):
        dtype = jnp.dtype(name)
        xs = jd.solve_sde(OU, jnp.ones(3, dtype), TS, key=jr.key(0), dt=0.1)
        assert xs.dtype == dtype
        assert xs.shape == (3, 3) and bool(jnp.all(jnp.isfinite(xs)))
    # half precision is solved with float32 time (fine grids stay resolved) and returned as is
    fine = jd.solve_sde(OU, jnp.ones(3, jnp.float16), [0.0, 10.0], key=jr.key(0), dt=1e-3)
    assert fine.dtype == jnp.float16 and bool(jnp.all(jnp.isfinite(fine)))
    with pytest.raises(TypeError, match=r"x0 must hold real floating-point arrays.*int32"):
        jd.solve_sde(OU, jnp.ones(3, jnp.int32), TS, key=jr.key(0), dt=0.1)


PROCESSES = [
    jd.VP(),
    jd.SubVP(),
    jd.VE(),
    jd.EDM(),
    jd.CosineVP(),
    jd.RectifiedFlow(),
    jd.TrigFlow(),
    jd.AffineFlow(lambda t: 1 - t, lambda t: t, iterations=8),
]


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
def test_t_of_sigma_refuses_a_negative_sigma(process):
    with pytest.raises(ValueError, match=r"sigma must be >= 0, got -1.0"):
        process.t_of_sigma(-1)
    with pytest.raises(ValueError, match=r"sigma must be >= 0"):
        process.t_of_sigma(jnp.array([1.0, -0.5]))
    assert np.isfinite(float(process.t_of_sigma(0.5)))
    # traced values cannot be checked: no error
    jax.jit(process.t_of_sigma)(-1.0)


def test_gaussian_mixture_refuses_a_negative_sigma():
    gm = jd.analytic.ring()
    x = jnp.ones((3, 2))
    calls = {
        "denoiser": lambda s: gm.denoiser(x, s),
        "score": lambda s: gm.score(x, s),
        "log_prob": lambda s: gm.log_prob(x, s),
        "responsibilities": lambda s: gm.responsibilities(x, s),
        "cdf_projected": lambda s: gm.cdf_projected(jnp.ones(2), 0.0, s),
        "covariance": lambda s: gm.covariance(s),
        "sample_noisy": lambda s: gm.sample_noisy(jr.key(0), 3, s),
    }
    for call in calls.values():
        with pytest.raises(ValueError, match=r"sigma must be >= 0"):
            call(-1.0)
    with pytest.raises(ValueError, match=r"sigma must be >= 0"):
        gm.denoiser(x, jnp.array([0.5, -1.0, 0.5]))
    # sigma = inf is pure noise: the denoiser returns the mean
    np.testing.assert_allclose(gm.denoiser(x, jnp.inf), jnp.broadcast_to(gm.mean(), x.shape))


def test_sample_grid_messages_and_runtime_check():
    gm = jd.analytic.ring()
    x = jnp.ones((2, 2))
    with pytest.raises(ValueError, match=r"sigmas must be strictly decreasing"):
        jd.sample(gm.denoiser, x, jnp.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"sigmas must end at sigma = 0"):
        jd.sample(gm.denoiser, x, jnp.array([2.0, 1.0]))
    with pytest.raises(ValueError, match=r"sigmas must be finite after its first entry"):
        jd.sample(gm.denoiser, x, jnp.array([2.0, jnp.inf, 0.0]))
    run = eqx.filter_jit(lambda s: jd.sample(gm.denoiser, x, s, solver="euler", checks=True))
    assert run(jnp.array([2.0, 1.0, 0.0])).shape == x.shape
    with pytest.raises(Exception, match=r"sigmas must be strictly decreasing"):
        run(jnp.array([0.0, 1.0, 2.0]))
    with pytest.raises(Exception, match=r"sigmas must end at sigma = 0"):
        run(jnp.array([3.0, 2.0, 1.0]))


def test_adaptive_solvers_refuse_non_finite_input():
    gm = jd.analytic.ring()
    vp = jd.VP()
    x = jnp.ones((2, 2)).at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match=r"x must be finite"):
        jd.log_likelihood(gm.denoiser, x)
    with pytest.raises(ValueError, match=r"x must be finite"):
        jd.log_likelihood_process(gm.process_score(vp), x, vp)
    with pytest.raises(ValueError, match=r"x_T must be finite"):
        jd.sample_ode(gm.process_score(vp), x, vp)
    with pytest.raises(ValueError, match=r"x_T must be finite"):
        jd.sample_sde(gm.process_score(vp), x, vp, key=jr.key(0), steps=None, solver="heun")
    # traced: the compiled program raises, naming the input, not "maximum number of steps"
    traced = eqx.filter_jit(lambda x_: jd.log_likelihood(gm.denoiser, x_, steps=1, solver="euler"))
    with pytest.raises(Exception, match=r"x must be finite"):
        traced(x)


def test_solve_sde_state_and_key():
    key = jr.key(0)
    with pytest.raises(ValueError, match=r"x0 must be an array or a pytree with at least one"):
        jd.solve_sde(OU, {}, TS, key=key, dt=0.1)
    with pytest.raises(TypeError, match=r"x0 must hold real floating-point.*complex64"):
        jd.solve_sde(OU, jnp.ones(3, jnp.complex64), TS, key=key, dt=0.1)
    raw_keys = jr.split(jr.PRNGKey(0), 5)
    assert raw_keys.shape == (5, 2) and raw_keys.dtype == jnp.uint32
    with pytest.raises(ValueError, match=r"key must be one PRNG key .*\(5,\) keys"):
        jd.solve_sde(OU, jnp.ones(3), TS, key=raw_keys, dt=0.1)


def test_sample_key_shapes():
    gm = jd.analytic.ring()
    x = jnp.ones((4, 2))
    sigmas = jnp.array([2.0, 1.0, 0.0])
    keys = jr.split(jr.key(0), 4)
    with pytest.raises(ValueError, match=r"key must be one PRNG key .*one key per sample"):
        jd.sample(gm.denoiser, x, sigmas, solver="euler_ancestral", key=keys.reshape(2, 2))
    # one key, and one key per sample (typed and raw), keep working
    for key in (jr.key(0), keys):
        out = jd.sample(gm.denoiser, x, sigmas, solver="euler_ancestral", key=key)
        assert out.shape == x.shape


def test_process_constructors_name_the_parameter():
    with pytest.raises(TypeError, match=r"beta_min must be a real number"):
        jd.VP("a", 20)
    with pytest.raises(TypeError, match=r"sigma_min must be a real number"):
        jd.VE(sigma_min="a")
    with pytest.raises(ValueError, match=r"sigma_min must be > 0"):
        jd.EDM(sigma_min=-1)
    with pytest.raises(TypeError, match=r"s must be a real number"):
        jd.CosineVP(s="a")
    with pytest.raises(ValueError, match=r"beta_max must be finite"):
        jd.SubVP(beta_max=float("nan"))
    with pytest.raises(TypeError, match=r"t_max must be a real number"):
        jd.RectifiedFlow(t_max="a")


def test_perturb_refuses_an_integer_x0():
    with pytest.raises(TypeError, match=r"x0 must be a floating-point array"):
        jd.VP().perturb(jr.key(0), jnp.ones((2, 3), jnp.int32), 0.5)
    out = jd.VP().perturb(jr.key(0), jnp.ones((2, 3), jnp.float16), 0.5)
    assert out.dtype == jnp.float16


def test_load_dataset_refuses_an_int_key():
    with pytest.raises(TypeError, match=r"key must be a JAX PRNG key.*jax\.random\.key\(0\)"):
        jd.train.load_dataset("ring", key=0, n=8)
    assert jd.train.load_dataset("ring", key=jr.key(0), n=8).x.shape == (8, 2)


def test_readme_spells_the_edm_stochastic_options():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "S_churn" not in readme
    jd.samplers.EDMStochastic(s_churn=1.0, s_tmin=0.0, s_tmax=10.0, s_noise=1.0)
