r"""What a diffusers scheduler config says about its model: the discrete-time table
($\bar\alpha_t$, prediction type, timestep spacing) of the DDPM-family schedulers, or the
sigma range of the score-SDE VE scheduler. Computed on the host in float64, without
importing diffusers or torch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from ..discrete import cosine_alpha_bars
from ..schedules import rescale_zero_terminal_snr

#: diffusers' schedulers of discrete-time (`alphas_cumprod`) models: all read the same
#: table options (`num_train_timesteps`, `beta_*`, `trained_betas`, `prediction_type`).
DISCRETE_SCHEDULERS: tuple[str, ...] = (
    "DDPMScheduler",
    "DDIMScheduler",
    "PNDMScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "DEISMultistepScheduler",
    "UniPCMultistepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "RePaintScheduler",
)
#: diffusers' schedulers of continuous VE score models (NCSN++): the network gets sigma.
VE_SCHEDULERS: tuple[str, ...] = ("ScoreSdeVeScheduler",)

_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


@dataclass(frozen=True)
class SchedulerInfo:
    """The parametrization of a model, from its scheduler config.

    - `kind`: `"discrete"` (a DDPM-family table) or `"ve"` (a continuous VE score model).
    - `class_name`: the scheduler's diffusers class (`"DDPMScheduler"` when defaulted).
    - `config`: the scheduler config as read (`{}` when there was none).
    - `prediction`: `"eps"`, `"v"`, `"x0"` (discrete) or `"score"` (VE).
    - `alphas_cumprod`: the float64 table (discrete) or None.
    - `sigma_min`, `sigma_max`: the model's noise range in sigma-space (discrete: its first
      and last finite levels).
    - `spacing`, `steps_offset`: diffusers' `timestep_spacing` and `steps_offset` (discrete).
    """

    kind: str
    class_name: str
    config: dict
    prediction: str
    alphas_cumprod: np.ndarray | None
    sigma_min: float
    sigma_max: float
    spacing: str = "leading"
    steps_offset: int = 0


def _number(name: str, config: dict, default: float) -> float:
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"scheduler config: {name} must be a finite number, got {value!r}")
    return float(value)


def _betas(config: dict, n: int) -> np.ndarray:
    trained = config.get("trained_betas")
    if trained is not None:
        betas = np.asarray(trained, np.float64)
        if betas.ndim != 1 or betas.shape[0] < 2:
            raise ValueError("scheduler config: trained_betas must be a list of >= 2 numbers")
        return betas
    schedule = config.get("beta_schedule", "linear")
    start = _number("beta_start", config, 0.0001)
    end = _number("beta_end", config, 0.02)
    if schedule == "linear":
        return np.linspace(start, end, n)
    if schedule == "scaled_linear":  # Stable Diffusion's
        return np.linspace(math.sqrt(start), math.sqrt(end), n) ** 2
    if schedule == "squaredcos_cap_v2":  # iDDPM's cosine (Nichol & Dhariwal 2021)
        f = cosine_alpha_bars(n, 0.008)
        return np.minimum(1 - f[1:] / f[:-1], 0.999)
    if schedule == "sigmoid":  # GeoDiff's
        return 1 / (1 + np.exp(-np.linspace(-6, 6, n))) * (end - start) + start
    raise ValueError(
        f"scheduler config: unsupported beta_schedule {schedule!r}; jaxdiff.pretrained "
        f"supports {', '.join(map(repr, _BETA_SCHEDULES))} and trained_betas"
    )


def _discrete(name: str, config: dict) -> SchedulerInfo:
    n = config.get("num_train_timesteps", 1000)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"scheduler config: num_train_timesteps must be an int >= 2, got {n!r}")
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in _PREDICTIONS:
        raise ValueError(
            f"scheduler config: unsupported prediction_type {prediction!r}; expected one of "
            f"{', '.join(map(repr, _PREDICTIONS))}"
        )
    betas = _betas(config, n)
    if not np.all((betas > 0) & (betas < 1)):
        raise ValueError("scheduler config: the betas must lie in (0, 1)")
    table = np.cumprod(1 - betas)
    if config.get("rescale_betas_zero_snr", False):
        with jax.enable_x64(True):
            table = np.asarray(rescale_zero_terminal_snr(table), np.float64)
    spacing = config.get("timestep_spacing", "leading")
    offset = config.get("steps_offset", 0)
    finite = table[table > 0]
    sigmas = np.sqrt((1 - finite) / finite)
    return SchedulerInfo(
        kind="discrete",
        class_name=name,
        config=config,
        prediction=_PREDICTIONS[prediction],
        alphas_cumprod=table,
        sigma_min=float(sigmas[0]),
        sigma_max=float(sigmas[-1]),
        spacing=spacing if spacing in ("leading", "trailing", "linspace") else "leading",
        steps_offset=offset if isinstance(offset, int) and offset >= 0 else 0,
    )


def _ve(name: str, config: dict) -> SchedulerInfo:
    lo = _number("sigma_min", config, 0.01)
    hi = _number("sigma_max", config, 1348.0)
    if not 0 < lo < hi:
        raise ValueError(f"scheduler config: need 0 < sigma_min < sigma_max, got {lo}, {hi}")
    return SchedulerInfo("ve", name, config, "score", None, lo, hi)


def scheduler_info(config: dict[str, Any] | None, *, time_embedding_type: str) -> SchedulerInfo:
    """The `SchedulerInfo` of a scheduler config (`scheduler_config.json` as a dict). Without
    one (`None`), diffusers' defaults for the model's kind: `DDPMScheduler()` (linear betas
    1e-4 .. 0.02 over 1000 steps, eps prediction) for a positional or learned time embedding,
    `ScoreSdeVeScheduler()` (sigma 0.01 .. 1348) for a Fourier one. A scheduler this module
    does not know is a `ValueError` naming it."""
    if config is None:
        if time_embedding_type == "fourier":
            return _ve("ScoreSdeVeScheduler", {})
        return _discrete("DDPMScheduler", {})
    if not isinstance(config, dict):
        raise ValueError(f"the scheduler config must be a JSON object, got {type(config).__name__}")
    name = config.get("_class_name")
    if name is None:
        raise ValueError("the scheduler config names no _class_name (diffusers' scheduler class)")
    if name in VE_SCHEDULERS:
        return _ve(name, config)
    if name in DISCRETE_SCHEDULERS:
        return _discrete(name, config)
    known = ", ".join((*DISCRETE_SCHEDULERS, *VE_SCHEDULERS))
    what = "consistency models" if name == "CMStochasticIterativeScheduler" else None
    detail = f" ({what})" if what else ""
    raise ValueError(f"unsupported scheduler {name!r}{detail}; jaxdiff.pretrained knows {known}")
