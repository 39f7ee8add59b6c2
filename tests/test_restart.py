"""Restart sampling (Xu et al. 2023).

Oracles: `k = 0` is the base sampler exactly; an independent numpy loop (main grid, snapping,
jumps with the documented noise, Karras sub-grids, Heun and DPM-Solver++(2M) steps written
out) reproduces `jd.sample` to 1e-10 in float64 on the exact denoiser of a 2-D mixture, and
the sequence of noise levels at which it calls the denoiser; the denoiser calls counted at run
time equal `num_evaluations`; one compiled program; per-sample keys; a traced grid; a grid
from inf; bad options. Distribution claims (Restart against Heun and EDM's stochastic sampler
at equal NFE) are left to `benchmarks/restart.py`: at test sizes the sampling noise of the
distances is as large as the differences.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import karras_np
from jaxdiff_test_utils import compiles

import jaxdiff as jd
from jaxdiff.samplers._core import _sample  # jd.sample's compiled program
from jaxdiff.samplers._restart import Restart, restart_index

S = jd.samplers


def _mixture():
    # three overlapping components in 2-D
    means = jnp.array([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]])
    return jd.analytic.GaussianMixture(means, jnp.full((3, 2), 0.4**2))


# --- an independent numpy reference ------------------------------------------------------------


class HeunNP:
    """Heun's method (an Euler step to sigma = 0)."""

    def start(self):
        pass

    def step(self, den, x, s, s_next, final):
        d = (x - den(x, s)) / s
        x_euler = x + (s_next - s) * d
        if final:
            return x_euler
        d_next = (x_euler - den(x_euler, s_next)) / s_next
        return x + (s_next - s) * (d + d_next) / 2


class DPMpp2MNP:
    """DPM-Solver++(2M): first order without history and to sigma = 0."""

    def start(self):
        self.prev = None  # (D, sigma) of the previous step of this run

    def step(self, den, x, s, s_next, final):
        d = den(x, s)
        if final:
            return d
        h = np.log(s / s_next)
        if self.prev is None:
            d_eff = d
        else:
            r = np.log(self.prev[1] / s) / h
            d_eff = (1 + 1 / (2 * r)) * d - 1 / (2 * r) * self.prev[0]
        self.prev = (d, s)
        return (s_next / s) * x - np.expm1(-h) * d_eff


def restart_np(den, x, sigmas, intervals, noise, base, s_noise=1.0):
    """Restart written out: the main pass of `base` over `sigmas`; interval j snaps to the
    interior sigma nearest its sigma_min; after the main pass reaches it, k times: a jump
    x + sqrt(smax^2 - s^2) s_noise eps with eps = noise(i, j, r), then `base` from a fresh
    start over the rho = 7 Karras grid smax -> s of n_restart steps; then the main pass resumes
    afresh. An interval whose smax is not above its snapped sigma is skipped."""
    n = len(sigmas) - 1
    snapped = [1 + int(np.argmin(np.abs(sigmas[1:-1] - iv[2]))) for iv in intervals]
    base.start()
    for i in range(n):
        x = base.step(den, x, sigmas[i], sigmas[i + 1], final=i == n - 1)
        if i == n - 1:
            break
        for j, (n_restart, k, _, smax) in enumerate(intervals):
            lo = sigmas[i + 1]
            if k == 0 or snapped[j] != i + 1 or not smax > lo:
                continue
            ramp = np.arange(n_restart + 1) / n_restart
            sub = (smax ** (1 / 7) + ramp * (lo ** (1 / 7) - smax ** (1 / 7))) ** 7
            sub[0], sub[-1] = smax, lo
            for r in range(k):
                x = x + np.sqrt(smax**2 - lo**2) * s_noise * noise(i, j, r)
                base.start()
                for m in range(n_restart):
                    x = base.step(den, x, sub[m], sub[m + 1], final=False)
            base.start()
    return x


def _noise(key, shape):
    """The documented noise: normal(fold_in(fold_in(fold_in(key, i), j), r))."""

    def eps(i, j, r):
        k = jr.fold_in(jr.fold_in(jr.fold_in(key, i), j), r)
        return np.asarray(jr.normal(k, shape, jnp.float64))

    return eps


_denoise = jax.jit(lambda gm, x, sigma: gm.denoiser(x, sigma))


def _np_denoiser(gm, log=None):
    """The exact denoiser on numpy arrays (compiled once per shape), logging each sigma."""

    def den(x, sigma):
        if log is not None:
            log.append(float(sigma))
        return np.asarray(_denoise(gm, jnp.asarray(x), jnp.asarray(sigma)))

    return den


