"""Sigma schedules: the grid contract over every public schedule (n + 1 strictly decreasing
levels ending at 0, end points, dtype, jit), k-diffusion peers, EDM's iDDPM and VE grids,
KL-optimal and Align Your Steps against hand-computed and published values, bad input."""

import functools
import inspect
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import karras_np

import jaxdiff as jd

S = jd.schedules
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def _takes_grid_args(f) -> bool:
    try:
        params = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        return False
    return params[:3] == ["n", "sigma_min", "sigma_max"]


SCHEDULES = {
    name: f
    for name, f in vars(S).items()
    if not name.startswith("_") and callable(f) and _takes_grid_args(f)
}
NAMES = sorted(SCHEDULES)
# Schedules whose levels are a fixed discrete set: first <= sigma_max, last positive >= sigma_min.
DISCRETE = {"iddpm"}


def test_discovery_finds_every_schedule():
    expected = {"karras", "exponential", "polyexponential", "vp", "logsnr_uniform", "edm_ve"}
    expected |= {"iddpm", "kl_optimal", "ays"}
    assert expected <= set(NAMES)
    assert set(NAMES) == set(S.SCHEDULES)
    # the public names: the schedules, their list, optimize with its result, the flow grids
    flows = {*S.FLOW_SCHEDULES, "FLOW_SCHEDULES", "flux", "flux_mu", "flow_times", "flow_sigmas"}
    flows.add("tuned_flow")
    discrete = {"discrete", "discrete_timesteps", "rescale_zero_terminal_snr", "SPACINGS"}
    expected = {*S.SCHEDULES, "SCHEDULES", "optimize", "OptimizedSchedule", "carry", *flows}
    expected |= discrete
    assert set(S.__all__) == expected


# -- the contract -----------------------------------------------------------------------------
def check_grid(sigmas, n, dtype, name, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX):
    rtol = 1e-12 if dtype == jnp.float64 else 4e-6
    s = np.asarray(sigmas)
    assert sigmas.shape == (n + 1,) and sigmas.dtype == dtype
    assert np.all(np.isfinite(s))
    assert s[-1] == 0
    assert np.all(np.diff(s) < 0), f"{name} not strictly decreasing: {s}"
    if name in DISCRETE:
        assert s[0] <= sigma_max and s[-2] >= sigma_min
    else:
        np.testing.assert_allclose(s[0], sigma_max, rtol=rtol)
        if n > 1:
            np.testing.assert_allclose(s[-2], sigma_min, rtol=rtol)


@pytest.mark.parametrize("n", [1, 2, 10, 50])
@pytest.mark.parametrize("name", NAMES)
def test_contract(name, n, dtype):
    f = SCHEDULES[name]
    check_grid(f(n, SIGMA_MIN, SIGMA_MAX), n, dtype, name)  # default dtype follows x64
    check_grid(f(n, np.float32(0.5), 3), n, dtype, name, 0.5, 3.0)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_keyword(name, x64):
    f = SCHEDULES[name]
    assert f(10, SIGMA_MIN, SIGMA_MAX).dtype == jnp.float64
    sigmas = f(10, SIGMA_MIN, SIGMA_MAX, dtype=jnp.float32)
    check_grid(sigmas, 10, jnp.float32, name)
    np.testing.assert_allclose(sigmas, f(10, SIGMA_MIN, SIGMA_MAX), rtol=4e-6)


@pytest.mark.parametrize("name", NAMES)
def test_jit_with_traced_sigmas_no_retrace(name):
    f = SCHEDULES[name]
    traces = []

    def g(n, sigma_min, sigma_max):
        traces.append(None)
        return f(n, sigma_min, sigma_max)

    jf = jax.jit(g, static_argnums=0)
    for lo, hi in [(SIGMA_MIN, SIGMA_MAX), (0.01, 50.0), (0.5, 3.0)]:
        ours = jf(10, jnp.float32(lo), jnp.float32(hi))
        np.testing.assert_allclose(ours, f(10, lo, hi), rtol=2e-6)
    assert len(traces) == 1
    assert jax.jit(f, static_argnums=0)(10, SIGMA_MIN, SIGMA_MAX).shape == (11,)


# -- k-diffusion peers (float64) --------------------------------------------------------------
@pytest.fixture
def torch64(kdiffusion, x64):
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield kdiffusion
    torch.set_default_dtype(old)


