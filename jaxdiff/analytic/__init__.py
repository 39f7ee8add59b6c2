"""Exact oracles: distributions whose score and denoiser are known at every noise level."""

from ._gaussian_mixture import GaussianMixture as GaussianMixture
from ._gaussian_mixture import ProcessScore as ProcessScore
from ._presets import grid as grid
from ._presets import ill_conditioned as ill_conditioned
from ._presets import random_mixture as random_mixture
from ._presets import ring as ring

__all__ = [
    "GaussianMixture",
    "ProcessScore",
    "grid",
    "ill_conditioned",
    "random_mixture",
    "ring",
]
