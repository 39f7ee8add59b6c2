"""DPM-Solver-v3 (Zheng, Lu, Chen & Zhu 2023) and the estimator of its empirical model statistics.

Oracles: with degenerated statistics (l = 1, s = b = 0) the DPM-Solver++ samplers on identical
inputs (DPMpp2M, DPMpp3M with the exact third-order weight) to 1e-12 in float64; general
statistics (linear in lambda, where the solver's quadrature is exact) against an independent
numpy loop of the paper's formulas (global cumulative trapezoids on a fine lambda grid, as the
official code integrates); for Gaussian data, the statistics in closed form
(l = sigma^2 / (v + sigma^2), s = 0, b = 2 l (1 - l) mu) and the first-order solver on them
exact along the probability-flow ODE (DDIM is not); on the 2-D ring, estimated statistics at
least halve the error of the degenerated ones at NFE 8 (measured: 0.15x); one compiled program,
new statistics do not recompile; a grid from inf; bad options and mismatched statistics.
"""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import karras_np
from jaxdiff_test_utils import compiles

import jaxdiff as jd
from jaxdiff.samplers._core import _sample  # jd.sample's compiled program
from jaxdiff.samplers._dpm_solver_v3 import DPMSolverV3, DPMSolverV3Statistics
from jaxdiff.samplers._dpm_solver_v3_statistics import _estimate, estimate_statistics

S = jd.samplers


def ring64():
    return jd.analytic.ring(dtype=jnp.float64)


def gaussian64():
    mu = jnp.array([[0.5, -1.0]])
    var = jnp.array([[0.3, 1.5]])
    return jd.analytic.GaussianMixture(mu, var), np.asarray(mu[0]), np.asarray(var[0])


# --- degenerated statistics: DPM-Solver++ ---------------------------------------------------


@pytest.mark.parametrize(
    "v3, peer",
    [
        (
            DPMSolverV3.degenerated(order=2, use_corrector=False, solver_type="midpoint"),
            S.DPMpp2M(),
        ),
        (
            DPMSolverV3.degenerated(order=3, use_corrector=False),
            S.DPMpp3M(solver_type="heun", exact_third_order=True),
        ),
    ],
    ids=["dpmpp_2m", "dpmpp_3m_heun"],
)
def test_degenerated_is_dpm_solver_pp(x64, v3, peer):
    gm = ring64()
    x = 80.0 * jr.normal(jr.key(0), (64, 2), jnp.float64)
    sigmas = karras_np(8)
    ours = jd.sample(gm.denoiser, x, sigmas, solver=v3, return_trajectory=True)[1]
    theirs = jd.sample(gm.denoiser, x, sigmas, solver=peer, return_trajectory=True)[1]
    scale = np.max(np.abs(np.asarray(theirs)), axis=(1, 2), keepdims=True)
    np.testing.assert_array_less(np.abs(np.asarray(ours - theirs)) / scale, 1e-12)


def test_degenerated_from_inf_grid(x64):
    # DPMpp3M's midpoint variant, from pure noise and without lowering the order at the end
    gm = ring64()
    z = jr.normal(jr.key(1), (32, 2), jnp.float64)
    sigmas = np.concatenate([[np.inf], karras_np(7)[1:]])
    v3 = DPMSolverV3.degenerated(
        order=3, use_corrector=False, solver_type="midpoint", lower_order_final=False
    )
    peer = S.DPMpp3M(solver_type="midpoint", exact_third_order=True, lower_order_final=False)
    ours = jd.sample(gm.denoiser, z, sigmas, solver=v3, return_trajectory=True)[1]
    theirs = jd.sample(gm.denoiser, z, sigmas, solver=peer, return_trajectory=True)[1]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    assert jd.samplers.num_evaluations(v3, sigmas) == 7


# --- general statistics against an independent numpy loop ------------------------------------


