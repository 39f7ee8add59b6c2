"""Itô SDEs as drift/diffusion pairs, solved on diffrax: `SDE`, `solve_sde`, Brownian paths,
and the solver registries (`SDE_SOLVERS`, `ODE_SOLVERS`, one `SolverEntry` shape)."""

from ._brownian import DiscreteBrownianPath as DiscreteBrownianPath, brownian_tree as brownian_tree
from ._sde import SDE as SDE
from ._solve import solve_sde as solve_sde
from ._solvers import (
    ODE_SOLVERS as ODE_SOLVERS,
    SDE_SOLVERS as SDE_SOLVERS,
    SolverEntry as SolverEntry,
)

__all__ = [
    "ODE_SOLVERS",
    "SDE",
    "SDE_SOLVERS",
    "DiscreteBrownianPath",
    "SolverEntry",
    "brownian_tree",
    "solve_sde",
]
