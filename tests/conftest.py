"""Shared fixtures: float32 by default; `dtype` runs a test in float32 and in float64."""

import contextlib
import ctypes
import gc
import os

# The suite is dominated by XLA's CPU compiles of small programs that then run for milliseconds:
# LLVM's optimization passes are most of each compile. Without them (level 0) the compile-bound
# files take half the time and the run-bound ones about the same (measured on 2 cores: the
# deterministic samplers' tests 91 s -> 45 s, the strong-order SDE tests 76 s -> 70 s); the
# programs compute the same values. Set before JAX starts its backend, and inherited by the
# notebooks' kernels and the command-line subprocesses that tests start. An XLA_FLAGS already
# set (by a user profiling the suite) is kept; JAXDIFF_TESTS_OPTIMIZED=1 keeps XLA's defaults.
if not os.environ.get("JAXDIFF_TESTS_OPTIMIZED"):  # see jaxdiff_test_utils.with_optimized_compiles
    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

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


# A worker of the parallel suite runs hundreds of tests, and JAX keeps every program it compiled
# for the life of the process. Each compiled CPU program holds about three memory mappings, and
# Linux allows a process 65530 (`vm.max_map_count`): a worker that had compiled some 20000
# programs crashed inside XLA's compiler with a segmentation fault (in CI and here, near the end
# of the suite, in whichever test compiled next), while growing past 5 GB resident. So after each
# test module, a worker past either limit drops JAX's caches (only programs compiled again in
# later modules pay for it) and hands the freed memory back to the system.
MAPPING_LIMIT = 20_000
RESIDENT_LIMIT = 3 * 2**30


def _mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux
        return 0


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@pytest.fixture(autouse=True, scope="module")
def _bounded_compilations():
    yield
    if _mappings() > MAPPING_LIMIT or _resident_bytes() > RESIDENT_LIMIT:
        jax.clear_caches()
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
