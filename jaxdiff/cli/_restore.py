"""``jaxdiff restore``: inpaint, super-resolve or denoise held-out digits with a trained prior."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from ._common import (
    fail,
    fail_write,
    int_at_least,
    output_file_problem,
    positive_float,
    pyplot,
    seed,
)
from ._output import save_arrays, save_figure

NAME = "restore"
HELP = "inpaint, super-resolve or denoise held-out digits with a trained prior (DPS, PiGDM, ...)"
DESCRIPTION = """\
Restore held-out digits (the fixed fifth of scikit-learn's digits that a model trained on
'digits-train' never saw) from a degraded observation y = A x + noise, with the prior of a
'jaxdiff train' run on the digits (jaxdiff.inverse):

tasks:
  inpaint    the lower half of every digit is hidden (a Mask; noise std 0 by default)
  superres   2x super-resolution: the 4x4 block averages (Downsample(2); noise std 0)
  denoise    every pixel observed with Gaussian noise (noise std 0.4 by default)

methods:
  dps      diffusion posterior sampling (Chung et al. 2023), --zeta its step (default 1)
  pigdm    pseudoinverse-guided diffusion (Song et al. 2023), data variance 0.25
  tmpd     Tweedie moment projection (Boys et al. 2023), the diagonal covariance of images
  repaint  RePaint (Lugmayr et al. 2022; inpaint only: it keeps the observed pixels)
  smc      sequential Monte Carlo (MCGdiff, Cardoso et al. 2024), --particles per sample

The samples are drawn on a Karras grid (sigma 80 -> 0.002 -> 0) with the method's default
sampler. --out FILE.png writes one row per digit: the degraded input, --samples posterior
samples, and the truth; --out FILE.npy saves the samples (num, samples, 8, 8, 1) and next to
them FILE.degraded.npy and FILE.truth.npy. Prints the PSNR (peak-to-peak 2: the digits live
in [-1, 1]) of the samples and of their mean against the truth, next to the degraded
input's.

examples:
  jaxdiff restore --ckpt runs/digits --task inpaint --method pigdm --out inpaint.png
  jaxdiff restore --ckpt runs/digits --task superres --method dps --steps 100 --out sr.png
  jaxdiff restore --ckpt runs/digits --task denoise --method smc --particles 16 --out dn.png
"""

TASKS = ("inpaint", "superres", "denoise")
METHODS = ("dps", "pigdm", "tmpd", "repaint", "smc")
#: the default noise std of each task's observation (in the digits' [-1, 1] units)
NOISE = {"inpaint": 0.0, "superres": 0.0, "denoise": 0.4}
#: the digits' variance, PiGDM's data variance (EDM's sigma_data = 0.5)
DATA_VAR = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, metavar="DIR", help="a 'jaxdiff train' run")
    parser.add_argument("--task", required=True, choices=TASKS, help="the degradation")
    parser.add_argument("--method", required=True, choices=METHODS, help="the posterior sampler")
    parser.add_argument("--out", required=True, metavar="FILE.png|FILE.npy")
    parser.add_argument(
        "--steps", type=int_at_least(1), default=50, metavar="N", help="grid steps (default: 50)"
    )
    parser.add_argument(
        "--num",
        type=int_at_least(1),
        default=8,
        metavar="M",
        help="held-out digits to restore (default: %(default)s)",
    )
    parser.add_argument(
        "--samples",
        type=int_at_least(1),
        default=4,
        metavar="S",
        help="posterior samples per digit (default: %(default)s)",
    )
    parser.add_argument(
        "--noise-std",
        type=_nonnegative_float,
        default=None,
        metavar="S",
        help="the observation's noise std (default: 0, or 0.4 for denoise)",
    )
    parser.add_argument("--zeta", type=positive_float, default=None, help="DPS's step (default 1)")
    parser.add_argument(
        "--particles",
        type=int_at_least(1),
        default=None,
        metavar="K",
        help="SMC's particles per sample (default 16)",
    )
    parser.add_argument("--seed", type=seed, default=0)


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def observation_operator(task: str):
    """The task's `jaxdiff.inverse` operator on 8x8x1 digits."""
    from .. import inverse

    if task == "superres":
        return inverse.Downsample(2)
    mask = np.ones((8, 8, 1), np.float32)
    if task == "inpaint":
        mask[4:] = 0.0
    return inverse.Mask(mask)