PEERS = [
    ("karras", "get_sigmas_karras", {}),
    ("karras", "get_sigmas_karras", {"rho": 3.0}),
    ("exponential", "get_sigmas_exponential", {}),
    ("polyexponential", "get_sigmas_polyexponential", {}),
    ("polyexponential", "get_sigmas_polyexponential", {"rho": 2.5}),
]


@pytest.mark.parametrize("n", [1, 2, 10, 50])
@pytest.mark.parametrize(("name", "kd_name", "kwargs"), PEERS)
def test_peer_kdiffusion(torch64, name, kd_name, kwargs, n):
    for lo, hi in [(SIGMA_MIN, SIGMA_MAX), (0.0291671582, 14.6146412293)]:
        theirs = getattr(torch64, kd_name)(n, lo, hi, **kwargs).numpy()
        ours = np.asarray(SCHEDULES[name](n, lo, hi, **kwargs))
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)


@pytest.mark.parametrize("n", [1, 2, 10, 50])
@pytest.mark.parametrize(("beta_d", "beta_min", "eps_s"), [(19.9, 0.1, 1e-3), (2.0, 0.5, 1e-2)])
def test_vp_peer_kdiffusion(torch64, n, beta_d, beta_min, eps_s):
    # k-diffusion takes t from 1 down to eps_s: the same grid as ours between sigma(1) and
    # sigma(eps_s). Its exp(B) - 1 at B ~ 1e-4 loses ~1e-12 (relative) to cancellation; ours
    # uses expm1, hence rtol 1e-11 rather than 1e-12.
    def vp_sigma(t):
        return math.sqrt(math.expm1(0.5 * beta_d * t**2 + beta_min * t))

    theirs = torch64.get_sigmas_vp(n, beta_d=beta_d, beta_min=beta_min, eps_s=eps_s).numpy()
    ours = S.vp(n, vp_sigma(eps_s), vp_sigma(1.0), beta_d=beta_d, beta_min=beta_min)
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-11, atol=0)


# -- cross-checks between schedules and processes --------------------------------------------
def test_karras_matches_edm_formula(x64):
    for rho in (7.0, 1.0):
        np.testing.assert_allclose(
            S.karras(18, SIGMA_MIN, SIGMA_MAX, rho), karras_np(18, rho=rho), rtol=1e-13
        )


def test_logsnr_uniform_is_exponential_for_every_scaling(x64):
    ours = np.asarray(S.logsnr_uniform(12, SIGMA_MIN, SIGMA_MAX))
    np.testing.assert_array_equal(ours, np.asarray(S.exponential(12, SIGMA_MIN, SIGMA_MAX)))
    s = ours[:-1]
    # VP form: x = alpha x0 + sigma_vp eps with alpha = 1/sqrt(1 + s^2), sigma_vp = s alpha.
    alpha = 1 / np.sqrt(1 + s**2)
    lam = np.log(alpha / (s * alpha))
    np.testing.assert_allclose(np.diff(lam), np.full(11, np.log(SIGMA_MAX / SIGMA_MIN) / 11))


def test_edm_ve_is_geometric(x64):
    ours = np.asarray(S.edm_ve(18, 0.02, 100.0))
    t = 100.0**2 * (0.02**2 / 100.0**2) ** (np.arange(18) / 17)  # EDM Table 1, VE
    np.testing.assert_allclose(ours[:-1], np.sqrt(t), rtol=1e-13)
    np.testing.assert_allclose(ours, S.exponential(18, 0.02, 100.0), rtol=1e-13)


def test_polyexponential_rho_one_is_exponential(x64):
    np.testing.assert_allclose(
        S.polyexponential(20, SIGMA_MIN, SIGMA_MAX),
        S.exponential(20, SIGMA_MIN, SIGMA_MAX),
        rtol=1e-13,
    )


def test_vp_is_uniform_in_vp_time(x64):
    process = jd.VP(beta_min=0.1, beta_max=0.1 + 19.9)
    sigmas = S.vp(25, SIGMA_MIN, SIGMA_MAX)
    t = np.asarray(process.t_of_sigma(sigmas[:-1]))
    t_max, t_min = process.t_of_sigma(SIGMA_MAX), process.t_of_sigma(SIGMA_MIN)
    np.testing.assert_allclose(t, np.linspace(t_max, t_min, 25), rtol=1e-12)
    np.testing.assert_allclose(sigmas[:-1], process.sigma(jnp.asarray(t)), rtol=1e-12)


