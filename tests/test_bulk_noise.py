"""Noise drawn in bulk. `jd.solve_sde(..., key=)` draws its Brownian increments in chunks of
steps (one batched draw each) and scans the solver over them: the noise is still each step's
own draw (the key folded with the bits of the step's start time), so chunking changes nothing;
the increments are independent N(0, dt); the scan takes the same steps as diffrax's loop for
every solver. The fixed-grid driver's opt-in `noise=` hands samplers their steps' draws made a
chunk at a time: the same samples as with per-step keys."""

import itertools
import math

import diffrax as dfx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxdiff as jd
from jaxdiff import _fixed_grid as fixed_grid
from jaxdiff.sde import _solve as solve_mod
from jaxdiff.sde._brownian import DiffraxLoopPath, GridBrownianPath
from jaxdiff.sde._solve import chunking, step_grid

OU = jd.SDE(lambda t, x, a: -x, lambda t, x, a: jnp.ones_like(x), additive=True)
GBM = jd.SDE(lambda t, x, a: 0.5 * x, lambda t, x, a: 0.4 * x)
# one of each kind the scan runs: Euler, a Runge-Kutta method (Stratonovich), an SRK with Levy
# area (milstein, euler_heun, shark, sra1, spark take the same code paths; tests/test_sde.py
# solves with key= by euler_maruyama, milstein, heun and srk against exact moments)
SOLVERS = ["euler_maruyama", "heun", "srk"]


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks of 7 steps of a (16,) float32 state: several chunks and padded steps."""
    monkeypatch.setattr(solve_mod, "CHUNK_BYTES", 7 * 16 * 4)


def diffrax_loop(sde, x0, ts, key, dt, solver):
    """The same solve through `diffrax.diffeqsolve`, the noise drawn step by step."""
    levy = dfx.SpaceTimeLevyArea if solver in ("srk", "shark", "sra1", "spark") else None
    grid = jnp.asarray(step_grid(np.asarray(ts, np.float64), dt), jnp.float32)
    path = GridBrownianPath(grid, key, sde.noise_shape(x0), levy or dfx.BrownianIncrement)
    return jd.solve_sde(sde, x0, ts, brownian=DiffraxLoopPath(path), dt=dt, solver=solver)


def test_chunking_is_bounded_and_even():
    assert chunking(1000, 4096, 4 * 2**20) == (1, 1000)
    assert chunking(1000, 2**20, 4 * 2**20) == (250, 4)
    assert chunking(997, 4096, 256 * 4096) == (4, 250)  # 3 padded steps
    assert chunking(5, 10**9, 4 * 2**20) == (5, 1)  # a huge state: one step per chunk
    for n, b, budget in [(1, 8, 8), (64, 64, 448), (1000, 4096, 65536), (33, 5, 17)]:
        chunks, size = chunking(n, b, budget)
        assert chunks * size >= n > (chunks - 1) * size
        assert size * b <= max(budget, b) and chunks * size - n < chunks


def test_noise_is_each_steps_own_draw(tiny_chunks):
    # The stream: step k's increment is sqrt(dt) * normal(fold_in(key, bits(grid[k]))), as
    # before bulk draws (old seeds give the same paths). Reference: Euler-Maruyama in numpy
    # on those draws, over a grid whose steps are uneven (ts not multiples of dt).
    ts = np.array([0.0, 0.13, 0.5, 1.0])
    dt = 0.04
    x0 = jnp.linspace(-1.0, 1.0, 16, dtype=jnp.float32)
    key = jr.key(11)
    xs = jd.solve_sde(OU, x0, ts, key=key, dt=dt)
    grid = np.asarray(step_grid(ts, dt), np.float32)
    x = np.asarray(x0, np.float64)
    want = [x.copy()]
    for t0, t1 in itertools.pairwise(grid):
        k = jr.fold_in(key, jax.lax.bitcast_convert_type(jnp.float32(t0), jnp.uint32))
        h = float(t1) - float(t0)
        x = x - x * h + math.sqrt(h) * np.asarray(jr.normal(k, (16,), jnp.float32), np.float64)
        if np.any(np.isclose(t1, ts.astype(np.float32), rtol=0, atol=0)):
            want.append(x.copy())
    assert len(want) == 4
    np.testing.assert_allclose(np.asarray(xs), np.stack(want), atol=2e-5)


@pytest.mark.parametrize("solver", SOLVERS)
def test_scan_equals_diffrax_loop(tiny_chunks, solver):
    # Same key: the scan over chunks (7 steps each, 2 padded) gives the states of diffrax's
    # loop at every save time, for every solver (SRKs: the Levy area H as well).
    sde = GBM
    ts = np.array([0.0, 0.3, 0.35, 1.0])
    x0 = jnp.linspace(0.5, 1.5, 16, dtype=jnp.float32)
    fast = jd.solve_sde(sde, x0, ts, key=jr.key(3), dt=0.05, solver=solver)
    loop = diffrax_loop(sde, x0, ts, jr.key(3), 0.05, solver)
    assert fast.shape == (4, 16)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(loop), rtol=2e-5, atol=2e-6)


def test_which_solves_the_scan_runs():
    # the rest (other adjoints, other solvers) run diffrax's loop on the same per-step path
    assert solve_mod._scannable(dfx.Euler(), dfx.ForwardMode())
    assert solve_mod._scannable(dfx.SPaRK(), dfx.RecursiveCheckpointAdjoint())
    assert not solve_mod._scannable(dfx.Euler(), dfx.DirectAdjoint())
    assert not solve_mod._scannable(dfx.ReversibleHeun(), dfx.ForwardMode())


def test_increments_are_independent_normals(monkeypatch):
    # dx = dW saved at every step: the increments are N(0, dt), uncorrelated between
    # consecutive steps (inside a chunk and across chunk boundaries) and between paths.
    monkeypatch.setattr(solve_mod, "CHUNK_BYTES", 7 * 256 * 4)  # 6 chunks of 7 steps, 2 padded
    bm = jd.SDE(lambda t, x, a: jnp.zeros_like(x), lambda t, x, a: jnp.ones_like(x))
    n, dt = 40, 0.025
    ts = np.linspace(0.0, n * dt, n + 1)
    x0 = jnp.zeros((16, 16))  # 256 paths
    xs = jd.solve_sde(bm, x0, ts, key=jr.key(5), dt=dt)
    inc = np.asarray(xs[1:] - xs[:-1], np.float64).reshape(n, -1) / np.sqrt(dt)  # N(0, 1)
    m = inc.size
    assert abs(inc.mean()) < 5 / np.sqrt(m)
    assert abs(inc.var() - 1) < 5 * np.sqrt(2 / m)
    assert abs(np.mean(inc**4) - 3) < 5 * np.sqrt(96 / m)
    lag1 = np.mean(inc[1:] * inc[:-1])  # consecutive steps of one path
    assert abs(lag1) < 5 / np.sqrt(m)
    across = np.mean(inc[:, 1:] * inc[:, :-1])  # neighbouring paths at one step
    assert abs(across) < 5 / np.sqrt(m)
    per_step_var = inc.var(axis=1)  # every step, not only on average
    assert np.all(np.abs(per_step_var - 1) < 6 * np.sqrt(2 / inc.shape[1]))


def test_levy_area_statistics():
    # H ~ N(0, dt/12), independent of W ~ N(0, dt), drawn in bulk as step by step.
    shape = jax.ShapeDtypeStruct((256,), jnp.float32)
    grid = jnp.linspace(0.0, 1.0, 41)
    path = GridBrownianPath(grid, jr.key(6), shape, dfx.SpaceTimeLevyArea)
    w, h = jax.jit(lambda a, b: path.increments(a, b))(grid[:-1], grid[1:])
    dt = 1 / 40
    w, h = np.asarray(w, np.float64).ravel(), np.asarray(h, np.float64).ravel()
    m = w.size
    assert abs(w.var() / dt - 1) < 5 * np.sqrt(2 / m)
    assert abs(h.var() / (dt / 12) - 1) < 5 * np.sqrt(2 / m)
    assert abs(np.corrcoef(w, h)[0, 1]) < 5 / np.sqrt(m)
    one = jax.jit(lambda a, b: path.evaluate(a, b, use_levy=True))(grid[7], grid[8])
    np.testing.assert_allclose(np.asarray(one.W), w.reshape(40, 256)[7], rtol=1e-5, atol=1e-7)


def ou_moments(t, x0=1.0):
    return x0 * np.exp(-t), (1 - np.exp(-2 * t)) / 2


def test_ou_marginal_under_vmap_over_keys():
    # 16 keys x 256 paths: mean and variance of x(1) against the exact OU marginal, within
    # Monte Carlo error plus Euler-Maruyama's O(dt) bias.
    solver, dt = "euler_maruyama", 0.01
    ts = np.array([0.0, 0.5, 1.0])
    x0 = jnp.ones(256)
    run = jax.vmap(lambda k: jd.solve_sde(OU, x0, ts, key=k, dt=dt, solver=solver))
    keys = jr.split(jr.key(7), 16)
    xs = np.asarray(run(keys), np.float64)  # (16, 3, 256)
    for j, t in [(1, 0.5), (2, 1.0)]:
        x = xs[:, j].ravel()
        mean, var = ou_moments(t)
        bias = 2 * dt
        assert abs(x.mean() - mean) < 5 * np.sqrt(var / x.size) + bias
        assert abs(x.var() - var) < 5 * var * np.sqrt(2 / x.size) + bias
    # under vmap each key gives its own call's path
    one = jd.solve_sde(OU, x0, ts, key=keys[3], dt=dt, solver=solver)
    np.testing.assert_allclose(xs[3], np.asarray(one), atol=1e-6)


def test_same_key_same_path_jit_and_reverse_time():
    ts = np.array([1.0, 0.0])  # reverse time: solved forward in tau = -t
    x1 = jnp.ones(256)
    a = jd.solve_sde(OU, x1, ts, key=jr.key(8), dt=0.02)
    b = jd.solve_sde(OU, x1, ts, key=jr.key(8), dt=0.02)
    c = jax.jit(lambda k: jd.solve_sde(OU, x1, ts, key=k, dt=0.02))(jr.key(8))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=1e-6)
    # backward in time dx = -x dt + dW is dx = x dtau + dW: E = e, Var = (e^2 - 1) / 2
    x = np.asarray(a[-1], np.float64)
    assert abs(x.mean() - np.e) < 5 * np.sqrt((np.e**2 - 1) / 2 / x.size) + 0.05


def test_half_precision_pytree_state():
    # float16 and bfloat16 leaves, each with its own noise (drawn in its dtype), solved in
    # float32 and returned in their dtypes
    sde = jd.SDE(
        lambda t, x, a: {"u": -x["u"], "v": -x["v"]},
        lambda t, x, a: {"u": jnp.ones_like(x["u"]), "v": 0.5 * jnp.ones_like(x["v"])},
    )
    x0 = {"u": jnp.ones((16, 16), jnp.float16), "v": jnp.zeros(256, jnp.bfloat16)}
    xs = jd.solve_sde(sde, x0, np.array([0.0, 1.0]), key=jr.key(9), dt=0.02)
    assert xs["u"].dtype == jnp.float16 and xs["v"].dtype == jnp.bfloat16
    assert xs["u"].shape == (2, 16, 16) and xs["v"].shape == (2, 256)
    u = np.asarray(xs["u"][-1], np.float64).ravel()
    v = np.asarray(xs["v"][-1], np.float64)
    mean, var = ou_moments(1.0)
    assert abs(u.mean() - mean) < 5 * np.sqrt(var / u.size) + 0.03
    assert abs(u.var() / var - 1) < 5 * np.sqrt(2 / u.size) + 0.05
    assert abs(v.var() / (0.25 * var) - 1) < 5 * np.sqrt(2 / v.size) + 0.05
    assert abs(np.corrcoef(u, v)[0, 1]) < 5 / np.sqrt(u.size)  # leaves get their own noise


def test_reverse_mode_gradient_with_checkpointed_chunks(tiny_chunks):
    # For the linear OU, Euler-Maruyama gives d x_n / d x_0 = (1 - dt)^n on every path.
    x0 = jnp.ones(16)
    ts = np.array([0.0, 1.0])

    def loss(x):
        xs = jd.solve_sde(
            OU, x, ts, key=jr.key(10), dt=0.05, adjoint=dfx.RecursiveCheckpointAdjoint()
        )
        return jnp.sum(xs[-1])

    g = jax.grad(loss)(x0)
    np.testing.assert_allclose(np.asarray(g), 0.95**20, rtol=1e-5)


# -- samplers: opt-in bulk noise in the fixed-grid driver ---------------------------------------
S = jd.samplers
# one normal a step (as DDPM, DPM2Ancestral, DPMpp2SAncestral, DPMpp2MSDE, DPMpp3MSDE), one on
# the final step too, two a step
BULK_SAMPLERS = [S.EulerAncestral(), S.EDMStochastic(s_churn=10.0), S.DPMppSDE()]
MIXTURE = jd.analytic.GaussianMixture(
    jnp.array([[-1.0, 0.0], [1.0, 0.5]]), jnp.full((2, 2), 0.3**2)
)


def run_sampler(sampler, x, sigmas, key, *, bulk, return_trajectory=False):
    """`jd.sample`'s run of a sampler (as in `jaxdiff.samplers._core._run`), with the steps'
    noise drawn in bulk (`noise=sampler.step_noise`) or from each step's key."""
    sigmas = jnp.asarray(sigmas, x.dtype)

    def denoise(x_, sigma):
        return MIXTURE.denoiser(x_, sigma.astype(x_.dtype))

    def init(x_, key_):
        return x_, sampler.init_with_key(x_, sigmas, key_)

    def step(batch, x_, carry, i, key_, final):
        return sampler.step(denoise, x_, carry, i, sigmas, key_, final=final)

    noise = sampler.step_noise if bulk else None
    return jax.jit(
        lambda x_, k: fixed_grid.run(
            init, step, x_, sigmas, key=k, return_trajectory=return_trajectory, noise=noise
        )
    )(x, key)