def psnr(x, truth) -> float:
    """Peak signal-to-noise ratio in dB for images in [-1, 1] (peak-to-peak 2)."""
    mse = float(np.mean((np.asarray(x, np.float64) - truth) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(4.0 / mse)


def _options(args) -> dict:
    """The method's options from the command line; `ValueError` for another method's."""
    if args.zeta is not None and args.method != "dps":
        raise ValueError("--zeta is an option of --method dps")
    if args.particles is not None and args.method != "smc":
        raise ValueError("--particles is an option of --method smc")
    if args.method == "repaint" and args.task != "inpaint":
        raise ValueError(
            "--method repaint fills in unobserved pixels and keeps the observed ones: it "
            "needs --task inpaint"
        )
    if args.method == "dps":
        return {"zeta": 1.0 if args.zeta is None else args.zeta}
    if args.method == "pigdm":
        return {"data_var": DATA_VAR}
    if args.method == "tmpd":
        return {"covariance": "diagonal"}
    if args.method == "smc":
        return {"num_particles": 16 if args.particles is None else args.particles}
    return {}


def run(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp

    from .. import inverse, schedules, train as jt

    out = Path(args.out)
    problem = output_file_problem(out)
    if problem:
        return fail(NAME, problem)
    try:
        options = _options(args)
    except ValueError as err:
        return fail(NAME, str(err))
    try:
        network, config = jt.load_model(args.ckpt, lambda c: jt.build_network(c["network"]))
    except ValueError as err:  # CheckpointError, RecipeError
        return fail(NAME, f"--ckpt: {err}")
    if config.get("kind") != "images" or tuple(config.get("shape", ())) != (8, 8, 1):
        return fail(
            NAME,
            f"--ckpt: {args.ckpt!r} is not a model of the digits (8x8x1 images); train one "
            "with 'jaxdiff train --data digits-train'",
        )
    _, held_out = jt.digits_split()
    if args.num > len(held_out):
        return fail(NAME, f"--num {args.num}: there are {len(held_out)} held-out digits")

    truth = np.asarray(held_out.x[: args.num])
    noise_std = NOISE[args.task] if args.noise_std is None else args.noise_std
    op = observation_operator(args.task)
    k_obs, k_noise, k_sample = jax.random.split(jax.random.key(args.seed), 3)
    clean = op.apply(jnp.asarray(truth))
    y = clean + noise_std * jax.random.normal(k_obs, clean.shape, clean.dtype)
    # one row per posterior sample: every digit's observation repeated --samples times
    ys = jnp.repeat(y, args.samples, axis=0)
    sigmas = schedules.karras(args.steps, 0.002, 80.0)
    x = 80.0 * jax.random.normal(k_noise, (args.num * args.samples, 8, 8, 1), jnp.float32)
    denoiser = jt.sampling_denoiser(network, config)
    obs = inverse.LinearObservation(op, ys, noise_std)
    nfe = inverse.num_evaluations(args.method, sigmas, **options)
    start = time.perf_counter()
    samples = inverse.sample(denoiser, obs, x, sigmas, method=args.method, key=k_sample, **options)
    samples = np.asarray(samples).reshape(args.num, args.samples, 8, 8, 1)
    seconds = time.perf_counter() - start
    if not np.all(np.isfinite(samples)):
        return fail(NAME, f"{args.method} produced non-finite samples ({args.steps} steps)")

    degraded = np.asarray(degraded_view(op, y, args.task))
    quality = (
        f"PSNR to the truth: samples {psnr(samples, truth[:, None]):.2f} dB, their mean "
        f"{psnr(samples.mean(1), truth):.2f} dB, degraded input {psnr(degraded, truth):.2f} dB"
    )
    title = (
        f"{args.task}, noise std {noise_std:g}\n{args.method}, {args.steps} steps, "
        f"{nfe} NFE per sample"
    )
    try:
        if out.suffix.lower() == ".npy":
            save_arrays(
                {
                    out: samples,
                    out.with_suffix(".degraded.npy"): degraded,
                    out.with_suffix(".truth.npy"): truth,
                }
            )
        else:
            plot_rows(out, degraded, samples, truth, title=title)
    except OSError as err:
        return fail_write(NAME, out, err)
    print(
        f"wrote {out}: {args.num} held-out digits x {args.samples} samples with {args.method} "
        f"({args.steps} steps, {nfe} NFE per sample) in {seconds:.1f} s; {quality}"
    )
    return 0


def degraded_view(op, y, task):
    """The observation as an 8x8 image: hidden pixels at 0 (mid-grey), the 4x4 block
    averages spread back over their blocks."""
    if task == "superres":
        return op.transpose(y, (8, 8, 1)) * op.factor**2
    return y


def plot_rows(path, degraded, samples, truth, *, title=""):
    """One row per digit: degraded | samples | truth."""
    plt = pyplot()
    num, per = samples.shape[:2]
    cols = per + 2
    h, w = truth.shape[1:3]
    canvas = np.ones((num * (h + 1) + 1, cols * (w + 1) + 2), np.float32)
    for i in range(num):
        row = [degraded[i], *samples[i], truth[i]]
        for j, image in enumerate(row):
            top = 1 + i * (h + 1)
            left = 1 + j * (w + 1) + (j > 0) + (j == cols - 1)
            canvas[top : top + h, left : left + w] = np.clip((image[..., 0] + 1) / 2, 0, 1)
    fig, ax = plt.subplots(figsize=(max(0.5 * cols + 1.2, 3.5), 0.5 * num + 1.3))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    centers = [1 + (j + 0.5) * (w + 1) for j in (0, (cols - 1) / 2, cols - 1)]
    ax.set_xticks(centers)
    ax.set_xticklabels(["degraded", "samples", "truth"], fontsize=8)
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
