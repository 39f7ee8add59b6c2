"""jaxdiff: the SDEs and ODEs behind diffusion generative models, in JAX.

The public surface; everything is implemented in private modules.
"""

import importlib.metadata

from . import analytic as analytic
from . import samplers as samplers
from ._processes import (
    EDM as EDM,
)
from ._processes import (
    VE as VE,
)
from ._processes import (
    VP as VP,
)
from ._processes import (
    AbstractProcess as AbstractProcess,
)
from ._processes import (
    CosineVP as CosineVP,
)
from ._processes import (
    SubVP as SubVP,
)
from ._processes import (
    denoiser_from_score as denoiser_from_score,
)
from ._processes import (
    score_from_denoiser as score_from_denoiser,
)
from ._sde import (
    SDE as SDE,
)
from ._sde import (
    DiscreteBrownianPath as DiscreteBrownianPath,
)
from ._sde import (
    brownian_tree as brownian_tree,
)
from ._sde import (
    solve_sde as solve_sde,
)
from .samplers._core import sample as sample

__version__ = importlib.metadata.version("jaxdiff")