# -- iDDPM (EDM Table 1) ----------------------------------------------------------------------
def alpha_bar(j, m, c2=0.008):
    return math.sin(0.5 * math.pi * j / (m * (c2 + 1))) ** 2


def iddpm_levels_closed_form(m, c1=0.001, c2=0.008):
    # The recursion telescopes while alpha_bar(j-1)/alpha_bar(j) >= c1, i.e. for every j >= 2:
    # u_j^2 + 1 = alpha_bar(M)/alpha_bar(j); only u_0 (alpha_bar(0) = 0) is clipped by c1.
    u = [math.sqrt(alpha_bar(m, m, c2) / alpha_bar(j, m, c2) - 1) for j in range(1, m + 1)]
    u0 = math.sqrt((u[0] ** 2 + 1) / c1 - 1)
    return np.array([u0, *u])


@functools.cache
def iddpm_reference_levels(m=1000, c1=0.001, c2=0.008):
    """EDM's official `ablation_sampler` ('iddpm' discretization), transcribed in numpy."""
    u = np.zeros(m + 1)
    for j in range(m, 0, -1):
        u[j - 1] = np.sqrt(
            (u[j] ** 2 + 1) / max(alpha_bar(j - 1, m, c2) / alpha_bar(j, m, c2), c1) - 1
        )
    return u


def iddpm_reference(n, sigma_min, sigma_max):
    u = iddpm_reference_levels()
    u_filtered = u[(u >= sigma_min) & (u <= sigma_max)]
    steps = np.arange(n, dtype=np.float64)
    idx = np.round((len(u_filtered) - 1) / (n - 1) * steps).astype(np.int64)  # half to even
    return np.append(u_filtered[idx], 0.0)


def test_iddpm_levels_closed_form(x64):
    sigmas = np.asarray(S.iddpm(1000, 1e-9, 1e9))  # all M levels but u_M = 0
    np.testing.assert_allclose(sigmas[:-1], iddpm_levels_closed_form(1000)[:-1], rtol=1e-11)


@pytest.mark.parametrize(("sigma_min", "sigma_max"), [(0.002, 81.0), (0.002, 80.0), (0.1, 10.0)])
def test_iddpm_matches_edm_code(x64, sigma_min, sigma_max):
    for n in [2, 3, 7, 18, 64]:
        ours = np.asarray(S.iddpm(n, sigma_min, sigma_max))
        np.testing.assert_allclose(ours, iddpm_reference(n, sigma_min, sigma_max), rtol=1e-12)
    # n = 1: the largest level <= sigma_max (EDM's code divides by n - 1 = 0 there).
    ref = iddpm_reference(2, sigma_min, sigma_max)[[0, 2]]
    np.testing.assert_allclose(S.iddpm(1, sigma_min, sigma_max), ref, rtol=1e-12)


def test_iddpm_small_hand_cases(x64):
    u = iddpm_levels_closed_form(3)  # u_0 > u_1 > u_2 > u_3 = 0
    assert u[3] == 0 and np.all(np.diff(u) < 0)
    lo, hi = u[2] * (1 - 1e-9), u[0] * (1 + 1e-9)
    np.testing.assert_allclose(S.iddpm(3, lo, hi, m=3), [u[0], u[1], u[2], 0], rtol=1e-13)
    np.testing.assert_allclose(S.iddpm(2, lo, hi, m=3), [u[0], u[2], 0], rtol=1e-13)
    np.testing.assert_allclose(S.iddpm(1, lo, hi, m=3), [u[0], 0], rtol=1e-13)
    np.testing.assert_allclose(S.iddpm(2, u[1], hi, m=3), [u[0], u[1], 0], rtol=1e-13)
    # A tie: L = 6 levels u_0..u_5 (m = 6), n = 3: k_1 = round(2.5) = 2, halves to even as in
    # EDM's code (the paper's floor(x + 1/2) would give 3).
    u = iddpm_levels_closed_form(6)
    lo, hi = u[5] * (1 - 1e-9), u[0] * (1 + 1e-9)
    np.testing.assert_allclose(S.iddpm(3, lo, hi, m=6), [u[0], u[2], u[5], 0], rtol=1e-13)
    np.testing.assert_allclose(
        S.iddpm(5, lo, hi, m=6), [u[0], u[1], u[2], u[4], u[5], 0], rtol=1e-13
    )


