"""RES multistep (Zhang, Song & Chen 2023) and the gradient-estimation sampler (Permenter & Yuan
2024).

Oracles: exact flows for denoisers where the methods are exact (constant; affine in
t = -log sigma for RES; a PF-ODE slope affine in sigma for gradient estimation with its
Adams–Bashforth gamma); RES against its weights computed a second way (quadrature of the
Lagrange interpolant, no phi-functions); gradient estimation against a numpy loop of the paper's
Alg. 2 and DDIM at gamma = 1; fitted orders on the PF-ODE of a 2-D mixture; accuracy against
DDIM at NFE 10 to 20; one compiled program; a grid from inf; bad options.
"""

import functools

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import karras_np
from jaxdiff_test_utils import compiles, geometric_grid

import jaxdiff as jd
from jaxdiff.samplers._core import _sample  # jd.sample's compiled program

S = jd.samplers


def np_denoiser(gm):
    return lambda x, sigma: np.asarray(gm.denoiser(jnp.asarray(x), jnp.asarray(sigma)))


def res_quadrature_np(den, x, sigmas):
    """RES multistep from its definition: in t = -log sigma, x' = D - x, so
    x_{i+1} = e^{-h} x_i + int_0^h e^{-(h - s)} p(s) ds with p the linear interpolant of D
    through (0, D_i) and (-h_{i-1}, D_{i-1}); the weights of D_i, D_{i-1} are the integrals of
    the Lagrange basis, by 20-point Gauss-Legendre quadrature. First step p = D_i; last x -> D."""
    nodes, weights = np.polynomial.legendre.leggauss(20)
    n = len(sigmas) - 1
    d_prev = None
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d = den(x, sigma)
        if i == n - 1:
            return d
        h = np.log(sigma / sigma_next)
        s = h * (nodes + 1) / 2  # quadrature nodes on [0, h]
        kernel = np.exp(-(h - s)) * weights * h / 2
        if d_prev is None:
            basis = [np.ones_like(s), np.zeros_like(s)]
        else:
            h_last = np.log(sigmas[i - 1] / sigma)
            basis = [(s + h_last) / h_last, -s / h_last]  # 1 at s = 0, resp. at s = -h_last
        w_cur, w_prev = (np.sum(kernel * b) for b in basis)
        x = np.exp(-h) * x + w_cur * d + (w_prev * d_prev if d_prev is not None else 0)
        d_prev = d


def ge_np(den, x, sigmas, gamma):
    """The gradient-estimation sampler written out (Permenter & Yuan 2024, Alg. 2): the first
    step DDIM, then eps_bar = gamma eps_i + (1 - gamma) eps_{i-1}; the last step x -> D."""
    n = len(sigmas) - 1
    eps_prev = None
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d = den(x, sigma)
        if i == n - 1:
            return d
        eps = (x - d) / sigma
        eps_bar = eps if eps_prev is None else gamma * eps + (1 - gamma) * eps_prev
        x = x + (sigma_next - sigma) * eps_bar
        eps_prev = eps


# --- exactness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler",
    [S.RESMultistep(), S.GradientEstimation(), S.GradientEstimation(gamma=0.5)],
    ids=repr,
)
def test_exact_for_constant_denoiser(x64, sampler):
    # D = mu (one data point): the PF-ODE path is x = mu + sigma z, and both methods follow it
    # (RES: every D_i equal, the exponential Euler step is exact; GE: every eps_i = z)
    mu = jnp.array([[0.3, -1.2]])
    z = jr.normal(jr.key(0), (4, 2), jnp.float64)
    den = lambda x, sigma: jnp.broadcast_to(mu, x.shape)
    sigmas = np.array([5.0, 3.1, 1.7, 1.2, 0.4, 0.1, 0.0])
    traj = jd.sample(den, mu + sigmas[0] * z, sigmas, solver=sampler, return_trajectory=True)[1]
    exact = mu + sigmas[:, None, None] * z
    np.testing.assert_allclose(traj, exact, rtol=1e-13, atol=1e-13)
    # from pure noise too: x is then the unit noise z
    inf_grid = np.concatenate([[np.inf], sigmas[1:]])
    traj = jd.sample(den, z, inf_grid, solver=sampler, return_trajectory=True)[1]
    np.testing.assert_allclose(traj[1:], exact[1:], rtol=1e-13, atol=1e-13)


