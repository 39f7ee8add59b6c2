"""diffusers' own schedulers run in float64 on a jaxdiff denoiser: the peer harness for
equality tests (a jaxdiff sampler against the diffusers scheduler it corresponds to, on
identical inputs, to rounding) and for benchmarks.

    import jaxdiff.bench as jb
    from diffusers import DPMSolverMultistepScheduler

    with jax.enable_x64(True):
        scheduler = DPMSolverMultistepScheduler(use_karras_sigmas=True)
        grid = jb.diffusers_scheduler_grid(scheduler, 8)        # jaxdiff's convention, last 0
        x = grid[0] * np.random.default_rng(0).standard_normal((32, 2))
        theirs = jb.run_diffusers_scheduler(scheduler, denoiser, x, num_steps=8)
        ours = jd.sample(denoiser, jnp.asarray(x), theirs.sigmas, solver=jd.samplers.DPMpp2M())

**Units.** jaxdiff works in sigma-space on a denoiser `D(x, sigma)`. diffusers' schedulers
keep their state in one of two units: the VP sample `sample = x / sqrt(1 + sigma^2)`
(`DPMSolverMultistepScheduler`, `UniPCMultistepScheduler`, `DEISMultistepScheduler`,
`DDIMScheduler`), or sigma-space `x` itself (`EulerDiscreteScheduler`,
`HeunDiscreteScheduler`, `LMSDiscreteScheduler`, whose `scale_model_input` divides by
`sqrt(1 + sigma^2)`). Either way the network sees the VP sample (`scale_model_input`'s output);
the harness multiplies it back by `sqrt(1 + sigma^2)` and calls `D(x, sigma)`. Every one of
these schedulers accepts `prediction_type="sample"`, under which the model output *is*
`D(x, sigma)`: the harness runs them with it, so the exact denoiser enters their updates
without any conversion (DDIM and DEIS derive their epsilon from it themselves, in float64).
At `sigma = inf` (a zero-terminal-SNR table) `x` is the unit-variance sample itself, as in
`jaxdiff.sample`.

**float64.** diffusers builds its tables in float32 (`torch.linspace(..., dtype=torch.float32)`,
`torch.tensor(trained_betas, dtype=torch.float32)`, `betas_for_alpha_bar`), casts its sigma
grids to float32 at the end of `set_timesteps` (`sigmas.astype(np.float32)`; Euler's and
Heun's also `.to(dtype=torch.float32)` and float32 timesteps), and some `step`s upcast the
sample to float32 (`DPMSolverMultistepScheduler.step`: `sample.to(torch.float32)` and its SDE
noise drawn as float32; `EulerDiscreteScheduler.step`: `sample.to(torch.float32)`). No
subclass is needed to keep float64: for the duration of a run the harness rebinds, in the
scheduler's own module (`diffusers.schedulers.scheduling_*`), the names `np` and `torch` to
views of numpy and torch in which `float32` is `float64`, and sets torch's default dtype to
float64 (for the few `torch.tensor(1.0)` / `torch.ones(())` without a dtype). Every line of
diffusers' construction, `set_timesteps`, `scale_model_input` and `step` then runs unchanged,
in float64; the harness checks the dtype of the grid and of every step's result. The
scheduler is rebuilt from its config inside that scope (so its tables are float64 from the
start); the instance given is only read for its class and config.

**Noise.** For a stochastic scheduler (`algorithm_type="sde-dpmsolver++"`, DDIM with
`step_kwargs={"eta": 1.0}` ...) `noise` gives the standard normals of each `step` call: the
module's `randn_tensor` is rebound too, to return them. `step_normals` replays the normals that
jaxdiff's fixed-grid driver gives a sampler that draws `jr.normal(key_i, x.shape, x.dtype)`
once per step (`DPMpp2MSDE` with `noise="step"`, `DDIM(eta > 0)`): step `i` gets
`key_i = jr.fold_in(key, i)` (`jaxdiff._fixed_grid`), so both sides see the same noise.

Importing this module imports neither torch nor diffusers; the functions do (ImportError
without them).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

__all__ = [
    "DIFFUSERS_SCHEDULERS",
    "DiffusersRun",
    "diffusers_scheduler_grid",
    "run_diffusers_scheduler",
    "step_normals",
]

#: The diffusers schedulers the harness runs, by the unit of the state they keep: the VP
#: sample `x / sqrt(1 + sigma^2)` ("vp") or sigma-space `x` ("sigma").
DIFFUSERS_SCHEDULERS: dict[str, str] = {
    "DPMSolverMultistepScheduler": "vp",
    "UniPCMultistepScheduler": "vp",
    "DEISMultistepScheduler": "vp",
    "DDIMScheduler": "vp",
    "EulerDiscreteScheduler": "sigma",
    "HeunDiscreteScheduler": "sigma",
    "LMSDiscreteScheduler": "sigma",
}


class DiffusersRun(NamedTuple):
    """The result of `run_diffusers_scheduler`, in sigma-space.

    - `x`: diffusers' final sample in sigma-space, at `sigmas[steps]` (at `levels[-1]`).
    - `sigmas`: the grid diffusers stepped over in jaxdiff's convention (float64, decreasing,
      last `0`): its own grid (a final level above 0, as `final_sigmas_type="sigma_min"` or
      DEIS's, is followed by an appended `0`; DEIS's repeated last level, a zero-length last
      step, is dropped), or the grid given (`0` appended if it did not end there). A jaxdiff
      sampler run on it with `return_trajectory=True` is comparable at index `steps`.
    - `steps`: the number of grid steps diffusers took.
    - `trajectory`: `x` after every grid step, shape `(steps + 1, *x.shape)` (Heun's
      intermediate Euler predictions are not grid steps).
    - `levels`: the sigma of each trajectory entry. It is `sigmas[:steps + 1]`, except for
      `DDIMScheduler` on a spacing where its step lands elsewhere than the next level: it
      steps from timestep `t` to `t - T // num_steps`, the next timestep only for
      `"leading"` and for `"trailing"` when `num_steps` divides `T`; otherwise the sample it
      returns (at that level) is evaluated next as if it were at the next timestep.
    """

    x: np.ndarray
    sigmas: np.ndarray
    steps: int
    trajectory: np.ndarray
    levels: np.ndarray


def step_normals(key: jax.Array, num_steps: int, shape: tuple[int, ...], dtype=None):
    """The standard normals `jr.normal(jr.fold_in(key, i), shape, dtype)` for steps
    `i = 0 .. num_steps - 1`, as numpy arrays: the noise that `jaxdiff.sample(..., key=key)`
    gives a sampler drawing `jr.normal(key_i, x.shape, x.dtype)` once per step (the fixed-grid
    driver derives step `i`'s key as `jr.fold_in(key, i)`; e.g. `DPMpp2MSDE(noise="step")`,
    which draws none at its last step, to 0). `dtype` defaults to float64 (enabled here)."""
    with jax.enable_x64(True):
        dtype = jnp.float64 if dtype is None else dtype
        return [
            np.asarray(jr.normal(jr.fold_in(key, i), tuple(shape), dtype), np.float64)
            for i in range(int(num_steps))
        ]


def diffusers_scheduler_grid(scheduler, num_steps: int) -> np.ndarray:
    """The float64 sigma grid, in jaxdiff's convention (decreasing, last `0`), that
    `scheduler` steps over after `set_timesteps(num_steps)`: its config's
    `timestep_spacing`, `use_karras_sigmas`, `use_exponential_sigmas`, `use_beta_sigmas`,
    `final_sigmas_type`, ... on its own `alphas_cumprod` table, computed by diffusers in
    float64 (see the module docstring). It is `run_diffusers_scheduler(...).sigmas`: use its
    first entry to scale the initial noise."""
    base = _base_name(scheduler)
    num_steps = _count("num_steps", num_steps)
    with _float64(scheduler, None) as (sched, _):
        sched.set_timesteps(num_steps)
        return _jaxdiff_grid(_scheduler_grid(sched, base))


def run_diffusers_scheduler(
    scheduler,
    denoiser: Callable,
    x,
    *,
    num_steps: int | None = None,
    sigmas=None,
    noise: Sequence | Callable[[int], Any] | None = None,
    step_kwargs: dict | None = None,
) -> DiffusersRun:
    """diffusers' own sampling loop (`set_timesteps`, then `scale_model_input` and `step` for
    every timestep) in float64, the model being the jaxdiff denoiser `D(x, sigma)`.

    **Arguments:**

    - `scheduler`: an instance of one of `DIFFUSERS_SCHEDULERS` (or a subclass); its class
      and config are used (a float64 copy is built with `prediction_type="sample"`; every
      other option is the config's, e.g. DDIM's `clip_sample` default `True`, which jaxdiff
      has no counterpart of).
    - `denoiser`: `D(x, sigma)` in sigma-space, called with float64 jax arrays (x64 is
      enabled for the run); its output must be float64. Jit it (once) for speed.
    - `x`: the initial state in sigma-space (a float64 array, batch first), at the grid's
      first level (`diffusers_scheduler_grid(...)[0]` on diffusers' own grid).
    - `num_steps`: the scheduler's `set_timesteps(num_steps)`; on a given grid, the number of
      its intervals to run (default all of them).
    - `sigmas`: `None` (diffusers' own grid) or a decreasing float64 sigma grid (the last
      entry may be 0) that replaces the scheduler's `sigmas` after `set_timesteps`
      (interleaved as `HeunDiscreteScheduler` keeps them); its timesteps are then only
      labels (the model gets sigma, never the timestep) and the step index starts at 0.
      Not for `DDIMScheduler`, which steps over its `alphas_cumprod` table. A step to 0 is
      diffusers' own business: e.g. DEIS's update is not finite there.
    - `noise`: the standard normals of each `step` call (shape `x.shape`): a sequence indexed
      by the step, or a function of the step index; `None` leaves diffusers' `randn_tensor`.
    - `step_kwargs`: extra keyword arguments of every `step` call, for the options diffusers
      takes there rather than in the config (`DDIMScheduler`'s `eta`,
      `EulerDiscreteScheduler`'s `s_churn`, ...).

    **Returns:** a `DiffusersRun` (`x`, `sigmas`, `steps`, `trajectory`, `levels`).
    """
    import torch

    base = _base_name(scheduler)
    kind = DIFFUSERS_SCHEDULERS[base]
    x = np.asarray(x)
    if x.dtype != np.float64:
        raise TypeError(f"x must be a float64 array, got {x.dtype}")
    if sigmas is not None:
        if base == "DDIMScheduler":
            raise ValueError("sigmas: DDIMScheduler steps over its alphas_cumprod table only")
        sigmas = _check_grid(sigmas)
        n = len(sigmas) - 1 if num_steps is None else _count("num_steps", num_steps)
        if n > len(sigmas) - 1:
            raise ValueError(f"num_steps must be <= {len(sigmas) - 1} (the grid's), got {n}")
    elif num_steps is None:
        raise ValueError("num_steps is required on diffusers' own grid (sigmas=None)")
    else:
        n = _count("num_steps", num_steps)
    if noise is not None and not (callable(noise) or hasattr(noise, "__getitem__")):
        raise TypeError(f"noise must be a sequence or a function of the step index, got {noise!r}")

    with _float64(scheduler, noise) as (sched, counter), jax.enable_x64(True):
        sched.set_timesteps(n)
        if sigmas is not None:
            grid = sigmas[: n + 1]
            if base == "HeunDiscreteScheduler":  # [s0, s1, s1, .., s_{n-1}, s_{n-1}, s_n]
                grid = np.concatenate([grid[:1], np.repeat(grid[1:-1], 2), grid[-1:]])
            sched.sigmas = torch.from_numpy(grid.copy())
        elif base != "DDIMScheduler":
            _scheduler_grid(sched, base)  # checks the dtype
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(0)
        model_sigma, landed = _bookkeeping(sched, base, n)

        level = model_sigma(sched.timesteps[0])
        sample = torch.from_numpy(_from_x(x, level) if kind == "vp" else x.copy())
        trajectory, levels = [x], [level]
        for i, timestep in enumerate(sched.timesteps):
            model_input = sched.scale_model_input(sample, timestep)
            sigma = model_sigma(timestep)
            out = np.array(  # a writable copy for torch
                denoiser(jnp.asarray(_to_x(model_input.numpy(), sigma)), jnp.float64(sigma))
            )
            if out.dtype != np.float64:
                raise TypeError(f"the denoiser must return float64 here, got {out.dtype}")
            counter[0] = i
            sample = sched.step(
                torch.from_numpy(out), timestep, sample, return_dict=False, **(step_kwargs or {})
            )[0]
            if sample.dtype != torch.float64:  # a float32 cast the harness missed
                raise RuntimeError(f"{base}.step returned {sample.dtype}, not float64")
            last = i == len(sched.timesteps) - 1
            if not last and getattr(sched, "state_in_first_order", True) is False:
                continue  # Heun's Euler prediction: not a grid step (its last step is Euler's)
            level = landed(timestep)
            state = sample.numpy()
            state = _to_x(state, level) if kind == "vp" else state.copy()
            if level == levels[-1]:  # a zero-length last step (DEIS's repeated sigma)
                trajectory[-1] = state
            else:
                trajectory.append(state)
                levels.append(level)

        if sigmas is None:
            out_grid = _jaxdiff_grid(_scheduler_grid(sched, base))
        else:
            out_grid = sigmas if sigmas[-1] == 0 else np.append(sigmas, 0.0)
    steps = len(levels) - 1
    return DiffusersRun(trajectory[-1], out_grid, steps, np.stack(trajectory), np.array(levels))


# -- internals ---------------------------------------------------------------------------------


def _base_name(scheduler) -> str:
    if isinstance(scheduler, type):
        raise TypeError("scheduler must be a diffusers scheduler instance, not a class")
    for klass in type(scheduler).__mro__:
        if klass.__name__ in DIFFUSERS_SCHEDULERS and klass.__module__.startswith("diffusers."):
            return klass.__name__
    raise TypeError(
        f"scheduler must be one of diffusers' {sorted(DIFFUSERS_SCHEDULERS)}, "
        f"got {type(scheduler).__name__}"
    )


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_grid(sigmas) -> np.ndarray:
    grid = np.asarray(sigmas, np.float64)
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ValueError(f"sigmas must be a 1-D grid of at least 2 levels, got shape {grid.shape}")
    if not (np.all(np.diff(grid) < 0) and grid[-1] >= 0 and np.all(np.isfinite(grid))):
        raise ValueError("sigmas must be finite, strictly decreasing and >= 0")
    return grid


def _sigma_of(alpha_cumprod) -> float:
    ab = float(alpha_cumprod)
    return np.inf if ab == 0 else float(np.sqrt((1 - ab) / ab))


def _to_x(sample: np.ndarray, sigma: float) -> np.ndarray:
    """VP units -> sigma-space; at sigma = inf the unit-variance sample itself."""
    return sample if np.isinf(sigma) else sample * np.sqrt(1 + sigma**2)


def _from_x(x: np.ndarray, sigma: float) -> np.ndarray:
    return x.copy() if np.isinf(sigma) else x / np.sqrt(1 + sigma**2)


def _scheduler_grid(sched, base: str) -> np.ndarray:
    """The levels the scheduler steps over after `set_timesteps`, as it keeps them."""
    if base == "DDIMScheduler":
        levels = [_sigma_of(sched.alphas_cumprod[int(t)]) for t in sched.timesteps]
        return np.array([*levels, _sigma_of(sched.final_alpha_cumprod)])
    if sched.sigmas.dtype != _torch().float64:
        raise RuntimeError(f"{base}.sigmas is {sched.sigmas.dtype}, not float64")
    grid = sched.sigmas.numpy().astype(np.float64)
    if base == "HeunDiscreteScheduler":  # de-interleave [s0, s1, s1, .., s_{n-1}, s_{n-1}, s_n]
        grid = np.concatenate([grid[:1], grid[1::2]])
    return grid


def _jaxdiff_grid(grid: np.ndarray) -> np.ndarray:
    if grid.shape[0] > 2 and grid[-1] == grid[-2]:
        grid = grid[:-1]  # DEIS's repeated last level: a zero-length last step
    return grid if grid[-1] == 0 else np.append(grid, 0.0)


def _bookkeeping(sched, base: str, n: int):
    """`(model_sigma(timestep), landed(timestep))`: the level the model is evaluated at for
    the current `step` call, and the level the sample returned by it is at."""
    if base == "DDIMScheduler":
        table = sched.alphas_cumprod
        ratio = sched.config.num_train_timesteps // n

        def model_sigma(t):
            return _sigma_of(table[int(t)])

        def landed(t):  # DDIMScheduler.step: prev_timestep = timestep - T // num_steps
            prev = int(t) - ratio
            return _sigma_of(table[prev] if prev >= 0 else sched.final_alpha_cumprod)

        return model_sigma, landed

    def index():
        return sched.step_index if sched.step_index is not None else sched.begin_index or 0

    def model_sigma(t):
        return float(sched.sigmas[index()])

    def landed(t):
        return float(sched.sigmas[index()])

    return model_sigma, landed


def _torch():
    import torch

    return torch


class _Float32IsFloat64:
    """A view of a module (numpy or torch) in which `float32` is `float64`."""

    def __init__(self, module):
        self._module = module
        self.float32 = module.float64

    def __getattr__(self, name):
        return getattr(self._module, name)


@contextlib.contextmanager
def _float64(scheduler, noise):
    """A float64 copy of `scheduler` (built from its config, `prediction_type="sample"`) and a
    one-element list holding the current step index, inside a scope where the scheduler's
    modules see float64 for float32 and torch's default dtype is float64; with `noise`, their
    `randn_tensor` returns it."""
    import torch

    counter = [0]

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None, **kwargs):
        z = noise(counter[0]) if callable(noise) else noise[counter[0]]
        z = np.array(z, np.float64)
        if z.shape != tuple(shape):
            raise ValueError(f"noise for step {counter[0]} has shape {z.shape}, not {tuple(shape)}")
        return torch.from_numpy(z)

    replace = {"np": _Float32IsFloat64(np), "torch": _Float32IsFloat64(torch)}
    if noise is not None:
        replace["randn_tensor"] = randn_tensor
    modules = {
        sys.modules[klass.__module__]
        for klass in type(scheduler).__mro__
        if klass.__module__.startswith("diffusers.schedulers.scheduling_")
        and klass.__module__ != "diffusers.schedulers.scheduling_utils"
    }
    saved = [(m, name, vars(m)[name]) for m in modules for name in replace if name in vars(m)]
    default_dtype = torch.get_default_dtype()
    try:
        for module, name, _ in saved:
            setattr(module, name, replace[name])
        torch.set_default_dtype(torch.float64)
        # an override in the config dict itself would be dropped where it is a default
        # (`_use_default_values`): pass it as a keyword
        yield type(scheduler).from_config(scheduler.config, prediction_type="sample"), counter
    finally:
        torch.set_default_dtype(default_dtype)
        for module, name, value in saved:
            setattr(module, name, value)
