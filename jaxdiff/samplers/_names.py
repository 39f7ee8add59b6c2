"""Samplers by name, in k-diffusion's spelling (`sample_dpmpp_2m` -> `"dpmpp_2m"`).

The command line (`jaxdiff sample --solver NAME`) and the benchmarks pick samplers by these
names; the classes themselves live one per file in this package.
"""

from __future__ import annotations

from ._base import AbstractSampler
from ._ddim import DDIM
from ._ddpm import DDPM
from ._deis import DEIS
from ._dpm_2 import DPM2
from ._dpm_2_ancestral import DPM2Ancestral
from ._dpm_solver_v3 import DPMSolverV3
from ._dpmpp_2m import DPMpp2M
from ._dpmpp_2m_sde import DPMpp2MSDE
from ._dpmpp_2s_ancestral import DPMpp2SAncestral
from ._dpmpp_3m import DPMpp3M
from ._dpmpp_3m_sde import DPMpp3MSDE
from ._dpmpp_sde import DPMppSDE
from ._edm_stochastic import EDMStochastic
from ._er_sde import ERSDE
from ._euler import Euler
from ._euler_ancestral import EulerAncestral
from ._gradient_estimation import GradientEstimation
from ._heun import Heun
from ._ipndm import IPNDM
from ._lms import LMS
from ._predictor_corrector import PredictorCorrector
from ._res_multistep import RESMultistep
from ._restart import Restart
from ._sa_solver import SASolver
from ._unipc import UniPC

#: name -> sampler class; k-diffusion's names where it has the sampler.
SAMPLERS: dict[str, type[AbstractSampler]] = {
    "euler": Euler,
    "euler_ancestral": EulerAncestral,
    "heun": Heun,
    "dpm_2": DPM2,
    "dpm_2_ancestral": DPM2Ancestral,
    "lms": LMS,
    "dpmpp_2s_ancestral": DPMpp2SAncestral,
    "dpmpp_sde": DPMppSDE,
    "dpmpp_2m": DPMpp2M,
    "dpmpp_2m_sde": DPMpp2MSDE,
    "dpmpp_3m": DPMpp3M,
    "dpmpp_3m_sde": DPMpp3MSDE,
    "edm": EDMStochastic,
    "ddim": DDIM,
    "ddpm": DDPM,
    "ipndm": IPNDM,
    "deis": DEIS,
    "unipc": UniPC,
    "pc": PredictorCorrector,
    "res_multistep": RESMultistep,
    "gradient_estimation": GradientEstimation,
    "er_sde": ERSDE,
    "sa_solver": SASolver,
    "dpm_solver_v3": DPMSolverV3,
    "restart": Restart,
}


def by_name(name: str, **options) -> AbstractSampler:
    """The sampler called `name` (k-diffusion's spelling, e.g. `"dpmpp_2m"`, `"edm"`,
    `"unipc"`), built with `options` (its keyword options, e.g. `eta=0.5`).

    Raises `ValueError` naming the valid names for an unknown one, `TypeError` for a non-string.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a sampler name (str), got {type(name).__name__}")
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name](**options)
