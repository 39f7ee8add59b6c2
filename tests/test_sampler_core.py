"""The sampler core: the contract every sampler keeps (jit, vmap, dtypes, keys, no NaN, no
recompilation), bad input, and the k-diffusion peer for Euler and Heun."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from conftest import karras_np
from jaxdiff_test_utils import compiles

import jaxdiff as jd
from jaxdiff.samplers._core import _sample  # jd.sample's compiled program

# Public samplers that cannot be built with default options (AnalyticDPM needs its Gamma
# estimate, one per step): tested on their own (tests/test_analytic_dpm.py).
NEEDS_ARGUMENTS = {"AnalyticDPM"}


def all_samplers():
    """Every public sampler class in jd.samplers, built with its default options."""
    out = []
    for name in sorted(dir(jd.samplers)):
        obj = getattr(jd.samplers, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, jd.samplers.AbstractSampler)
            and not name.startswith("Abstract")
            and name not in NEEDS_ARGUMENTS
        ):
            out.append(obj())
    return out


SAMPLERS = all_samplers()
IDS = [type(s).__name__ for s in SAMPLERS]


class MixtureDenoiser(eqx.Module):
    """A denoiser whose parameters are pytree leaves (like network weights)."""

    gm: jd.analytic.GaussianMixture

    def __call__(self, x, sigma):
        return self.gm.denoiser(x, sigma)


def test_recompile_check_registers_forced_recompiles():
    """Positive control for the no-recompile checks (`compiles(_sample)` here and in the
    other tests): a new shape, step count or sampler does recompile `jd.sample`, and the
    check counts each one, so `new.count == 0` can fail."""
    gm = jd.analytic.ring()

    def den(x, sigma):  # a new function: static, so the first call must compile
        return gm.denoiser(x, sigma)

    sigmas = jnp.asarray(karras_np(3), jnp.float32)
    longer = jnp.asarray(karras_np(4), jnp.float32)  # one more step
    x = jnp.ones((4, 2))
    with compiles(_sample) as new:
        jd.sample(den, x, sigmas, solver=jd.samplers.Euler())
    assert new.count == 1
    with compiles(_sample) as new:
        jd.sample(den, x + 1, sigmas, solver=jd.samplers.Euler())  # new values only
    assert new.count == 0
    with compiles(_sample) as new:
        jd.sample(den, x[:3], sigmas, solver=jd.samplers.Euler())  # a new batch size
    assert new.count == 1
    with compiles(_sample) as new:
        jd.sample(den, x, longer, solver=jd.samplers.Euler())  # a new step count
        jd.sample(den, x, sigmas, solver=jd.samplers.Heun())  # a new sampler
    assert new.count == 2
    with compiles(_sample) as new:  # all of them again: cached
        jd.sample(den, 2 * x, sigmas, solver=jd.samplers.Euler())
        jd.sample(den, x[1:], sigmas, solver=jd.samplers.Euler())
        jd.sample(den, x, longer, solver=jd.samplers.Euler())
        jd.sample(den, x, sigmas, solver=jd.samplers.Heun())
    assert new.count == 0


@pytest.mark.parametrize("sampler", SAMPLERS, ids=IDS)
def test_sampler_contract(sampler, dtype):
    gm = jd.analytic.ring()
    sigmas = jnp.asarray(karras_np(8), dtype)
    x = 80 * jr.normal(jr.key(0), (64, 2), dtype)
    key = jr.key(1)
    den = MixtureDenoiser(gm)
    out = jd.sample(den, x, sigmas, solver=sampler, key=key)
    assert out.shape == x.shape and out.dtype == dtype
    assert jnp.all(jnp.isfinite(out)), "NaN or inf across sigma 80 -> 0.002 -> 0"
    # deterministic per key
    again = jd.sample(den, x, sigmas, solver=sampler, key=key)
    assert jnp.array_equal(out, again)
    # no recompilation for new weights, a new key or new noise
    with compiles(_sample) as new:
        other = jd.sample(
            MixtureDenoiser(jd.analytic.ring(radius=3.0)),
            x + 1,
            sigmas,
            solver=sampler,
            key=jr.key(2),
        )
    assert new.count == 0, f"recompiled {new.count} times"
    assert not jnp.allclose(other, out)
    # under jit and vmap over batch chunks: the same per-sample results for deterministic
    # samplers (stochastic ones draw noise for the whole batch, so compare shapes only)
    jitted = jax.jit(lambda d, x, k: jd.sample(d, x, sigmas, solver=sampler, key=k))(den, x, key)
    assert jnp.allclose(jitted, out, rtol=1e-5, atol=1e-5)
    batched = jax.vmap(lambda xb: jd.sample(den, xb, sigmas, solver=sampler, key=key))(
        x.reshape(4, 16, 2)
    )
    assert batched.shape == (4, 16, 2) and batched.dtype == dtype
    if not sampler.stochastic:
        assert jnp.allclose(batched.reshape(64, 2), out, rtol=1e-5, atol=1e-5)
    assert sampler.nfe(8) >= 8 - 1


@pytest.mark.parametrize("sampler", SAMPLERS, ids=IDS)
def test_nfe_counts_denoiser_calls(sampler):
    calls = []

    def denoiser(x, sigma):
        jax.debug.callback(lambda: calls.append(1))
        return x / (1 + sigma**2)

    for n in [1, 2, 5]:
        calls.clear()
        out = jd.sample(
            denoiser, jnp.ones((3, 2)), jnp.asarray(karras_np(n)), solver=sampler, key=jr.key(0)
        )
        jax.block_until_ready(out)
        assert len(calls) == sampler.nfe(n), (n, len(calls))


def test_trajectory_callback_and_pair_denoiser():
    gm = jd.analytic.ring()
    sigmas = jnp.asarray(karras_np(5))
    x = 80 * jr.normal(jr.key(0), (8, 2))
    out, traj = jd.sample(
        gm.denoiser, x, sigmas, solver=jd.samplers.Euler(), return_trajectory=True
    )
    assert traj.shape == (6, 8, 2)
    assert jnp.array_equal(traj[0], x) and jnp.array_equal(traj[-1], out)
    seen = []
    jd.sample(
        gm.denoiser,
        x,
        sigmas,
        solver=jd.samplers.Euler(),
        callback=lambda info: seen.append(int(info["i"])),
    )
    jax.effects_barrier()
    assert seen == [0, 1, 2, 3, 4]
    pair = (
        lambda p, x, s: jd.analytic.GaussianMixture(*p).denoiser(x, s),
        (gm.means, gm.variances, gm.weights),
    )
    assert jnp.allclose(jd.sample(pair, x, sigmas, solver=jd.samplers.Euler()), out, atol=1e-5)


def test_bad_input():
    gm = jd.analytic.ring()
    x = jnp.ones((4, 2))
    good = jnp.asarray(karras_np(4))
    with pytest.raises(ValueError, match="sigmas must be strictly decreasing"):
        jd.sample(gm.denoiser, x, jnp.array([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="sigmas must end at sigma = 0"):
        jd.sample(gm.denoiser, x, jnp.array([2.0, 1.0]))
    with pytest.raises(ValueError, match="sigmas must be 1-D"):
        jd.sample(gm.denoiser, x, jnp.array([0.0]))
    with pytest.raises(ValueError, match="denoiser.*must return an array shaped like x"):
        jd.sample(lambda x, s: x[:, :1], x, good)
    with pytest.raises(TypeError, match="denoiser must be callable"):
        jd.sample(3.0, x, good)
    with pytest.raises(TypeError, match="solver must be one of the sampler names"):
        jd.sample(gm.denoiser, x, good, solver=3)
    with pytest.raises(ValueError, match="unknown solver 'hewn'"):
        jd.sample(gm.denoiser, x, good, solver="hewn")
    # by name: the same program as the instance
    np.testing.assert_array_equal(
        jd.sample(gm.denoiser, x, good, solver="dpmpp_2m"),
        jd.sample(gm.denoiser, x, good, solver=jd.samplers.DPMpp2M()),
    )
    with pytest.raises(TypeError, match="x must be a floating-point"):
        jd.sample(gm.denoiser, jnp.ones((4, 2), int), good)
    stochastic = [s for s in SAMPLERS if s.stochastic]
    for s in stochastic:
        with pytest.raises(ValueError, match="is stochastic: pass key="):
            jd.sample(gm.denoiser, x, good, solver=s)


@pytest.mark.parametrize(
    ("sampler", "kd_name"),
    [(jd.samplers.Euler(), "sample_euler"), (jd.samplers.Heun(), "sample_heun")],
)
def test_peer_kdiffusion(kdiffusion, x64, sampler, kd_name):
    from kdiffusion_peer import run_both

    gm = jd.analytic.ring()
    x = 80 * np.random.default_rng(0).standard_normal((256, 2))
    ours, theirs = run_both(sampler, kd_name, gm=gm, sigmas=karras_np(10), x=x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("sampler", "order"), [(jd.samplers.Euler(), 1), (jd.samplers.Heun(), 2)])
def test_convergence_order(x64, sampler, order):
    # PF-ODE trajectory error against a tight reference from the same noise, on a grid
    # uniform in log sigma between 1 and 0.05 (the last step to 0 is exact for both methods
    # only in the limit, so the grid stops at a positive sigma via a final tiny step).
    from jaxdiff_test_utils import order_of_convergence

    fitted = order_of_convergence(sampler)
    assert fitted == pytest.approx(order, abs=0.2)


def test_one_step_grid_trajectory_and_unused_per_sample_keys():
    """A one-step grid runs no scan and still returns its two-point trajectory; a
    deterministic sampler ignores per-sample keys, so a callback is allowed with them."""
    gm = jd.analytic.ring()
    x = jnp.ones((3, 2))
    one = jnp.array([1.0, 0.0])
    out, traj = jd.sample(gm.denoiser, x, one, solver="euler", return_trajectory=True)
    assert traj.shape == (2, 3, 2)
    np.testing.assert_array_equal(traj[0], x)
    np.testing.assert_array_equal(traj[-1], out)
    keys = jd.per_sample_keys(jr.key(0), 3)
    res = jd.sample(gm.denoiser, x, one, solver="euler_ancestral", key=keys, return_trajectory=True)
    assert res.trajectory.shape == (2, 3, 2)
    seen = []
    jd.sample(gm.denoiser, x, one, solver="heun", key=keys, callback=seen.append)
    jax.effects_barrier()
    assert len(seen) == 1