def test_res_exact_for_denoiser_affine_in_log_sigma(x64):
    # D = a + b t with t = -log sigma (independent of x): after the first-order warm-up step
    # the RES weights integrate x' = D - x exactly (they meet both order conditions for every
    # h); DPM-Solver++(2M), whose weights meet the second one only as h -> 0, does not.
    a, b = 0.3, 0.7

    def den(x, sigma):
        return jnp.full_like(x, a - b * jnp.log(sigma))

    sigmas = np.array([3.0, 2.0, 1.1, 0.8, 0.3, 0.05, 0.0])
    t = -np.log(sigmas[:-1])
    x0 = jnp.array([[1.7], [-0.4]])

    def flow(x1, tk):  # exact solution from (t_1, x1): e^u (a + b u - b) is a primitive
        primitive = lambda u: np.exp(u - tk) * (a + b * u - b)
        return np.exp(t[1] - tk) * x1 + primitive(tk) - primitive(t[1])

    for sampler, exact in [(S.RESMultistep(), True), (S.DPMpp2M(), False)]:
        traj = np.asarray(jd.sample(den, x0, sigmas, solver=sampler, return_trajectory=True)[1])
        expected = np.stack([flow(traj[1], tk) for tk in t[1:]])
        if exact:
            np.testing.assert_allclose(traj[1:-1], expected, rtol=1e-12, atol=1e-12)
        else:
            assert np.max(np.abs(traj[1:-1] - expected)) > 1e-3


def test_ge_adams_bashforth_gamma_exact_for_affine_slope(x64):
    # a PF-ODE slope affine in sigma, dx/dsigma = alpha + beta sigma (D = x - sigma (alpha +
    # beta sigma)): on equal steps gamma = 1.5 is Adams–Bashforth 2, exact after the Euler
    # first step; the paper's gamma = 2 is not (first order)
    alpha, beta = 0.4, -0.9

    def den(x, sigma):
        return x - sigma * (alpha + beta * sigma)

    sigmas = np.append(np.linspace(2.0, 0.5, 7), 0.0)
    x0 = jnp.array([[0.2], [1.5]])
    for gamma, exact in [(1.5, True), (2.0, False)]:
        traj = jd.sample(
            den, x0, sigmas, solver=S.GradientEstimation(gamma=gamma), return_trajectory=True
        )[1]
        traj = np.asarray(traj)
        s = sigmas[1:-1, None, None]
        expected = traj[1] + alpha * (s - sigmas[1]) + beta * (s**2 - sigmas[1] ** 2) / 2
        if exact:
            np.testing.assert_allclose(traj[1:-1], expected, rtol=1e-13, atol=1e-13)
        else:
            assert np.max(np.abs(traj[1:-1] - expected)) > 1e-3


# --- against independent references -----------------------------------------------------------


@pytest.mark.parametrize(
    "sigmas",
    [karras_np(10), np.array([9.0, 7.5, 3.0, 2.6, 0.9, 0.2, 0.15, 0.0]), karras_np(2)],
    ids=["karras10", "uneven", "karras2"],
)
def test_res_matches_quadrature_reference(x64, sigmas):
    gm = jd.analytic.ring()
    x = sigmas[0] * np.random.default_rng(0).standard_normal((64, 2))
    ours = jd.sample(gm.denoiser, jnp.asarray(x), sigmas, solver=S.RESMultistep())
    theirs = res_quadrature_np(np_denoiser(gm), x, sigmas)
    np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_ge_matches_numpy_loop(x64, gamma):
    gm = jd.analytic.ring()
    x = 80 * np.random.default_rng(1).standard_normal((64, 2))
    sampler = S.GradientEstimation(gamma=gamma)
    for n in (2, 10):
        ours = jd.sample(gm.denoiser, jnp.asarray(x), karras_np(n), solver=sampler)
        theirs = ge_np(np_denoiser(gm), x, karras_np(n), gamma)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_ge_gamma_one_is_ddim(x64):
    gm = jd.analytic.ring()
    x = 80 * jr.normal(jr.key(2), (64, 2), jnp.float64)
    ge = jd.sample(gm.denoiser, x, karras_np(12), solver=S.GradientEstimation(gamma=1.0))
    ddim = jd.sample(gm.denoiser, x, karras_np(12), solver=S.DDIM())
    np.testing.assert_allclose(ge, ddim, rtol=1e-15, atol=1e-15)


