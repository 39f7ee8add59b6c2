"""``jaxdiff bench``: error against NFE and wall time of samplers x schedules, with peers."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._common import (
    fail,
    fail_write,
    int_at_least,
    results_dir_problem,
    seed,
)
from ._output import atomic_directory

NAME = "bench"
HELP = "benchmark samplers x schedules x NFE on exact problems (error vs NFE, wall time)"
DESCRIPTION = """\
Solve the probability-flow ODE (and the reverse SDE, for stochastic samplers) of exact
problems with every chosen sampler x schedule x NFE budget, against a tight reference
(Heun, Karras grid, 500 steps): the trajectory RMS error of deterministic samplers, the
sliced 2-Wasserstein distance and mean log-likelihood of stochastic ones, the wall time of
a compiled solve, and each deterministic sampler's empirical order (slope of log error
against log NFE). k-diffusion's samplers (when installed) and raw diffrax solvers run on
the same problems and grids as peers.

Writes DIR/results.md (tables), DIR/results.csv, DIR/results.json and
DIR/error_vs_nfe.png (log-log, one line per sampler; one PNG per schedule).

problems: ring, grid (2-D), mixture16, mixture64, ill_conditioned; --ckpt DIR adds the
trained model of a 'jaxdiff train' run (reference: a tight solve of the same model).

--process rectified_flow (or trig_flow) poses the same problems as flows: the model is the
mixture's exact velocity on that path (turned into a denoiser by from_velocity), every grid
starts at sigma = inf (t = 1) from unit-variance noise, and the reference is the exact flow
ODE's endpoint from the same noise (adaptive Dopri8, tolerance 1e-11). Flow grids: flow,
flow_shift3 (SD3's shift), diffusers_flow_match(_shift3), tuned_flow (tuned for ipndm from
pure noise); a sigma-space schedule (karras, ...) runs after a step from inf to sigma 20.
The peer is diffusers' FlowMatchEulerDiscreteScheduler on its own grid (shift 1 and 3).
--process edm (the default) is the sigma-space problem from sigma = 80.

examples:
  jaxdiff bench --quick --out bench-quick
  jaxdiff bench --problems ring mixture64 --samplers euler heun dpmpp_2m unipc \\
      --schedules karras tuned --nfe 10 20 40 80 --out bench
  jaxdiff bench --ckpt runs/moons --problems ring --nfe 10 20 40 --no-peers --out bench-moons
  jaxdiff bench --process rectified_flow --quick --out bench-flow
