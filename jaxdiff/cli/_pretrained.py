"""``jaxdiff sample --diffusers DIR``: sample a diffusers `UNet2DModel` folder (or a pipeline
folder holding one) with any jaxdiff sampler and grid (`jaxdiff.pretrained`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ._common import class_labels, fail, fail_write, output_file_problem
from ._output import save_samples

HELP = (
    "a diffusers UNet2DModel folder or pipeline folder (config.json and "
    "diffusion_pytorch_model.safetensors; needs the safetensors package)"
)


def run(name: str, args: argparse.Namespace) -> int:
    """`jaxdiff sample` on `args.diffusers`: the grid is `--schedule` (default karras) on
    the model's sigma range (or `--sigma-min`/`--sigma-max`), `discrete` for the scheduler's
    own timesteps; `--out` gets NHWC samples (`.npy`) or an image grid (`.png`)."""
    import jax

    from .. import schedules
    from ..pretrained import from_diffusers
    from ..samplers import by_name
    from ._sample import plot

    out = Path(args.out)
    problem = output_file_problem(out)
    if problem:
        return fail(name, problem)
    known = (*schedules.SCHEDULES, "discrete")
    schedule = args.schedule or "karras"
    if schedule not in known:
        return fail(
            name,
            f"--schedule: {schedule!r} is not a grid for a diffusers model; expected one of: "
            f"{', '.join(known)}",
        )
    if args.shift is not None:
        return fail(name, "--shift applies to flow models, not to --diffusers")
    if args.guidance != 1.0:
        return fail(name, "--guidance needs a model trained with label dropout (jaxdiff train)")
    try:
        model = from_diffusers(args.diffusers, layout="NHWC")
    except (OSError, ValueError, ImportError) as err:
        return fail(name, f"--diffusers: {err}")
    if model.shape is None:
        return fail(name, f"--diffusers: {args.diffusers!r}'s config.json has no sample_size")
    if schedule == "discrete" and model.scheduler.kind != "discrete":
        return fail(name, "--schedule discrete needs a discrete-time (DDPM-family) model")
    lo = model.sigma_min if args.sigma_min is None else args.sigma_min
    hi = model.sigma_max if args.sigma_max is None else args.sigma_max
    if schedule == "discrete" and (args.sigma_min is not None or args.sigma_max is not None):
        return fail(name, "--schedule discrete takes the model's own levels: no --sigma-min/max")
    if not lo < hi:
        return fail(name, f"sigma-min {lo:g} must be < sigma-max {hi:g}")

    if model.config["class_embed_type"] is not None:
        return fail(
            name,
            f"--diffusers: class_embed_type {model.config['class_embed_type']!r} takes "
            "class inputs this command cannot give",
        )
    classes = model.config["num_class_embeds"]
    labels = None
    if classes:
        try:
            labels = class_labels(args.num, args.klass, classes)
        except ValueError as err:
            return fail(name, str(err))
    elif args.klass is not None:
        return fail(name, "--class needs a class-conditional model (num_class_embeds)")
    try:
        sigmas = (
            model.sigmas(args.steps, "discrete")
            if schedule == "discrete"
            else model.sigmas(args.steps, schedule, sigma_min=lo, sigma_max=hi)
        )
    except ValueError as err:
        return fail(name, f"--schedule {schedule}: {err}")

    solver = by_name(args.solver)
    start = time.perf_counter()
    x = model.sample(
        args.num,
        sigmas,
        solver=solver,
        key=jax.random.key(args.seed),
        labels=labels,
        batch=args.batch,
    )
    seconds = time.perf_counter() - start
    nfe = solver.nfe(args.steps)
    if not np.all(np.isfinite(x)):
        return fail(name, f"{args.solver} produced non-finite samples ({args.steps} steps)")
    try:
        if out.suffix.lower() == ".npy":
            save_samples(out, x, labels)
        else:
            if x.shape[-1] not in (1, 3):
                return fail(
                    name, f"--out .png needs 1 or 3 channels, the model has {x.shape[-1]}: use .npy"
                )
            title = f"{args.solver}, {args.steps} steps, {nfe} NFE"
            plot(out, x, {"kind": "images"}, labels=labels, title=title)
    except OSError as err:
        return fail_write(name, out, err)
    print(
        f"wrote {out}: {args.num} samples of {Path(args.diffusers).name} with {args.solver} "
        f"({args.steps} steps, {nfe} NFE) in {seconds:.1f} s"
    )
    return 0
