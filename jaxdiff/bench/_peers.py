"""Peers run on the same problems: k-diffusion's samplers and raw diffrax solvers (on EDM's
sigma-space problems), and diffusers' `FlowMatchEulerDiscreteScheduler` (on flow problems),
plus the tight adaptive solve of a flow ODE that flow problems are scored against.

k-diffusion's package `__init__` imports heavy optional dependencies (torchvision, kornia,
clean-fid, wandb ...), so `load_kdiffusion` loads `k_diffusion/sampling.py` alone, with a tiny
stand-in for the one helper it takes from `k_diffusion.utils`. Install: `pip install torch
torchsde torchdiffeq` and `pip install --no-deps k-diffusion`.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..sde._solvers import evaluations

_NAME = "_kdiffusion_peer"

#: jaxdiff sampler name -> (k-diffusion function, extra keyword arguments)
KDIFFUSION_SAMPLERS: dict[str, tuple[str, dict]] = {
    "euler": ("sample_euler", {}),
    "euler_ancestral": ("sample_euler_ancestral", {}),
    "heun": ("sample_heun", {}),
    "dpm_2": ("sample_dpm_2", {}),
    "dpm_2_ancestral": ("sample_dpm_2_ancestral", {}),
    "lms": ("sample_lms", {}),
    "dpmpp_2s_ancestral": ("sample_dpmpp_2s_ancestral", {}),
    "dpmpp_sde": ("sample_dpmpp_sde", {}),
    "dpmpp_2m": ("sample_dpmpp_2m", {}),
    "dpmpp_2m_sde": ("sample_dpmpp_2m_sde", {}),
    "dpmpp_3m": ("sample_dpmpp_3m_sde", {"eta": 0.0}),
    "dpmpp_3m_sde": ("sample_dpmpp_3m_sde", {}),
}

#: diffrax solver name -> class, run with fixed steps on the PF-ODE in sigma-space
DIFFRAX_SOLVERS: dict[str, type[dfx.AbstractSolver]] = {
    "euler": dfx.Euler,
    "heun": dfx.Heun,
    "midpoint": dfx.Midpoint,
    "bosh3": dfx.Bosh3,
    "tsit5": dfx.Tsit5,
    "dopri5": dfx.Dopri5,
}


def load_kdiffusion():
    """The module `k_diffusion.sampling`, or raise ImportError when k-diffusion is missing."""
    if f"{_NAME}.sampling" in sys.modules:
        return sys.modules[f"{_NAME}.sampling"]
    import torch  # noqa: F401  (ImportError here when torch is missing)

    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed (pip install --no-deps k-diffusion)")
    package = types.ModuleType(_NAME)
    package.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType(f"{_NAME}.utils")

    def append_dims(x, target_dims):
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    sys.modules[_NAME] = package
    sys.modules[f"{_NAME}.utils"] = utils
    path = f"{spec.submodule_search_locations[0]}/sampling.py"
    sampling_spec = importlib.util.spec_from_file_location(f"{_NAME}.sampling", path)
    module = importlib.util.module_from_spec(sampling_spec)
    sys.modules[f"{_NAME}.sampling"] = module
    sampling_spec.loader.exec_module(module)
    return module


@eqx.filter_jit
def _call(denoiser, x, sigma):
    return denoiser(x, sigma)


def torch_bridge(denoiser: Callable) -> Callable:
    """A k-diffusion model `model(x, sigma_batch)` calling a JAX `denoiser(x, sigma)` (compiled
    once; tensors go through numpy, in the tensor's dtype)."""
    import torch

    def model(x, sigma):
        s = np.asarray(sigma.detach().cpu().numpy()).reshape(-1)[0]
        arr = np.asarray(x.detach().cpu().numpy())
        out = _call(denoiser, jnp.asarray(arr), jnp.asarray(s, arr.dtype))
        return torch.from_numpy(np.array(out)).to(x.dtype)

    return model


def kdiffusion_nfe(name: str, steps: int) -> int:
    """Denoiser calls of k-diffusion's sampler `name` on a grid of `steps` steps."""
    if name in ("heun", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde"):
        return 2 * steps - 1
    return steps


def run_kdiffusion(name, denoiser, x: np.ndarray, sigmas: np.ndarray, *, seed: int = 0):
    """k-diffusion's sampler `name` on the JAX `denoiser`, from `x` over `sigmas`."""
    import torch

    kd = load_kdiffusion()
    fn, kwargs = KDIFFUSION_SAMPLERS[name]
    torch.manual_seed(seed)
    xt = torch.from_numpy(np.array(x))
    sig = torch.from_numpy(np.array(sigmas, dtype=x.dtype))
    extra = {}
    if name in ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"):
        extra["noise_sampler"] = kd.BrownianTreeNoiseSampler(
            xt, float(sigmas[-2]), float(sigmas[0]), seed=seed
        )
    with torch.no_grad():
        out = getattr(kd, fn)(torch_bridge(denoiser), xt, sig, disable=True, **kwargs, **extra)
    return out.numpy()


# -- flows -----------------------------------------------------------------------------------


@eqx.filter_jit
def _flow_euler(velocity, x, ts):
    def step(x, i):
        t, t_next = ts[i], ts[i + 1]
        return x + (t_next - t) * velocity(x, t), None

    x, _ = jax.lax.scan(step, x, jnp.arange(ts.shape[0] - 1))
    return x


def run_flow_euler(velocity, noise, ts):
    """Euler in flow time on the flow ODE, `x_{i+1} = x_i + (t_{i+1} - t_i) v(x_i, t_i)`, from
    `x = noise` at `ts[0] = 1` (pure noise, `beta(1) = 1`) down the decreasing times `ts` to
    0: the update of diffusers' `FlowMatchEulerDiscreteScheduler.step` (and of every
    flow-matching Euler sampler), one velocity call per step."""
    ts = jnp.asarray(ts, noise.dtype)
    return _flow_euler(velocity, noise, ts)


def diffusers_times(n: int, shift: float) -> np.ndarray:
    """The `n + 1` flow times (1 down to 0) that diffusers' `FlowMatchEulerDiscreteScheduler(
    shift=shift).set_timesteps(n)` steps over: the scheduler's `sigmas`, i.e.
    `jaxdiff.schedules.flow_times(jaxdiff.schedules.diffusers_flow_match(n, shift=shift))`."""
    from ..schedules import diffusers_flow_match, flow_times

    grid = diffusers_flow_match(n, shift=shift, dtype=jnp.float64)
    return np.asarray(flow_times(grid), np.float64)


def run_diffusers(velocity, noise: np.ndarray, n: int, shift: float) -> np.ndarray:
    """diffusers' own `FlowMatchEulerDiscreteScheduler(shift=shift)` for `n` steps from
    `noise`, its model the JAX `velocity(x_t, t)` called at the scheduler's times (`t =
    timestep / 1000`, read from its `sigmas`). The scheduler steps in float32. Raises
    ImportError without diffusers (or torch)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=float(shift))
    scheduler.set_timesteps(int(n))
    dtype = noise.dtype
    x = torch.from_numpy(np.array(noise))
    call = eqx.filter_jit(lambda v, x_, t: v(x_, t))
    for i, timestep in enumerate(scheduler.timesteps):
        t = float(scheduler.sigmas[i])
        v = call(velocity, jnp.asarray(x.numpy(), dtype), jnp.asarray(t, dtype))
        v = torch.from_numpy(np.array(v)).to(x.dtype)
        x = scheduler.step(v, timestep, x, return_dict=False)[0]
    return x.numpy().astype(dtype)


@eqx.filter_jit
def _flow_reference(velocity, noise, tol):
    sol = dfx.diffeqsolve(
        dfx.ODETerm(lambda t, x, args: velocity(x, t)),
        dfx.Dopri8(),
        t0=jnp.asarray(1.0, noise.dtype),
        t1=jnp.asarray(0.0, noise.dtype),
        dt0=jnp.asarray(-1e-3, noise.dtype),
        y0=noise,
        stepsize_controller=dfx.PIDController(rtol=tol, atol=tol),
        saveat=dfx.SaveAt(t1=True),
        max_steps=65536,
    )
    return sol.ys[-1], sol.stats["num_steps"]


def flow_reference(velocity, noise, *, tol: float = 1e-11):
    """The endpoint at t = 0 of the flow ODE `dx/dt = velocity(x, t)` from `x = noise` at
    t = 1: diffrax's adaptive Dopri8 (8th order) with relative and absolute tolerance `tol`.
    Returns `(x_0, number of steps)`."""
    x, steps = _flow_reference(velocity, noise, jnp.asarray(tol, noise.dtype))  # one compile
    return x, int(steps)


def diffrax_stages(name: str) -> tuple[int, int]:
    """(evaluations per step, evaluations before the first step) of a diffrax solver."""
    return evaluations(DIFFRAX_SOLVERS[name]())


def diffrax_nfe(name: str, steps: int) -> int:
    """Denoiser calls of `run_diffrax` on a grid of `steps` steps: `steps - 1` solver steps
    on the positive sigmas, then one call for the last step to 0."""
    per_step, initial = diffrax_stages(name)
    return per_step * (steps - 1) + initial + 1


@eqx.filter_jit
def _diffrax_solve(denoiser, x, sigmas, solver):
    def vf(sigma, y, args):
        del args
        return (y - denoiser(y, sigma)) / sigma

    positive = sigmas[:-1]
    sol = dfx.diffeqsolve(
        dfx.ODETerm(vf),
        solver,
        t0=positive[0],
        t1=positive[-1],
        dt0=None,
        y0=x,
        stepsize_controller=dfx.StepTo(ts=positive),
        saveat=dfx.SaveAt(t1=True),
        max_steps=positive.shape[0],
    )
    y = sol.ys[-1]
    return denoiser(y, positive[-1])  # the last step, to sigma = 0: x -> D(x; sigma_min)


def run_diffrax(name, denoiser, x, sigmas):
    """A raw diffrax solver `name` on the probability-flow ODE `dx/dsigma = (x - D(x;
    sigma)) / sigma`, stepping through the positive sigmas of the grid (`diffrax.StepTo`,
    backwards in sigma), then `D(x; sigma_min)` for the last step to 0 (as Euler's last step)."""
    if len(sigmas) < 3:
        raise ValueError("diffrax peers need a grid of at least 2 steps")
    return _diffrax_solve(denoiser, x, jnp.asarray(sigmas, x.dtype), DIFFRAX_SOLVERS[name]())
