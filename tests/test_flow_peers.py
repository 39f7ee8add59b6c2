"""Flow sampling against its peers on identical inputs (the same noise, the exact velocity of a
2-D Gaussian mixture on the rectified-flow path, evaluated by jaxdiff for both sides):

- diffusers' `FlowMatchEulerDiscreteScheduler` (static shift, Flux's dynamic shift of both
  types, `shift_terminal`) against `jd.sample(..., jd.schedules.diffusers_flow_match(...),
  solver="euler")`: its grid and its steps;
- Meta's `flow_matching` `ODESolver` (torchdiffeq's fixed-grid Euler and midpoint; its time
  runs the other way, t = 0 noise, so its velocity is `-v(x, 1 - t)`) against jaxdiff's Euler
  sampler and, for the midpoint rule, against `jd.solve_sde` on the flow ODE with diffrax's
  explicit midpoint (no sigma-space sampler takes the midpoint in flow time); and its
  `CondOTProbPath` conventions against `jd.RectifiedFlow`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxdiff_test_utils import require

import jaxdiff as jd

S = jd.schedules
MU = S.flux_mu(1024)
N_STEPS = 8
FLOAT32 = 4e-6  # relative (max-norm) agreement in float32: rounding; measured <= 7.3e-7 with
# optimized compiles, <= 1.7e-6 with the suite's unoptimized ones (conftest.py)
FLOAT64 = 1e-12  # measured <= 3.1e-15


def _problem(dtype):
    """The exact velocity `v(x, t)` of a 3-component 2-D mixture on the rectified-flow path
    (t = 0 data, t = 1 noise), the mixture, the path, the velocity jitted, and 64 noise points
    (fresh: the torch side shares their memory)."""
    noise = np.random.default_rng(0).standard_normal((64, 2)).astype(np.dtype(dtype))
    return (*_mixture_velocity(dtype), noise)


@functools.cache
def _mixture_velocity(dtype):  # once per dtype: one compilation of the jitted velocity
    gm = jd.analytic.GaussianMixture(
        jnp.array([[-1.0, 0.5], [1.0, -0.5], [0.3, 1.2]], dtype),
        jnp.full((3, 2), 0.2**2, dtype),
        jnp.array([0.3, 0.5, 0.2], dtype),
    )
    rf = jd.RectifiedFlow()
    velocity = gm.process_velocity(rf)
    return gm, rf, velocity, jax.jit(lambda x, t: velocity(x, t))


def _relative(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def _on_host(v, x, t, dtype):
    """The velocity at a numpy batch and a scalar time, as a (writable) numpy array."""
    return np.array(v(jnp.asarray(x, dtype), jnp.asarray(t, dtype)))


# -- diffusers ----------------------------------------------------------------------------------
# (scheduler config, set_timesteps keywords, diffusers_flow_match keywords)
DIFFUSERS_CASES = {
    "shift3": ({"shift": 3.0}, {}, {"shift": 3.0}),
    "dynamic_exponential": ({"use_dynamic_shifting": True}, {"mu": MU}, {"mu": MU}),
    "dynamic_linear": (
        {"use_dynamic_shifting": True, "time_shift_type": "linear"},
        {"mu": 2.0},
        {"mu": 2.0, "shift_type": "linear"},
    ),
    "shift3_terminal": ({"shift": 3.0, "shift_terminal": 0.1}, {}, {"shift": 3.0, "terminal": 0.1}),
    "dynamic_terminal": (
        {"use_dynamic_shifting": True, "shift_terminal": 0.05},
        {"mu": MU},
        {"mu": MU, "terminal": 0.05},
    ),
}


def _scheduler(case, n=N_STEPS):
    require("torch", "diffusers", why="the diffusers flow-matching peer")
    from diffusers import FlowMatchEulerDiscreteScheduler

    config, set_kwargs, ours_kwargs = DIFFUSERS_CASES[case]
    scheduler = FlowMatchEulerDiscreteScheduler(**config)
    scheduler.set_timesteps(n, **set_kwargs)
    return scheduler, ours_kwargs


def _run_scheduler(scheduler, v, noise, dtype):
    """diffusers' sampling loop: `scheduler.step` over its timesteps, the model's velocity
    taken at the scheduler's time `sigmas[i]` (a pipeline passes `timesteps[i] / 1000`, the
    same time through one more float32 rounding)."""
    import torch

    x = torch.from_numpy(noise)
    for i, timestep in enumerate(scheduler.timesteps):
        t = float(scheduler.sigmas[i])
        model_output = torch.from_numpy(_on_host(v, x.numpy(), t, dtype))
        x = scheduler.step(model_output, timestep, x).prev_sample
    assert x.dtype == model_output.dtype
    return x.numpy()


def _ours(velocity, rf, noise, sigmas, solver="euler"):
    denoiser = jd.parametrizations.from_velocity(velocity, rf)
    return jd.sample(denoiser, jnp.asarray(noise), sigmas, solver=solver)


@pytest.mark.parametrize("case", sorted(DIFFUSERS_CASES))
def test_diffusers_scheduler_float32(case):
    scheduler, kwargs = _scheduler(case)
    _, rf, velocity, v, noise = _problem(jnp.float32)
    sigmas = S.diffusers_flow_match(N_STEPS, dtype=jnp.float32, **kwargs)
    # the grid: the scheduler's times (float32) are ours, to float32 rounding of t(sigma)
    np.testing.assert_allclose(S.flow_times(sigmas), scheduler.sigmas.numpy(), rtol=0, atol=2e-7)
    theirs = _run_scheduler(scheduler, v, noise, jnp.float32)
    assert _relative(_ours(velocity, rf, noise, sigmas), theirs) < FLOAT32


@pytest.mark.parametrize("case", sorted(DIFFUSERS_CASES))
def test_diffusers_scheduler_float64(case, x64):
    """In float64 the grid is the scheduler's exactly, and its update replayed in float64 is
    jaxdiff's Euler to 1e-15. `scheduler.step` itself casts the sample to float32 at every step
    (`sample.to(torch.float32)`, its "upcast") and keeps its times in float32, so the
    scheduler run with float64 tensors agrees only to float32 precision."""
    scheduler, kwargs = _scheduler(case)
    _, rf, velocity, v, noise = _problem(jnp.float64)
    sigmas = S.diffusers_flow_match(N_STEPS, **kwargs)
    times = scheduler.sigmas.double().numpy()  # the times it steps over, last 0
    np.testing.assert_allclose(S.flow_times(sigmas), times, rtol=0, atol=2e-16)
    ours = _ours(velocity, rf, noise, sigmas)
    # the scheduler's update `prev_sample = sample + dt * model_output`, in float64
    x = noise
    for i in range(N_STEPS):
        x = x + (times[i + 1] - times[i]) * _on_host(v, x, times[i], jnp.float64)
    assert _relative(ours, x) < FLOAT64
    assert _relative(ours, _run_scheduler(scheduler, v, noise, jnp.float64)) < FLOAT32


def test_diffusers_flux_pipeline_grid():
    """diffusers' FluxPipeline passes `sigmas = linspace(1, 1/n, n)` (then the dynamic shift,
    in float32): `jd.schedules.flux`'s grid."""
    scheduler, _ = _scheduler("dynamic_exponential")
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / N_STEPS, N_STEPS), mu=MU)
    ours = S.flow_times(S.flux(N_STEPS, MU, dtype=jnp.float32))
    np.testing.assert_allclose(ours, scheduler.sigmas.numpy(), rtol=0, atol=3e-7)


