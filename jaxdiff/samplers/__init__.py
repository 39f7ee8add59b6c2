"""Fixed-grid samplers in sigma-space, each a small `init`/`step` object run by `jaxdiff.sample`."""

from ._base import AbstractSampler as AbstractSampler
from ._names import SAMPLERS as SAMPLERS, by_name as by_name
from .ddim import DDIM as DDIM
from .ddpm import DDPM as DDPM
from .deis import DEIS as DEIS
from .dpm_2 import DPM2 as DPM2
from .dpm_2_ancestral import DPM2Ancestral as DPM2Ancestral
from .dpmpp_2m import DPMpp2M as DPMpp2M
from .dpmpp_2m_sde import DPMpp2MSDE as DPMpp2MSDE
from .dpmpp_2s_ancestral import DPMpp2SAncestral as DPMpp2SAncestral
from .dpmpp_3m import DPMpp3M as DPMpp3M
from .dpmpp_3m_sde import DPMpp3MSDE as DPMpp3MSDE
from .dpmpp_sde import DPMppSDE as DPMppSDE
from .edm_stochastic import EDMStochastic as EDMStochastic
from .euler import Euler as Euler
from .euler_ancestral import EulerAncestral as EulerAncestral
from .heun import Heun as Heun
from .ipndm import IPNDM as IPNDM
from .lms import LMS as LMS
from .predictor_corrector import PredictorCorrector as PredictorCorrector
from .unipc import UniPC as UniPC
