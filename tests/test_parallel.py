"""Sampling over devices and in chunks (`jaxdiff._parallel`).

The multi-device checks run in a subprocess with 8 simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``); the data-parallel train step is
checked against the single-device one in `tests/test_train.py`
(`test_data_parallel_matches_single_device`).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxdiff_test_utils import with_optimized_compiles

import jaxdiff as jd
from jaxdiff._parallel import per_sample_keys, sample_chunked, shard_batch

_SHARDED = """
import json
import jax, jax.numpy as jnp, jax.random as jr, numpy as np
import jaxdiff as jd
from jaxdiff._parallel import per_sample_keys, replicate, sample_chunked, shard_batch
from jaxdiff.train import data_mesh

assert jax.local_device_count() == 8
gm = jd.analytic.ring()
den = replicate(gm, data_mesh()).denoiser  # the weights, replicated
sigmas = jd.schedules.karras(8, 0.002, 80.0)
x = 80.0 * jr.normal(jr.key(0), (64, 2))
xs = shard_batch(x)
out = {}
cases = [
    ("heun", jd.samplers.Heun(), None),
    ("euler_ancestral", jd.samplers.EulerAncestral(), jr.key(1)),
    ("dpmpp_2m_sde", jd.samplers.DPMpp2MSDE(), jr.key(2)),
    ("per_sample", jd.samplers.EulerAncestral(), per_sample_keys(jr.key(3), 64)),
]
for name, solver, key in cases:
    one = jd.sample(den, x, sigmas, solver=solver, key=key)
    skey = key if name != "per_sample" else shard_batch(key)
    many = jd.sample(den, xs, sigmas, solver=solver, key=skey)
    out[name] = {
        "max_diff": float(jnp.max(jnp.abs(many - one))),
        "scale": float(jnp.max(jnp.abs(one))),
        "devices": len(many.sharding.device_set),
        "spec": str(getattr(many.sharding, "spec", None)),
        "shard_rows": sorted({s.data.shape[0] for s in many.addressable_shards}),
    }
solver = jd.samplers.EulerAncestral()
big = jd.sample(gm.denoiser, x, sigmas, solver=solver, key=per_sample_keys(jr.key(4), 64))
chunks = sample_chunked(gm.denoiser, x, sigmas, solver=solver, key=jr.key(4), chunk_size=24,
                        mesh=data_mesh())
out["chunked_sharded"] = float(jnp.max(jnp.abs(chunks - big)))
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_sharded_sampling_equals_unsharded_and_stays_sharded():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SHARDED)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    for name in ("heun", "euler_ancestral", "dpmpp_2m_sde", "per_sample"):
        case = out[name]
        # same key, same numbers: equal up to float reduction order
        assert case["max_diff"] <= 1e-5 * max(case["scale"], 1.0), (name, case)
        assert case["devices"] == 8, (name, case)
        assert case["shard_rows"] == [8], (name, case)
        assert "data" in case["spec"], (name, case)
    assert out["chunked_sharded"] <= 1e-5


@pytest.fixture(scope="module")
def problem():
    gm = jd.analytic.ring()
    sigmas = jd.schedules.karras(6, 0.002, 80.0)
    x = 80.0 * jr.normal(jr.key(0), (50, 2))
    return gm, sigmas, x


@pytest.mark.parametrize("chunk", [7, 16, 50, 64])
def test_chunked_equals_one_call_deterministic(problem, chunk):
    gm, sigmas, x = problem
    one = jd.sample(gm.denoiser, x, sigmas, solver=jd.samplers.DPMpp2M())
    chunked = sample_chunked(gm.denoiser, x, sigmas, solver=jd.samplers.DPMpp2M(), chunk_size=chunk)
    np.testing.assert_array_equal(np.asarray(chunked), np.asarray(one))


@pytest.mark.parametrize("solver", [jd.samplers.EulerAncestral(), jd.samplers.DPMpp2MSDE()])
def test_chunked_equals_one_call_stochastic(problem, solver):
    gm, sigmas, x = problem
    key = jr.key(5)
    one = jd.sample(gm.denoiser, x, sigmas, solver=solver, key=per_sample_keys(key, x.shape[0]))
    for chunk in (7, 50):
        chunked = sample_chunked(gm.denoiser, x, sigmas, solver=solver, key=key, chunk_size=chunk)
        np.testing.assert_array_equal(np.asarray(chunked), np.asarray(one))
    # the per-sample noise is noise: different keys, different samples
    other = sample_chunked(gm.denoiser, x, sigmas, solver=solver, key=jr.key(6), chunk_size=50)
    assert not np.allclose(np.asarray(other), np.asarray(one))


