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


def test_per_sample_keys_do_not_change_the_default_stream(problem):
    gm, sigmas, x = problem
    solver = jd.samplers.EulerAncestral()
    a = jd.sample(gm.denoiser, x, sigmas, solver=solver, key=jr.key(1))
    b = jd.sample(gm.denoiser, x, sigmas, solver=solver, key=jr.key(1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a sample's result depends only on its own key: the first 10 of 50 equal a batch of 10
    keys = per_sample_keys(jr.key(1), 50)
    full = jd.sample(gm.denoiser, x, sigmas, solver=solver, key=keys)
    head = jd.sample(gm.denoiser, x[:10], sigmas, solver=solver, key=keys[:10])
    np.testing.assert_array_equal(np.asarray(full[:10]), np.asarray(head))
    _, traj = jd.sample(
        gm.denoiser, x[:10], sigmas, solver=solver, key=keys[:10], return_trajectory=True
    )
    assert traj.shape == (sigmas.shape[0], 10, 2)
    np.testing.assert_array_equal(np.asarray(traj[-1]), np.asarray(head))


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