def v3_numpy(den, x, sigmas, table, *, order, use_corrector, c_pseudo, p_pseudo, lof, fine=4000):
    """DPM-Solver-v3 written out from the paper's formulas in sigma-space (alpha = 1): L, S,
    B = int e^{-S} b, I = int e^{L+S}, C = int e^{L+S} B as cumulative trapezoids from the first
    grid point on a fine lambda grid (`fine` pieces per step, the grid points among them);
    g_k = e^{S_s - S_k} f_k - e^{S_s} (B_k - B_s) with f = (x - D) - l x;
    x_t = e^{L_s - L_t} x_s - e^{-L_t - S_s} (I_t - I_s) g_s
    - e^{-L_t} (C_t - C_s - B_s (I_t - I_s))
    - sum_j e^{L_s - L_t} int e^{L + S - L_s - S_s} (lam - lam_s)^j / j! g^(j), the derivatives
    from the interpolating polynomial (or divided differences, pseudo); predictor, then the
    corrector at the next point holding f there fixed; the last step returns D."""
    lam_tab, l_tab, s_tab, b_tab = (np.asarray(a) for a in table)
    n = len(sigmas) - 1
    lam_nodes = -np.log(sigmas[:-1])
    pieces = [np.linspace(lam_nodes[m], lam_nodes[m + 1], fine + 1)[:-1] for m in range(n - 1)]
    lf = np.concatenate([*pieces, lam_nodes[-1:]])

    def interp(tab):
        return np.stack([np.interp(lf, lam_tab, tab[:, k]) for k in range(tab.shape[1])], -1)

    lv, sv, bv = interp(l_tab), interp(s_tab), interp(b_tab)

    def cumtrapz(y):
        out = np.zeros_like(y)
        out[1:] = np.cumsum(0.5 * np.diff(lf)[:, None] * (y[1:] + y[:-1]), axis=0)
        return out

    big_l, big_s = cumtrapz(lv), cumtrapz(sv)
    big_b = cumtrapz(np.exp(-big_s) * bv)
    big_i = cumtrapz(np.exp(big_l + big_s))
    big_c = cumtrapz(np.exp(big_l + big_s) * big_b)

    def g(f, a, k):
        ia, ik = a * fine, k * fine
        return np.exp(big_s[ia] - big_s[ik]) * f - np.exp(big_s[ia]) * (big_b[ik] - big_b[ia])

    def update(a, t, x_a, pts, fs, pseudo):
        ia, it = a * fine, t * fine
        gs = [g(f, a, k) for f, k in zip(fs, pts, strict=True)]
        lams = np.array([lf[k * fine] for k in pts])
        x_t = (
            np.exp(big_l[ia] - big_l[it]) * x_a
            - np.exp(-big_l[it] - big_s[ia]) * (big_i[it] - big_i[ia]) * gs[0]
            - np.exp(-big_l[it]) * (big_c[it] - big_c[ia] - big_b[ia] * (big_i[it] - big_i[ia]))
        )
        m = len(pts) - 1
        if m == 0:
            return x_t
        if pseudo:
            table_, derivs = list(gs), []
            for i in range(1, m + 1):
                table_ = [
                    (table_[j] - table_[j + 1]) / (lams[j] - lams[j + i]) for j in range(m + 1 - i)
                ]
                derivs.append(table_[0] * math.factorial(i))
        else:
            vander = (lams[1:, None] - lams[0]) ** np.arange(1, m + 1)[None, :]
            rhs = np.stack([gk - gs[0] for gk in gs[1:]]).reshape(m, -1)
            sol = np.linalg.solve(vander, rhs).reshape((m, *x_a.shape))
            derivs = [sol[j - 1] * math.factorial(j) for j in range(1, m + 1)]
        seg = slice(ia, it + 1)
        base = np.exp(big_l[seg] + big_s[seg] - big_l[ia] - big_s[ia])
        for j in range(1, m + 1):
            poly = ((lf[seg] - lf[ia]) ** j / math.factorial(j))[:, None]
            coef = np.trapezoid(base * poly, lf[seg], axis=0)
            x_t = x_t - np.exp(big_l[ia] - big_l[it]) * coef * derivs[j - 1]
        return x_t

    xs, fs = [], []
    p_prev = 0
    for i in range(n):
        d = den(x, sigmas[i])
        if i == n - 1:
            return d
        f = (x - d) - lv[i * fine] * x
        c = p_prev + int(c_pseudo)
        if use_corrector and i > 0 and c > 1:
            pts = [i - 1, i] + [i - 1 - k for k in range(1, c - 1)]
            fpts = [fs[-1], f] + [fs[-1 - k] for k in range(1, c - 1)]
            x = update(i - 1, i, xs[-1], pts, fpts, c_pseudo)
        xs.append(x)
        fs.append(f)
        p = min(order, i + 1)
        if lof:
            p = min(p, n - i)
        x = update(i, i + 1, x, [i - k for k in range(p)], [fs[-1 - k] for k in range(p)], p_pseudo)
        p_prev = p