# --- order and accuracy ------------------------------------------------------------------------


@functools.cache
def _mixture_problem():
    """jaxdiff_test_utils.order_of_convergence's problem, its reference computed once: a 2-D
    mixture, noise at sigma = 2, and a 4096-step Heun solve on the geometric grid 2 -> 0.1 -> 0."""
    gm = jd.analytic.GaussianMixture(
        jnp.array([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]]), jnp.full((3, 2), 0.3**2)
    )
    x = 2.0 * jr.normal(jr.key(0), (256, 2), jnp.float64)
    return gm, x, jd.sample(gm.denoiser, x, geometric_grid(4096), solver=S.Heun())


def _errors(sampler, ns):
    """RMS errors against the reference on geometric grids of `ns` steps."""
    gm, x, ref = _mixture_problem()
    outs = [jd.sample(gm.denoiser, x, geometric_grid(n), solver=sampler) for n in ns]
    return np.array([float(jnp.sqrt(jnp.mean(jnp.sum((o - ref) ** 2, -1)))) for o in outs])


@pytest.mark.parametrize(
    ("sampler", "measured"),
    [
        # RES multistep: order 2 (fits 2.04 over n = 16 .. 128, 2.01 over 64 .. 512)
        (S.RESMultistep(), 2.04),
        # gradient estimation, gamma = 2: first order (0.88 over 16 .. 128, local slopes 0.78,
        # 0.90, 0.95; 0.97 over 64 .. 512). (gamma = 1.5, Adams–Bashforth 2 to leading order
        # where step ratios tend to 1, as on this grid, fits 1.98.)
        (S.GradientEstimation(), 0.88),
    ],
    ids=["RESMultistep", "GradientEstimation"],
)
def test_convergence_order(x64, sampler, measured):
    # the problem of jaxdiff_test_utils.order_of_convergence (same grids, noise, reference)
    ns = (16, 32, 64, 128)
    fitted = -np.polyfit(np.log(ns), np.log(_errors(sampler, ns)), 1)[0]
    assert fitted == pytest.approx(measured, abs=0.15)


def test_res_beats_dpmpp_2m_with_small_steps(x64):
    # where the steps are small (the geometric grid 2 -> 0.1 of the order test, n = 64) the
    # exact order conditions pay: RES's error is 0.90x DPM++(2M)'s (1.86e-4 vs 2.06e-4;
    # 0.93x, 0.91x, 0.90x at n = 16, 32, 128)
    (res,), (dpmpp,) = _errors(S.RESMultistep(), (64,)), _errors(S.DPMpp2M(), (64,))
    assert res == pytest.approx(0.90 * dpmpp, rel=0.03)


def test_accuracy_against_ddim_and_dpmpp_2m(x64):
    # RMS distance to a 1000-step Heun solve from the same noise, Karras grids 80 -> 0.002 -> 0
    gm = jd.analytic.ring()
    x = 80 * jr.normal(jr.key(0), (512, 2), jnp.float64)
    ref = jd.sample(gm.denoiser, x, karras_np(1000), solver=S.Heun())

    def err(sampler, n):
        out = jd.sample(gm.denoiser, x, karras_np(n), solver=sampler)
        return float(jnp.sqrt(jnp.mean(jnp.sum((out - ref) ** 2, -1))))

    for n in (10, 20):
        ddim, ge = err(S.DDIM(), n), err(S.GradientEstimation(), n)
        res, dpmpp = err(S.RESMultistep(), n), err(S.DPMpp2M(), n)
        print(f"NFE {n}: DDIM {ddim:.4g}, GE {ge:.4g}, RES {res:.4g}, DPM++2M {dpmpp:.4g}")
        # measured: DDIM 0.189 / 0.084, GE 0.093 / 0.046 (NFE 10 / 20): GE halves DDIM's
        # error, as the paper reports on images (the 3-component mixture of the order test,
        # from 80: 0.225 vs 0.112, 0.110 vs 0.066)
        assert ge < 0.65 * ddim
        # RES 0.51 / 0.052 against DPM++(2M) 0.31 / 0.040: on these long steps RES's weight on
        # D_i - D_{i-1} is the larger one and it is less accurate here (the 3-component
        # mixture: 0.41 vs 0.22 at NFE 10); within a factor 2
        assert dpmpp < res < 2 * dpmpp


