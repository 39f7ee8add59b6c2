r"""Model parametrizations: eps-, x0-, v-, score-, flow-velocity- and F-prediction networks as
the universal sigma-space denoiser
$D(x; \sigma) \approx E[x_0 \mid x_0 + \sigma\varepsilon = x]$; EDM's preconditioners;
class-label binding and classifier-free guidance; discrete-time (`alphas_cumprod`) networks
(`from_discrete`, `sigmas_of`) and dynamic thresholding."""

from ._denoisers import (
    ClassifierFreeGuidance as ClassifierFreeGuidance,
    Conditional as Conditional,
    EDMPrecond as EDMPrecond,
    VEPrecond as VEPrecond,
    VPPrecond as VPPrecond,
    from_eps as from_eps,
    from_score as from_score,
    from_v as from_v,
    from_velocity as from_velocity,
    from_x0 as from_x0,
)
from ._discrete import (
    PREDICTIONS as PREDICTIONS,
    DiscreteDenoiser as DiscreteDenoiser,
    DynamicThresholding as DynamicThresholding,
    dynamic_thresholding as dynamic_thresholding,
    from_discrete as from_discrete,
    sigmas_of as sigmas_of,
)

__all__ = [
    "PREDICTIONS",
    "ClassifierFreeGuidance",
    "Conditional",
    "DiscreteDenoiser",
    "DynamicThresholding",
    "EDMPrecond",
    "VEPrecond",
    "VPPrecond",
    "dynamic_thresholding",
    "from_discrete",
    "from_eps",
    "from_score",
    "from_v",
    "from_velocity",
    "from_x0",
    "sigmas_of",
]