def test_per_sample_keys_make_a_sample_independent_of_its_batch(problem, request):
    """With one key per sample, sample i's result depends on x[i] and keys[i] only: not on
    the batch it is computed in, its position there, or the other samples' keys. Bit for bit
    with XLA's default compiler settings (the suite's unoptimized compiles differ by an ulp
    between batch sizes, so this test runs apart)."""
    if with_optimized_compiles(request):
        return
    gm, sigmas, x = problem
    solver = jd.samplers.EulerAncestral()

    def run(x_, keys):
        return np.asarray(jd.sample(gm.denoiser, x_, sigmas, solver=solver, key=keys))

    keys = per_sample_keys(jr.key(1), 50)
    full = run(x, keys)
    # alone, in a batch of one
    np.testing.assert_array_equal(run(x[7:8], keys[7:8]), full[7:8])
    # in another order: every sample keeps its result at its new position
    perm = np.random.default_rng(0).permutation(50)
    np.testing.assert_array_equal(run(x[perm], keys[perm]), full[perm])
    # in a smaller batch of other samples, its keys made with an offset (a later chunk)
    np.testing.assert_array_equal(
        run(x[20:30], per_sample_keys(jr.key(1), 10, offset=20)), full[20:30]
    )
    # the others' keys do not matter: new keys for samples 1.., the same result for sample 0
    mixed = jnp.concatenate([keys[:1], per_sample_keys(jr.key(9), 49)])
    other_keys = run(x, mixed)
    np.testing.assert_array_equal(other_keys[0], full[0])
    # but a sample's own key does: every sample with a new key has a new result
    assert np.all(np.any(other_keys[1:] != full[1:], axis=-1))
    # one x in every row, one key per row: as many different samples as keys
    same_x = run(jnp.broadcast_to(x[:1], (10, 2)), keys[:10])
    np.testing.assert_array_equal(same_x[0], full[0])
    assert len({tuple(row) for row in same_x}) == 10
    # the trajectory of per-sample mode ends at the sample
    _, traj = jd.sample(
        gm.denoiser, x[:10], sigmas, solver=solver, key=keys[:10], return_trajectory=True
    )
    assert traj.shape == (sigmas.shape[0], 10, 2)
    np.testing.assert_array_equal(np.asarray(traj[-1]), full[:10])


def test_single_key_is_the_default_stream_not_the_per_sample_one(problem):
    """One key (the default): step i draws `normal(fold_in(key, i), x.shape)` for the whole
    batch (`jaxdiff._fixed_grid`); per-sample keys are a different stream."""
    gm, _, x = problem
    x = x[:8] / 40.0  # at sigma 2
    sigmas = jnp.array([2.0, 1.0, 0.0])
    key = jr.key(1)
    solver = jd.samplers.EulerAncestral()
    out = jd.sample(gm.denoiser, x, sigmas, solver=solver, key=key)
    # by hand: an ancestral Euler step from 2 to 1 with the step's noise, then x -> D(x, 1)
    s, s_next = 2.0, 1.0
    sigma_up = np.sqrt(s_next**2 * (s**2 - s_next**2) / s**2)
    sigma_down = np.sqrt(s_next**2 - sigma_up**2)
    d = (x - gm.denoiser(x, jnp.float32(s))) / s
    x1 = x + d * (sigma_down - s) + sigma_up * jr.normal(jr.fold_in(key, 0), x.shape)
    want = gm.denoiser(x1, jnp.float32(s_next))
    np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-5, atol=1e-5)
    per_sample = jd.sample(gm.denoiser, x, sigmas, solver=solver, key=per_sample_keys(key, 8))
    assert np.all(np.any(np.asarray(per_sample) != np.asarray(out), axis=-1))


def test_bad_arguments(problem):
    gm, sigmas, x = problem
    solver = jd.samplers.EulerAncestral()
    with pytest.raises(ValueError, match="one key per sample"):
        jd.sample(gm.denoiser, x, sigmas, solver=solver, key=per_sample_keys(jr.key(0), 3))
    with pytest.raises(ValueError, match="callback"):
        jd.sample(
            gm.denoiser,
            x,
            sigmas,
            solver=solver,
            key=per_sample_keys(jr.key(0), 50),
            callback=print,
        )
    with pytest.raises(ValueError, match="chunk_size"):
        sample_chunked(gm.denoiser, x, sigmas, solver=solver, key=jr.key(0), chunk_size=0)
    with pytest.raises(ValueError, match="stochastic"):
        sample_chunked(gm.denoiser, x, sigmas, solver=solver, chunk_size=8)
    with pytest.raises(ValueError, match="num"):
        per_sample_keys(jr.key(0), 0)
    n = jax.local_device_count()
    with pytest.raises(ValueError, match="divisible"):
        shard_batch(jnp.zeros((n + 1, 2)) if n > 1 else jnp.zeros(()))
