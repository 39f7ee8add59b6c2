r"""Pretrained diffusion models in flax NNX: diffusers' `UNet2DModel` (the DDPM checkpoints,
Ho et al. 2020; the score-SDE NCSN++ checkpoints, Song et al. 2021; any class-conditional or
unconditional `UNet2DModel` of the supported blocks) ported to flax NNX, loaded from
diffusers' folders (`config.json`, `diffusion_pytorch_model.safetensors` and the scheduler
config) with the safetensors package, without torch, as a sigma-space denoiser for every
jaxdiff sampler.

    import jax, jaxdiff as jd

    m = jd.pretrained.from_diffusers("ddpm-cifar10-32")      # a model or pipeline folder
    sigmas = m.sigmas(20)                                      # Karras on the model's range
    x = sigmas[0] * jax.random.normal(jax.random.key(0), (16, *m.shape))
    images = jd.sample(m.denoiser, x, sigmas, solver="dpmpp_2m")   # NCHW, in [-1, 1]

Arrays are NCHW by default (diffusers' layout); `layout="NHWC"` skips the transposes around
the network, which computes in NHWC. On a CPU backend the residual blocks' 3x3 convolutions
use Winograd's F(4x4, 3x3) (`from_diffusers(conv="auto")`: the DDPM CIFAR-10 U-Net about
1.9x faster than with XLA's direct convolution; `conv="direct"` for that). Reading
checkpoints needs the `pretrained` extra (`pip install 'jaxdiff[pretrained]'`: safetensors).
"""

from ._config import (
    DOWN_BLOCKS as DOWN_BLOCKS,
    UP_BLOCKS as UP_BLOCKS,
    UNet2DConfig as UNet2DConfig,
    parse_config as parse_config,
)
from ._diffusers import Pretrained as Pretrained, from_diffusers as from_diffusers
from ._scheduler import (
    DISCRETE_SCHEDULERS as DISCRETE_SCHEDULERS,
    VE_SCHEDULERS as VE_SCHEDULERS,
    SchedulerInfo as SchedulerInfo,
    scheduler_info as scheduler_info,
)
from ._unet2d import LAYOUTS as LAYOUTS, UNet2DModel as UNet2DModel
from ._weights import (
    load_weights as load_weights,
    read_checkpoint as read_checkpoint,
)

__all__ = [
    "DISCRETE_SCHEDULERS",
    "DOWN_BLOCKS",
    "LAYOUTS",
    "UP_BLOCKS",
    "VE_SCHEDULERS",
    "Pretrained",
    "SchedulerInfo",
    "UNet2DConfig",
    "UNet2DModel",
    "from_diffusers",
    "load_weights",
    "parse_config",
    "read_checkpoint",
    "scheduler_info",
]