def test_diffusers_one_step(x64):
    """One step: from pure noise straight to `x - v(x, 1)`, the mixture mean (the scheduler's
    float32 cast of the sample bounds the agreement)."""
    scheduler, _ = _scheduler("shift3", n=1)
    gm, rf, velocity, v, noise = _problem(jnp.float64)
    sigmas = S.diffusers_flow_match(1, shift=3.0)
    np.testing.assert_array_equal(scheduler.sigmas.numpy(), [1.0, 0.0])
    ours = _ours(velocity, rf, noise, sigmas)
    np.testing.assert_allclose(ours, gm.denoiser(jnp.asarray(noise), jnp.inf), rtol=1e-15)
    assert _relative(ours, _run_scheduler(scheduler, v, noise, jnp.float64)) < FLOAT32


# -- Meta's flow_matching -----------------------------------------------------------------------
def _meta_solver(v, dtype):
    """Meta's ODESolver on the velocity `-v(x, 1 - t)` (its t = 0 is noise)."""
    require("torch", "flow_matching", why="Meta's flow_matching peer")
    import torch
    from flow_matching.solver import ODESolver
    from flow_matching.utils import ModelWrapper

    class Velocity(ModelWrapper):
        def __init__(self):
            super().__init__(None)

        def forward(self, x, t, **extras):
            return -torch.from_numpy(_on_host(v, x.numpy(), 1 - t.item(), dtype))

    return ODESolver(velocity_model=Velocity())


