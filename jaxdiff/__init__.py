"""jaxdiff: the SDEs and ODEs behind diffusion generative models, in JAX.

The public surface; everything is implemented in private modules.
"""

import importlib.metadata

from . import (
    analytic as analytic,
    analytic_dpm as analytic_dpm,
    bench as bench,
    bridges as bridges,
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
from ._likelihood import (
    LikelihoodResult as LikelihoodResult,
    bits_per_dim as bits_per_dim,
    dequantize as dequantize,
    log_likelihood as log_likelihood,
    log_likelihood_process as log_likelihood_process,
)
from ._parallel import (
    per_sample_keys as per_sample_keys,
    replicate as replicate,
    sample_chunked as sample_chunked,
    shard_batch as shard_batch,
)
from .processes import (
    EDM as EDM,
    VE as VE,
    VP as VP,
    AbstractProcess as AbstractProcess,
    CosineVP as CosineVP,
    SubVP as SubVP,
    denoiser_from_score as denoiser_from_score,
    score_from_denoiser as score_from_denoiser,
)
from .samplers._core import sample as sample
from .sde import (
    SDE as SDE,
    DiscreteBrownianPath as DiscreteBrownianPath,
    brownian_tree as brownian_tree,
    solve_sde as solve_sde,
)

__version__ = importlib.metadata.version("jaxdiff")
