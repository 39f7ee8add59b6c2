"""Exact oracles: distributions whose score and denoiser are known at every noise level."""

from ._gaussian_mixture import GaussianMixture as GaussianMixture, ProcessScore as ProcessScore
from ._presets import (
    grid as grid,
    ill_conditioned as ill_conditioned,
    random_mixture as random_mixture,
    ring as ring,
)

__all__ = [
    "GaussianMixture",
    "ProcessScore",
    "grid",
    "ill_conditioned",
    "random_mixture",
    "ring",
]