"""

DEFAULT_PROBLEMS = ["ring", "grid", "mixture16", "mixture64", "ill_conditioned"]
DEFAULT_SAMPLERS = [
    "euler",
    "heun",
    "dpm_2",
    "lms",
    "dpmpp_2m",
    "dpmpp_3m",
    "ipndm",
    "unipc",
    "euler_ancestral",
    "dpmpp_2m_sde",
]
DEFAULT_SCHEDULES = ["karras", "exponential", "tuned"]
DEFAULT_FLOW_SCHEDULES = ["flow", "flow_shift3", "diffusers_flow_match", "tuned_flow", "karras"]
DEFAULT_NFE = [10, 20, 40, 80]
QUICK = dict(
    problems=["ring", "mixture16"],
    samplers=["euler", "heun", "dpmpp_2m", "euler_ancestral"],
    schedules=["karras"],
    nfe=[10, 20],
    samples=128,
    ref_steps=100,
    diffrax=["tsit5"],
)
QUICK_FLOW_SAMPLERS = ["euler", "heun", "dpmpp_2m", "ipndm", "euler_ancestral"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..bench import DIFFRAX_SOLVERS, PROBLEMS, PROCESSES

    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "--problems",
        nargs="+",
        metavar="NAME",
        default=None,
        help=f"exact problems: {', '.join(PROBLEMS)} (default: all; --quick: ring mixture16)",
    )
    parser.add_argument(
        "--samplers", nargs="+", metavar="NAME", default=None, help="jaxdiff sampler names"
    )
    parser.add_argument(
        "--schedules", nargs="+", metavar="NAME", default=None, help="jaxdiff.schedules names"
    )
    parser.add_argument(
        "--nfe", nargs="+", type=int_at_least(1), metavar="N", default=None, help="NFE budgets"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run (2 problems, 4 samplers, NFE 10 20)"
    )
    parser.add_argument(
        "--process",
        choices=PROCESSES,
        default="edm",
        help="pose the exact problems on EDM's sigma-space PF-ODE from sigma 80 (edm, the "
        "default) or as a flow with the exact velocity, from pure noise",
    )
    parser.add_argument("--ckpt", metavar="DIR", default=None, help="add a trained run's model")
    parser.add_argument("--no-peers", action="store_true", help="skip k-diffusion and diffrax")
    parser.add_argument(
        "--diffrax",
        nargs="+",
        metavar="NAME",
        default=None,
        help=f"diffrax peer solvers: {', '.join(DIFFRAX_SOLVERS)} (default: heun tsit5)",
    )
    parser.add_argument(
        "--samples", type=int_at_least(2), default=None, metavar="M", help="samples per solve"
    )
    parser.add_argument(
        "--ref-steps",
        type=int_at_least(2),
        default=None,
        metavar="N",
        help="steps of the reference solve (default: 500; --quick: 100)",
    )
    parser.add_argument("--seed", type=seed, default=0)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    problem = results_dir_problem(out)
    if problem:
        return fail(NAME, problem)

    import jax
    from tqdm.auto import tqdm

    from .. import bench as jb
    from ..train import CheckpointError

    quick = dict(QUICK) if args.quick else {}
    flow = args.process != "edm"
    if flow and args.quick:
        quick.update(samplers=QUICK_FLOW_SAMPLERS, schedules=["flow", "tuned_flow"])
    problems = args.problems or quick.get("problems", DEFAULT_PROBLEMS)
    samplers = args.samplers or quick.get("samplers", DEFAULT_SAMPLERS)
    default_schedules = DEFAULT_FLOW_SCHEDULES if flow else DEFAULT_SCHEDULES
    schedules = args.schedules or quick.get("schedules", default_schedules)
    nfes = args.nfe or quick.get("nfe", DEFAULT_NFE)
    samples = args.samples or quick.get("samples")
    ref_steps = args.ref_steps or quick.get("ref_steps", 500)
    diffrax = args.diffrax or quick.get("diffrax", ["heun", "tsit5"])
    t0 = time.perf_counter()
    try:
        with jax.enable_x64(True):
            probs = [jb.problem(p, num_samples=samples, process=args.process) for p in problems]
        if args.ckpt is not None:
            probs.append(jb.checkpoint_problem(args.ckpt, num_samples=samples or 256))
        bar = tqdm(
            total=1,
            unit="solve",
            desc="jaxdiff bench",
            file=sys.stderr,
            disable=None,  # off when stderr is not a terminal (a log, a test)
            leave=False,  # cleared at the end: stderr keeps only a failure's one line
        )

        def progress(done, total, label):
            bar.total = total
            bar.set_postfix_str(label, refresh=False)
            bar.update(done - bar.n)

        try:
            result = jb.run_bench(
                probs,
                samplers,
                schedules,
                nfes,
                peers=not args.no_peers,
                diffrax_solvers=diffrax,
                ref_steps=ref_steps,
                seed=args.seed,
                progress=progress,
            )
        finally:
            bar.close()
    except CheckpointError as e:
        return fail(NAME, f"--ckpt: {e}")
    except ValueError as e:
        return fail(NAME, str(e).split("\n")[0])
    elapsed = time.perf_counter() - t0
    result.notes.append(f"total wall time {elapsed:.0f} s")
    header = ["# jaxdiff bench", "", jb.environment()]
    try:
        # every file is written into a temporary directory in `out` first, and moved into
        # `out` only when all are written: a full disk leaves the previous results (or none)
        with atomic_directory(out) as tmp:
            written = jb.write_results(result, tmp, header=header)
        paths = [out / p.relative_to(tmp) for p in written]
    except OSError as e:
        return fail_write(NAME, out, e)
    except ValueError as e:  # no results to write
        return fail(NAME, str(e))
    print("\n".join(jb.summary_tables(result.rows)))
    print("\n".join(jb.order_table(result.orders)))
    print(f"wrote {', '.join(str(p) for p in paths)} in {elapsed:.0f} s")
    return 0