@pytest.mark.parametrize("sampler", BULK_SAMPLERS, ids=lambda s: type(s).__name__)
def test_bulk_noise_samplers_draw_their_own_noise(monkeypatch, sampler):
    # Chunks of 3 steps of a (64, 2) state: the 8 scan steps in 3 chunks, 1 padded step. Bulk
    # draws are the steps' own draws: the same samples as the per-step keys.
    per_step = 2 if isinstance(sampler, S.DPMppSDE) else 1  # normals of x's shape a step
    monkeypatch.setattr(fixed_grid, "CHUNK_BYTES", 3 * per_step * 64 * 2 * 4)
    assert sampler.bulk_noise
    sigmas = np.append(np.geomspace(5.0, 0.05, 9), 0.0)
    x = 5.0 * jr.normal(jr.key(0), (64, 2))
    bulk, _ = run_sampler(sampler, x, sigmas, jr.key(1), bulk=True)
    keyed, _ = run_sampler(sampler, x, sigmas, jr.key(1), bulk=False)
    np.testing.assert_allclose(np.asarray(bulk), np.asarray(keyed), rtol=1e-4, atol=1e-4)
    assert not S.Euler().bulk_noise and not S.DPMpp2M().bulk_noise  # not opted in: keys


def test_bulk_noise_trajectory_and_per_sample_keys(monkeypatch):
    # one key: chunks of 4 steps of the (4, 2) state, 2 padded. Per-sample keys keep their
    # per-step draws (bit-for-bit the same whatever the batch), so noise= changes nothing.
    monkeypatch.setattr(fixed_grid, "CHUNK_BYTES", 4 * 4 * 2 * 4)
    sampler = S.EulerAncestral()
    sigmas = np.append(np.geomspace(5.0, 0.05, 11), 0.0)
    x = 5.0 * jr.normal(jr.key(2), (4, 2))
    for key in (jr.key(3), jd.per_sample_keys(jr.key(3), 4)):
        bulk, traj_b = run_sampler(sampler, x, sigmas, key, bulk=True, return_trajectory=True)
        _, traj_k = run_sampler(sampler, x, sigmas, key, bulk=False, return_trajectory=True)
        assert traj_b.shape == traj_k.shape == (12, 4, 2)
        np.testing.assert_allclose(np.asarray(traj_b), np.asarray(traj_k), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(bulk), np.asarray(traj_b[-1]))
    np.testing.assert_array_equal(np.asarray(traj_b), np.asarray(traj_k))  # per-sample keys
    # the per-step run is jd.sample's (run_sampler mirrors it)
    ours = jd.sample(MIXTURE.denoiser, x, sigmas, solver=sampler, key=key, return_trajectory=True)
    np.testing.assert_allclose(np.asarray(ours.trajectory), np.asarray(traj_k), atol=1e-5)