# karras_np(12): 80, 47.8, 27.4, 15.0, 7.75, 3.74, 1.65, 0.658, 0.227, 0.065, 0.0141, 0.002, 0
INTERVALS = (
    (3, 2, 0.14, 0.30),  # snaps to 0.065 (index 9)
    (2, 1, 1.5, 3.0),  # snaps to 1.65 (index 6)
    (1, 1, 0.1, 0.5),  # snaps to 0.065 as well: runs after the first
    (2, 1, 25.0, 26.0),  # snaps to 27.4 > 26: skipped
    (4, 0, 0.5, 1.0),  # k = 0
)


def test_snapping_of_the_test_intervals(x64):
    sigmas = jnp.asarray(karras_np(12))
    assert [int(restart_index(sigmas, iv[2])) for iv in INTERVALS] == [9, 6, 9, 2, 7]
    assert karras_np(12)[2] > 26.0
    # the interior only: 0 and sigma_max are never restart points
    assert int(restart_index(sigmas, 1e-6)) == 11
    assert int(restart_index(sigmas, 1e3)) == 1


def _counting(gm, log):
    """The exact denoiser, recording the sigma of every call (at run time, in order)."""

    def den(x, sigma):
        jax.debug.callback(lambda s: log.append(float(s)), sigma, ordered=True)
        return gm.denoiser(x, sigma)

    return den