# -- KL-optimal and Align Your Steps ----------------------------------------------------------
def test_kl_optimal_hand_cases(x64):
    r2 = math.sqrt(2.0)
    lo, hi = r2 - 1, r2 + 1  # tan(pi/8), tan(3 pi/8)
    np.testing.assert_allclose(S.kl_optimal(3, lo, hi), [hi, 1.0, lo, 0.0], rtol=1e-14)
    expected = [math.tan(k * math.pi / 16) for k in (6, 5, 4, 3, 2)] + [0.0]
    np.testing.assert_allclose(S.kl_optimal(5, lo, hi), expected, rtol=1e-14)
    np.testing.assert_allclose(S.kl_optimal(2, 0.5, 3.0), [3.0, 0.5, 0.0], rtol=0)
    ours = np.asarray(S.kl_optimal(30, SIGMA_MIN, SIGMA_MAX))
    step = (math.atan(SIGMA_MIN) - math.atan(SIGMA_MAX)) / 29
    np.testing.assert_allclose(np.diff(np.arctan(ours[:-1])), np.full(29, step), rtol=1e-10)


AYS_PUBLISHED = {  # the 10-step levels of the AYS how-to page
    "sd15": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177,
             1.3943805092, 0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "sdxl": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945,
             0.8620721141, 0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "svd": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}  # fmt: skip


@pytest.mark.parametrize("model", sorted(AYS_PUBLISHED))
def test_ays_published_levels(x64, model):
    levels = np.array(AYS_PUBLISHED[model])
    ours = np.asarray(S.ays(11, levels[-1], levels[0], model=model))
    np.testing.assert_allclose(ours, np.append(levels, 0.0), rtol=1e-13)
    # 21 levels: the published ones at even indices, log-midpoints in between.
    ours = np.asarray(S.ays(21, levels[-1], levels[0], model=model))
    np.testing.assert_allclose(ours[:-1:2], levels, rtol=1e-13)
    np.testing.assert_allclose(ours[1:-1:2], np.sqrt(levels[:-1] * levels[1:]), rtol=1e-13)


def test_ays_rescaled_keeps_relative_log_positions(x64):
    levels = np.log(AYS_PUBLISHED["sd15"])
    rel = (levels - levels[-1]) / (levels[0] - levels[-1])
    ours = np.log(np.asarray(S.ays(11, SIGMA_MIN, SIGMA_MAX))[:-1])
    ours_rel = (ours - np.log(SIGMA_MIN)) / np.log(SIGMA_MAX / SIGMA_MIN)
    np.testing.assert_allclose(ours_rel, rel, rtol=1e-12, atol=1e-15)


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_bad_input(name):
    f = SCHEDULES[name]
    for n in (0, -3):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            f(n, SIGMA_MIN, SIGMA_MAX)
    for n in (2.5, True, "4", None):  # not an int: the wrong kind
        with pytest.raises(TypeError, match="n must be an int >= 1"):
            f(n, SIGMA_MIN, SIGMA_MAX)
    for lo in (0.0, -1.0):
        with pytest.raises(ValueError, match="sigma_min must be > 0"):
            f(10, lo, SIGMA_MAX)
    for lo, hi in [(80.0, 80.0), (80.0, 0.002)]:
        with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
            f(10, lo, hi)
    with pytest.raises(ValueError, match="sigma_max must be finite"):
        f(10, SIGMA_MIN, float("inf"))
    with pytest.raises(ValueError, match="sigma_min must be finite"):
        f(10, float("nan"), SIGMA_MAX)
    with pytest.raises(ValueError, match="sigma_max must be a scalar"):
        f(10, SIGMA_MIN, jnp.ones(2))
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
        f(10, SIGMA_MIN, SIGMA_MAX, dtype=jnp.int32)
    with pytest.raises(TypeError, match="sigma_max must be a real number"):
        f(10, SIGMA_MIN, "80")