def _meta_sample(v, noise, dtype, method, meta_times=None):
    """From noise at Meta's t = 0 to data at t = 1: fixed steps of 1/N_STEPS, or over the
    time grid `meta_times` (step_size=None)."""
    import torch

    solver = _meta_solver(v, dtype)
    torch_dtype = torch.float64 if dtype == jnp.float64 else torch.float32
    if meta_times is None:
        step_size, grid = 1 / N_STEPS, torch.tensor([0.0, 1.0], dtype=torch_dtype)
    else:
        step_size, grid = None, torch.tensor(np.asarray(meta_times), dtype=torch_dtype)
    out = solver.sample(torch.from_numpy(noise), step_size=step_size, method=method, time_grid=grid)
    return out.numpy()


@pytest.mark.parametrize("shift", [None, 3.0])
@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_meta_ode_solver(method, shift, x64):
    """Euler: jaxdiff's Euler sampler on the same grid in sigma. Midpoint (torchdiffeq's
    explicit midpoint in time): `jd.solve_sde` on the flow ODE with diffrax's midpoint, one step
    per interval of the same time grid."""
    _, rf, velocity, v, noise = _problem(jnp.float64)
    sigmas = S.flow(N_STEPS, 1.0 if shift is None else shift)
    times = S.flow_times(sigmas)  # jaxdiff's times, 1 -> 0
    # uniform: Meta's fixed step_size; shifted: Meta's time_grid 1 - t
    theirs = _meta_sample(v, noise, jnp.float64, method, None if shift is None else 1 - times)
    if method == "euler":
        ours = _ours(velocity, rf, noise, sigmas)
    else:
        ode = rf.probability_flow(velocity=velocity)
        ours = jd.solve_sde(ode, jnp.asarray(noise), times, dt=1.0, solver="midpoint")[-1]
    assert _relative(ours, theirs) < FLOAT64


def test_meta_euler_float32():
    _, rf, velocity, v, noise = _problem(jnp.float32)
    theirs = _meta_sample(v, noise, jnp.float32, "euler")
    assert _relative(_ours(velocity, rf, noise, S.flow(N_STEPS)), theirs) < FLOAT32


def test_meta_cond_ot_path_is_rectified_flow_reversed(x64):
    """Meta's CondOTProbPath `x_t = t x_1 + (1 - t) x_0` (x_0 noise, x_1 data) is the rectified
    flow at time 1 - t, and its conversion of the posterior mean to a velocity
    (`target_to_velocity`) is `-v(x, 1 - t)`."""
    require("torch", "flow_matching", why="Meta's flow_matching peer")
    import torch
    from flow_matching.path import CondOTProbPath

    gm, rf, _, v, noise = _problem(jnp.float64)
    path = CondOTProbPath()
    data = np.array(gm.sample(jax.random.key(0), 64))
    for t in (0.2, 0.7):
        t_batch = torch.full((64,), t, dtype=torch.float64)
        x_t = path.sample(x_0=torch.from_numpy(noise), x_1=torch.from_numpy(data), t=t_batch).x_t
        x_t = x_t.numpy()
        ours = rf.scale(1 - t) * data + rf.noise_std(1 - t) * noise
        np.testing.assert_allclose(x_t, ours, rtol=1e-15, atol=1e-15)
        denoised = gm.denoiser(jnp.asarray(x_t / rf.scale(1 - t)), rf.sigma(1 - t))
        meta_velocity = path.target_to_velocity(
            x_1=torch.from_numpy(np.array(denoised)),
            x_t=torch.from_numpy(x_t),
            t=torch.full((64, 1), t, dtype=torch.float64),
        )
        ours = -_on_host(v, x_t, 1 - t, jnp.float64)
        np.testing.assert_allclose(meta_velocity.numpy(), ours, rtol=1e-12, atol=1e-12)
