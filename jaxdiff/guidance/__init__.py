"""Guidance as denoiser transforms: each takes denoisers and returns a denoiser
`D(x, sigma)`, so it works with every sampler and every process (flow models through
`jaxdiff.parametrizations.from_velocity`).

- `classifier_free(denoiser, uncond_denoiser, scale, *, interval=None)`: classifier-free
  guidance (Ho & Salimans 2021), with the guidance interval of Kynkäänniemi et al. 2024;
- `autoguidance(denoiser, guide, scale, *, interval=None)`: guidance by a weaker model
  (Karras et al. 2024);
- `classifier(denoiser, log_prob, scale, *, interval=None)`: classifier guidance through
  `jax.grad` (Dhariwal & Nichol 2021);
- `cfg_pp(denoiser, uncond_denoiser, scale, *, interval=None)`: CFG++ (Chung et al. 2024),
  which renoises with the unconditional prediction through the samplers' `step_start` hook.
"""

from ._cfg_pp import CFGPlusPlus as CFGPlusPlus, cfg_pp as cfg_pp
from ._classifier import ClassifierGuided as ClassifierGuided, classifier as classifier
from ._guided import (
    Guided as Guided,
    autoguidance as autoguidance,
    classifier_free as classifier_free,
)

__all__ = [
    "CFGPlusPlus",
    "ClassifierGuided",
    "Guided",
    "autoguidance",
    "cfg_pp",
    "classifier",
    "classifier_free",
]
