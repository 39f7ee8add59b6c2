"""Discrete-time (alphas_cumprod) networks: `from_discrete`, the timestep spacings of
`jaxdiff.schedules.discrete`, zero-terminal-SNR rescaling and dynamic thresholding, against
the exact denoiser of a 2-D mixture, k-diffusion's `DiscreteEpsDDPMDenoiser` /
`DiscreteVDDPMDenoiser` and diffusers' `DDIMScheduler` / `EulerDiscreteScheduler`.

The network is exact: at timestep `t` it returns the eps-, v- or x0-prediction of the
mixture's exact denoiser at the table's own noise level (interpolated log-linearly between
levels for a float timestep, as k-diffusion's `t_to_sigma`). diffusers runs in float64: its
schedulers build their tables in float32, so their `alphas_cumprod` are replaced by the same
float64 table (`DDIMScheduler.step` itself keeps the dtype of its inputs).
"""

import functools
import importlib.util
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxdiff_test_utils import require

import jaxdiff as jd

P = jd.parametrizations
S = jd.samplers
T = 1000
FLOAT64 = 1e-12
LOOP = 1e-10
# diffusers' schedulers call numpy on torch tensors (NumPy 2 deprecations, not ours)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.*")


@functools.cache
def _betas() -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(jd.discrete.linear_betas(T), np.float64)


@functools.cache
def _table() -> np.ndarray:
    """DDPM's linear-beta `alphas_cumprod` in float64 (as `torch.cumprod` computes it)."""
    return np.cumprod(1 - _betas())


@functools.cache
def _gm():
    with jax.enable_x64(True):
        return jd.analytic.ring(num_modes=4, radius=1.5, std=0.3, dtype=jnp.float64)


@functools.cache
def _network(kind, prediction):
    """`model(x_t, t)`: the exact eps/v/x0-prediction for the mixture on the VP chain of the
    table `kind` ("linear" or its zero-terminal-SNR rescaling "zero"), `t` an int or float
    timestep, a scalar or one per sample. Cached: one function, one compilation."""
    gm = _gm()
    ab = jnp.asarray(_table() if kind == "linear" else _zero_table(), jnp.float64)
    log_sigmas = jnp.log(jnp.sqrt((1 - ab) / ab))  # inf where abar = 0

    def sigma_at(t):
        t = jnp.asarray(t, jnp.float64)
        lo, hi = jnp.floor(t).astype(jnp.int32), jnp.ceil(t).astype(jnp.int32)
        w = t - lo
        mixed = (1 - w) * log_sigmas[lo] + w * log_sigmas[hi]
        return jnp.exp(jnp.where(w == 0, log_sigmas[lo], mixed))

    @jax.jit
    def model(x_t, t):
        sigma = sigma_at(t)
        s = sigma[:, None] if sigma.ndim else sigma
        infinite = jnp.isinf(s)
        alpha = jnp.where(infinite, 0, jax.lax.rsqrt(1 + jnp.where(infinite, 0, s) ** 2))
        std = jnp.where(infinite, 1, s * alpha)  # sqrt(1 - abar)
        y = jnp.where(infinite, x_t, x_t / jnp.where(infinite, 1, alpha))
        d = gm.denoiser(y, sigma)
        eps = jnp.where(infinite, x_t, (x_t - alpha * d) / std)
        return {"eps": eps, "v": alpha * eps - std * d, "x0": d}[prediction]

    return model


@functools.cache
def _zero_table() -> np.ndarray:
    with jax.enable_x64(True):
        return np.asarray(jd.schedules.rescale_zero_terminal_snr(_table()))


@eqx.filter_jit
def _call(denoiser, x, sigma):
    return denoiser(x, sigma)


