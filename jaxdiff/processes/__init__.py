"""Forward noising processes in EDM's form `x_t = s(t) (x_0 + sigma(t) eps)`, each with its forward
SDE, reverse-time SDE and probability-flow ODE from a score."""

from ._base import (
    AbstractProcess as AbstractProcess,
    denoiser_from_score as denoiser_from_score,
    score_from_denoiser as score_from_denoiser,
)
from ._cosine import CosineVP as CosineVP
from ._edm import EDM as EDM
from ._flows import (
    AbstractFlow as AbstractFlow,
    AffineFlow as AffineFlow,
    RectifiedFlow as RectifiedFlow,
    TrigFlow as TrigFlow,
)
from ._subvp import SubVP as SubVP
from ._ve import VE as VE
from ._vp import VP as VP

__all__ = [
    "EDM",
    "VE",
    "VP",
    "AbstractFlow",
    "AbstractProcess",
    "AffineFlow",
    "CosineVP",
    "RectifiedFlow",
    "SubVP",
    "TrigFlow",
    "denoiser_from_score",
    "score_from_denoiser",
]