@pytest.mark.parametrize(
    ("base", "base_np", "intervals"),
    [(S.Heun(), HeunNP(), INTERVALS), (S.DPMpp2M(), DPMpp2MNP(), INTERVALS[:3])],
    ids=["heun", "2m"],
)
def test_matches_numpy_loop_and_counted_evaluations(x64, base, base_np, intervals):
    gm, sigmas = _mixture(), karras_np(12)
    x = sigmas[0] * np.random.default_rng(0).standard_normal((32, 2))
    key = jr.key(7)
    solver = Restart(base, intervals=intervals, s_noise=1.1)
    log, log_np = [], []
    counting = _counting(gm, log)
    ours = jd.sample(counting, jnp.asarray(x), sigmas, solver=solver, key=key)
    ours = jax.block_until_ready(ours)
    noise = _noise(key, x.shape)
    den_np = _np_denoiser(gm, log_np)
    theirs = restart_np(den_np, x, sigmas, intervals, noise, base_np, s_noise=1.1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
    # the denoiser is called at the same levels, in the same order; as many times as
    # num_evaluations counts, less the skipped interval (sigma_max below its snapped sigma)
    # (to float32: the callback's thread may see the levels without x64)
    np.testing.assert_allclose(log, log_np, rtol=1e-6)
    # (2, 1, 25.0, 26.0): 2 non-final steps, once
    skipped = base.nfe(3) - base.nfe(1) if intervals == INTERVALS else 0
    assert len(log) == S.num_evaluations(solver, sigmas) - skipped
    # the restarts ran: without them the sample is far from this one
    plain = restart_np(_np_denoiser(gm), x, sigmas, (), noise, base_np)
    assert np.max(np.abs(ours - plain)) > 0.1
    # one program: a new key (or new noise) does not recompile
    with compiles(_sample) as new:
        other = jd.sample(counting, jnp.asarray(x), sigmas, solver=solver, key=jr.key(9))
    assert new.count == 0
    assert float(jnp.max(jnp.abs(other - ours))) > 1e-3  # the key matters


def test_grid_from_inf(x64):
    # the sampler runs on sigmas[1:] after the first step x_1 = D(z, inf) + sigma_1 z; its
    # step i (and the noise of its jumps) counts from there; NFE 1 + nfe(n - 1)
    gm, rest = _mixture(), karras_np(12)[1:]
    z = np.random.default_rng(1).standard_normal((32, 2))
    key, intervals = jr.key(8), INTERVALS[:1]
    solver = Restart(intervals=intervals)
    log = []
    grid = np.concatenate([[np.inf], rest])
    ours = jd.sample(_counting(gm, log), jnp.asarray(z), grid, solver=solver, key=key)
    ours = jax.block_until_ready(ours)
    den = _np_denoiser(gm)
    x_1 = den(z, np.inf) + rest[0] * z
    theirs = restart_np(den, x_1, rest, intervals, _noise(key, z.shape), HeunNP())
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
    assert len(log) == S.num_evaluations(solver, grid) == 1 + solver.nfe(11)


@pytest.mark.parametrize("base", [S.Heun(), S.DPMpp2M()], ids=["heun", "2m"])
def test_k_zero_is_the_base_sampler(x64, base):
    gm, sigmas = _mixture(), karras_np(10)
    x = 80.0 * jr.normal(jr.key(0), (16, 2), jnp.float64)
    plain = jd.sample(gm.denoiser, x, sigmas, solver=base)
    solver = Restart(base, intervals=((3, 0, 0.14, 0.3), (2, 0, 1.0, 2.0)))
    out = jd.sample(gm.denoiser, x, sigmas, solver=solver, key=jr.key(1))
    np.testing.assert_array_equal(out, plain)
    assert solver.nfe(10) == base.nfe(10)
    # no interval at all: the same code path (nothing to restart)
    assert Restart(base, intervals=())._active == solver._active == ()


def test_nfe_formula():
    heun = Restart(S.Heun(), intervals=((3, 2, 0.14, 0.3), (8, 1, 0.1, 1.0)))
    assert heun.nfe(18) == 35 + 2 * 3 * 2 + 1 * 8 * 2  # Heun: 2 per non-final step
    dpm = Restart("dpmpp_2m", intervals=((3, 2, 0.14, 0.3),))
    assert isinstance(dpm.base, S.DPMpp2M)
    assert dpm.nfe(18) == 18 + 2 * 3
    assert heun.nfe(1) == 1  # one step: no interior sigma, no restart
    # the default: one pass of 12 Heun steps (24 NFE); 18 main steps make Heun's 30-step 59
    assert Restart().intervals == ((12, 1, 0.1, 2.0),)
    assert Restart().nfe(18) == S.Heun().nfe(30) == 59


# --- the program -------------------------------------------------------------------------------


def test_per_sample_keys():
    # each sample's result depends on its own key and noise only, not on the rest of the
    # batch (here: the batch shuffled); new keys do not recompile
    gm = jd.analytic.ring()
    sigmas = jnp.asarray(karras_np(8), jnp.float32)
    solver = Restart(intervals=((2, 2, 0.1, 1.0),))
    x = 80 * jr.normal(jr.key(0), (8, 2))
    keys = jd.per_sample_keys(jr.key(3), 8)
    full = jd.sample(gm.denoiser, x, sigmas, solver=solver, key=keys)
    perm = np.array([3, 7, 0, 5, 1, 6, 2, 4])
    with compiles(_sample) as new:
        shuffled = jd.sample(gm.denoiser, x[perm], sigmas, solver=solver, key=keys[perm])
        other = jd.sample(
            gm.denoiser, x, sigmas, solver=solver, key=jd.per_sample_keys(jr.key(4), 8)
        )
    assert new.count == 0
    np.testing.assert_allclose(shuffled, full[perm], rtol=1e-6, atol=1e-6)
    assert bool(jnp.all(jnp.isfinite(full)))
    assert float(jnp.min(jnp.max(jnp.abs(other - full), axis=-1))) > 1e-4  # every key matters


def test_traced_grid_under_jit(x64):
    # the restart points are found from the grid's values inside the program
    gm, sigmas = _mixture(), karras_np(12)
    x = 80.0 * np.random.default_rng(2).standard_normal((16, 2))
    key, intervals = jr.key(1), INTERVALS[:1]
    solver = Restart(intervals=intervals)
    traced = jax.jit(lambda s: jd.sample(gm.denoiser, jnp.asarray(x), s, solver=solver, key=key))(
        jnp.asarray(sigmas)
    )
    theirs = restart_np(_np_denoiser(gm), x, sigmas, intervals, _noise(key, x.shape), HeunNP())
    np.testing.assert_allclose(traced, theirs, rtol=1e-10, atol=1e-10)


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"intervals": ((0, 1, 0.1, 1.0),)}, r"intervals\[0\]: n_restart must be an int >= 1"),
        ({"intervals": ((2.5, 1, 0.1, 1.0),)}, "n_restart must be an int"),
        ({"intervals": ((2, 1, 0.1, 1.0), (2, -1, 0.1, 1.0))}, r"intervals\[1\]: k must be"),
        ({"intervals": ((2, 1, 1.0, 0.5),)}, "sigma_min must be < sigma_max"),
        ({"intervals": ((2, 1, 0.0, 0.5),)}, "sigma_min must be a finite number > 0"),
        ({"intervals": ((2, 1, 0.1, float("inf")),)}, "sigma_max must be a finite number"),
        ({"intervals": ((2, 1, float("nan"), 1.0),)}, "sigma_min must be a finite number"),
        ({"intervals": (2, 1, 0.1, 1.0)}, "intervals must be a tuple of"),
        ({"intervals": ((2, 1, 0.1),)}, "intervals must be a tuple of"),
        ({"s_noise": -1.0}, "s_noise must be >= 0"),
        ({"base": S.EulerAncestral()}, "base must be a deterministic sampler"),
        ({"base": "dpmpp_2m_sde"}, "base must be a deterministic sampler"),
        ({"base": S.DDIM(eta=1.0)}, "base must be a deterministic sampler"),
        ({"base": "no_such_sampler"}, "unknown base"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        Restart(**options)


def test_options_accepted():
    solver = Restart("euler", intervals=[[2, 1, np.float32(0.1), 1]], s_noise=0.0)
    assert isinstance(solver.base, S.Euler) and solver.stochastic
    assert solver.intervals == ((2, 1, pytest.approx(0.1), 1),)
    hash(solver.intervals)  # static: hashable
    assert isinstance(Restart().base, S.Heun)
    with pytest.raises(TypeError, match="base must"):
        Restart(base=3)