def linear_statistics(sigmas):
    """Statistics linear in lambda (per dimension) on a 2-point table spanning the grid."""
    lam = -np.log(np.array([sigmas[0], sigmas[-2]]))
    t = (lam - lam[0]) / (lam[1] - lam[0])
    l_tab = np.stack([0.9 + 0.2 * t, 0.7 + 0.5 * t], -1)
    s_tab = np.stack([0.3 - 0.4 * t, -0.2 + 0.1 * t], -1)
    b_tab = np.stack([0.2 + 0.3 * t, -0.4 + 0.6 * t], -1)
    return lam, l_tab, s_tab, b_tab


@pytest.mark.parametrize(
    "options",
    [
        dict(order=3, use_corrector=True, c_pseudo=True, p_pseudo=False, lower_order_final=True),
        dict(order=3, use_corrector=True, c_pseudo=False, p_pseudo=True, lower_order_final=False),
    ],
    ids=["o3_pc_pseudo", "o3_pseudo_p_c_nolof"],
)
def test_matches_numpy_loop(x64, options):
    gm = ring64()
    x = 80.0 * jr.normal(jr.key(4), (16, 2), jnp.float64)
    sigmas = karras_np(7)
    table = linear_statistics(sigmas)
    stats = DPMSolverV3Statistics(*table)
    ours = jd.sample(gm.denoiser, x, sigmas, solver=DPMSolverV3(stats, **options))
    np_den = lambda x_, s_: np.asarray(gm.denoiser(jnp.asarray(x_), jnp.asarray(s_)))
    np_options = {k: v for k, v in options.items() if k != "lower_order_final"}
    np_options["lof"] = options["lower_order_final"]
    ref = v3_numpy(np_den, np.asarray(x), sigmas, table, **np_options)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    # the test can fail: the degenerated statistics give another answer
    lam = table[0]
    flat = (lam, np.ones((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)))
    other = v3_numpy(np_den, np.asarray(x), sigmas, flat, **np_options)
    assert np.max(np.abs(other - ref)) > 1e-3


# --- Gaussian data: closed-form statistics, exact first-order solver --------------------------


@functools.cache
def gaussian_statistics():
    """The estimated statistics of `gaussian64()` (float64), computed once."""
    with jax.enable_x64(True):
        gm, _, _ = gaussian64()
        stats = estimate_statistics(
            gm.denoiser, gm.sample(jr.key(5), 64), jr.key(6), num_lambdas=401
        )
        return tuple(np.asarray(a) for a in (stats.lambdas, stats.l, stats.s, stats.b))


def test_gaussian_statistics_closed_form(x64):
    # N(mu, diag v): D = mu + v / (v + sigma^2) (x - mu), so l = 1 - v / (v + sigma^2) (the
    # Jacobian is diagonal: Rademacher probes are exact), f = (x - D) - l x = -l mu
    # (deterministic: s = 0), b = f' = -l' mu = 2 l (1 - l) mu (l' differentiated exactly)
    _, mu, var = gaussian64()
    lambdas, l_est, s_est, b_est = gaussian_statistics()
    sigma = np.exp(-lambdas)[:, None]
    l_exact = sigma**2 / (var + sigma**2)
    np.testing.assert_allclose(l_est, l_exact, rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(s_est)) < 1e-4
    np.testing.assert_allclose(b_est, 2 * l_exact * (1 - l_exact) * mu, rtol=1e-6, atol=1e-9)


