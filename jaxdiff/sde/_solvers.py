"""Solver names and what each needs of an SDE."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import diffrax as dfx

from .._checks import lookup
from ._milstein import DiagonalMilstein

#: the default step budget of every adaptive solve (`sample_ode`, `sample_sde`,
#: `log_likelihood`): diffrax stops with an error past it
MAX_STEPS = 16384


class SolverEntry(NamedTuple):
    """A registry entry: `entry()` builds the solver; `description` says what it is."""

    factory: Callable[[], dfx.AbstractSolver]
    description: str

    def __call__(self) -> dfx.AbstractSolver:
        return self.factory()


#: The SDE solvers by name (`solve_sde(solver=...)`): name -> SolverEntry, one shape for SDEs
#: and ODEs. Stratonovich solvers are fed the Itô-to-Stratonovich corrected drift, so every
#: solver converges to the solution of the Itô SDE it is given.
SDE_SOLVERS = {
    "euler_maruyama": SolverEntry(dfx.Euler, "Euler–Maruyama (Itô), strong order 0.5, weak 1"),
    "milstein": SolverEntry(
        DiagonalMilstein, "Milstein (Itô, diagonal/scalar noise), strong order 1"
    ),
    "heun": SolverEntry(dfx.Heun, "Heun (Stratonovich), strong order 0.5 (1 commutative noise)"),
    "euler_heun": SolverEntry(dfx.EulerHeun, "Euler–Heun (Stratonovich), strong order 0.5"),
    "srk": SolverEntry(dfx.GeneralShARK, "ShARK, general noise (SRK), strong 0.5/1/1.5"),
    "shark": SolverEntry(dfx.ShARK, "ShARK (SRK, additive noise), strong order 1.5"),
    "sra1": SolverEntry(dfx.SRA1, "SRA1 (SRK, additive noise), strong order 1.5"),
    "spark": SolverEntry(dfx.SPaRK, "SPaRK (SRK, Stratonovich, general noise)"),
}
ADDITIVE_ONLY = frozenset({"shark", "sra1"})

#: The ODE solvers by name (`sample_ode(solver=...)`, a probability-flow ODE): name ->
#: SolverEntry.
ODE_SOLVERS = {
    "euler": SolverEntry(dfx.Euler, "Euler, order 1"),
    "euler_maruyama": SolverEntry(dfx.Euler, "Euler (Euler–Maruyama with zero diffusion)"),
    "milstein": SolverEntry(dfx.Euler, "Euler (Milstein with zero diffusion)"),
    "heun": SolverEntry(dfx.Heun, "Heun, order 2, embedded Euler error estimate"),
    "midpoint": SolverEntry(dfx.Midpoint, "explicit midpoint, order 2"),
    "ralston": SolverEntry(dfx.Ralston, "Ralston, order 2"),
    "bosh3": SolverEntry(dfx.Bosh3, "Bogacki–Shampine, order 3(2)"),
    "tsit5": SolverEntry(dfx.Tsit5, "Tsitouras, order 5(4)"),
    "dopri5": SolverEntry(dfx.Dopri5, "Dormand–Prince, order 5(4)"),
    "dopri8": SolverEntry(dfx.Dopri8, "Dormand–Prince, order 8(7)"),
}


def ode_solver(solver, *, adaptive: bool = False) -> dfx.AbstractSolver:
    """A diffrax ODE solver from a name in `ODE_SOLVERS` or an instance; with `adaptive`, it
    must carry an error estimate."""
    solver = lookup("solver", solver, ODE_SOLVERS, dfx.AbstractSolver, "ODE solver")
    if adaptive and not isinstance(solver, dfx.AbstractAdaptiveSolver):
        raise ValueError(
            f"{type(solver).__name__} has no error estimate: pass steps= or use an adaptive "
            "solver (e.g. 'tsit5', 'dopri5')"
        )
    return solver


def resolve_solver(solver, sde) -> dfx.AbstractSolver:
    """A diffrax solver instance for `solver` (a name or an instance), checked against `sde`."""
    if isinstance(solver, dfx.AbstractSolver):
        if not sde.is_ode and not isinstance(
            solver, dfx.AbstractItoSolver | dfx.AbstractStratonovichSolver
        ):
            raise TypeError(
                f"solver {type(solver).__name__} is not an SDE solver (neither an Itô nor a "
                "Stratonovich diffrax solver), so it would not converge to the Itô solution; "
                "use e.g. 'euler_maruyama', 'heun' or 'srk'"
            )
        return solver
    if sde.is_ode:
        return ode_solver(solver)
    built = lookup("solver", solver, SDE_SOLVERS, dfx.AbstractSolver, "SDE solver")
    if solver in ADDITIVE_ONLY and not sde.additive:
        raise ValueError(
            f"solver {solver!r} needs additive noise: build the SDE with additive=True "
            "(a diffusion that does not depend on x), or use 'srk' for general noise"
        )
    if solver == "milstein" and sde.noise == "general":
        raise ValueError(
            "solver 'milstein' supports diagonal and scalar noise; for general noise pass "
            "diffrax.ItoMilstein() (commutative noise, forward time) or use 'srk'"
        )
    return built


def needs_levy_area(solver: dfx.AbstractSolver) -> bool:
    """Whether the solver needs space-time Lévy area from the Brownian path."""
    levy = getattr(solver, "minimal_levy_area", dfx.AbstractBrownianIncrement)
    return issubclass(levy, dfx.AbstractSpaceTimeLevyArea)


def is_stratonovich(solver: dfx.AbstractSolver) -> bool:
    return isinstance(solver, dfx.AbstractStratonovichSolver)


def evaluations(solver: dfx.AbstractSolver) -> tuple[int, int]:
    """`(vector-field evaluations per step, evaluations before the first step)` of a diffrax
    solver: a Runge–Kutta tableau's stages (one fewer per step, one more at the start, when the
    last stage is reused as the next step's first: FSAL), a stochastic Runge–Kutta tableau's
    drift stages, 1 for Euler / Euler–Maruyama and Milstein, 2 for Euler–Heun."""
    if isinstance(solver, dfx.EulerHeun):
        return 2, 0
    if isinstance(solver, dfx.Euler | DiagonalMilstein):
        return 1, 0
    tableau = getattr(solver, "tableau", None)
    if isinstance(tableau, dfx.StochasticButcherTableau):  # SRKs: the drift's stages
        skip = tableau.ignore_stage_f
        return (len(tableau.b_sol) if skip is None else int(sum(not s for s in skip))), 0
    if tableau is not None and hasattr(tableau, "b_sol"):
        stages = len(tableau.b_sol)
        return (stages - 1, 1) if tableau.fsal else (stages, 0)
    raise ValueError(f"cannot count the evaluations of {type(solver).__name__}")
