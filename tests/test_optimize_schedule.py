"""jd.schedules.optimize: gradient descent through the compiled sampler improves a grid on
held-out noise, and keeps it a valid grid."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxdiff as jd
from jaxdiff.schedules._optimize import (
    _reference_from_noise,
    grid_from_params,
    inf_grid_from_params,
    inf_params_from_grid,
    params_from_grid,
)


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


def test_optimize_over_ranges_tunes_the_carried_grids():
    """`ranges=`: one grid tuned for several ranges through `carry`; the loss is measured on
    each range's carried grid, so the tuned grid, carried, beats the initial one there."""
    gm = jd.analytic.ring()
    ranges = [(0.002, 80.0), (0.01, 157.0)]
    res = jd.schedules.optimize(
        gm.denoiser, (64, 2), 6, solver="dpmpp_2m", iterations=30, key=jr.key(1), ranges=ranges
    )
    assert res.final_loss < 0.8 * res.initial_loss, (res.initial_loss, res.final_loss)
    x = 157.0 * jr.normal(jr.key(5), (256, 2))
    ref = jd.sample(gm.denoiser, x, jd.schedules.karras(400, 0.01, 157.0))

    def err(grid):
        out = jd.sample(gm.denoiser, x, jd.schedules.carry(grid, 6, 0.01, 157.0), solver="dpmpp_2m")
        return float(jnp.sqrt(jnp.mean(jnp.sum((out - ref) ** 2, -1))))

    assert err(res.sigmas) < err(jd.schedules.karras(6, 0.002, 80.0))
    with pytest.raises(ValueError, match="ranges applies only"):
        jd.schedules.optimize(
            gm.denoiser,
            (4, 2),
            4,
            solver="euler",
            sigma_max=float("inf"),
            ranges=ranges,
            key=jr.key(0),
        )
    with pytest.raises(ValueError, match="ranges' sigma_min"):
        jd.schedules.optimize(
            gm.denoiser, (4, 2), 4, solver="euler", ranges=[(1.0, 0.5)], key=jr.key(0)
        )


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


# -- grids from pure noise (sigma_max = inf: flow models) ---------------------------------------
def test_inf_parametrization_round_trip(x64):
    grid = jnp.concatenate([jnp.array([jnp.inf]), jd.schedules.karras(6, 0.002, 15.0)])
    finite = inf_grid_from_params(inf_params_from_grid(grid), 0.002)
    np.testing.assert_allclose(finite, grid[1:], rtol=1e-10)


def test_reference_from_noise_is_the_flow_ode_endpoint(x64):
    """The reference of a grid from `inf` (the step to 1e5, then adaptive Tsit5 in log sigma
    on the denoiser) lands on the exact flow ODE's endpoint (Dopri8 in flow time on the
    mixture's exact velocity) from the same noise."""
    from jaxdiff.bench import flow_reference

    gm = jd.analytic.ring(dtype=jnp.float64)
    x = jr.normal(jr.key(3), (32, 2), jnp.float64)
    ours = _reference_from_noise(gm.denoiser, x, 0.002, 1e-10)
    exact, _ = flow_reference(gm.process_velocity(jd.RectifiedFlow()), x)
    assert float(jnp.max(jnp.abs(ours - exact))) < 1e-7


def test_optimize_from_noise_lowers_the_error(x64):
    """`sigma_max=inf`: the grid keeps its inf start (pure noise) and the fixed first step,
    tunes the rest (the first finite level too), and lowers the held-out error; the grid's
    held-out error is that of `jaxdiff.sample` on it from unit noise."""
    gms = [jd.analytic.ring(dtype=jnp.float64), jd.analytic.grid(dtype=jnp.float64)]
    res = jd.schedules.optimize(
        [g.denoiser for g in gms],
        (48, 2),
        5,
        solver="ipndm",
        sigma_max=float("inf"),
        init=jd.schedules.flow(5, shift=3.0, dtype=jnp.float64),
        iterations=40,
        learning_rate=0.1,
        key=jr.key(0),
    )
    s = np.asarray(res.sigmas)
    assert s.shape == (6,) and np.isinf(s[0]) and s[-1] == 0 and np.all(np.diff(s[1:]) < 0)
    assert s[-2] == pytest.approx(0.002, rel=1e-6)
    assert s[1] != pytest.approx(15.0)  # flow(5, shift=3)'s first finite level, moved
    assert jd.samplers.num_evaluations("ipndm", res.sigmas) == 5
    assert res.final_loss < 0.8 * res.initial_loss, (res.initial_loss, res.final_loss)
    assert bool(jnp.all(jnp.isfinite(res.losses)))
    # the loss is jaxdiff.sample on the full grid (inf first): rebuild the held-out error
    _, k_test = jr.split(jr.key(0))
    errs = []
    for j, g in enumerate(gms):
        x = jr.normal(jr.fold_in(k_test, j), (48, 2), jnp.float64)
        ref = _reference_from_noise(g.denoiser, x, 0.002, 1e-10)
        out = jd.sample(g.denoiser, x, res.sigmas, solver="ipndm")
        errs.append(float(jnp.sqrt(jnp.mean(jnp.sum((out - ref) ** 2, -1)))))
    assert np.mean(errs) == pytest.approx(res.final_loss, rel=1e-8)


def test_optimize_from_noise_bad_input():
    den, key = jd.analytic.ring().denoiser, jr.key(0)
    inf = float("inf")
    with pytest.raises(ValueError, match="n must be an int >= 3"):
        jd.schedules.optimize(den, (4, 2), 2, solver="euler", sigma_max=inf, key=key)
    with pytest.raises(ValueError, match="sigma_min must be < sigma_first"):
        jd.schedules.optimize(
            den, (4, 2), 4, solver="euler", sigma_max=inf, sigma_first=0.001, key=key
        )
    with pytest.raises(ValueError, match="sigma_first applies only"):
        jd.schedules.optimize(den, (4, 2), 4, solver="euler", sigma_first=10.0, key=key)
    with pytest.raises(ValueError, match="init must start at inf exactly when"):
        jd.schedules.optimize(
            den,
            (4, 2),
            4,
            solver="euler",
            sigma_max=inf,
            init=jd.schedules.karras(4, 0.1, 10),
            key=key,
        )
    with pytest.raises(ValueError, match="init must be a grid of n \\+ 1 = 5 values"):
        jd.schedules.optimize(
            den, (4, 2), 4, solver="euler", sigma_max=inf, init=jd.schedules.flow(6), key=key
        )


def test_non_finite_steps_are_skipped_with_a_warning():
    """A step whose loss or gradient is not finite leaves the grid as it was (instead of
    turning it into NaN) and `optimize` says how many steps it skipped."""
    start = jd.schedules.karras(3, 0.002, 80.0)
    with pytest.warns(RuntimeWarning, match="2 of 2 steps skipped"):
        res = jd.schedules.optimize(
            lambda x, sigma: x * jnp.nan,
            (4, 2),
            3,
            solver="euler",
            iterations=2,
            reference_steps=4,
            key=jr.key(0),
        )
    np.testing.assert_allclose(res.sigmas, start, rtol=1e-6)
