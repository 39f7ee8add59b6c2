"""Diffusion bridges between two data distributions: the VE and VP bridges of DDBM (Zhou et al.
2024), their preconditioning and denoising loss, and the DDBM and DBIM (Zheng et al. 2024)
samplers, all driven by a bridge denoiser `denoiser(x_t, t, x_T) -> E[x_0 | x_t, x_T]`."""

from ._dbim import DBIM as DBIM
from ._ddbm import DDBM as DDBM
from ._gaussian import (
    GaussianBridgeDenoiser as GaussianBridgeDenoiser,
    GaussianPair as GaussianPair,
)
from ._loss import bridge_loss as bridge_loss
from ._preconditioning import BridgePrecond as BridgePrecond, bridge_scalings as bridge_scalings
from ._process import VE as VE, VP as VP, AbstractBridge as AbstractBridge
from ._sample import (
    SOLVERS as SOLVERS,
    karras_grid as karras_grid,
    sample as sample,
    uniform_grid as uniform_grid,
)
from ._solver import AbstractBridgeSolver as AbstractBridgeSolver

__all__ = [
    "DBIM",
    "DDBM",
    "SOLVERS",
    "VE",
    "VP",
    "AbstractBridge",
    "AbstractBridgeSolver",
    "BridgePrecond",
    "GaussianBridgeDenoiser",
    "GaussianPair",
    "bridge_loss",
    "bridge_scalings",
    "karras_grid",
    "sample",
    "uniform_grid",
]
