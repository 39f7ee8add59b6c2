from ._base import (
    AbstractProcess as AbstractProcess,
    denoiser_from_score as denoiser_from_score,
    score_from_denoiser as score_from_denoiser,
)
from ._cosine import CosineVP as CosineVP
from ._edm import EDM as EDM
from ._subvp import SubVP as SubVP
from ._ve import VE as VE
from ._vp import VP as VP