def test_bad_options():
    cases = [
        (S.karras, {"rho": 0.0}, "rho must be > 0"),
        (S.polyexponential, {"rho": -1.0}, "rho must be > 0"),
        (S.vp, {"beta_d": -1.0}, "beta_d must be >= 0"),
        (S.vp, {"beta_min": -0.1}, "beta_min must be >= 0"),
        (S.vp, {"beta_d": 0.0, "beta_min": 0.0}, "must not both be 0"),
        (S.iddpm, {"m": 1}, "m must be an int >= 2"),
        (S.iddpm, {"c1": 0.0}, "c1 must be > 0"),
        (S.iddpm, {"c2": -0.5}, "c2 must be >= 0"),
        (S.ays, {"model": "sd3"}, "model must be one of"),
    ]
    for f, kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            f(10, SIGMA_MIN, SIGMA_MAX, **kwargs)
    with pytest.raises(ValueError, match="n must be <= the number of iDDPM levels"):
        S.iddpm(10, 1.0, 1.01)
    # the wrong kind: a non-integer level count, a model that is not a name
    with pytest.raises(TypeError, match="m must be an int >= 2"):
        S.iddpm(10, SIGMA_MIN, SIGMA_MAX, m=1000.0)
    with pytest.raises(TypeError, match="model must be one of"):
        S.ays(10, SIGMA_MIN, SIGMA_MAX, model=1)


# -- tuned ------------------------------------------------------------------------------------
def _relative(sigmas, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX):
    s = np.log(np.asarray(sigmas, np.float64)[:-1])
    return (s - math.log(sigma_min)) / math.log(sigma_max / sigma_min)


def test_tuned_any_n_and_range(x64):
    cases = [((SIGMA_MIN, SIGMA_MAX), [*range(1, 9), 12, 15, 17, 20, 23, 30, 31, 41, 64])]
    cases += [((0.01, 10.0), [1, 2, 5, 17, 64]), ((1e-4, 500.0), [3, 12, 45])]
    for (sigma_min, sigma_max), ns in cases:
        for n in ns:
            check_grid(
                S.tuned(n, sigma_min, sigma_max), n, jnp.float64, "tuned", sigma_min, sigma_max
            )


def test_tuned_is_anchored_in_absolute_sigma(x64):
    """Another range keeps the tuned levels where they are (in sigma, not relative to the
    range): the levels split the mass of the tuned grid's level density (one level per tuned
    step, continued at its end values) evenly; `sigma_data` scales the whole grid."""
    from jaxdiff.schedules._tables import _tuned_relative

    def mass(n, log_sigma):  # the tuned n-step grid's levels counted from the top, 0 .. n - 1
        u = np.log(SIGMA_MIN) + _tuned_relative(n) * np.log(SIGMA_MAX / SIGMA_MIN)
        k = np.arange(n, dtype=float)
        below, above = log_sigma < u[-1], log_sigma > u[0]
        inside = np.interp(log_sigma, u[::-1], k[::-1])
        low = n - 1 + (u[-1] - log_sigma) / (u[-2] - u[-1])
        high = -(log_sigma - u[0]) / (u[0] - u[1])
        return np.where(below, low, np.where(above, high, inside))

    canon = np.asarray(S.tuned(10, SIGMA_MIN, SIGMA_MAX))[:-1]
    for n, lo, hi in [(10, 0.01, 156.7), (6, canon[7], canon[2]), (25, 1e-4, 500.0), (4, 0.5, 2)]:
        grid = np.asarray(S.tuned(n, lo, hi))
        assert grid[0] == hi and grid[-2] == pytest.approx(lo, rel=1e-14) and grid[-1] == 0
        steps = np.diff(mass(n, np.log(grid[:-1])))
        np.testing.assert_allclose(steps, np.full(n - 1, steps[0]), rtol=1e-9)
    # scaling the data scales the grid
    np.testing.assert_allclose(
        np.asarray(S.tuned(12, 0.5 * 0.01, 0.5 * 50.0, sigma_data=0.5)),
        0.5 * np.asarray(S.tuned(12, 0.01, 50.0)),
        rtol=1e-12,
    )
    # carry: a grid on its own range and step count is itself; bad grids are refused
    grid = S.karras(9, 0.01, 20.0)
    np.testing.assert_allclose(S.carry(grid, 9, 0.01, 20.0), grid, rtol=1e-12)
    np.testing.assert_allclose(S.carry(grid[:-1], 9, 0.01, 20.0), grid, rtol=1e-12)
    for bad, match in [
        ([1.0], "at least 2"),
        ([1.0, 2.0, 0.0], "strictly decreasing"),
        ([[1.0, 0.5]], "1-D"),
        ([2.0, -1.0], "finite positive"),
    ]:
        with pytest.raises(ValueError, match=match):
            S.carry(bad, 4, 0.1, 1.0)
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        S.tuned(10, SIGMA_MIN, SIGMA_MAX, sigma_data=0.0)


