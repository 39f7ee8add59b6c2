from ._brownian import DiscreteBrownianPath as DiscreteBrownianPath, brownian_tree as brownian_tree
from ._sde import SDE as SDE
from ._solve import solve_sde as solve_sde
from ._solvers import ODE_SOLVERS as ODE_SOLVERS, SDE_SOLVERS as SDE_SOLVERS
