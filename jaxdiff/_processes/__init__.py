from ._base import (
    AbstractProcess as AbstractProcess,
    denoiser_from_score as denoiser_from_score,
    score_from_denoiser as score_from_denoiser,
)
from .cosine import CosineVP as CosineVP
from .edm import EDM as EDM
from .subvp import SubVP as SubVP
from .ve import VE as VE
from .vp import VP as VP
