"""The fast deterministic multistep solvers: iPNDM, DEIS (log-rho and rho-AB) and UniPC.

Oracles: a plain numpy loop of iPNDM's four formulas; a literal numpy port of the official
UniPC loop (`multistep_uni_pc_bh_update`, data prediction); rho-AB DEIS reduces to iPNDM's
fixed coefficients on an equal-step grid (log-rho DEIS against diffusers:
test_sampler_variants.py); local errors from an exact history on a single Gaussian
(closed-form trajectory); fitted orders on the PF-ODE; NFE counts; accuracy at NFE 10.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import karras_np

import jaxdiff as jd

S = jd.samplers


def np_denoiser(gm):
    return lambda x, sigma: np.asarray(gm.denoiser(jnp.asarray(x), jnp.asarray(sigma)))


def ipndm_np(den, x, sigmas):
    """iPNDM written out: the four Adams–Bashforth formulas, warm start, Euler to sigma = 0."""
    ds = []
    n = len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = den(x, sigma)
        if i == n - 1:
            return denoised
        d = (x - denoised) / sigma
        ds.insert(0, d)
        if len(ds) == 1:
            slope = ds[0]
        elif len(ds) == 2:
            slope = (3 * ds[0] - ds[1]) / 2
        elif len(ds) == 3:
            slope = (23 * ds[0] - 16 * ds[1] + 5 * ds[2]) / 12
        else:
            slope = (55 * ds[0] - 59 * ds[1] + 37 * ds[2] - 9 * ds[3]) / 24
        x = x + (sigma_next - sigma) * slope
        ds = ds[:3]


def unipc_official_np(den, x, sigmas, order, variant, lower_order_final):
    """A literal numpy port of the official UniPC loop (`sample(method="multistep")` with
    `multistep_uni_pc_bh_update`, `predict_x0=True`) for alpha = 1, sigma_t = sigma,
    lambda = -log sigma, on a grid ending at 0 whose last step is x -> D."""
    lam = lambda s: -np.log(s)
    n = len(sigmas) - 1

    def update(x, models, ts, t, order):
        h = lam(t) - lam(ts[-1])
        rks, d1s = [], []
        for i in range(1, order):
            rk = (lam(ts[-(i + 1)]) - lam(ts[-1])) / h
            rks.append(rk)
            d1s.append((models[-(i + 1)] - models[-1]) / rk)
        rks = np.array([*rks, 1.0])
        hh = -h
        h_phi_1 = np.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial_i = 1
        b_h = hh if variant == "bh1" else np.expm1(hh)
        r_mat, b = [], []
        for i in range(1, order + 1):
            r_mat.append(rks ** (i - 1))
            b.append(h_phi_k * factorial_i / b_h)
            factorial_i *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial_i
        r_mat, b = np.stack(r_mat), np.array(b)
        pred_res = corr_res = 0
        if d1s:
            d1s = np.stack(d1s, 1)
            rhos_p = np.array([0.5]) if order == 2 else np.linalg.solve(r_mat[:-1, :-1], b[:-1])
            pred_res = np.einsum("k,bkd->bd", rhos_p, d1s)
        rhos_c = np.array([0.5]) if order == 1 else np.linalg.solve(r_mat, b)
        if len(d1s):
            corr_res = np.einsum("k,bkd->bd", rhos_c[:-1], d1s)
        x_t_ = t / ts[-1] * x - h_phi_1 * models[-1]
        x_t = x_t_ - b_h * pred_res
        model_t = den(x_t, t)
        return x_t_ - b_h * (corr_res + rhos_c[-1] * (model_t - models[-1])), model_t

    ts, models = [sigmas[0]], [den(x, sigmas[0])]
    for step in range(1, n):
        this_order = min(order, step)
        if lower_order_final:
            this_order = min(this_order, n + 1 - step)
        x, model_x = update(x, models, ts, sigmas[step], this_order)
        ts, models = [*ts, sigmas[step]][-order:], [*models, model_x][-order:]
    return models[-1]  # to sigma = 0 (lambda = inf): the order-1 update, x -> D


def test_ipndm_matches_numpy_loop(x64):
    gm = jd.analytic.ring()
    x = 80 * np.random.default_rng(0).standard_normal((32, 2))
    for n in [2, 9]:
        ours = jd.sample(gm.denoiser, jnp.asarray(x), karras_np(n), solver=S.IPNDM())
        np.testing.assert_allclose(
            ours, ipndm_np(np_denoiser(gm), x, karras_np(n)), rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize(
    ("n", "order", "variant", "lof"),
    [(2, 3, "bh2", True), (7, 3, "bh2", True), (7, 3, "bh1", False), (6, 2, "bh1", True)],
)
def test_unipc_matches_official_port(x64, n, order, variant, lof):
    # (checked also for n = 1 .. 10, orders 1 .. 4, both variants, with and without
    # lower_order_final: all within 1e-9)
    gm = jd.analytic.ring()
    x = 80 * np.random.default_rng(1).standard_normal((32, 2))
    sampler = S.UniPC(order=order, variant=variant, lower_order_final=lof)
    ours = jd.sample(gm.denoiser, jnp.asarray(x), karras_np(n), solver=sampler)
    theirs = unipc_official_np(np_denoiser(gm), x, karras_np(n), order, variant, lof)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


def test_deis_equal_steps_is_adams_bashforth(x64):
    # on a grid with equal steps in sigma, rho-AB coefficients are the fixed AB ones (iPNDM)
    # (the rho variant, the default before 0.4.0; log-rho interpolates in log sigma)
    gm = jd.analytic.ring()
    x = 3 * jr.normal(jr.key(0), (32, 2))
    sigmas = np.append(np.linspace(3.0, 0.5, 9), 0.0)
    for order in [3, 4]:
        deis = jd.sample(gm.denoiser, x, sigmas, solver=S.DEIS(order=order, variant="rho"))
        ipndm = jd.sample(gm.denoiser, x, sigmas, solver=S.IPNDM(order=order))
        np.testing.assert_allclose(deis, ipndm, rtol=1e-11, atol=1e-11)


_H_LARGE, _H_SMALL = (0.04, 0.02, 0.01), (0.01, 0.005, 0.0025)


@pytest.mark.parametrize(
    ("sampler", "ratio", "order", "hs"),
    [
        (S.IPNDM(), 1.0, 4, _H_LARGE),
        (S.DEIS(order=3, variant="rho"), 0.9, 3, _H_LARGE),
        (S.DEIS(order=4, variant="rho"), 0.9, 4, _H_LARGE),
        # log-rho (the default since 0.4.0) reaches its asymptotic order later: local slopes
        # 4.83, 4.47, 4.25, 4.13, 4.07 (order 3) and 5.58 .. 5.03 (order 4) from h = 0.08
        # down to 0.0025, so it is fitted on the smaller steps
        (S.DEIS(order=3), 0.9, 3, _H_SMALL),
        (S.DEIS(order=4), 0.9, 4, _H_SMALL),
    ],
    ids=repr,
)
def test_local_error_from_exact_history(x64, sampler, ratio, order, hs):
    # One step after the warm start, fed the exact past slopes, on a single Gaussian
    # N(0, s^2) whose PF-ODE trajectory is x(sigma) = x_T sqrt(s^2 + sigma^2)/sqrt(s^2 + T^2):
    # the local error of an order-p multistep method is O(h^(p+1)). iPNDM's fixed
    # coefficients need equal steps (ratio 1); DEIS's also hold on uneven (geometric) ones.
    s2 = 0.5
    gm = jd.analytic.GaussianMixture(jnp.zeros((1, 1)), jnp.full((1, 1), s2))
    x_t = jnp.array([[1.3], [-0.7]])

    def exact(sigma):
        return x_t * jnp.sqrt(s2 + sigma**2) / jnp.sqrt(s2 + 1.0)

    errs = []
    for h in hs:
        steps = h * ratio ** jnp.arange(order)[::-1]  # the newest step is h
        sigmas = jnp.concatenate([jnp.array([1.0]), 1.0 - jnp.cumsum(steps)])
        i = order - 1
        slopes = [(exact(s) - gm.denoiser(exact(s), s)) / s for s in sigmas[:i][::-1]]
        carry = jnp.stack(slopes) if order > 1 else sampler.init(x_t, sigmas)
        x_next, _, _ = sampler.step(
            gm.denoiser, exact(sigmas[i]), carry, jnp.int32(i), sigmas, None, final=False
        )
        errs.append(float(jnp.max(jnp.abs(x_next - exact(sigmas[i + 1])))))
    fitted = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert fitted == pytest.approx(order + 1, abs=0.15)


@pytest.mark.parametrize(
    ("sampler", "measured"),
    [
        # iPNDM: each AB4 step is order 4 only with equal steps; on this grid (geometric in
        # sigma) the fixed coefficients and the Euler first step make it order 2
        # asymptotically (measured 3.1, 2.5, 2.2, 2.1, 2.05 between n = 8 .. 256)
        (S.IPNDM(), 2.25),
        # DEIS-3: variable-step AB3 is order 3, but the warm start (an Euler first step with an
        # O(h^2) error that is not amplified by later steps) makes it order 2 in the limit;
        # rho: 2.4, 2.5, 2.5, 2.3, 2.2 between n = 8 .. 256 (from sigma 80 it tends to 3);
        # log-rho (the default since 0.4.0): 2.5, 2.4, 2.2, 2.1, 2.05
        (S.DEIS(variant="rho"), 2.46),
        (S.DEIS(), 2.24),
        # UniPC-3 (UniP-3 + UniC) is order 3 after its warm start (which has UniC too)
        # (bh1: 3.29)
        (S.UniPC(order=3), 3.34),
    ],
    ids=["IPNDM", "DEIS-rho", "DEIS", "UniPC3"],
)
def test_convergence_order(x64, sampler, measured):
    from jaxdiff_test_utils import order_of_convergence

    assert order_of_convergence(sampler) == pytest.approx(measured, abs=0.15)


@pytest.mark.parametrize(
    "sampler",
    [S.IPNDM(order=2), S.DEIS(order=4), S.UniPC(order=3, variant="bh1", lower_order_final=False)],
    ids=repr,
)
def test_nfe_non_default_options(sampler):
    calls = []

    def denoiser(x, sigma):
        jax.debug.callback(lambda: calls.append(1))
        return x / (1 + sigma**2)

    for n in [1, 2, 5]:
        calls.clear()
        jax.block_until_ready(jd.sample(denoiser, jnp.ones((3, 2)), karras_np(n), solver=sampler))
        assert len(calls) == sampler.nfe(n) == n


def test_bad_options():
    with pytest.raises(ValueError, match="IPNDM order"):
        S.IPNDM(order=5)
    with pytest.raises(ValueError, match="DEIS order"):
        S.DEIS(order=0)
    with pytest.raises(ValueError, match="UniPC variant"):
        S.UniPC(variant="bh3")
    with pytest.raises(ValueError, match="UniPC order"):
        S.UniPC(order=0)


def test_accuracy_at_nfe_10(x64):
    # RMS distance to a 1000-step Heun solve from the same noise, Karras grid 80 -> 0.002 -> 0
    gm = jd.analytic.ring()
    x = 80 * jr.normal(jr.key(0), (512, 2))
    ref = jd.sample(gm.denoiser, x, karras_np(1000), solver=S.Heun())

    def err(sampler, n):
        out = jd.sample(gm.denoiser, x, karras_np(n), solver=sampler)
        return float(jnp.sqrt(jnp.mean(jnp.sum((out - ref) ** 2, -1))))

    errs = {type(s).__name__: err(s, 10) for s in [S.IPNDM(), S.DEIS(), S.UniPC()]}
    heun = err(S.Heun(), 5)  # NFE 9
    print(f"NFE 10 RMS errors: {errs}, Heun (NFE 9) {heun:.4g}")
    assert all(e < heun / 3 for e in errs.values())
    if hasattr(S, "DPMpp2M"):
        dpmpp = err(S.DPMpp2M(), 10)
        print(f"DPMpp2M (NFE 10) {dpmpp:.4g}")
        # measured 0.03 vs 0.32 here (and better on the other 2-D mixtures tried)
        assert errs["IPNDM"] < dpmpp / 2