def test_gaussian_first_order_exact(x64):
    # with l, s, b of the data the linear part of the ODE is the whole ODE: order 1 follows
    # the exact flow x(sigma) = mu + (x_T - mu) sqrt((v + sigma^2) / (v + sigma_T^2)) up to the
    # piecewise-linear interpolation of the statistics, while DDIM (= degenerated order 1) is
    # far off
    gm, mu, var = gaussian64()
    stats = DPMSolverV3Statistics(*gaussian_statistics())
    sigmas = karras_np(6)
    x = 80.0 * jr.normal(jr.key(9), (32, 2), jnp.float64)
    exact = mu + (np.asarray(x) - mu) * np.sqrt(
        (var + sigmas[:-1, None, None] ** 2) / (var + sigmas[0] ** 2)
    )

    def error(solver):
        traj = jd.sample(gm.denoiser, x, sigmas, solver=solver, return_trajectory=True)[1]
        return np.max(np.abs(np.asarray(traj[:-1]) - exact))

    err_v3 = error(DPMSolverV3(stats, order=1, use_corrector=False))
    # DDIM (= degenerated order 1), in numpy: x <- x + (sigma' - sigma) (x - D) / sigma
    xs, x_np = [], np.asarray(x)
    for sigma, sigma_next in itertools.pairwise(sigmas[:-1]):
        xs.append(x_np)
        d = np.asarray(gm.denoiser(jnp.asarray(x_np), jnp.asarray(sigma)))
        x_np = x_np + (sigma_next - sigma) * (x_np - d) / sigma
    err_ddim = np.max(np.abs(np.stack([*xs, x_np]) - exact))
    assert err_v3 < 1e-3 * err_ddim and err_v3 < 1e-3, (err_v3, err_ddim)


# --- the estimator ----------------------------------------------------------------------------


RING_DATA, RING_LAMBDAS = 512, 100


@functools.cache
def ring_statistics(seed):
    """Statistics of the ring (float32) from 512 of its samples on 100 lambdas."""
    gm = jd.analytic.ring()
    data = gm.sample(jr.key(10), RING_DATA)
    return estimate_statistics(gm.denoiser, data, jr.key(seed), num_lambdas=RING_LAMBDAS)


