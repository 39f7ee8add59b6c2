"""The stochastic samplers: their sample distribution on a mixture with the exact denoiser,
against exact samples and against k-diffusion's samples; exact agreement with k-diffusion
given the same noise (and with eta = 0); the Brownian-tree noise option."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import karras_np

import jaxdiff as jd

S = jd.samplers
N = 10_000  # samples per distribution check: s.e. of a mean log-likelihood ~ 0.01 nats


def mean_se(log_probs):
    lp = np.asarray(log_probs)
    return lp.mean(), lp.std() / np.sqrt(lp.size)


# (sampler, steps, k-diffusion function, its options). Steps on a Karras grid: enough that the
# discretization bias against exact samples is small (measured with 20k samples: within 0.02
# nats; Euler ancestral converges slowly, +0.16 at 50 steps, +0.05 at 200, +0.02 at 800).
DISTRIBUTION_CASES = [
    (S.EulerAncestral(), 800, "sample_euler_ancestral", {}),
    (S.DPM2Ancestral(), 100, "sample_dpm_2_ancestral", {}),
    (S.DPMpp2SAncestral(), 100, "sample_dpmpp_2s_ancestral", {}),
    # with independent sub-step noises DPMppSDE is off by +0.17 nats at 50 steps
    (S.DPMppSDE(), 50, "sample_dpmpp_sde", {}),
    (S.DPMppSDE(noise="tree"), 50, None, {}),
    (S.DPMpp2MSDE(), 100, "sample_dpmpp_2m_sde", {}),
    (S.DPMpp3MSDE(), 100, "sample_dpmpp_3m_sde", {}),
    # EDM's ImageNet-64 setting, tuned for 256 steps; see its docstring for fewer steps
    (
        S.EDMStochastic(),
        256,
        "sample_heun",
        dict(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003),
    ),
]
DISTRIBUTION_IDS = [
    f"{type(c[0]).__name__}-{getattr(c[0], 'noise', '')}" for c in DISTRIBUTION_CASES
]
BIAS_ALLOWANCE = 0.03
_SAMPLES = {}


def our_log_probs(case_index, n):
    """Log-likelihoods of N samples of a case on a Karras grid of n steps (cached)."""
    if (case_index, n) not in _SAMPLES:
        sampler = DISTRIBUTION_CASES[case_index][0]
        gm = jd.analytic.ring()
        x = 80.0 * jr.normal(jr.key(0), (N, 2), jnp.float64)
        out = jd.sample(gm.denoiser, x, karras_np(n), solver=sampler, key=jr.key(1))
        _SAMPLES[case_index, n] = np.asarray(gm.log_prob(out))
    return _SAMPLES[case_index, n]


@pytest.mark.parametrize("case_index", range(len(DISTRIBUTION_CASES)), ids=DISTRIBUTION_IDS)
def test_distribution_matches_mixture(case_index, x64):
    """Mean log-likelihood of the samples (exact denoiser) against that of exact samples."""
    gm = jd.analytic.ring()
    ours, se_ours = mean_se(our_log_probs(case_index, DISTRIBUTION_CASES[case_index][1]))
    exact, se_exact = mean_se(gm.log_prob(gm.sample(jr.key(123), N)))
    tol = 4 * np.hypot(se_ours, se_exact) + BIAS_ALLOWANCE
    assert abs(ours - exact) < tol, (ours, exact, tol)


PEER_CASES = [i for i, case in enumerate(DISTRIBUTION_CASES) if case[2] is not None]


@pytest.mark.slow
@pytest.mark.parametrize("case_index", PEER_CASES, ids=[DISTRIBUTION_IDS[i] for i in PEER_CASES])
def test_distribution_matches_kdiffusion(case_index, kdiffusion, x64):
    """The same algorithm and grid (at most 100 steps) with k-diffusion's own randomness
    (torch's RNG; its Brownian tree for `sample_dpmpp_sde`), N / 4 samples on its side:
    equal mean log-likelihoods within sampling error (4 s.e. ~ 0.09 nats). The
    multistep SDE samplers take k-diffusion's `default_noise_sampler`: their steps' Brownian
    intervals are disjoint, so per-step normals have the law of its (slow) tree."""
    import torch
    from kdiffusion_peer import torch_denoiser

    _, n, kd_name, kd_kwargs = DISTRIBUTION_CASES[case_index]
    n = min(n, 100)  # k-diffusion's Python loop is slow; the same n on both sides suffices
    gm = jd.analytic.ring()
    ours, se_ours = mean_se(our_log_probs(case_index, n))
    torch.manual_seed(0)
    x = 80.0 * torch.randn(N // 4, 2, dtype=torch.float64)
    if kd_name in ("sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde"):
        kd_kwargs = dict(kd_kwargs, noise_sampler=kdiffusion.default_noise_sampler(x))
    sigmas = torch.tensor(karras_np(n))
    out = getattr(kdiffusion, kd_name)(torch_denoiser(gm), x, sigmas, disable=True, **kd_kwargs)
    theirs, se_theirs = mean_se(gm.log_prob(jnp.asarray(out.numpy())))
    assert abs(ours - theirs) < 4 * np.hypot(se_ours, se_theirs), (ours, theirs)


# ---- exact agreement with k-diffusion given the same noise -------------------------------

SIGMAS = karras_np(10)
X = 80 * np.random.default_rng(0).standard_normal((256, 2))
KEY_SEED = 7


def step_normals(i, count=1):
    """The standard normals our samplers draw on step i (from fold_in(key, i))."""
    key = jr.fold_in(jr.key(KEY_SEED), i)
    keys = [key] if count == 1 else list(jr.split(key, count))
    return [np.asarray(jr.normal(k, X.shape, jnp.float64)) for k in keys]


def step_of(sigma):
    return int(np.argmin(np.abs(SIGMAS - float(sigma))))


def replay_noise(sigma, sigma_next):
    """A k-diffusion noise sampler that returns our step noise."""
    import torch

    return torch.tensor(step_normals(step_of(sigma))[0])


def replay_sde_noise(sigma, sigma_to):
    """`DPMppSDE`'s two sub-step noises: the normalized increments of one Brownian path over
    [sigma_mid, sigma] and [sigma_next, sigma] (r = 1/2)."""
    import torch

    i = step_of(sigma)
    s, s_next = SIGMAS[i], SIGMAS[i + 1]
    s_mid = np.sqrt(s * s_next)
    u_1, u_2 = step_normals(i, 2)
    if abs(float(sigma_to) - s_next) < 1e-12 * s_next:
        w = np.sqrt(s - s_mid) * u_1 + np.sqrt(s_mid - s_next) * u_2
        return torch.tensor(w / np.sqrt(s - s_next))
    return torch.tensor(u_1)


def run_with_key(kdiffusion, sampler, kd_name, **kd_kwargs):
    import torch
    from kdiffusion_peer import torch_denoiser

    gm = jd.analytic.ring()
    ours = jd.sample(gm.denoiser, X, SIGMAS, solver=sampler, key=jr.key(KEY_SEED))
    theirs = getattr(kdiffusion, kd_name)(
        torch_denoiser(gm), torch.tensor(X), torch.tensor(SIGMAS), disable=True, **kd_kwargs
    )
    return np.asarray(ours), theirs.numpy()


SAME_NOISE = [
    (S.EulerAncestral(), "sample_euler_ancestral", replay_noise, {}),
    (
        S.DPM2Ancestral(eta=0.8, s_noise=1.1),
        "sample_dpm_2_ancestral",
        replay_noise,
        dict(eta=0.8, s_noise=1.1),
    ),
    (S.DPMpp2SAncestral(), "sample_dpmpp_2s_ancestral", replay_noise, {}),
    (S.DPMppSDE(), "sample_dpmpp_sde", replay_sde_noise, {}),
    (S.DPMpp2MSDE(), "sample_dpmpp_2m_sde", replay_noise, {}),
    (
        S.DPMpp2MSDE(eta=0.7, s_noise=1.1, solver_type="heun"),
        "sample_dpmpp_2m_sde",
        replay_noise,
        dict(eta=0.7, s_noise=1.1, solver_type="heun"),
    ),
    (S.DPMpp3MSDE(eta=0.5), "sample_dpmpp_3m_sde", replay_noise, dict(eta=0.5)),
]


@pytest.mark.parametrize(
    "sampler, kd_name, noise, kd_kwargs", SAME_NOISE, ids=[f"{c[0]}" for c in SAME_NOISE]
)
def test_same_noise_matches_kdiffusion(sampler, kd_name, noise, kd_kwargs, kdiffusion, x64):
    ours, theirs = run_with_key(kdiffusion, sampler, kd_name, noise_sampler=noise, **kd_kwargs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_edm_stochastic_same_noise_matches_kdiffusion(kdiffusion, x64, monkeypatch):
    """k-diffusion's `sample_heun` with churn draws `torch.randn_like(x)` once per step."""
    import torch

    calls = []

    def randn_like(x):
        calls.append(None)
        return torch.tensor(step_normals(len(calls) - 1)[0])

    monkeypatch.setattr(torch, "randn_like", randn_like)
    options = dict(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003)
    ours, theirs = run_with_key(kdiffusion, S.EDMStochastic(**options), "sample_heun", **options)
    assert len(calls) == len(SIGMAS) - 1
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


DETERMINISTIC = [
    (S.DPMpp2SAncestral(eta=0.0), "sample_dpmpp_2s_ancestral", dict(eta=0.0)),
    (S.DPMppSDE(eta=0.0, r=0.3), "sample_dpmpp_sde", dict(eta=0.0, r=0.3)),
    (S.DPMpp2MSDE(eta=0.0), "sample_dpmpp_2m_sde", dict(eta=0.0)),
    (S.DPMpp3MSDE(eta=0.0), "sample_dpmpp_3m_sde", dict(eta=0.0)),
]


@pytest.mark.parametrize(
    "sampler, kd_name, kd_kwargs", DETERMINISTIC, ids=[f"{s}" for s, _, _ in DETERMINISTIC]
)
def test_deterministic_limit_matches_kdiffusion(sampler, kd_name, kd_kwargs, kdiffusion, x64):
    ours, theirs = run_with_key(kdiffusion, sampler, kd_name, **kd_kwargs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
    again = jd.sample(jd.analytic.ring().denoiser, X, SIGMAS, solver=sampler, key=jr.key(0))
    np.testing.assert_allclose(again, ours, rtol=1e-12)  # no noise: the key does not matter


# ---- the sub-step noises of DPMppSDE, and the Brownian tree --------------------------------


@pytest.mark.parametrize("noise", ["step", "tree"])
def test_dpmpp_sde_substep_noises_are_one_brownian_path(noise, kdiffusion, x64):
    """The two sub-step noises are standard normals with the correlation of one Brownian path
    in sigma, sqrt((sigma - sigma_mid) / (sigma - sigma_next)), as k-diffusion's tree gives."""
    import torch

    sigma, sigma_next = 2.0, 0.3
    sigma_mid = np.sqrt(sigma * sigma_next)
    x = jnp.zeros((20_000,))
    sigmas = jnp.array([80.0, sigma, sigma_next, 0.002, 0.0])
    sampler = S.DPMppSDE(noise=noise)
    carry = sampler.init_with_key(x, sigmas, jr.key(0))
    if noise == "tree":
        carry = (carry[0], carry[0].evaluate(sigma))
    z_1, z_2, _ = sampler._noises(x, carry, sigma, sigma_mid, sigma_next, jr.key(1))
    tree = kdiffusion.BrownianTreeNoiseSampler(torch.zeros(x.size), 0.002, 80.0, seed=0)
    kd_1 = tree(torch.tensor(sigma), torch.tensor(sigma_mid)).numpy()
    kd_2 = tree(torch.tensor(sigma), torch.tensor(sigma_next)).numpy()
    expected = np.sqrt((sigma - sigma_mid) / (sigma - sigma_next))
    se = 4 / np.sqrt(x.size)  # 4 standard errors
    for z in (z_1, z_2, kd_1, kd_2):
        assert abs(np.std(z) - 1) < se and abs(np.mean(z)) < se
    assert np.corrcoef(kd_1, kd_2)[0, 1] == pytest.approx(expected, abs=se)
    assert np.corrcoef(z_1, z_2)[0, 1] == pytest.approx(expected, abs=se)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [S.DPMppSDE, S.DPMpp2MSDE])  # DPMpp3MSDE: as DPMpp2MSDE
def test_tree_noise_converges_with_the_same_key(cls, x64):
    """With noise="tree", a refined grid with the same key approaches one path's solution: at
    64 steps the median distance to a 256-step solution is ~0.01-0.03 (it halves per doubling
    of the steps), against ~3 (independent draws of the ring) with noise="step"."""
    gm = jd.analytic.ring()
    x = 80 * jr.normal(jr.key(0), (128, 2), jnp.float64)
    key = jr.key(5)

    def run(n, noise):
        return jd.sample(gm.denoiser, x, karras_np(n), solver=cls(noise=noise), key=key)

    ref = run(256, "tree")

    def median_error(noise):
        return float(jnp.median(jnp.linalg.norm(run(64, noise) - ref, axis=-1)))

    tree, step = median_error("tree"), median_error("step")
    assert tree < 0.1 and step > 1.0, (tree, step)


def test_tree_noise_float32_jit_and_one_step():
    """noise="tree" in float32: dtype kept, finite, deterministic per key, jit, a one-step grid.
    Under an outer jit the tree's times may round differently (constant folding); a Brownian
    path is only Hoelder-1/2 in time, so float32 results then agree to ~1e-4, not to ulps."""
    gm = jd.analytic.ring()
    sigmas = jnp.asarray(karras_np(8), jnp.float32)
    x = 80 * jr.normal(jr.key(0), (64, 2), jnp.float32)
    sampler = S.DPMpp3MSDE(noise="tree")
    out = jd.sample(gm.denoiser, x, sigmas, solver=sampler, key=jr.key(1))
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    again = jd.sample(gm.denoiser, x, sigmas, solver=sampler, key=jr.key(1))
    other = jd.sample(gm.denoiser, x, sigmas, solver=sampler, key=jr.key(2))
    assert jnp.array_equal(out, again) and not jnp.allclose(out, other)
    jitted = jax.jit(lambda k: jd.sample(gm.denoiser, x, sigmas, solver=sampler, key=k))
    assert jnp.allclose(jitted(jr.key(1)), out, rtol=1e-3, atol=1e-3)
    one_step = jd.sample(gm.denoiser, x, sigmas[-2:], solver=sampler, key=jr.key(1))
    assert bool(jnp.all(jnp.isfinite(one_step)))


def test_bad_options():
    with pytest.raises(ValueError, match="noise"):
        S.DPMpp2MSDE(noise="brownian")
    with pytest.raises(ValueError, match="solver_type"):
        S.DPMpp2MSDE(solver_type="euler")
    with pytest.raises(ValueError, match="eta"):
        S.EulerAncestral(eta=-1.0)
    with pytest.raises(ValueError, match="r must"):
        S.DPMppSDE(r=0.0)
    with pytest.raises(ValueError, match="s_churn"):
        S.EDMStochastic(s_churn=-1.0)


def test_nfe():
    for sampler in (S.DPM2Ancestral(), S.DPMpp2SAncestral(), S.DPMppSDE(), S.EDMStochastic()):
        assert sampler.nfe(10) == 19
    for sampler in (S.EulerAncestral(), S.DPMpp2MSDE(), S.DPMpp3MSDE()):
        assert sampler.nfe(10) == 10