# --- the program, the grid from inf, options ---------------------------------------------------


@pytest.mark.parametrize("sampler", [S.RESMultistep(), S.GradientEstimation()], ids=repr)
def test_one_program_and_pure_noise_start(sampler):
    gm = jd.analytic.ring()
    sigmas = jnp.asarray(karras_np(6), jnp.float32)
    x = 80 * jr.normal(jr.key(0), (16, 2))
    jd.sample(gm.denoiser, x, sigmas, solver=sampler)
    with compiles(_sample) as new:
        out = jd.sample(gm.denoiser, 80 * jr.normal(jr.key(1), (16, 2)), sigmas, solver=sampler)
    assert new.count == 0
    assert bool(jnp.all(jnp.isfinite(out)))
    # from pure noise: x is the unit noise; NFE 1 + nfe(n - 1)
    inf_grid = np.concatenate([[np.inf], karras_np(6)[1:]])
    out = jd.sample(gm.denoiser, jr.normal(jr.key(2), (16, 2)), inf_grid, solver=sampler)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert jd.samplers.num_evaluations(sampler, inf_grid) == 1 + sampler.nfe(5) == 6


def test_res_from_inf_is_the_limit_of_large_sigma_max(x64):
    # the weight of D at sigma_0 in the second step is (h + e^{-h} - 1) / log(sigma_0/sigma_1),
    # so a grid from sigma_0 tends to the grid from inf as 1/log sigma_0
    gm = jd.analytic.ring()
    z = jr.normal(jr.key(3), (64, 2), jnp.float64)
    rest = karras_np(6, sigma_max=20.0)
    from_inf = jd.sample(gm.denoiser, z, np.concatenate([[np.inf], rest]), solver=S.RESMultistep())
    gaps = []
    for sigma_0 in (1e4, 1e8, 1e16, 1e32):
        out = jd.sample(
            gm.denoiser, sigma_0 * z, np.concatenate([[sigma_0], rest]), solver=S.RESMultistep()
        )
        gaps.append(float(jnp.max(jnp.abs(out - from_inf))) * np.log(sigma_0 / rest[0]))
    # gap * log(sigma_0 / sigma_1) tends to a constant
    assert gaps[-1] == pytest.approx(gaps[-2], rel=0.1)


def test_names_and_nfe():
    assert isinstance(S.by_name("res_multistep"), S.RESMultistep)
    ge = S.by_name("gradient_estimation", gamma=1.5)
    assert isinstance(ge, S.GradientEstimation) and ge.gamma == 1.5
    for sampler in (S.RESMultistep(), ge):
        assert [sampler.nfe(n) for n in (1, 2, 5)] == [1, 2, 5]
        assert not sampler.stochastic


def test_cli_accepts_the_names():
    import argparse

    from jaxdiff.cli._sample import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for name in ("res_multistep", "gradient_estimation"):
        assert (
            parser.parse_args(["--ckpt", "run", "--out", "o.png", "--solver", name]).solver == name
        )


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma must be"):
        S.GradientEstimation(gamma=gamma)
    with pytest.raises(ValueError, match="gamma must be"):
        S.by_name("gradient_estimation", gamma=gamma)


def test_gamma_not_a_number():
    with pytest.raises(TypeError, match="gamma must be a real number"):
        S.GradientEstimation(gamma="2")
