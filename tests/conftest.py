"""Shared fixtures: float32 by default; `dtype` runs a test in float32 and in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Run the test once in float32 and once in float64 (x64 enabled only for that test)."""
    if request.param == "float64":
        with jax.enable_x64(True):
            yield jnp.float64
    else:
        yield jnp.float32


@pytest.fixture
def x64():
    """Enable float64 for one test."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="session")
def kdiffusion():
    """k-diffusion's sampling module (the peer). Skipped when k-diffusion or one of its
    dependencies is not installed, except in CI, where the README's test command installs
    them and a missing one fails (`jaxdiff_test_utils.require`)."""
    from jaxdiff_test_utils import require
    from kdiffusion_peer import load

    require(*PEER_MODULES, why="the k-diffusion peer")
    return load()


# what k-diffusion's sampling.py imports, and k-diffusion itself
PEER_MODULES = ("torch", "torchsde", "torchdiffeq", "scipy", "tqdm", "k_diffusion")


def karras_np(n, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """Karras et al. (2022) grid in numpy float64, n + 1 entries ending at 0."""
    ramp = np.linspace(0, 1, n)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return np.append(inv**rho, 0.0)
