"""``jaxdiff sample``: draw samples from a trained run with any sampler of the core."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from ..train import build_network, draw_samples
from . import _distributed, _pretrained
from ._common import (
    class_labels,
    fail,
    fail_write,
    finite_float,
    int_at_least,
    nonnegative_int,
    output_file_problem,
    positive_float,
    pyplot,
    seed,
)
from ._output import save_figure, save_samples

NAME = "sample"
HELP = "sample a trained run with any sampler (k-diffusion's names) to a PNG or .npy"
DESCRIPTION = """\
Load the EMA weights of the last checkpoint of a 'jaxdiff train' run and sample with one
of jaxdiff's samplers: a score model (--objective edm) on a Karras grid (sigma 80 -> 0.002
-> 0), a flow model (--objective flow) on the flow grid from pure noise (uniform in flow
time t = 1 -> 0, Stable Diffusion 3's --shift), or either on any --schedule. --out FILE.png
writes a grid of images, or for 2-D data a scatter over the training data's density; --out
FILE.npy saves the samples (and FILE.labels.npy the classes of a conditional model).

--diffusers DIR samples a diffusers UNet2DModel instead (a model folder with config.json and
diffusion_pytorch_model.safetensors, or a pipeline folder such as DDPMPipeline's; see
jaxdiff.pretrained): on a Karras grid over the model's own sigma range by default, or any
--schedule, 'discrete' being its scheduler's timesteps; --out FILE.npy gets NHWC samples.

samplers (k-diffusion's spelling): euler, euler_ancestral, heun, dpm_2, dpm_2_ancestral,
lms, dpmpp_2s_ancestral, dpmpp_sde, dpmpp_2m, dpmpp_2m_sde, dpmpp_3m, dpmpp_3m_sde,
edm (EDM's stochastic sampler), ddim, ddpm, ipndm, deis, unipc, pc

examples:
  jaxdiff sample --ckpt runs/moons --solver dpmpp_2m --steps 20 --num 4000 --out moons.png
  jaxdiff sample --ckpt runs/ot --solver euler --steps 4 --num 4000 --out ot.png
  jaxdiff sample --ckpt runs/digits --solver heun --steps 18 --num 100 --class 3 \\
      --guidance 2 --out threes.png
  jaxdiff sample --diffusers ddpm-cifar10-32 --solver dpmpp_2m --steps 20 --num 64 \\
      --out cifar.png
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..samplers import SAMPLERS

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", metavar="DIR", help="a 'jaxdiff train' run")
    source.add_argument("--diffusers", metavar="DIR", help=_pretrained.HELP)
    parser.add_argument(
        "--solver",
        choices=list(SAMPLERS),
        default="heun",
        metavar="NAME",
        help="the sampler (default: %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=int_at_least(1),
        default=18,
        metavar="N",
        help="grid steps (default: %(default)s)",
    )
    parser.add_argument(
        "--num",
        type=int_at_least(1),
        default=1000,
        metavar="M",
        help="samples to draw (default: %(default)s)",
    )
    parser.add_argument("--out", required=True, metavar="FILE.png|FILE.npy")
    parser.add_argument(
        "--schedule",
        default=None,
        metavar="NAME",
        help="a jaxdiff.schedules function (default: karras for a score model, flow for a "
        "flow model)",
    )
    parser.add_argument(
        "--sigma-min", type=positive_float, help="(default: 0.002; --diffusers: the model's)"
    )
    parser.add_argument(
        "--sigma-max", type=positive_float, help="(default: 80; --diffusers: the model's)"
    )
    parser.add_argument(
        "--shift",
        type=positive_float,
        default=None,
        metavar="S",
        help="the time shift of a flow grid, sigma -> S sigma (SD3 uses 3; default: 1)",
    )
    parser.add_argument(
        "--class",
        dest="klass",
        type=nonnegative_int,
        default=None,
        metavar="K",
        help="class of a conditional model (default: all classes in turn)",
    )
    parser.add_argument(
        "--guidance",
        type=finite_float,
        default=1.0,
        metavar="SCALE",
        help="classifier-free guidance scale: 0 unconditional, 1 conditional "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--batch",
        type=int_at_least(1),
        default=4096,
        metavar="B",
        help="samples per compiled call (default: %(default)s)",
    )
    parser.add_argument("--seed", type=seed, default=0)
    _distributed.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.diffusers is not None and _distributed.requested(args):
        return fail(NAME, "--diffusers samples in one process (no --coordinator or --distributed)")
    # on several hosts: each draws its rows of every batch, process 0 writes --out
    return _distributed.run(NAME, args, _run)


def _run(args: argparse.Namespace) -> int:
    import jax

    from .. import schedules, train as jt
    from ..samplers import by_name

    if args.diffusers is not None:  # a diffusers UNet2DModel (jaxdiff.pretrained)
        return _pretrained.run(NAME, args)
    args.sigma_min = 0.002 if args.sigma_min is None else args.sigma_min
    args.sigma_max = 80.0 if args.sigma_max is None else args.sigma_max
    out = Path(args.out)
    problem = output_file_problem(out) if _distributed.is_primary() else None
    if problem:
        return fail(NAME, problem)
    if not args.sigma_min < args.sigma_max:
        return fail(NAME, f"--sigma-min {args.sigma_min} must be < --sigma-max {args.sigma_max}")
    known = (*schedules.SCHEDULES, *schedules.FLOW_SCHEDULES, "tuned_flow")
    if args.schedule is not None and args.schedule not in known:
        return fail(
            NAME,
            f"--schedule: unknown schedule {args.schedule!r}; expected one of: {', '.join(known)}",
        )
    try:
        network, config = jt.load_model(args.ckpt, lambda c: build_network(c["network"], seed=0))
        flow_model = jt.objective_of(config) == "flow"
    except ValueError as err:  # CheckpointError, RecipeError
        return fail(NAME, f"--ckpt: {err}")
    schedule = args.schedule or ("flow" if flow_model else "karras")
    flow_grid = schedule in (*schedules.FLOW_SCHEDULES, "tuned_flow")
    if flow_grid and not flow_model:
        return fail(
            NAME,
            f"--schedule {schedule} starts from pure noise (sigma = inf): it needs a flow "
            "model (train --objective flow)",
        )
    if args.shift is not None and schedule not in schedules.FLOW_SCHEDULES:
        return fail(
            NAME, f"--shift applies to the flow grids ({', '.join(schedules.FLOW_SCHEDULES)})"
        )
    num_classes = config["network"].get("num_classes", 0)
    labels = None
    if num_classes:
        try:
            labels = class_labels(args.num, args.klass, num_classes)
        except ValueError as err:
            return fail(NAME, str(err))
    elif args.klass is not None or args.guidance != 1.0:
        return fail(NAME, "--class and --guidance need a conditional model (train --conditional)")

    solver = by_name(args.solver)
    if schedule == "tuned_flow":
        sigmas = schedules.tuned_flow(args.steps)
    elif flow_grid:
        sigmas = getattr(schedules, schedule)(args.steps, shift=args.shift or 1.0)
    else:
        sigmas = getattr(schedules, schedule)(args.steps, args.sigma_min, args.sigma_max)
    start = time.perf_counter()
    x = draw_samples(
        network,
        config,
        solver=solver,
        sigmas=sigmas,
        num=args.num,
        key=jax.random.key(args.seed),
        labels=labels,
        guidance=args.guidance,
        batch=args.batch,
        mesh=jt.data_mesh() if jax.process_count() > 1 else None,
    )
    seconds = time.perf_counter() - start
    if not np.all(np.isfinite(x)):
        return fail(NAME, f"{args.solver} produced non-finite samples ({args.steps} steps)")
    if not _distributed.is_primary():
        return 0
    try:
        if out.suffix.lower() == ".npy":
            save_samples(out, x, labels)
        else:
            plot(
                out,
                x,
                config,
                labels=labels,
                title=f"{args.solver}, {args.steps} steps, {solver.nfe(args.steps)} NFE",
            )
    except OSError as err:
        return fail_write(NAME, out, err)
    print(
        f"wrote {out}: {args.num} samples with {args.solver} ({args.steps} steps, "
        f"{solver.nfe(args.steps)} NFE) in {seconds:.1f} s"
    )
    return 0


def plot(path, x, config, *, labels=None, title="", data=None):
    """A grid of images, or a 2-D scatter over the data density (from the run's dataset),
    written atomically to `path` (in the format of its suffix)."""
    plt = pyplot()
    if config["kind"] == "images":
        n = x.shape[0]
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        h, w, c = x.shape[1:]
        canvas = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
        for i in range(n):
            r, q = divmod(i, cols)
            canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = (
                np.clip((x[i] + 1) / 2, 0, 1)
            )
        fig, ax = plt.subplots(figsize=(0.4 * cols + 1, 0.4 * rows + 1))
        ax.imshow(
            canvas[..., 0] if c == 1 else canvas,
            cmap="gray",
            vmin=0,
            vmax=1,
            interpolation="nearest",
        )
        ax.set_axis_off()
    else:
        fig, ax = plt.subplots(figsize=(5, 5))
        if data is None:
            data = _training_data(config)
        lim = np.quantile(np.abs(np.concatenate([data[:, :2], x[:, :2]])), 0.995) * 1.1
        if len(data):
            ax.hist2d(
                data[:, 0], data[:, 1], bins=120, range=[[-lim, lim], [-lim, lim]], cmap="Greys"
            )
        ax.scatter(x[:, 0], x[:, 1], s=2, c="tab:orange", alpha=0.6, label="samples")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", markerscale=4)
    ax.set_title(title)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)


def _training_data(config):
    """The 2-D training data of a run (regenerated for a toy), for the density backdrop."""
    import jax

    from .. import train as jt

    try:
        return np.asarray(jt.load_dataset(config["data"], key=jax.random.key(config["seed"])).x)
    except (ValueError, OSError):
        return np.zeros((0, 2), np.float32)