def _relative(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def _points(n=8, scale=3.0, seed=0):
    return scale * np.random.default_rng(seed).standard_normal((n, 2))


# -- the conversions and the timestep of sigma ------------------------------------------------
@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_discrete_denoiser_is_exact_on_the_tables_levels(x64, prediction):
    table = _table()
    gm = _gm()
    D = P.from_discrete(_network("linear", prediction), table, prediction=prediction)
    grid = jd.schedules.discrete(table, 10, spacing="trailing")
    assert (
        D.timestep(grid[:-1]).tolist()
        == jd.schedules.discrete_timesteps(T, 10, spacing="trailing").tolist()
    )
    x = jnp.asarray(_points())
    for sigma in grid[:-1]:
        y = x * (1 + sigma)
        # eps: D = y - sigma eps cancels down from |y|, so the error scales with |y|
        error = np.max(np.abs(np.asarray(_call(D, y, sigma) - _call(gm.denoiser, y, sigma))))
        assert error < 1e-14 * float(jnp.max(jnp.abs(y)))
    # one sigma per sample, under jit and vmap
    sigmas = grid[1:9]
    exact = gm.denoiser(x, sigmas)
    assert _relative(_call(D, x, sigmas), exact) < 1e-13
    one = jax.vmap(lambda xi, si: D(xi[None], si)[0])(x, sigmas)
    assert _relative(one, exact) < 1e-13


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_unquantized_timesteps_interpolate_in_log_sigma(x64, prediction):
    # the network's t_to_sigma inverts sigma_to_t: exact at any sigma inside the table
    table = _table()
    model = _network("linear", prediction)
    D = P.from_discrete(model, table, prediction=prediction, quantize=False)
    sigmas = jnp.asarray(np.geomspace(0.012, 150.0, 8))
    x = jnp.asarray(_points())
    assert _relative(_call(D, x, sigmas), _gm().denoiser(x, sigmas)) < 1e-12
    t = D.timestep(sigmas)
    assert t.dtype == jnp.float64 and np.all(np.diff(np.asarray(t)) > 0)
    table_sigmas = P.sigmas_of(table)
    assert float(D.timestep(table_sigmas[0] / 2)) == 0.0
    assert float(D.timestep(table_sigmas[-1] * 2)) == T - 1
    assert int(P.from_discrete(D.model, table).timestep(table_sigmas[-1] * 2)) == T - 1


def _kd_external(kdiffusion):
    """k-diffusion's `external.py` on the stand-in package of `kdiffusion_peer.load`."""
    package = kdiffusion.__name__.rsplit(".", 1)[0]
    name = f"{package}.external"
    if name not in sys.modules:
        path = f"{importlib.util.find_spec('k_diffusion').submodule_search_locations[0]}"
        spec = importlib.util.spec_from_file_location(name, f"{path}/external.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _torch_model(model):
    """The same (jitted) network on torch tensors, through numpy."""
    import torch

    def net(x, t):
        return torch.from_numpy(np.array(model(jnp.asarray(x.numpy()), jnp.asarray(t.numpy()))))

    return net


@pytest.mark.parametrize("quantize", [True, False])
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_matches_kdiffusion_discrete_denoisers(x64, kdiffusion, prediction, quantize):
    import torch

    external = _kd_external(kdiffusion)
    table = _table()
    model = _network("linear", prediction)
    peer = {"eps": external.DiscreteEpsDDPMDenoiser, "v": external.DiscreteVDDPMDenoiser}
    theirs = peer[prediction](_torch_model(model), torch.from_numpy(table), quantize=quantize)
    ours = P.from_discrete(model, table, prediction=prediction, quantize=quantize)
    x = _points()
    sigmas = np.array([0.0125, 0.05, 0.3, 1.0, 2.5, 9.0, 60.0, 157.0])  # off the table's levels
    expected = theirs(torch.from_numpy(x), torch.from_numpy(sigmas)).numpy()
    assert _relative(_call(ours, jnp.asarray(x), jnp.asarray(sigmas)), expected) < FLOAT64
    t_theirs = theirs.sigma_to_t(torch.from_numpy(sigmas)).numpy()
    np.testing.assert_allclose(np.asarray(ours.timestep(jnp.asarray(sigmas))), t_theirs, 0, 1e-9)


def test_pure_noise_at_zero_terminal_snr(x64):
    table = _zero_table()
    x = jnp.asarray(_points(scale=1.0))
    mean = jnp.mean(_gm().means, axis=0)
    for prediction in ("v", "x0"):
        D = P.from_discrete(_network("zero", prediction), table, prediction=prediction)
        out = _call(D, x, jnp.inf)
        assert _relative(out, jnp.broadcast_to(mean, x.shape)) < 1e-13
        assert int(D.timestep(jnp.inf)) == T - 1
    eps = P.from_discrete(_network("zero", "eps"), table)
    with pytest.raises(ValueError, match="sigma = inf"):
        eps(x, jnp.inf)
    assert bool(jnp.all(jnp.isnan(eqx.filter_jit(eps)(x, jnp.inf))))


# -- the spacings against diffusers ------------------------------------------------------------
SPACINGS = ("leading", "trailing", "linspace")


def test_spacings_are_diffusers_timesteps():
    require("torch", "diffusers", why="the diffusers scheduler peers")
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    for spacing in SPACINGS:
        for offset in (0, 1):
            ddim = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
            euler = EulerDiscreteScheduler(timestep_spacing=spacing, steps_offset=offset)
            for n in (10, 25, 50):
                ours = jd.schedules.discrete_timesteps(T, n, spacing=spacing, steps_offset=offset)
                ddim.set_timesteps(n)
                euler.set_timesteps(n)
                assert ours.tolist() == ddim.timesteps.tolist(), (spacing, offset, n)
                theirs = euler.timesteps.numpy()
                if spacing == "linspace" and n != 10:  # Euler's linspace is not rounded
                    theirs = np.round(theirs)
                assert ours.tolist() == theirs.tolist(), (spacing, offset, n)
                if spacing != "linspace" or n == 10:  # Euler's table is float32
                    grid = jd.schedules.discrete(
                        euler.alphas_cumprod.numpy(), n, spacing=spacing, steps_offset=offset
                    )
                    np.testing.assert_allclose(grid, euler.sigmas.numpy(), rtol=1e-6)
            # every n, against DDIM (diffusers' trailing sometimes adds a last -1)
            for n in range(1, T + 1 - offset):
                ddim.set_timesteps(n)
                ours = jd.schedules.discrete_timesteps(T, n, spacing=spacing, steps_offset=offset)
                assert ours.tolist() == ddim.timesteps.tolist()[:n], (spacing, offset, n)


def _ddim_loop(scheduler, model, table, z, n):
    """diffusers' DDIM sampling loop (eta 0) in float64 on `table`; returns its sample."""
    import torch

    scheduler.alphas_cumprod = torch.from_numpy(table)
    scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    scheduler.set_timesteps(n)
    net = _torch_model(model)
    sample = torch.from_numpy(z)
    for t in scheduler.timesteps:
        out = net(sample, t)
        sample = scheduler.step(out, t, sample, eta=0.0).prev_sample
        assert sample.dtype == torch.float64
    return sample.numpy()


@pytest.mark.parametrize(("spacing", "offset"), [("leading", 0), ("leading", 1), ("trailing", 0)])
def test_ddim_on_a_discrete_grid_is_diffusers_ddim(x64, spacing, offset):
    require("torch", "diffusers", why="the diffusers DDIM peer")
    from diffusers import DDIMScheduler

    table, n = _table(), 10
    model = _network("linear", "eps")
    z = _points(scale=1.0, seed=1)
    scheduler = DDIMScheduler(
        timestep_spacing=spacing, steps_offset=offset, clip_sample=False, set_alpha_to_one=True
    )
    theirs = _ddim_loop(scheduler, model, table, z, n)
    grid = jd.schedules.discrete(table, n, spacing=spacing, steps_offset=offset)
    D = P.from_discrete(model, table)
    ours = jd.sample(D, jnp.asarray(z) * jnp.sqrt(1 + grid[0] ** 2), grid, solver=S.DDIM())
    assert _relative(ours, theirs) < LOOP


# -- zero terminal SNR -------------------------------------------------------------------------
def test_rescale_zero_terminal_snr_matches_diffusers(x64):
    require("torch", "diffusers", why="the diffusers rescale peer")
    import torch
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    table = _table()
    ours = np.asarray(jd.schedules.rescale_zero_terminal_snr(table))
    sigmas = np.asarray(P.sigmas_of(ours))
    assert sigmas[-1] == np.inf and np.all(np.isfinite(sigmas[:-1]))
    assert ours[0] == table[0] and sigmas[0] == np.asarray(P.sigmas_of(table))[0]
    betas = rescale_zero_terminal_snr(torch.tensor(_betas())).numpy()
    np.testing.assert_allclose(1 - ours[1:] / ours[:-1], betas[1:], 0, FLOAT64)
    np.testing.assert_allclose(1 - ours[0], betas[0], 0, FLOAT64)
    np.testing.assert_allclose(ours, np.cumprod(1 - betas), 0, FLOAT64)


def test_zero_terminal_snr_v_model_from_pure_noise_is_diffusers_ddim(x64):
    require("torch", "diffusers", why="the diffusers DDIM peer")
    import torch
    from diffusers import DDIMScheduler
    from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

    n = 10
    table = _zero_table()
    grid = jd.schedules.discrete(table, n, spacing="trailing")
    assert float(grid[0]) == np.inf and np.all(np.isfinite(np.asarray(grid[1:])))
    model = _network("zero", "v")
    z = _points(scale=1.0, seed=2)
    ours = jd.sample(
        P.from_discrete(model, table, prediction="v"), jnp.asarray(z), grid, solver=S.DDIM()
    )
    assert bool(jnp.all(jnp.isfinite(ours)))
    scheduler = DDIMScheduler(
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        prediction_type="v_prediction",
        clip_sample=False,
        set_alpha_to_one=True,
    )
    # diffusers' own rescaling, in float64
    table64 = torch.cumprod(1 - rescale_zero_terminal_snr(torch.tensor(_betas())), 0)
    assert float(table64[-1]) == 0.0
    theirs = _ddim_loop(scheduler, model, table64.numpy(), z, n)
    assert _relative(ours, theirs) < LOOP


# -- dynamic thresholding ----------------------------------------------------------------------
@pytest.mark.parametrize(("percentile", "max_value"), [(0.995, 1.0), (0.9, 2.5), (1.0, 4.0)])
def test_dynamic_thresholding_matches_diffusers(percentile, max_value):
    require("torch", "diffusers", why="the diffusers thresholding peer")
    import torch
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        thresholding=True, dynamic_thresholding_ratio=percentile, sample_max_value=max_value
    )
    x = (2.0 * np.random.default_rng(3).standard_normal((5, 3, 4, 4))).astype(np.float32)
    x[0] *= 0.2  # a sample with every |D| below 1 (s = 1)
    theirs = scheduler._threshold_sample(torch.from_numpy(x)).numpy()
    D = P.dynamic_thresholding(lambda x_, sigma: x_, percentile, max_value)
    ours = np.asarray(eqx.filter_jit(D)(jnp.asarray(x), 1.0))
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_dynamic_thresholding_is_the_identity_inside_the_unit_box():
    x = jnp.asarray(np.random.default_rng(4).uniform(-1, 1, (4, 6)), jnp.float32)
    D = P.dynamic_thresholding(lambda x_, sigma: x_)
    assert bool(jnp.all(D(x, 0.5) == x))


# -- bad input ---------------------------------------------------------------------------------
def test_bad_input_names_the_argument():
    table = _table()

    def model(x_t, t):
        return x_t

    for bad in (table[::-1], np.append(table, 0.5), np.array([1.5, 0.5]), np.array([0.5, 0, 0])):
        with pytest.raises(ValueError, match="alphas_cumprod"):
            P.from_discrete(model, bad)
        with pytest.raises(ValueError, match="alphas_cumprod"):
            jd.schedules.discrete(bad, 1)
        with pytest.raises(ValueError, match="alphas_cumprod"):
            jd.schedules.rescale_zero_terminal_snr(bad)
    with pytest.raises(ValueError, match="prediction"):
        P.from_discrete(model, table, prediction="epsilon")
    with pytest.raises(TypeError, match="quantize"):
        P.from_discrete(model, table, quantize=1)
    with pytest.raises(TypeError, match="model"):
        P.from_discrete(None, table)
    with pytest.raises(ValueError, match="spacing"):
        jd.schedules.discrete(table, 10, spacing="uniform")
    with pytest.raises(ValueError, match="n must be <= "):
        jd.schedules.discrete(table, T + 1)
    with pytest.raises(ValueError, match="steps_offset"):
        jd.schedules.discrete(table, T, steps_offset=1)
    for p in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="percentile"):
            P.dynamic_thresholding(lambda x, s: x, p)
    with pytest.raises(ValueError, match="max_value"):
        P.dynamic_thresholding(lambda x, s: x, 0.9, 0.5)
    D = P.from_discrete(model, table)
    with pytest.raises(ValueError, match="sigma must be a scalar or have shape"):
        D(jnp.zeros((3, 2)), jnp.ones(4))
