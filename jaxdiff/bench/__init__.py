"""Solver benchmarking: error against NFE and wall time of samplers x schedules on exact
problems (and a trained model), with k-diffusion and raw diffrax solvers as peers.

    import jaxdiff.bench as jb
    with jax.enable_x64(True):
        probs = [jb.problem("ring"), jb.problem("mixture16")]
    result = jb.run_bench(probs, ["euler", "heun", "dpmpp_2m"], ["karras"], [10, 20, 40])
    jb.write_results(result, "bench-out")   # results.md / .csv / .json, error_vs_nfe.png

    # flows: the mixture's exact velocity on a rectified flow, grids from sigma = inf
    with jax.enable_x64(True):
        flows = [jb.problem("ring", process="rectified_flow")]
    result = jb.run_bench(flows, ["euler", "ipndm"], ["flow", "tuned"], [10, 20])

The command line is ``jaxdiff bench`` (``--process rectified_flow`` for flows).
"""

from ._diffusers import (
    DIFFUSERS_SCHEDULERS as DIFFUSERS_SCHEDULERS,
    DiffusersRun as DiffusersRun,
    diffusers_scheduler_grid as diffusers_scheduler_grid,
    run_diffusers_scheduler as run_diffusers_scheduler,
    step_normals as step_normals,
)
from ._peers import (
    DIFFRAX_SOLVERS as DIFFRAX_SOLVERS,
    KDIFFUSION_SAMPLERS as KDIFFUSION_SAMPLERS,
    diffusers_times as diffusers_times,
    flow_reference as flow_reference,
    load_kdiffusion as load_kdiffusion,
    run_diffrax as run_diffrax,
    run_diffusers as run_diffusers,
    run_flow_euler as run_flow_euler,
    run_kdiffusion as run_kdiffusion,
    torch_bridge as torch_bridge,
)
from ._problems import (
    FLOWS as FLOWS,
    PROBLEMS as PROBLEMS,
    PROCESSES as PROCESSES,
    Problem as Problem,
    checkpoint_problem as checkpoint_problem,
    problem as problem,
)
from ._report import (
    environment as environment,
    matrix_tables as matrix_tables,
    order_table as order_table,
    plot as plot,
    read_csv as read_csv,
    summary_tables as summary_tables,
    write_results as write_results,
)
from ._run import (
    DIFFUSERS_SHIFTS as DIFFUSERS_SHIFTS,
    FLOW_GRIDS as FLOW_GRIDS,
    FLOW_SIGMA_FIRST as FLOW_SIGMA_FIRST,
    PEERS as PEERS,
    BenchResult as BenchResult,
    fit_order as fit_order,
    flow_grid as flow_grid,
    max_steps as max_steps,
    orders as orders,
    rms_error as rms_error,
    run_bench as run_bench,
)

__all__ = [
    "DIFFRAX_SOLVERS",
    "DIFFUSERS_SCHEDULERS",
    "DIFFUSERS_SHIFTS",
    "FLOWS",
    "FLOW_GRIDS",
    "FLOW_SIGMA_FIRST",
    "KDIFFUSION_SAMPLERS",
    "PEERS",
    "PROBLEMS",
    "PROCESSES",
    "BenchResult",
    "DiffusersRun",
    "Problem",
    "checkpoint_problem",
    "diffusers_scheduler_grid",
    "diffusers_times",
    "environment",
    "fit_order",
    "flow_grid",
    "flow_reference",
    "load_kdiffusion",
    "matrix_tables",
    "max_steps",
    "order_table",
    "orders",
    "plot",
    "problem",
    "read_csv",
    "rms_error",
    "run_bench",
    "run_diffrax",
    "run_diffusers",
    "run_diffusers_scheduler",
    "run_flow_euler",
    "run_kdiffusion",
    "step_normals",
    "summary_tables",
    "torch_bridge",
    "write_results",
]
