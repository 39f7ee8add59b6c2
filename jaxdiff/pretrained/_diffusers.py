r"""`from_diffusers`: a diffusers `UNet2DModel` folder (or a pipeline folder holding one) as
a flax NNX network and a sigma-space jaxdiff denoiser."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_choice, check_count, check_float_dtype, check_key
from ..parametrizations import from_discrete, from_score
from ..processes import EDM
from ._config import parse_config
from ._scheduler import SchedulerInfo, scheduler_info
from ._unet2d import LAYOUTS, UNet2DModel, abstract_unet
from ._weights import load_weights, read_checkpoint

CONFIG_NAME = "config.json"
SCHEDULER_CONFIG_NAME = "scheduler_config.json"
#: `from_diffusers`' choices of `conv`.
CONV_ALGORITHMS = ("auto", "direct", "winograd")


class LabelledNetwork(eqx.Module):
    """`network(x, t, labels=None)` -> `network(x, t, class_labels=labels)`: a diffusers
    network under jaxdiff's keyword for class labels (`jaxdiff.parametrizations.Conditional`
    passes `labels`)."""

    network: Any

    def __call__(self, x, t, labels=None):
        return self.network(x, t, class_labels=labels)


@dataclass(frozen=True, eq=False)
class Pretrained:
    r"""A diffusers model loaded by `from_diffusers`.

    - `denoiser`: the sigma-space denoiser `D(x, sigma)` for every jaxdiff sampler
      (`jaxdiff.sample(m.denoiser, x, sigmas, ...)`), on arrays in `layout`; a
      class-conditional model's takes `labels=` too (`jaxdiff.parametrizations.Conditional`
      binds them). A
      discrete-time model (DDPM family) is `jaxdiff.parametrizations.from_discrete` of the
      network on the scheduler's `alphas_cumprod` with its prediction type and quantized
      timesteps: the network sees $x_t = x/\sqrt{1 + \sigma^2}$ at the nearest timestep. A VE
      score model (NCSN++, `ScoreSdeVeScheduler`) is `from_score` of the network with time
      = sigma (`jaxdiff.EDM`), $D = x + \sigma^2 s(x, \sigma)$.
    - `network`: the `UNet2DModel`, called like diffusers' (`network(sample, timestep,
      class_labels=None)`, `layout` arrays).
    - `config`: the model's `config.json` with diffusers' defaults filled in (a dict).
    - `scheduler`: what the scheduler config says (`SchedulerInfo`: `class_name`, `config`,
      `prediction`, `alphas_cumprod`, `sigma_min`, `sigma_max`, `spacing`, `steps_offset`).
    - `layout`: `"NCHW"` or `"NHWC"`; `shape`: one sample's shape in it (from `sample_size`,
      None if the config has none); `path`: the model folder; `conv`: `"direct"` or
      `"winograd"`, how the network computes its 3x3 convolutions (`from_diffusers`' `conv`).
    """

    denoiser: Any
    network: UNet2DModel
    config: dict
    scheduler: SchedulerInfo
    layout: str
    shape: tuple[int, int, int] | None
    path: Path
    conv: str = "direct"

    @property
    def prediction(self) -> str:
        """`"eps"`, `"v"`, `"x0"` (discrete-time models) or `"score"` (VE models)."""
        return self.scheduler.prediction

    @property
    def sigma_min(self) -> float:
        """The model's smallest noise level (sigma-space)."""
        return self.scheduler.sigma_min

    @property
    def sigma_max(self) -> float:
        """The model's largest finite noise level (sigma-space)."""
        return self.scheduler.sigma_max

    @property
    def alphas_cumprod(self):
        """The discrete-time model's table (float64 numpy), or None for a VE model."""
        return self.scheduler.alphas_cumprod

    def sigmas(self, steps: int, schedule: str = "karras", *, sigma_min=None, sigma_max=None):
        """A sigma grid of `steps` steps for this model: `schedule` is a name of
        `jaxdiff.schedules.SCHEDULES` on `[sigma_min, sigma_max]` (default: the model's
        range), or `"discrete"` for a discrete-time model: the scheduler's own timesteps
        with its `timestep_spacing` and `steps_offset` (`jaxdiff.schedules.discrete`, the
        grid diffusers' DDIM steps over)."""
        from .. import schedules

        steps = check_count("steps", steps)
        if schedule == "discrete":
            if self.scheduler.kind != "discrete":
                raise ValueError("schedule 'discrete' needs a discrete-time (DDPM-family) model")
            if sigma_min is not None or sigma_max is not None:
                raise ValueError("schedule 'discrete' takes the model's levels: no sigma range")
            return schedules.discrete(
                self.alphas_cumprod,
                steps,
                spacing=self.scheduler.spacing,
                steps_offset=self.scheduler.steps_offset,
            )
        check_choice("schedule", schedule, (*schedules.SCHEDULES, "discrete"))
        lo = self.sigma_min if sigma_min is None else float(sigma_min)
        hi = self.sigma_max if sigma_max is None else float(sigma_max)
        return getattr(schedules, schedule)(steps, lo, hi)

    def sample(
        self,
        num: int,
        sigmas,
        *,
        solver="heun",
        key: jax.Array,
        labels=None,
        batch: int | None = None,
        shape: tuple[int, ...] | None = None,
    ) -> np.ndarray:
        """`num` samples (a numpy array in `layout`) drawn with `solver` (a
        `jaxdiff.samplers` sampler or its name) over the grid `sigmas`, in chunks of `batch`
        (default all at once; every chunk runs the same compiled program). Chunk noise comes
        from `key` folded with the chunk's offset, scaled by `sigmas[0]` (unit variance for a
        grid from `inf`). `labels`: one class per sample for a class-conditional model.
        `shape`: one sample's shape (default `self.shape`)."""
        from ..parametrizations import Conditional
        from ..samplers import by_name
        from ..samplers._core import sample as run

        num = check_count("num", num)
        chunk = min(check_count("batch", batch), num) if batch is not None else num
        check_key(key)
        shape = tuple(shape or self.shape or ())
        if len(shape) != 3:
            raise ValueError(
                f"shape must be one sample's (C, H, W) / (H, W, C) shape; the config has no "
                f"sample_size, got {shape or None}"
            )
        solver = by_name(solver) if isinstance(solver, str) else solver
        sigma_max = float(sigmas[0])
        scale = 1.0 if math.isinf(sigma_max) else sigma_max
        dtype = self.network.dtype
        outputs = []
        for start in range(0, num, chunk):
            k_noise, k_solver = jax.random.split(jax.random.fold_in(key, start))
            x = scale * jax.random.normal(k_noise, (chunk, *shape), dtype)
            d = self.denoiser
            if labels is not None:
                part = np.resize(np.asarray(labels)[start : start + chunk], chunk)
                d = Conditional(d, jnp.asarray(part, jnp.int32))
            outputs.append(np.asarray(run(d, x, sigmas, solver=solver, key=k_solver)))
        return np.concatenate(outputs)[:num]


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise FileNotFoundError(f"cannot read {what} {str(path)!r}: {err.strerror}") from None
    except ValueError as err:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {str(path)!r} must hold a JSON object")
    return data


def _model_folder(path: Path) -> tuple[Path, Path | None]:
    """(the UNet's folder, the scheduler config or None) of a model or pipeline folder."""
    index = path / "model_index.json"
    if index.is_file() and not (path / CONFIG_NAME).is_file():
        components = _read_json(index, "pipeline index")
        unet = components.get("unet")
        if not (isinstance(unet, list | tuple) and len(unet) == 2):
            raise ValueError(
                f"pipeline {str(path)!r} has no unet (model_index.json lists "
                f"{', '.join(k for k in components if not k.startswith('_')) or 'nothing'})"
            )
        if unet[1] != "UNet2DModel":
            raise ValueError(
                f"pipeline {str(path)!r}: its unet is a {unet[1]!r}; jaxdiff.pretrained loads "
                "diffusers' UNet2DModel"
            )
        latent = [k for k in ("vqvae", "vae") if k in components]
        if latent:
            raise ValueError(
                f"pipeline {str(path)!r} samples in the latent space of its {latent[0]} "
                f"(latent diffusion): jaxdiff.pretrained samples pixel-space models; load "
                f"{str(path / 'unet')!r} for the latent-space denoiser"
            )
        scheduler = path / "scheduler" / SCHEDULER_CONFIG_NAME
        return path / "unet", scheduler if scheduler.is_file() else None
    beside, pipeline = (
        path / SCHEDULER_CONFIG_NAME,
        path.parent / "scheduler" / SCHEDULER_CONFIG_NAME,
    )
    for candidate in (beside, pipeline):
        if candidate.is_file():
            return path, candidate
    return path, None


def from_diffusers(
    path,
    *,
    dtype=None,
    layout: str = "NCHW",
    scheduler: dict | str | Path | None = None,
    conv: str = "auto",
) -> Pretrained:
    r"""Load a diffusers `UNet2DModel` (DDPM, Ho et al. 2020; score-SDE NCSN++, Song et al.
    2021; or any `UNet2DModel` of the supported blocks) as a flax NNX network and a jaxdiff
    denoiser, without torch.

    **Arguments:**

    - `path`: a model folder (`config.json` and `diffusion_pytorch_model.safetensors`, as
      `save_pretrained` writes them; a sharded `.safetensors.index.json` too) or a pipeline
      folder (`model_index.json` with `unet/` and `scheduler/`, as `DDPMPipeline.
      save_pretrained` writes it).
    - `dtype`: of the weights and the computation (default: the default float dtype;
      `jnp.float64` needs x64).
    - `layout`: of the arrays the denoiser and the network take and return: `"NCHW"`
      (diffusers', the default) or `"NHWC"` (what the network computes in: no transposes).
    - `scheduler`: the scheduler config (a dict or a `scheduler_config.json` path) to use
      instead of the one found with the model: `scheduler_config.json` beside `config.json`,
      or `../scheduler/scheduler_config.json` (a pipeline's). Without any, diffusers'
      defaults: `DDPMScheduler()` for a positional or learned time embedding,
      `ScoreSdeVeScheduler()` for a Fourier one.
    - `conv`: how the 3x3 convolutions are computed. `"direct"`: XLA's convolution, the
      same arithmetic as diffusers' up to rounding (~1e-6 of the output's scale in
      float32). `"winograd"`: the residual blocks' and upsamplers' 3x3 convolutions by
      Winograd's F(4x4, 3x3) (`UNet2DModel.to_winograd`; Lavin & Gray 2016): 4x fewer
      multiplications, the kernels transformed once here, in float64; float32 rounding
      a few times larger per layer (measured: network outputs within 6.4e-6 of the largest
      value of diffusers', against 3.0e-6 direct); in float64 the same to ~1e-14. `"auto"`
      (the default): `"winograd"` on a CPU backend, where it makes the CIFAR-10 DDPM U-Net
      about 1.9x faster, `"direct"` on GPU and TPU, whose libraries choose their own
      convolution algorithms.

    **Returns:** a `Pretrained` with `.denoiser` (`D(x, sigma)` in sigma-space for
    `jaxdiff.sample`), `.network` (called like diffusers' model: `network(x, timestep)` gives
    its prediction), `.config`, `.scheduler`, `.sigmas(steps, schedule)` (a grid on the
    model's range), `.sample(num, sigmas, solver=..., key=...)`.

    **Parametrization.** For the DDPM-family schedulers (`DDPMScheduler`, `DDIMScheduler`,
    `PNDMScheduler`, ... see `jaxdiff.pretrained.DISCRETE_SCHEDULERS`) the table
    $\bar\alpha_t$ is rebuilt in float64 from `num_train_timesteps`, `beta_start`,
    `beta_end`, `beta_schedule` (`linear`, `scaled_linear`, `squaredcos_cap_v2`, `sigmoid`)
    or `trained_betas`, with `rescale_betas_zero_snr`; `prediction_type` `epsilon`,
    `v_prediction` or `sample` picks the conversion of `jaxdiff.parametrizations.
    from_discrete`, whose nearest-timestep quantization feeds the network integer timesteps.
    For `ScoreSdeVeScheduler` the network's output is the score at sigma = `timestep`.
    diffusers' `clip_sample` (clipping the predicted $x_0$ to [-1, 1]) is not applied: wrap
    the denoiser with `jaxdiff.parametrizations.dynamic_thresholding(m.denoiser,
    max_value=1.0)` for it.

    **Errors:** a missing folder, config or weights file is a `FileNotFoundError`; an
    unsupported block type, config key or value, scheduler, or a checkpoint whose tensors do
    not match the config (missing, extra, or of another shape) is a `ValueError` naming it;
    without the safetensors package, an `ImportError` naming the `pretrained` extra.
    """
    layout = check_choice("layout", layout, LAYOUTS)
    dtype = check_float_dtype("dtype", dtype)
    conv = check_choice("conv", conv, CONV_ALGORITHMS)
    if conv == "auto":
        conv = "winograd" if jax.default_backend() == "cpu" else "direct"
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no diffusers model folder at {str(path)!r}")
    folder, scheduler_path = _model_folder(path)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"missing model config {str(config_path)!r}")
    raw = _read_json(config_path, "model config")
    try:
        config = parse_config(raw)
    except ValueError as err:
        raise ValueError(f"{str(config_path)!r}: {err}") from None
    tensors = read_checkpoint(folder)

    if isinstance(scheduler, dict):
        scheduler_path = None  # given, not read: errors name no file
    elif scheduler is not None:
        scheduler_path, scheduler = Path(scheduler), None
    if scheduler is None and scheduler_path is not None:
        scheduler = _read_json(scheduler_path, "scheduler config")
    try:
        info = scheduler_info(scheduler, time_embedding_type=config.time_embedding_type)
    except ValueError as err:
        where = f"{str(scheduler_path)!r}: " if scheduler_path is not None else ""
        raise ValueError(f"{where}{err}") from None

    abstract = abstract_unet(config, dtype=dtype, layout=layout)
    if conv == "winograd":
        abstract.to_winograd()
    network = load_weights(
        abstract,
        tensors,
        source=f"in {str(folder)!r}",
    )
    labelled = LabelledNetwork(network)
    if info.kind == "ve":
        denoiser = from_score(labelled, EDM(sigma_min=info.sigma_min, sigma_max=info.sigma_max))
    else:
        table = jnp.asarray(info.alphas_cumprod, dtype)
        denoiser = from_discrete(labelled, table, prediction=info.prediction, quantize=True)
    size = config.image_size
    shape = None
    if size is not None:
        c = config.in_channels
        shape = (c, *size) if layout == "NCHW" else (*size, c)
    return Pretrained(
        denoiser=denoiser,
        network=network,
        config=network.config_dict(),
        scheduler=info,
        layout=layout,
        shape=shape,
        path=folder,
        conv=conv,
    )
