"""jd.schedules.optimize: gradient descent through the compiled sampler improves a grid on
held-out noise, and keeps it a valid grid."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxdiff as jd
from jaxdiff.schedules._optimize import grid_from_params, params_from_grid


def test_parametrization_round_trip(x64):
    sigmas = jd.schedules.karras(7, 0.002, 80.0)
    back = grid_from_params(params_from_grid(sigmas), 0.002, 80.0)
    np.testing.assert_allclose(back, sigmas, rtol=1e-10)


def test_optimize_improves_held_out_error():
    gms = [jd.analytic.ring(), jd.analytic.grid()]
    res = jd.schedules.optimize(
        [g.denoiser for g in gms],
        (128, 2),
        6,
        solver=jd.samplers.DPMpp2M(),
        iterations=40,
        key=jr.key(0),
    )
    s = np.asarray(res.sigmas)
    assert s.shape == (7,) and s[-1] == 0 and np.all(np.diff(s) < 0)
    assert s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002, rel=1e-4)
    assert res.final_loss < 0.8 * res.initial_loss, (res.initial_loss, res.final_loss)
    assert res.losses.shape == (40,) and bool(jnp.all(jnp.isfinite(res.losses)))


def test_bad_input():
    den, key = jd.analytic.ring().denoiser, jr.key(0)
    with pytest.raises(ValueError, match="deterministic"):
        jd.schedules.optimize(den, (4, 2), 5, solver=jd.samplers.EulerAncestral(), key=key)
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        jd.schedules.optimize(den, (4, 2), 1, solver=jd.samplers.Euler(), key=key)
    with pytest.raises(TypeError, match="n must be an int >= 2"):
        jd.schedules.optimize(den, (4, 2), 5.0, solver=jd.samplers.Euler(), key=key)
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        jd.schedules.optimize(
            den, (4, 2), 5, solver=jd.samplers.Euler(), sigma_min=1.0, sigma_max=0.5, key=key
        )
    with pytest.raises(TypeError, match="iterations must be an int"):
        jd.schedules.optimize(den, (4, 2), 5, solver=jd.samplers.Euler(), iterations=2.0, key=key)
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        jd.schedules.optimize(den, (4, 2), 5, solver=jd.samplers.Euler(), key=0)


def test_missing_key_is_deprecated():
    """`key=None` (the default) warns, names `key`, and still means `jax.random.key(0)` for
    one release."""
    den = jd.analytic.ring().denoiser
    kw = dict(solver=jd.samplers.Euler(), iterations=2, reference_steps=8)
    with pytest.warns(DeprecationWarning, match="key"):
        old = jd.schedules.optimize(den, (4, 2), 3, **kw)
    new = jd.schedules.optimize(den, (4, 2), 3, key=jr.key(0), **kw)
    np.testing.assert_array_equal(old.sigmas, new.sigmas)


def test_log_objective_with_one_shape_per_denoiser(x64):
    """`objective="log_rms"` (geometric mean over models) on models of different dimensions,
    each with its own noise shape."""
    gms = [
        jd.analytic.ring(),
        jd.analytic.random_mixture(dim=16, num_components=6, seed=9),
    ]
    res = jd.schedules.optimize(
        [g.denoiser for g in gms],
        [(64, 2), (64, 16)],
        6,
        solver=jd.samplers.IPNDM(),
        iterations=40,
        objective="log_rms",
        reference_steps=256,
        key=jr.key(0),
    )
    s = np.asarray(res.sigmas)
    assert s.shape == (7,) and s[-1] == 0 and np.all(np.diff(s) < 0)
    assert res.final_loss < 0.8 * res.initial_loss, (res.initial_loss, res.final_loss)
    # the reported losses are geometric means of RMS errors (positive, not logs)
    assert bool(jnp.all(res.losses > 0)) and res.initial_loss > 0


def test_bad_objective_and_shapes():
    den = jd.analytic.ring().denoiser
    with pytest.raises(ValueError, match="objective must be"):
        jd.schedules.optimize(
            den, (4, 2), 5, solver=jd.samplers.Euler(), objective="max", key=jr.key(0)
        )
    with pytest.raises(ValueError, match="one shape or one per denoiser"):
        jd.schedules.optimize([den, den], [(4, 2)], 5, solver=jd.samplers.Euler(), key=jr.key(0))
