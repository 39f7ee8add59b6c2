"""A pretrained diffusers model sampled by jaxdiff and by diffusers' own pipeline: speed.

The model: diffusers' `UNet2DModel` in the configuration of `google/ddpm-cifar10-32` (Ho et al.
2020's CIFAR-10 U-Net: widths 128, 256, 256, 256, two residual blocks per level, attention at
16x16, 35.7M parameters, 32x32x3 images) with random weights (checkpoints cannot be downloaded
here), saved with `DDPMPipeline.save_pretrained` together with a `DDIMScheduler` (linear betas,
1000 steps, eps prediction).

Both sides sample a batch of 16 with DDIM (eta 0) in 20 steps, in float32:

- diffusers: `DDIMPipeline(unet, scheduler)(batch_size=16, num_inference_steps=20, eta=0,
  output_type="np")`, torch eager under `torch.no_grad` (the pipeline's own decorator), the
  scheduler's "leading" timesteps 950, 900, ..., 0;
- jaxdiff: `jd.pretrained.from_diffusers(folder)` (the safetensors weights, no torch), then
  `jd.sample(m.denoiser, x, m.sigmas(20, "discrete"), solver=jd.samplers.DDIM())`: the same
  timesteps as a sigma grid, one compiled program for the whole loop (`lax.scan`).

"first call s" is jaxdiff's first call, "compile s" the part of it JAX reports as tracing,
lowering and compiling (`jax.monitoring`'s `/jax/core/compile/` durations); diffusers runs
once to warm up. The timed runs then alternate between the two (jaxdiff, diffusers, jaxdiff,
...) so that the load of a shared machine hits both alike; the table reports medians and
minima (the minimum is the best estimate of an idle machine's time), and the ratio of every
pair is printed below it. With `--check` the two samples are compared on the
same noise (diffusers' `clip_sample=False` for that: jaxdiff applies no clipping).

    python benchmarks/pretrained_speed.py                   # 3 repeats, NHWC, Winograd
    python benchmarks/pretrained_speed.py --conv direct     # XLA's direct convolutions
    python benchmarks/pretrained_speed.py --repeats 5 --layout NCHW --check
    python benchmarks/pretrained_speed.py --onednn          # XLA's oneDNN kernels on CPU
    python benchmarks/pretrained_speed.py --forward         # one network call each, for profiling
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import tempfile
import time

import numpy as np

CIFAR10 = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 256, 256),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    attention_head_dim=None,
    norm_eps=1e-6,
    norm_num_groups=32,
)


def build(folder: str, *, clip_sample: bool):
    """The random-weight CIFAR-10 DDPM U-Net and a DDIM scheduler, saved as a pipeline."""
    import torch
    from diffusers import DDIMScheduler, DDPMPipeline, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(**CIFAR10).eval()
    scheduler = DDIMScheduler(clip_sample=clip_sample)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return unet, scheduler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--layout", choices=("NHWC", "NCHW"), default="NHWC")
    parser.add_argument(
        "--conv",
        choices=("auto", "direct", "winograd"),
        default="auto",
        help="from_diffusers' conv (auto: winograd on CPU)",
    )
    parser.add_argument("--check", action="store_true", help="compare the two samples")
    parser.add_argument("--forward", action="store_true", help="time one network call each")
    parser.add_argument(
        "--onednn",
        action="store_true",
        help="XLA's oneDNN convolutions and matmuls on CPU (--xla_cpu_use_onednn=true)",
    )
    args = parser.parse_args()
    if args.onednn:  # before JAX starts its backend
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_use_onednn=true".strip()

    import jax
    import jax.numpy as jnp
    import torch
    from diffusers import DDIMPipeline

    import jaxdiff as jd
    from jaxdiff import pretrained

    load = os.getloadavg()[0]
    folder = tempfile.mkdtemp(prefix="pretrained_speed_")
    unet, scheduler = build(folder, clip_sample=not args.check)
    start = time.perf_counter()
    m = pretrained.from_diffusers(folder, layout=args.layout, conv=args.conv)
    load_s = time.perf_counter() - start
    shutil.rmtree(folder)  # everything is in memory now
    params = sum(p.numel() for p in unet.parameters())
    print(
        f"{params / 1e6:.1f}M parameters; torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, jax {jax.__version__} on "
        f"{jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, load average {load:.1f}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; from_diffusers {load_s:.2f} s "
        f"(conv={m.conv!r})",
        flush=True,
    )

    rng = np.random.default_rng(0)
    latents = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    if args.forward:
        x = latents if args.layout == "NCHW" else latents.transpose(0, 2, 3, 1)
        forward = jax.jit(lambda net, x, t: net(x, t))
        call = (m.network, jnp.asarray(x), jnp.int32(500))

        def run_jax():
            return jax.block_until_ready(forward(*call))

        def run_torch():
            with torch.no_grad():
                return unet(torch.from_numpy(latents), 500).sample
    else:
        sigmas = m.sigmas(args.steps, "discrete")
        nchw = latents * np.sqrt(1 + float(sigmas[0]) ** 2)  # sigma-space noise
        x = jnp.asarray(nchw if args.layout == "NCHW" else nchw.transpose(0, 2, 3, 1))
        pipe = DDIMPipeline(unet=unet, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)
        # the pipeline's initial noise: the same unit normals (it draws them with randn_tensor)
        import diffusers.pipelines.ddim.pipeline_ddim as ddim_pipeline

        ddim_pipeline.randn_tensor = lambda *a, **k: torch.from_numpy(latents.copy())

        def run_jax():
            return jax.block_until_ready(jd.sample(m.denoiser, x, sigmas, solver="ddim"))

        def run_torch():
            kw = dict(batch_size=args.batch, num_inference_steps=args.steps, eta=0.0)
            return pipe(**kw, output_type="np").images

    compile_s = []  # JAX's own durations of tracing, lowering and compiling the first call
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: (
            compile_s.append(seconds) if event.startswith("/jax/core/compile/") else None
        )
    )
    start = time.perf_counter()
    first = run_jax()
    first_s = time.perf_counter() - start
    compile_s = sum(compile_s)
    run_torch()  # warm-up (oneDNN's first call)
    jax_s, torch_s = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = run_jax()
        jax_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs = run_torch()
        torch_s.append(time.perf_counter() - start)
        print(f"  jaxdiff {jax_s[-1]:.2f} s, diffusers {torch_s[-1]:.2f} s", flush=True)
    j, t = statistics.median(jax_s), statistics.median(torch_s)
    what = "one network call" if args.forward else f"{args.steps} DDIM steps"
    print(
        f"\n{datetime.date.today()}, {platform.processor() or platform.machine()}, batch "
        f"{args.batch}, {what}, {args.layout}, conv={m.conv}, {args.repeats} repeats, load average "
        f"{load:.1f} -> {os.getloadavg()[0]:.1f}\n"
    )
    jm, tm = min(jax_s), min(torch_s)
    header = "first call s | compile s | median run s | min run s | ratio of medians | of minima"
    print(f"| | {header} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| jaxdiff | {first_s:.1f} | {compile_s:.1f} | {j:.2f} | {jm:.2f} | {t / j:.2f}x | "
        f"{tm / jm:.2f}x |"
    )
    print(f"| diffusers (torch eager) | - | - | {t:.2f} | {tm:.2f} | 1 | 1 |")
    pairs = ", ".join(f"{b / a:.2f}" for a, b in zip(jax_s, torch_s, strict=True))
    print(f"\nper repeat diffusers / jaxdiff: {pairs}")
    if args.check:
        ours = np.asarray(first)
        if args.forward:
            theirs = theirs.numpy()
        else:  # the pipeline returns (x / 2 + 0.5) clipped to [0, 1], NHWC
            ours = np.clip(ours / 2 + 0.5, 0, 1)
        if args.layout == "NCHW" and not args.forward:
            ours = ours.transpose(0, 2, 3, 1)
        if args.layout == "NHWC" and args.forward:
            ours = ours.transpose(0, 3, 1, 2)
        diff = np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))
        print(f"\nmax |jaxdiff - diffusers| / max |diffusers| = {diff:.2e}")


if __name__ == "__main__":
    main()
