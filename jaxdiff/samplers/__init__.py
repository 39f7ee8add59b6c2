"""Fixed-grid samplers in sigma-space, each a small `init`/`step` object run by `jaxdiff.sample`."""

from ._base import AbstractSampler as AbstractSampler
from .euler import Euler as Euler
from .heun import Heun as Heun