def test_tuned_exact_at_tuned_steps_and_blended_between(x64):
    from jaxdiff.schedules._tables import _TUNED_KNOTS

    steps = sorted(_TUNED_KNOTS)
    assert len(steps) >= 4 and {10, 20} <= set(steps)
    for n in steps:
        knots = np.asarray(_TUNED_KNOTS[n])
        assert knots.shape == (n,) and knots[0] == 1 and knots[-1] == 0
        assert np.all(np.diff(knots) < 0)
        np.testing.assert_allclose(_relative(S.tuned(n, SIGMA_MIN, SIGMA_MAX)), knots, atol=1e-12)
    # between two tuned step counts: between the two tuned shapes, at every level
    for lo, hi in itertools.pairwise(steps):
        for n in range(lo + 1, hi):
            u = np.linspace(0, 1, n)
            a = np.interp(u, np.linspace(0, 1, lo), _TUNED_KNOTS[lo])
            b = np.interp(u, np.linspace(0, 1, hi), _TUNED_KNOTS[hi])
            rel = _relative(S.tuned(n, SIGMA_MIN, SIGMA_MAX))
            assert np.all(rel >= np.minimum(a, b) - 1e-12) and np.all(
                rel <= np.maximum(a, b) + 1e-12
            )


@pytest.mark.parametrize("nfe", [10, 20])
def test_tuned_holds_on_the_ddpm_range(x64, nfe):
    """On DDPM's range (157 -> 0.01) the carried tuned grid beats karras for IPNDM on the
    held-out ring (before 0.4.0 the affinely stretched grid lost to diffusers' schedulers
    there; `benchmarks/frontier.py` has the full comparison)."""
    lo, hi = 0.01, 157.4
    gm, solver = jd.analytic.ring(), jd.samplers.IPNDM()
    x = hi * jax.random.normal(jax.random.key(3), (256, 2), jnp.float64)
    ref = jd.sample(gm.denoiser, x, S.karras(800, lo, hi), solver=jd.samplers.Heun())
    err_tuned = _trajectory_error(gm, x, ref, S.tuned(nfe, lo, hi), solver)
    err_karras = _trajectory_error(gm, x, ref, S.karras(nfe, lo, hi), solver)
    assert err_tuned < 0.6 * err_karras, (err_tuned, err_karras)


def _trajectory_error(gm, x, ref, sigmas, solver):
    out = jd.sample(gm.denoiser, x, sigmas, solver=solver)
    return float(jnp.sqrt(jnp.mean(jnp.sum((out - ref) ** 2, axis=-1))))


@pytest.mark.parametrize("nfe", [10, 20])
def test_tuned_transfers_to_a_held_out_mixture(x64, nfe):
    """On 2-D mixtures not in `benchmarks/tune_schedule.py`'s training set, IPNDM on the tuned
    grid has a clearly smaller PF-ODE trajectory error than IPNDM on karras."""
    solver = jd.samplers.IPNDM()
    assert solver.nfe(nfe) == nfe
    for gm in [
        jd.analytic.random_mixture(dim=2, num_components=10, seed=7, min_std=0.05, max_std=0.15),
        jd.analytic.grid(),
    ]:
        x = SIGMA_MAX * jax.random.normal(jax.random.key(3), (256, 2), jnp.float64)
        ref_grid = S.karras(500, SIGMA_MIN, SIGMA_MAX)
        ref = jd.sample(gm.denoiser, x, ref_grid, solver=jd.samplers.Heun())
        err_tuned = _trajectory_error(gm, x, ref, S.tuned(nfe, SIGMA_MIN, SIGMA_MAX), solver)
        err_karras = _trajectory_error(gm, x, ref, S.karras(nfe, SIGMA_MIN, SIGMA_MAX), solver)
        assert err_tuned < 0.5 * err_karras, (err_tuned, err_karras)
