"""The SDE core: orders of convergence against exact solutions, noise types, reverse time,
pytrees, jit/vmap, dtypes and input validation."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxdiff_test_utils import compiles

import jaxdiff as jd
from jaxdiff.sde._solve import _solve  # jd.solve_sde's compiled program

MU, SIG = 1.0, 0.5


def gbm(noise="diagonal"):
    return jd.SDE(lambda t, x, a: MU * x, lambda t, x, a: SIG * x, noise=noise)


def gbm_exact(x0, w, t):
    return x0 * jnp.exp((MU - 0.5 * SIG**2) * t + SIG * w)


def fitted_order(dts, errs):
    return np.polyfit(np.log(dts), np.log(errs), 1)[0]


def gbm_errors(solver, dts, *, n_paths=400, seed=0, noise="diagonal", dtype=None):
    """Strong (mean |error|) and weak (|mean error|) errors at T = 1 on one shared Brownian
    path, against the exact solution on that same path (as diffrax's own tests do)."""
    x0 = jnp.ones(n_paths, dtype)
    sde = gbm(noise)
    shape = sde.noise_shape(x0)
    bm = jd.DiscreteBrownianPath(jr.key(seed), 0.0, 1.0, round(1 / min(dts)), shape)
    exact = gbm_exact(x0, bm.evaluate(0.0, 1.0), 1.0)
    strong, weak = [], []
    for dt in dts:
        x1 = jd.solve_sde(sde, x0, jnp.array([0.0, 1.0]), brownian=bm, dt=dt, solver=solver)[-1]
        strong.append(float(jnp.mean(jnp.abs(x1 - exact))))
        weak.append(abs(float(jnp.mean(x1 - exact))))
    return np.array(strong), np.array(weak)


DTS = [2.0**-k for k in range(3, 7)]


@pytest.mark.parametrize(
    ("solver", "order"),
    [
        ("euler_maruyama", 0.5),
        ("milstein", 1.0),
        # Stratonovich solvers get the Itô-corrected drift; scalar-like (commutative) noise
        ("heun", 1.0),
        ("srk", 1.0),
    ],
)
def test_strong_order_gbm(dtype, solver, order):
    strong, _ = gbm_errors(solver, DTS, dtype=dtype)
    assert fitted_order(DTS, strong) == pytest.approx(order, abs=0.15)
    assert strong[-1] < 0.1


def test_shark_order_additive_noise(x64):
    # Additive noise: ShARK/SRA1 beat Euler–Maruyama's strong order 1 (at least 1.5),
    # measured against a fine ShARK solve on the same path (space-time Levy area is exact on
    # a DiscreteBrownianPath's grid).
    sde = jd.SDE(lambda t, x, a: -jnp.sin(x), lambda t, x, a: 0.5 * jnp.ones_like(x), additive=True)
    x0 = jnp.ones(200)
    bm = jd.DiscreteBrownianPath(jr.key(2), 0.0, 1.0, 2**9, sde.noise_shape(x0))
    ts = jnp.array([0.0, 1.0])
    ref = jd.solve_sde(sde, x0, ts, brownian=bm, dt=2**-9, solver="shark")[-1]
    dts = [2.0**-k for k in range(2, 6)]
    for solver, order in [("euler_maruyama", 1.0), ("shark", 1.5), ("sra1", 1.5)]:
        errs = [
            float(
                jnp.mean(
                    jnp.abs(jd.solve_sde(sde, x0, ts, brownian=bm, dt=dt, solver=solver)[-1] - ref)
                )
            )
            for dt in dts
        ]
        assert fitted_order(dts, errs) > order - 0.15, solver


def test_weak_order_euler_maruyama(x64):
    # The weak error E[X_N] - E[X_T] on shared paths; sampling noise cancels to first order
    # because both terms use the same Brownian paths.
    dts = [2.0**-k for k in range(2, 6)]
    _, weak = gbm_errors("euler_maruyama", dts, n_paths=4000, seed=1)
    assert fitted_order(dts, weak) == pytest.approx(1.0, abs=0.15)
    # E[X_N] for Euler–Maruyama on GBM is exactly (1 + mu dt)^N: check the finest level.
    assert weak[-1] == pytest.approx(np.e - (1 + dts[-1]) ** (1 / dts[-1]), rel=0.15)


def test_solver_instances_and_scalar_noise(x64):
    strong, _ = gbm_errors(dfx.ItoMilstein(), [2.0**-6], n_paths=4, noise="diagonal")
    assert strong[0] < 0.02
    # scalar noise: every component is driven by one Brownian motion
    sde = gbm("scalar")
    x0 = jnp.array([1.0, 2.0, 3.0])
    bm = jd.DiscreteBrownianPath(jr.key(3), 0.0, 1.0, 2**9, sde.noise_shape(x0))
    for solver in ["euler_maruyama", "milstein", "heun", "euler_heun", "srk", "spark"]:
        x1 = jd.solve_sde(sde, x0, jnp.array([0.0, 1.0]), brownian=bm, dt=2**-9, solver=solver)[-1]
        exact = gbm_exact(x0, bm.evaluate(0.0, 1.0), 1.0)
        assert jnp.allclose(x1, exact, rtol=0.05 if solver == "euler_maruyama" else 0.01)


def test_general_noise_is_exact_for_additive_noise(dtype):
    # dx = B dW with a 3-d Brownian motion driving a 2-d state: x(T) = x0 + B W(T) exactly.
    b = jnp.array([[1.0, 0.5, 0.0], [0.0, 2.0, -1.0]], dtype)
    sde = jd.SDE(lambda t, x, a: jnp.zeros_like(x), lambda t, x, a: b, noise="general", noise_dim=3)
    x0 = jnp.array([0.5, -1.0], dtype)
    ts = jnp.array([0.0, 0.5, 1.0])
    grid_path = jd.DiscreteBrownianPath(jr.key(0), 0.0, 1.0, 10, sde.noise_shape(x0))
    for solver in ["euler_maruyama", "heun", "srk"]:
        xs = jd.solve_sde(sde, x0, ts, brownian=grid_path, dt=0.1, solver=solver)
        assert xs.shape == (3, 2) and xs.dtype == dtype
        assert jnp.allclose(xs[-1], x0 + b @ grid_path.evaluate(0.0, 1.0), atol=1e-5)
    # a diffrax VirtualBrownianTree works as well
    tree = jd.brownian_tree(jr.key(0), 0.0, 1.0, sde.noise_shape(x0), tol=1e-3)
    xs = jd.solve_sde(sde, x0, ts, brownian=tree, dt=0.1)
    assert jnp.allclose(xs[-1], x0 + b @ tree.evaluate(0.0, 1.0), atol=1e-5)


def test_general_noise_multiplicative_matches_diagonal():
    # A general-noise SDE whose matrix is diagonal is the diagonal-noise SDE.
    diag = jd.SDE(lambda t, x, a: -x, lambda t, x, a: 0.3 * jnp.sin(x) + 0.5)
    gen = jd.SDE(
        lambda t, x, a: -x,
        lambda t, x, a: jnp.diag(0.3 * jnp.sin(x) + 0.5),
        noise="general",
        noise_dim=2,
    )
    x0 = jnp.array([0.3, 1.2])
    bm = jd.DiscreteBrownianPath(jr.key(4), 0.0, 1.0, 2**6, (2,))
    for solver in ["euler_maruyama", "heun"]:
        a = jd.solve_sde(diag, x0, jnp.array([0.0, 1.0]), brownian=bm, dt=2**-6, solver=solver)
        b = jd.solve_sde(gen, x0, jnp.array([0.0, 1.0]), brownian=bm, dt=2**-6, solver=solver)
        assert jnp.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("solver", ["euler_maruyama", "milstein", "heun", "srk"])
def test_reverse_time_solves_the_backward_ito_sde(solver):
    # Solved from t = 1 down to 0, dx = mu x dt + sig x dW is, in tau = 1 - t, the forward
    # GBM dx = -mu x dtau + sig x dW: E[x(0)] = x(1) e^{-mu}, E[x(0)^2] = e^{-2 mu + sig^2}.
    # A Stratonovich correction with the wrong sign would shift the mean by e^{sig^2}.
    n = 20000
    x1 = jnp.ones(n)
    xs = jd.solve_sde(gbm(), x1, jnp.array([1.0, 0.0]), key=jr.key(5), dt=2**-7, solver=solver)
    x0 = xs[-1]
    mean, se = float(jnp.mean(x0)), float(jnp.std(x0)) / np.sqrt(n)
    assert abs(mean - np.exp(-MU)) < 5 * se + 0.01
    m2 = float(jnp.mean(x0**2))
    assert m2 == pytest.approx(np.exp(-2 * MU + SIG**2), rel=0.04)


def test_ode_at_every_time(dtype):
    ode = jd.SDE(lambda t, x, a: a * x)
    ts = jnp.array([0.0, 0.3, 0.35, 1.0], dtype)
    xs = jd.solve_sde(ode, jnp.ones(3, dtype), ts, dt=0.05, solver="tsit5", args=-0.7)
    assert xs.shape == (4, 3) and xs.dtype == dtype
    assert jnp.allclose(xs[:, 0], jnp.exp(-0.7 * ts), rtol=1e-6 if dtype == jnp.float64 else 1e-5)
    # reverse-time ODE: back from t = 1 to 0 recovers the start
    back = jd.solve_sde(ode, xs[-1], ts[::-1], dt=0.05, solver="tsit5", args=-0.7)
    assert jnp.allclose(back[-1], 1.0, rtol=1e-5)
    assert jnp.allclose(back[::-1], xs, rtol=1e-5)


def test_steps_hit_every_save_time():
    # dx = dt: the solution equals t at every save time, and steps never exceed dt.
    ode = jd.SDE(lambda t, x, a: jnp.ones_like(x))
    ts = jnp.array([0.0, 0.013, 0.5, 0.51, 2.0])
    xs = jd.solve_sde(ode, jnp.zeros(1), ts, dt=0.1)
    assert jnp.allclose(xs[:, 0], ts, atol=1e-6)


def test_pytree_state_and_shared_path(dtype):
    sde = jd.SDE(
        lambda t, x, a: {"u": -x["u"], "v": 0.5 * x["v"]},
        lambda t, x, a: {"u": 0.2 * jnp.ones_like(x["u"]), "v": 0.1 * x["v"]},
    )
    x0 = {"u": jnp.ones((4, 2), dtype), "v": jnp.ones(3, dtype)}
    ts = jnp.linspace(0, 1, 5)
    bm = jd.DiscreteBrownianPath(jr.key(0), 0.0, 1.0, 200, sde.noise_shape(x0))
    outs = [
        jd.solve_sde(sde, x0, ts, brownian=bm, dt=dt, solver=s)
        for s in ["euler_maruyama", "milstein", "heun"]
        for dt in [0.01, 0.005]
    ]
    for out in outs:
        assert out["u"].shape == (5, 4, 2) and out["v"].shape == (5, 3)
        assert out["u"].dtype == dtype
        # one shared path: all solvers and step sizes agree closely
        assert jnp.allclose(out["u"], outs[-1]["u"], atol=0.02)
        assert jnp.allclose(out["v"], outs[-1]["v"], atol=0.02)
    fast = jd.solve_sde(sde, x0, ts, key=jr.key(1), dt=0.01)
    assert fast["v"].shape == (5, 3)


def test_jit_vmap_and_no_recompilation():
    sde = jd.SDE(lambda t, x, a: -x, lambda t, x, a: 0.5 * jnp.ones_like(x))
    ts = jnp.array([0.0, 1.0])
    x0, x1 = jnp.ones(8), jnp.full(8, 2.0)
    with compiles(_solve) as new:
        direct = jd.solve_sde(sde, x0, ts, key=jr.key(0), dt=0.01)
    assert new.count == 1  # a new SDE (its functions are static): the check sees the compile
    with compiles(_solve) as new:
        again = jd.solve_sde(sde, x1, ts, key=jr.key(1), dt=0.01)  # new key, new x0
    assert new.count == 0, f"a new key or x0 must not recompile ({new.count} compiles)"
    assert not jnp.allclose(direct, again)
    jitted = jax.jit(lambda k: jd.solve_sde(sde, x0, ts, key=k, dt=0.01))(jr.key(0))
    assert jnp.allclose(jitted, direct, atol=1e-6)
    keys = jr.split(jr.key(0), 3)
    batched = jax.vmap(lambda k: jd.solve_sde(sde, x0, ts, key=k, dt=0.01))(keys)
    assert batched.shape == (3, 2, 8)
    one = jd.solve_sde(sde, x0, ts, key=keys[1], dt=0.01)
    assert jnp.allclose(batched[1], one, atol=1e-6)
    over_x = jax.vmap(lambda x: jd.solve_sde(sde, x, ts, key=jr.key(0), dt=0.01))(jnp.ones((3, 8)))
    assert over_x.shape == (3, 2, 8)


def test_same_key_same_path():
    sde = gbm()
    a = jd.solve_sde(sde, jnp.ones(5), jnp.array([0.0, 1.0]), key=jr.key(7), dt=0.01)
    b = jd.solve_sde(sde, jnp.ones(5), jnp.array([0.0, 1.0]), key=jr.key(7), dt=0.01)
    assert jnp.array_equal(a, b)


# -- bad input ---------------------------------------------------------------------------------
OU = jd.SDE(lambda t, x, a: -x, lambda t, x, a: jnp.ones_like(x))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(ts=jnp.array([0.0, 1.0, 0.5])), ValueError, "ts must be strictly monotone"),
        (dict(ts=jnp.array([0.0])), ValueError, "ts must be a 1-D array with at least 2"),
        (dict(ts=jnp.zeros((2, 2))), ValueError, "ts must be a 1-D"),
        (dict(dt=0.0), ValueError, "dt must be > 0"),
        (dict(dt=-0.1), ValueError, "dt must be > 0"),
        (dict(solver="rk4"), ValueError, "unknown solver 'rk4'"),
        (dict(solver=3), TypeError, "solver must be"),
        (dict(key=None), ValueError, "needs key= .* or brownian="),
        (dict(brownian=jd.brownian_tree(jr.key(0), 0.0, 1.0, (3,))), ValueError, "pass key= or"),
        (dict(key=1234), TypeError, "key must be a JAX PRNG key"),
        (dict(solver="shark"), ValueError, "needs additive noise"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    call = dict(ts=jnp.array([0.0, 1.0]), key=jr.key(0), dt=0.1)
    call.update(kwargs)
    with pytest.raises(exc, match=match):
        jd.solve_sde(OU, jnp.ones(3), **call)


def test_bad_shapes_and_paths():
    bad_drift = jd.SDE(lambda t, x, a: x[:2], lambda t, x, a: jnp.ones_like(x))
    with pytest.raises(ValueError, match="drift.*must return the shape of x0"):
        jd.solve_sde(bad_drift, jnp.ones(3), jnp.array([0.0, 1.0]), key=jr.key(0), dt=0.1)
    bad_diff = jd.SDE(lambda t, x, a: x, lambda t, x, a: jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="diffusion.*must return"):
        jd.solve_sde(bad_diff, jnp.ones(3), jnp.array([0.0, 1.0]), key=jr.key(0), dt=0.1)
    with pytest.raises(ValueError, match="brownian has shape"):
        bm = jd.brownian_tree(jr.key(0), 0.0, 1.0, (4,))
        jd.solve_sde(OU, jnp.ones(3), jnp.array([0.0, 1.0]), key=None, brownian=bm, dt=0.1)
    with pytest.raises(ValueError, match=r"brownian covers \[0.0, 0.5\]"):
        bm = jd.brownian_tree(jr.key(0), 0.0, 0.5, (3,))
        jd.solve_sde(OU, jnp.ones(3), jnp.array([0.0, 1.0]), brownian=bm, dt=0.1)
    with pytest.raises(ValueError, match="Levy area"):
        bm = jd.brownian_tree(jr.key(0), 0.0, 1.0, (3,), levy_area=dfx.BrownianIncrement)
        jd.solve_sde(OU, jnp.ones(3), jnp.array([0.0, 1.0]), brownian=bm, dt=0.1, solver="srk")
    with pytest.raises(TypeError, match="brownian must be a diffrax Brownian path"):
        jd.solve_sde(OU, jnp.ones(3), jnp.array([0.0, 1.0]), brownian=jr.key(0), dt=0.1)
    with pytest.raises(TypeError, match="x0 must hold real floating-point"):
        jd.solve_sde(OU, jnp.ones(3, int), jnp.array([0.0, 1.0]), key=jr.key(0), dt=0.1)
    with pytest.raises(ValueError, match="ts must be concrete"):
        jax.jit(lambda ts: jd.solve_sde(OU, jnp.ones(3), ts, key=jr.key(0), dt=0.1))(
            jnp.array([0.0, 1.0])
        )
    with pytest.raises(TypeError, match="sde must be a jaxdiff.SDE"):
        jd.solve_sde(lambda t, x, a: x, jnp.ones(3), jnp.array([0.0, 1.0]), dt=0.1)


def test_bad_sde_construction():
    with pytest.raises(ValueError, match="noise must be one of"):
        jd.SDE(lambda t, x, a: x, lambda t, x, a: x, noise="colored")
    with pytest.raises(ValueError, match="noise_dim must be a positive int"):
        jd.SDE(lambda t, x, a: x, lambda t, x, a: x, noise="general")
    with pytest.raises(ValueError, match="noise_dim is only used"):
        jd.SDE(lambda t, x, a: x, lambda t, x, a: x, noise_dim=2)
    with pytest.raises(TypeError, match="drift must be callable"):
        jd.SDE(3.0, lambda t, x, a: x)
    with pytest.raises(TypeError, match="pytrees"):
        sde = jd.SDE(lambda t, x, a: x, lambda t, x, a: x, noise="scalar")
        jd.solve_sde(
            sde, {"a": jnp.ones(2), "b": jnp.ones(2)}, jnp.array([0.0, 1.0]), key=jr.key(0), dt=0.1
        )
    with pytest.raises(ValueError, match="milstein"):
        sde = jd.SDE(lambda t, x, a: x, lambda t, x, a: x[..., None], noise="general", noise_dim=1)
        jd.solve_sde(
            sde, jnp.ones(2), jnp.array([0.0, 1.0]), key=jr.key(0), dt=0.1, solver="milstein"
        )
    with pytest.raises(ValueError, match="unknown solver 'srk': expected one of the ODE solver"):
        jd.solve_sde(
            jd.SDE(lambda t, x, a: x), jnp.ones(2), jnp.array([0.0, 1.0]), dt=0.1, solver="srk"
        )


def test_discrete_brownian_path_statistics(x64):
    # Increments over unions of grid intervals are N(0, h) and their space-time Levy area is
    # N(0, h/12), independent of the increment; on the grid, increments add up.
    n = 20000
    bm = jd.DiscreteBrownianPath(jr.key(0), 0.0, 1.0, 16, (n,))
    inc = bm.evaluate(0.25, 0.75, use_levy=True)
    assert float(jnp.var(inc.W)) == pytest.approx(0.5, rel=0.05)
    assert float(jnp.var(inc.H)) == pytest.approx(0.5 / 12, rel=0.05)
    assert abs(float(jnp.corrcoef(inc.W, inc.H)[0, 1])) < 5 / np.sqrt(n)
    parts = bm.evaluate(0.25, 0.5) + bm.evaluate(0.5, 0.75)
    assert jnp.allclose(parts, inc.W)
    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        jd.DiscreteBrownianPath(jr.key(0), 0.0, 1.0, 0, (2,))


@pytest.mark.parametrize(
    ("solver", "order"), [("euler_maruyama", 0.5), ("milstein", 1.0), ("heun", 1.0)]
)
def test_strong_order_reverse_time_on_a_shared_path(x64, solver, order):
    # Reverse time with a given Brownian path: solved from t = 1 down to 0 with x(1) = 1, the
    # SDE dx = mu x dt + sig x dW has, in tau = 1 - t, the exact solution
    # x(0) = exp((-mu - sig^2/2) + sig (W(0) - W(1))) on the path W.
    n = 400
    sde = gbm()
    x1 = jnp.ones(n)
    bm = jd.DiscreteBrownianPath(jr.key(6), 0.0, 1.0, 2**6, sde.noise_shape(x1))
    exact = jnp.exp(-MU - 0.5 * SIG**2 + SIG * (bm.evaluate(0.0) - bm.evaluate(1.0)))
    dts = [2.0**-k for k in range(3, 7)]
    errs = [
        float(
            jnp.mean(
                jnp.abs(
                    jd.solve_sde(sde, x1, jnp.array([1.0, 0.0]), brownian=bm, dt=dt, solver=solver)[
                        -1
                    ]
                    - exact
                )
            )
        )
        for dt in dts
    ]
    # (Euler–Maruyama's fitted slope sits near 0.65 pre-asymptotically on these few levels,
    # forward as well; a wrong sign in the path reversal stops convergence altogether.)
    assert fitted_order(dts, errs) == pytest.approx(order, abs=0.25 if order == 0.5 else 0.15)


def test_reverse_time_levy_area_keeps_shark_order(x64):
    # Additive noise in reverse time: ShARK keeps order >= 1.5 only if the reversed path's
    # space-time Levy area has the right sign (it equals the forward one).
    sde = jd.SDE(lambda t, x, a: -jnp.sin(x), lambda t, x, a: 0.5 * jnp.ones_like(x), additive=True)
    x1 = jnp.ones(200)
    bm = jd.DiscreteBrownianPath(jr.key(7), 0.0, 1.0, 2**9, sde.noise_shape(x1))
    ts = jnp.array([1.0, 0.0])
    ref = jd.solve_sde(sde, x1, ts, brownian=bm, dt=2**-9, solver="shark")[-1]
    dts = [2.0**-k for k in range(2, 6)]
    errs = [
        float(
            jnp.mean(
                jnp.abs(jd.solve_sde(sde, x1, ts, brownian=bm, dt=dt, solver="shark")[-1] - ref)
            )
        )
        for dt in dts
    ]
    assert fitted_order(dts, errs) > 1.35


def test_single_step_levy_area_variance(x64):
    n = 20000
    bm = jd.DiscreteBrownianPath(jr.key(8), 0.0, 1.0, 8, (n,))
    one = bm.evaluate(0.25, 0.375, use_levy=True)  # exactly one grid step, h = 1/8
    assert float(jnp.var(one.H)) == pytest.approx(0.125 / 12, rel=0.05)
    assert float(jnp.var(one.W)) == pytest.approx(0.125, rel=0.05)


def test_non_sde_solver_instance_is_refused():
    with pytest.raises(TypeError, match="not an SDE solver"):
        jd.solve_sde(
            gbm(), jnp.ones(3), jnp.array([0.0, 1.0]), key=jr.key(0), dt=0.1, solver=dfx.Tsit5()
        )
    # for an ODE any diffrax solver is fine
    ode = jd.SDE(lambda t, x, a: -x)
    assert jd.solve_sde(
        ode, jnp.ones(3), jnp.array([0.0, 1.0]), dt=0.1, solver=dfx.Tsit5()
    ).shape == (2, 3)


def test_more_bad_input():
    with pytest.raises(TypeError, match="dt must be a real number"):
        jd.solve_sde(OU, jnp.ones(3), jnp.array([0.0, 1.0]), key=jr.key(0), dt="0.1")
    for keys in (jr.split(jr.key(0), 2), jr.split(jr.PRNGKey(0), 2)):  # typed and raw keys
        with pytest.raises(ValueError, match="key must be one PRNG key"):
            jd.solve_sde(OU, jnp.ones(3), jnp.array([0.0, 1.0]), key=keys, dt=0.1)
    with pytest.raises(ValueError, match="too small for ts"):
        jd.solve_sde(OU, jnp.ones(3), jnp.array([80.0, 79.99]), key=jr.key(0), dt=2e-6)
    assert jd.DiscreteBrownianPath(jr.key(0), 0.0, 1.0, np.int64(4), (2,)).w.shape == (5, 2)
