"""`jaxdiff.metrics.sliced_wasserstein` against closed forms."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from jaxdiff.metrics import sliced_wasserstein


def test_shift_in_one_dimension_is_the_shift():
    x = jr.normal(jr.key(0), (4000, 1))
    # a pure translation: W2 is exactly |mu| whatever the sample
    assert float(sliced_wasserstein(x, x + 0.7, key=jr.key(1), num_projections=8)) == (
        pytest.approx(0.7, rel=1e-5)
    )


def test_shift_in_d_dimensions():
    # SW_2^2 of a translation by mu is E[(theta . mu)^2] = |mu|^2 / d
    d = 8
    mu = jnp.full((d,), 0.5)
    x = jr.normal(jr.key(0), (2000, d))
    sw = float(sliced_wasserstein(x, x + mu, key=jr.key(1), num_projections=4000))
    assert sw == pytest.approx(float(jnp.linalg.norm(mu)) / np.sqrt(d), rel=0.05)


def test_same_distribution_is_small_and_different_sizes_work():
    x = jr.normal(jr.key(0), (3000, 2))
    y = jr.normal(jr.key(1), (1000, 2))
    z = 2.0 * jr.normal(jr.key(2), (1000, 2))
    same = float(sliced_wasserstein(x, y, key=jr.key(3)))
    different = float(sliced_wasserstein(x, z, key=jr.key(3)))
    assert same < 0.1
    assert different > 5 * same


def test_bad_input():
    with pytest.raises(ValueError, match="same event size"):
        sliced_wasserstein(jnp.zeros((3, 2)), jnp.zeros((3, 3)), key=jr.key(0))
    with pytest.raises(ValueError, match="batches"):
        sliced_wasserstein(jnp.zeros(3), jnp.zeros((3, 1)), key=jr.key(0))
