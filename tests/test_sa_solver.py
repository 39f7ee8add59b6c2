"""SA-Solver (Xue et al. 2023): the stochastic Adams predictor-corrector in data prediction.

Oracles: diffusers' `SASolverScheduler` on identical inputs and identical noise in float64
(its `randn_tensor` replaced by the noise `jaxdiff.sample` gives each step); an independent
numpy loop (the Adams weights by Gauss-Legendre quadrature of the Lagrange basis, diffusers'
order-2 rule written out), which at tau = 0 is the deterministic Adams predictor-corrector;
exactness for a constant denoiser; fitted orders at tau = 0 (a Gaussian with its exact PF-ODE
solution); one compiled program; per-sample keys; a grid from inf; options.

diffusers' schedulers work in VP units, `sample = x / sqrt(1 + sigma^2)`; its sigmas are
replaced by our float64 grid after `set_timesteps(n)` (which sets the step count that
`lower_order_final` reads), and its `tau_func` gets the timestep of each sigma on its own
training schedule (`_sigma_to_t`), so that its default tau function is the one it would apply.
Measured agreement: 6e-16 to 1.4e-14 relative.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import karras_np
from jaxdiff_test_utils import (
    check_one_program_and_per_sample_keys,
    gaussian_order,
    geometric_grid,
    max_relative,
    require,
    ring_peer_problem,
)

import jaxdiff as jd
import jaxdiff.bench as jb
from jaxdiff.samplers._sa_solver import DIFFUSERS_TAU_INTERVAL, SASolver

FLOAT64 = 1e-12  # max-norm agreement relative to the largest entry
EVERYWHERE = (0.0, float("inf"))
KEY = jr.key(11)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.*")


_problem = ring_peer_problem


def _diffusers_run(monkeypatch, sigmas, noises, **config):
    """diffusers' SA-Solver loop over the first n - 1 intervals of the grid (its last step
    would go to sigma = 0, where its update is not finite): `x` at `sigmas[n - 1]`, after the
    predictor, in sigma-space units."""
    require("torch", "diffusers", why="the diffusers SA-Solver peer")
    import torch
    from diffusers import SASolverScheduler
    from diffusers.schedulers import scheduling_sasolver

    _, x, denoiser = _problem()
    n = len(sigmas) - 1
    scheduler = SASolverScheduler(prediction_type="sample", **config)
    scheduler.set_timesteps(n)
    ac = scheduler.alphas_cumprod
    log_sigmas = np.log((((1 - ac) / ac) ** 0.5).numpy())  # as set_timesteps computes them
    scheduler.sigmas = torch.from_numpy(np.asarray(sigmas, np.float64))
    scheduler.set_begin_index(0)
    draws = iter(noises)
    monkeypatch.setattr(
        scheduling_sasolver, "randn_tensor", lambda *a, **k: torch.from_numpy(next(draws))
    )
    sample = torch.from_numpy(x / np.sqrt(1 + sigmas[0] ** 2))
    for i in range(n - 1):
        scale = np.sqrt(1 + sigmas[i] ** 2)
        out = np.array(denoiser(jnp.asarray(sample.numpy() * scale), jnp.float64(sigmas[i])))
        timestep = float(scheduler._sigma_to_t(np.array(sigmas[i]), log_sigmas))
        sample = scheduler.step(torch.from_numpy(out), timestep, sample).prev_sample
        assert sample.dtype == torch.float64
    return sample.numpy() * np.sqrt(1 + sigmas[n - 1] ** 2)


GRID = karras_np(10)
CASES = [
    # (our options, diffusers' options, steps)
    ({}, {}, 10),  # the defaults: orders 2 and 2, diffusers' tau function, lower_order_final
    (dict(predictor_order=3, corrector_order=3, lower_order_final=False),
     dict(predictor_order=3, corrector_order=3, lower_order_final=False), 10),
    # on 6 steps lower_order_final and the warm-up overlap
    (dict(predictor_order=4, corrector_order=4, tau_interval=EVERYWHERE),
     dict(predictor_order=4, corrector_order=4, tau_func=lambda t: 1), 6),
    (dict(predictor_order=3, corrector_order=3, tau=0.0),
     dict(predictor_order=3, corrector_order=3, tau_func=lambda t: 0), 8),
]  # fmt: skip


def _ours(sampler, sigmas=GRID, **kwargs):
    gm, x, _ = _problem()
    return jd.sample(gm.denoiser, jnp.asarray(x), sigmas, solver=sampler, key=KEY, **kwargs)


@pytest.mark.parametrize(("ours", "theirs", "n"), CASES, ids=[str(c[0]) for c in CASES])
def test_matches_diffusers(x64, monkeypatch, ours, theirs, n):
    sigmas = GRID if n == 10 else karras_np(n)
    _, x, denoiser = _problem()
    noises = jb.step_normals(KEY, n, x.shape)
    expected = _diffusers_run(monkeypatch, sigmas, noises, **theirs)
    final, traj = _ours(SASolver(**ours), sigmas, return_trajectory=True)
    assert max_relative(traj[n - 1], expected) < FLOAT64
    # the last step returns D at the predicted x_{n-1}
    assert (
        max_relative(final, denoiser(jnp.asarray(expected), jnp.float64(sigmas[n - 1]))) < FLOAT64
    )


def test_default_tau_interval_is_diffusers_tau_func():
    # sigma at timesteps 200 and 800 of diffusers' default schedule (float32 alphas_cumprod)
    require("torch", "diffusers", why="the diffusers SA-Solver peer")
    from diffusers import SASolverScheduler

    ac = SASolverScheduler().alphas_cumprod
    sigmas = (((1 - ac) / ac) ** 0.5).numpy()
    assert DIFFUSERS_TAU_INTERVAL == (float(sigmas[200]), float(sigmas[800]))
    assert SASolver().tau_interval == DIFFUSERS_TAU_INTERVAL
    # the test grid has sigmas on both sides of the interval
    assert GRID[0] > DIFFUSERS_TAU_INTERVAL[1] and 0 < GRID[-2] < DIFFUSERS_TAU_INTERVAL[0]


# --- the independent numpy loop ----------------------------------------------------------------


def _adams_np(x, lam_a, lam_b, nodes, values, tau, sigma_b, noise):
    """x_b = e^{-kh} x_a + k int_{lam_a}^{lam_b} e^{k (lam - lam_b)} P(lam) dlam + noise, P
    the Lagrange interpolant of `values` at `nodes`, the integral by 40-point Gauss-Legendre;
    with two nodes diffusers' rule: (1 - e^{-kh}) P(lam_a) + (k h^2 / 2) P'."""
    k, h = 1 + tau**2, lam_b - lam_a
    if len(nodes) == 2:
        slope = (values[0] - values[1]) / (nodes[0] - nodes[1])
        p_a = values[0] + (lam_a - nodes[0]) * slope
        x_new = np.exp(-k * h) * x + (1 - np.exp(-k * h)) * p_a + k * h**2 / 2 * slope
    else:
        t, wq = np.polynomial.legendre.leggauss(40)
        lam = lam_a + h * (t + 1) / 2
        kernel = k * np.exp(k * (lam - lam_b)) * wq * h / 2
        x_new = np.exp(-k * h) * x
        for j, (node, value) in enumerate(zip(nodes, values, strict=True)):
            basis = np.prod([(lam - m) / (node - m) for q, m in enumerate(nodes) if q != j], 0)
            x_new = x_new + np.sum(kernel * basis) * value
    return x_new + sigma_b * np.sqrt(1 - np.exp(-2 * tau**2 * h)) * noise


def sa_solver_np(den, x, sigmas, *, p_order, c_order, tau, lof, noises):
    """SA-Solver (data prediction) written out: at step i, D_i at the predicted x_i, the
    corrector (order and tau of step i - 1, its noise) from the corrected x_{i-1}, then the
    predictor; warm-up and lower_order_final as diffusers; the last step returns D."""
    n = len(sigmas) - 1
    lam = -np.log(sigmas[:-1])
    ds, x_corr, c_prev = [], None, None
    for i in range(n):
        d = den(x, sigmas[i])
        if i == n - 1:
            return d
        if i > 0:
            values = [d, *ds[::-1]][:c_prev]
            nodes = [lam[i - q] for q in range(c_prev)]
            x = _adams_np(
                x_corr, lam[i - 1], lam[i], nodes, values, tau(sigmas[i - 1]), sigmas[i],
                noises[i - 1],
            )  # fmt: skip
        ds.append(d)
        p = min(p_order, i + 1, n - i if lof else p_order)
        c_prev = min(c_order, i + 2, n - i + 1 if lof else c_order)
        x_corr = x
        values = ds[::-1][:p]
        nodes = [lam[i - q] for q in range(p)]
        lam_next = -np.log(sigmas[i + 1])
        x = _adams_np(x, lam[i], lam_next, nodes, values, tau(sigmas[i]), sigmas[i + 1], noises[i])


@pytest.mark.parametrize(
    ("options", "tau", "interval", "n"),
    [
        ({}, 1.0, DIFFUSERS_TAU_INTERVAL, 10),  # the program of test_matches_diffusers[{}]
        # tau = 0: the deterministic Adams predictor-corrector (a program of the test above)
        (dict(predictor_order=3, corrector_order=3, tau=0.0), 0.0, EVERYWHERE, 8),
        (
            dict(predictor_order=4, corrector_order=3, tau=0.6, tau_interval=(0.5, 10.0)),
            0.6,
            (0.5, 10.0),
            10,
        ),
    ],
    ids=["default", "3-3-tau0", "4-3-tau0.6"],
)
def test_matches_numpy_loop(x64, options, tau, interval, n):
    _, x, denoiser = _problem()
    sigmas = GRID if n == 10 else karras_np(n)
    sampler = SASolver(**options)
    noises = jb.step_normals(KEY, n, x.shape)
    den = lambda x_, s: np.asarray(denoiser(jnp.asarray(x_), jnp.float64(s)))
    tau_fn = lambda s: tau if interval[0] <= s <= interval[1] else 0.0
    theirs = sa_solver_np(
        den, x, sigmas, p_order=sampler.predictor_order, c_order=sampler.corrector_order,
        tau=tau_fn, lof=sampler.lower_order_final, noises=noises,
    )  # fmt: skip
    np.testing.assert_allclose(_ours(sampler, sigmas), theirs, rtol=1e-10, atol=1e-10)


# --- exactness, order --------------------------------------------------------------------------


@pytest.mark.parametrize("orders", [(2, 2), (4, 3)])
def test_tau_zero_exact_for_constant_denoiser(x64, orders):
    # D = mu: the PF-ODE path is mu + sigma z; every Adams weight set sums to 1 - e^{-h}
    # (tau = 0 needs no key)
    mu = jnp.array([[0.3, -1.2]])
    z = jr.normal(jr.key(0), (4, 2), jnp.float64)
    den = lambda x, sigma: jnp.broadcast_to(mu, x.shape)
    sigmas = np.array([5.0, 3.1, 1.7, 1.2, 0.4, 0.1, 0.0])
    sampler = SASolver(predictor_order=orders[0], corrector_order=orders[1], tau=0.0)
    traj = jd.sample(den, mu + sigmas[0] * z, sigmas, solver=sampler, return_trajectory=True)[1]
    np.testing.assert_allclose(traj, mu + sigmas[:, None, None] * z, rtol=1e-13, atol=1e-13)


def test_default_order_2_convergence(x64):
    # measured 2.12 over 64, 128 steps on geometric grids (2.03 on order_of_convergence's
    # mixture problem over 16 .. 128)
    sampler = SASolver(tau=0.0)
    assert gaussian_order(sampler, (64, 128), geometric_grid) == pytest.approx(2.1, abs=0.15)


def test_order_3_convergence(x64):
    # orders 3 and 3: measured 3.06 over 64, 128 steps (3.22 over 32, 64; 3.25 on the mixture
    # problem over 16 .. 128). (Orders 1 and 1 measure 0.84 on the mixture problem; 4 and 4
    # measure 3.1 like 3 and 3: the first and last steps are lower order, and the last
    # predicted x is not corrected.)
    sampler = SASolver(predictor_order=3, corrector_order=3, tau=0.0)
    assert gaussian_order(sampler, ns=(64, 128)) == pytest.approx(3.0, abs=0.2)


# --- the program, per-sample keys, the grid from inf, options ----------------------------------


def test_one_program_and_per_sample_keys(x64):
    gm, x, _ = _problem()
    sampler = SASolver()
    out = _ours(sampler)  # the program of test_matches_diffusers[{}]
    check_one_program_and_per_sample_keys(gm.denoiser, sampler, x, GRID, out)


def test_nfe_and_pure_noise_start():
    calls = []

    def denoiser(x, sigma):
        jax.debug.callback(lambda: calls.append(1))
        return x / (1 + sigma**2)

    sampler = SASolver()
    out = jd.sample(denoiser, jnp.ones((3, 2)), karras_np(4), solver=sampler, key=KEY)
    jax.block_until_ready(out)
    assert len(calls) == sampler.nfe(4) == 4
    # from pure noise (x the unit noise): the core's first step, then 3 steps; NFE 1 + nfe(3)
    calls.clear()
    inf_grid = np.concatenate([[np.inf], karras_np(4)[1:]])
    out = jd.sample(denoiser, jnp.ones((3, 2)), inf_grid, solver=sampler, key=KEY)
    jax.block_until_ready(out)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert len(calls) == jd.samplers.num_evaluations(sampler, inf_grid) == 1 + sampler.nfe(3)


def test_options():
    default = SASolver()
    assert (default.predictor_order, default.corrector_order, default.tau) == (2, 2, 1.0)
    assert default.lower_order_final and default.stochastic
    assert not SASolver(tau=0.0).stochastic
    assert SASolver(tau_interval=[0.0, 1.0]).tau_interval == (0.0, 1.0)
    for name in ("predictor_order", "corrector_order"):
        for bad in (0, 5, 2.5, True):
            with pytest.raises(ValueError, match=f"SASolver {name} must be 1, 2, 3 or 4"):
                SASolver(**{name: bad})
    with pytest.raises(ValueError, match="tau must be a concrete number >= 0"):
        SASolver(tau=-0.5)
    for bad in ((1.0,), (5.0, 1.0), (-1.0, 2.0), "all", (0.0, float("nan"))):
        with pytest.raises(ValueError, match="tau_interval must be a pair"):
            SASolver(tau_interval=bad)
    with pytest.raises(ValueError, match="lower_order_final must be True or False"):
        SASolver(lower_order_final=1)
    with pytest.raises(ValueError, match="is stochastic: pass key="):
        jd.sample(lambda x, s: x, jnp.ones((2, 2)), karras_np(3), solver=SASolver())
