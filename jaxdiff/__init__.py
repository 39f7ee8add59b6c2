"""jaxdiff: the SDEs and ODEs behind diffusion generative models, in JAX.

The public surface; everything is implemented in private modules.
"""

import importlib.metadata

from . import (
    analytic as analytic,
    metrics as metrics,
    nn as nn,
    parametrizations as parametrizations,
    samplers as samplers,
    schedules as schedules,
    train as train,
)
from ._generic import (
    GenericResult as GenericResult,
    sample_ode as sample_ode,
    sample_sde as sample_sde,
)
from ._processes import (
    EDM as EDM,
    VE as VE,
    VP as VP,
    AbstractProcess as AbstractProcess,
    CosineVP as CosineVP,
    SubVP as SubVP,
    denoiser_from_score as denoiser_from_score,
    score_from_denoiser as score_from_denoiser,
)
from ._sde import (
    SDE as SDE,
    DiscreteBrownianPath as DiscreteBrownianPath,
    brownian_tree as brownian_tree,
    solve_sde as solve_sde,
)
from .samplers._core import sample as sample

__version__ = importlib.metadata.version("jaxdiff")
