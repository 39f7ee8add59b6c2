"""Peak memory of `jd.sample_chunked` against the chunk size: 1M 2-D samples and 50k digits.

Each setting runs in a fresh Python process (`--worker`), which reports its peak resident
memory (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, on the CPU the device's memory too)
twice: after its setup (imports, the model, the initial noise `x` in numpy) and after
`sample_chunked(..., to_host=True)`. The difference is what sampling added: the compiled
program and one chunk's working set, plus the output (numpy, the size of `x`).

Problems:

- `2d`: `jd.analytic.ring()`'s exact denoiser (8 Gaussians in 2-D), 1,000,000 samples, with
  DPM-Solver++(2M) (deterministic) and Euler ancestral (stochastic: per-sample keys), 10 steps;
- `digits`: the U-Net `jaxdiff train --data digits` builds (`jaxdiff.nn.UNet`, 8x8x1, base
  width 32, random weights: memory and time do not depend on them), 50,000 samples with
  DPM-Solver++(2M), 2 steps (2 NFE: the working set does not depend on the steps, the time
  does).

A chunk as large as the whole batch is one `jd.sample` call. Runs at 1/10 of the samples at
the same chunk show that the peak does not grow with the number of samples beyond the
samples themselves.

    python benchmarks/chunk_memory.py --out FILE.md     # ~10 minutes on 2 CPU cores
    python benchmarks/chunk_memory.py --quick           # 1/10 of the samples, fewer chunks
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

MIB = 2**20

#: (problem, sampler, steps, samples, chunk sizes) of the full run
SETTINGS = (
    ("2d", "dpmpp_2m", 10, 1_000_000, (4096, 16384, 65536, 262144, 1_000_000)),
    ("2d", "euler_ancestral", 10, 1_000_000, (4096, 16384, 65536, 262144, 1_000_000)),
    ("2d", "dpmpp_2m", 10, 100_000, (16384, 65536)),
    ("digits", "dpmpp_2m", 2, 50_000, (512, 2048, 8192)),
    ("digits", "dpmpp_2m", 2, 5_000, (2048,)),
)
QUICK = (
    ("2d", "dpmpp_2m", 10, 100_000, (4096, 65536, 100_000)),
    ("2d", "euler_ancestral", 10, 100_000, (4096, 65536)),
    ("digits", "dpmpp_2m", 2, 5_000, (512, 2048)),
)


def _peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def worker(problem: str, sampler: str, steps: int, num: int, chunk: int) -> dict:
    """One setting, in this (fresh) process."""
    import jax
    import numpy as np

    import jaxdiff as jd

    rng = np.random.default_rng(0)
    if problem == "2d":
        denoiser = jd.analytic.ring().denoiser
        shape = (2,)
    else:
        from jaxdiff import train as jt

        network = jt.network_config("images", (8, 8, 1), num_classes=0)
        model = jt.build_network(network, seed=0)
        model.eval()
        denoiser = jt.sampling_denoiser(model, {"network": network, "sigma_data": 0.5})
        shape = (8, 8, 1)
    x = (80.0 * rng.standard_normal((num, *shape))).astype(np.float32)
    solver = jd.samplers.by_name(sampler)
    key = jax.random.key(1) if solver.stochastic else None
    sigmas = jd.schedules.karras(steps, 0.002, 80.0)
    before = _peak_bytes()
    start = time.perf_counter()
    out = jd.sample_chunked(
        denoiser, x, sigmas, solver=solver, key=key, chunk_size=chunk, to_host=True
    )
    seconds = time.perf_counter() - start
    assert out.shape == x.shape and np.all(np.isfinite(out))
    return {
        "before": before,
        "peak": _peak_bytes(),
        "seconds": seconds,
        "output": out.nbytes,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", metavar="FILE.md", help="also write the table here")
    p.add_argument("--quick", action="store_true", help="1/10 of the samples, fewer chunks")
    p.add_argument(
        "--worker",
        nargs=5,
        metavar=("PROBLEM", "SAMPLER", "STEPS", "NUM", "CHUNK"),
        help=argparse.SUPPRESS,
    )
    a = p.parse_args(argv)
    if a.worker:
        problem, sampler, steps, num, chunk = a.worker
        print(json.dumps(worker(problem, sampler, int(steps), int(num), int(chunk))))
        return 0

    import jax

    head = (
        f"device: {jax.default_backend()}, {platform.machine()}, {os.cpu_count()} cores, load "
        f"average {os.getloadavg()[0]:.1f} at start; jax {jax.__version__}, python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(head, flush=True)
    columns = (
        "problem",
        "sampler, steps",
        "samples",
        "chunk",
        "chunks",
        "peak RSS MiB",
        "after setup MiB",
        "sampling added MiB",
        "output MiB",
        "time s",
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] * 2 + ["--:"] * 8) + "|"]
    for problem, sampler, steps, num, chunks in QUICK if a.quick else SETTINGS:
        for chunk in chunks:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                problem,
                sampler,
                str(steps),
                str(num),
                str(chunk),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                row = [
                    problem,
                    f"{sampler}, {steps}",
                    str(num),
                    str(chunk),
                    "-",
                    "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:80],
                    "",
                    "",
                    "",
                    "",
                ]
            else:
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                row = [
                    "2-D ring" if problem == "2d" else "digits U-Net 8x8x1",
                    f"{sampler}, {steps}",
                    f"{num:,}",
                    "all (one call)" if chunk >= num else f"{chunk:,}",
                    str(-(-num // chunk)),
                    f"{r['peak'] / MIB:.0f}",
                    f"{r['before'] / MIB:.0f}",
                    f"{(r['peak'] - r['before']) / MIB:.0f}",
                    f"{r['output'] / MIB:.1f}",
                    f"{r['seconds']:.1f}",
                ]
            lines.append("| " + " | ".join(row) + " |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    command = "python benchmarks/chunk_memory.py" + (" --quick" if a.quick else "")
    text = f"{head}\n\ncommand: `{command}`\n\n{table}\n"
    print("\n" + text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
