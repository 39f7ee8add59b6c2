"""Fixed-grid samplers in sigma-space, each a small `init`/`step` object run by `jaxdiff.sample`."""

from ._analytic_dpm import AnalyticDPM as AnalyticDPM
from ._base import AbstractSampler as AbstractSampler
from ._core import num_evaluations as num_evaluations
from ._ddim import DDIM as DDIM
from ._ddpm import DDPM as DDPM
from ._deis import DEIS as DEIS
from ._dpm_2 import DPM2 as DPM2
from ._dpm_2_ancestral import DPM2Ancestral as DPM2Ancestral
from ._dpm_solver_v3 import (
    DPMSolverV3 as DPMSolverV3,
    DPMSolverV3Statistics as DPMSolverV3Statistics,
)
from ._dpm_solver_v3_statistics import (
    estimate_statistics as estimate_dpm_solver_v3_statistics,
)
from ._dpmpp_2m import DPMpp2M as DPMpp2M
from ._dpmpp_2m_sde import DPMpp2MSDE as DPMpp2MSDE
from ._dpmpp_2s_ancestral import DPMpp2SAncestral as DPMpp2SAncestral
from ._dpmpp_3m import DPMpp3M as DPMpp3M
from ._dpmpp_3m_sde import DPMpp3MSDE as DPMpp3MSDE
from ._dpmpp_sde import DPMppSDE as DPMppSDE
from ._edm_stochastic import EDMStochastic as EDMStochastic
from ._er_sde import ERSDE as ERSDE
from ._euler import Euler as Euler
from ._euler_ancestral import EulerAncestral as EulerAncestral
from ._gradient_estimation import GradientEstimation as GradientEstimation
from ._heun import Heun as Heun
from ._ipndm import IPNDM as IPNDM
from ._lms import LMS as LMS
from ._names import SAMPLERS as SAMPLERS, by_name as by_name
from ._predictor_corrector import PredictorCorrector as PredictorCorrector
from ._res_multistep import RESMultistep as RESMultistep
from ._restart import Restart as Restart
from ._sa_solver import SASolver as SASolver
from ._unipc import UniPC as UniPC

__all__ = [
    "DDIM",
    "DDPM",
    "DEIS",
    "DPM2",
    "ERSDE",
    "IPNDM",
    "LMS",
    "SAMPLERS",
    "AbstractSampler",
    "AnalyticDPM",
    "DPM2Ancestral",
    "DPMSolverV3",
    "DPMSolverV3Statistics",
    "DPMpp2M",
    "DPMpp2MSDE",
    "DPMpp2SAncestral",
    "DPMpp3M",
    "DPMpp3MSDE",
    "DPMppSDE",
    "EDMStochastic",
    "Euler",
    "EulerAncestral",
    "GradientEstimation",
    "Heun",
    "PredictorCorrector",
    "RESMultistep",
    "Restart",
    "SASolver",
    "UniPC",
    "by_name",
    "estimate_dpm_solver_v3_statistics",
    "num_evaluations",
]
