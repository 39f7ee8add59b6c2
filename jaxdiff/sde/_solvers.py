"""Solver names and what each needs of an SDE."""

from __future__ import annotations

import diffrax as dfx

from ._milstein import DiagonalMilstein

# name -> (factory, short description). Stratonovich solvers are fed the Itô-to-Stratonovich
# corrected drift, so every solver converges to the solution of the Itô SDE it is given.
SDE_SOLVERS = {
    "euler_maruyama": (dfx.Euler, "Euler–Maruyama (Itô), strong order 0.5, weak 1"),
    "milstein": (DiagonalMilstein, "Milstein (Itô, diagonal/scalar noise), strong order 1"),
    "heun": (dfx.Heun, "Heun (Stratonovich), strong order 0.5 (1 for commutative noise)"),
    "euler_heun": (dfx.EulerHeun, "Euler–Heun (Stratonovich), strong order 0.5"),
    "srk": (dfx.GeneralShARK, "ShARK for general noise (SRK, Stratonovich), strong 0.5/1/1.5"),
    "shark": (dfx.ShARK, "ShARK (SRK, additive noise), strong order 1.5"),
    "sra1": (dfx.SRA1, "SRA1 (SRK, additive noise), strong order 1.5"),
    "spark": (dfx.SPaRK, "SPaRK (SRK, Stratonovich, general noise)"),
}
ADDITIVE_ONLY = frozenset({"shark", "sra1"})

ODE_SOLVERS = {
    "euler": dfx.Euler,
    "euler_maruyama": dfx.Euler,  # with zero diffusion, Euler–Maruyama is Euler
    "milstein": dfx.Euler,
    "heun": dfx.Heun,
    "midpoint": dfx.Midpoint,
    "ralston": dfx.Ralston,
    "bosh3": dfx.Bosh3,
    "tsit5": dfx.Tsit5,
    "dopri5": dfx.Dopri5,
    "dopri8": dfx.Dopri8,
}


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
    if not isinstance(solver, str):
        raise TypeError(
            f"solver must be a solver name (str) or a diffrax.AbstractSolver instance, "
            f"got {type(solver).__name__}"
        )
    if sde.is_ode:
        if solver not in ODE_SOLVERS:
            raise ValueError(
                f"unknown solver {solver!r} for an ODE (zero diffusion); "
                f"expected one of {sorted(ODE_SOLVERS)}"
            )
        return ODE_SOLVERS[solver]()
    if solver not in SDE_SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {sorted(SDE_SOLVERS)}")
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
    return SDE_SOLVERS[solver][0]()


def needs_levy_area(solver: dfx.AbstractSolver) -> bool:
    """Whether the solver needs space-time Lévy area from the Brownian path."""
    levy = getattr(solver, "minimal_levy_area", dfx.AbstractBrownianIncrement)
    return issubclass(levy, dfx.AbstractSpaceTimeLevyArea)


def is_stratonovich(solver: dfx.AbstractSolver) -> bool:
    return isinstance(solver, dfx.AbstractStratonovichSolver)