def test_statistics_deterministic_given_key():
    gm = jd.analytic.ring()
    a = ring_statistics(11)
    data = gm.sample(jr.key(10), RING_DATA)
    with compiles(_estimate) as new:  # one program: the same key again, or new data
        b = estimate_statistics(gm.denoiser, data, jr.key(11), num_lambdas=RING_LAMBDAS)
        c = estimate_statistics(gm.denoiser, data + 0.1, jr.key(11), num_lambdas=RING_LAMBDAS)
    assert new.count == 0
    for name in ("lambdas", "l", "s", "b"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.l.shape == a.s.shape == a.b.shape == (RING_LAMBDAS, 2)
    assert not np.array_equal(a.l, c.l)
    assert not np.array_equal(a.l, ring_statistics(12).l)  # another key, other probes


def test_estimated_statistics_beat_degenerated_on_ring():
    # Measured on the ring (float64, 1024 samples, 4096 data, 100 to 400 lambdas): with the
    # default options the estimated statistics have 0.08 times the error of the degenerated
    # ones at NFE 8 (Karras; median over tables); here (float32, 512 data, 100 lambdas)
    # 0.16 against 1.09. Checked with a margin of 3.
    gm = jd.analytic.ring()
    x = 80.0 * jr.normal(jr.key(16), (256, 2))
    sigmas = karras_np(8)
    # reference: Heun on 200 Karras steps, in numpy (2e-4 from 400 steps)
    ref = np.asarray(x)
    fine = karras_np(200)
    den = lambda x_, s_: np.asarray(gm.denoiser(jnp.asarray(x_), jnp.asarray(s_, jnp.float32)))
    for sigma, sigma_next in itertools.pairwise(fine[:-1]):
        d = (ref - den(ref, sigma)) / sigma
        pred = ref + (sigma_next - sigma) * d
        ref = ref + (sigma_next - sigma) * (d + (pred - den(pred, sigma_next)) / sigma_next) / 2
    ref = den(ref, fine[-2])

    def error(solver):
        out = np.asarray(jd.sample(gm.denoiser, x, sigmas, solver=solver))
        return np.sqrt(np.mean(np.sum((out - ref) ** 2, -1)))

    err_ems = error(DPMSolverV3(ring_statistics(11)))
    err_degenerated = error(DPMSolverV3.degenerated())
    assert err_ems < 0.5 * err_degenerated, (err_ems, err_degenerated)


# --- compilation ------------------------------------------------------------------------------


def test_one_program_new_statistics_do_not_recompile():
    # the registry builds samplers with no arguments: degenerated statistics (per-lambda
    # scalars), order 3; new statistics of the same shapes reuse the compiled program
    v3 = DPMSolverV3()
    assert v3.order == 3 and v3.use_corrector and not v3.c_pseudo and v3.statistics.shape == ()
    np.testing.assert_array_equal(v3.statistics.l, 1.0)
    gm = jd.analytic.ring()
    sigmas = karras_np(5)
    x = 80.0 * jr.normal(jr.key(15), (8, 2))
    with compiles(_sample) as new:
        out1 = jd.sample(gm.denoiser, x, sigmas, solver=v3)
    assert new.count == 1
    assert out1.shape == x.shape and np.all(np.isfinite(out1))
    other = DPMSolverV3Statistics(
        jnp.array([-2.0, 3.0]), jnp.array([0.8, 0.3]), jnp.array([0.1, -1.0]), jnp.zeros(2)
    )
    with compiles(_sample) as new:
        out2 = jd.sample(gm.denoiser, 2 * x, sigmas, solver=DPMSolverV3(other))
        jax.block_until_ready(out2)
    assert new.count == 0
    assert not np.allclose(out1, out2)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(order=4), "order"),
        (dict(order=0), "order"),
        (dict(order=2.0), "order"),
        (dict(solver_type="heun"), "solver_type"),
        (dict(use_corrector=1), "use_corrector"),
        (dict(c_pseudo=None), "c_pseudo"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DPMSolverV3(**kwargs)


def test_bad_statistics():
    with pytest.raises(TypeError, match="statistics"):
        DPMSolverV3(np.ones((3, 2)))
    lam = np.array([0.0, 1.0, 2.0])
    ones = np.ones((3, 2))
    with pytest.raises(ValueError, match="lambdas"):
        DPMSolverV3Statistics(lam[::-1], ones, ones, ones)
    with pytest.raises(ValueError, match="lambdas"):
        DPMSolverV3Statistics(lam[:1], ones[:1], ones[:1], ones[:1])
    with pytest.raises(ValueError, match="^s must"):
        DPMSolverV3Statistics(lam, ones, np.ones((3, 3)), ones)
    with pytest.raises(ValueError, match="^b must"):
        DPMSolverV3Statistics(lam, ones, ones, np.ones((2, 2)))
    with pytest.raises(ValueError, match="^l must be finite"):
        DPMSolverV3Statistics(lam, ones * np.nan, ones, ones)
    # per-lambda shape (3,) does not broadcast to samples of shape (2,)
    stats = DPMSolverV3Statistics(lam, np.ones((3, 3)), np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="statistics"):
        jd.sample(lambda x, s: x, jnp.ones((4, 2)), karras_np(3), solver=DPMSolverV3(stats))


def test_bad_estimator_options():
    gm = jd.analytic.ring()
    data = gm.sample(jr.key(0), 8)
    den, key = gm.denoiser, jr.key(1)
    with pytest.raises(ValueError, match="num_lambdas"):
        estimate_statistics(den, data, key, num_lambdas=2)
    with pytest.raises(ValueError, match="sigma_min"):
        estimate_statistics(den, data, key, num_lambdas=5, sigma_min=10.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="ridge"):
        estimate_statistics(den, data, key, num_lambdas=5, ridge=-1.0)
    with pytest.raises(ValueError, match="data"):
        estimate_statistics(den, data[:1], key, num_lambdas=5)
    with pytest.raises(TypeError, match="key"):
        estimate_statistics(den, data, 0, num_lambdas=5)
