"""Every GPU measurement of `benchmarks/README.md` in one command, written as one Markdown table.

    python benchmarks/gpu_suite.py --out FILE.md     # on a GPU: --size full; else --size small
    python benchmarks/gpu_suite.py --no-torch-compile --torch-threads 1   # the test's run (CPU)

On a GPU the default (`--size full`) is meant to finish in under 8 minutes on one H100; on a
machine without one the default is `--size small`, the same measurements at small sizes (a
minute or two on 2 CPU cores, most of it compiling; `tests/test_gpu_suite.py` runs it). Rows
(column "measurement"), in the order they run:

1. `memory`: peak device memory of `jd.sample` (EDM Heun: 18 steps, 35 NFE, at the full size;
   4 steps at the small one) against the batch,
   the U-Net and the MLP in float32: XLA's buffer assignment of the compiled program
   (arguments + outputs + temporaries, `Compiled.memory_analysis()`), and on a GPU the
   allocator's high-water mark after running it (`memory_stats()["peak_bytes_in_use"]`). The
   U-Net runs first and its batches grow, so that mark is its own.
2. `throughput`: samples per second of `jd.sample` (the same Heun) with the MLP and the U-Net
   that `jaxdiff train` builds (`jaxdiff.train.network_config`, EDM preconditioning; full:
   2-D MLP of width 128, U-Net 32x32x3 of base width 64; random weights), at several
   batches, in float32
   (JAX's default matmul precision: TF32 on recent NVIDIA GPUs) and in bfloat16 (the network's
   weights and activations in bfloat16; the preconditioning and the sampler's state in
   float32, as EDM runs its networks in reduced precision); "compile s" is
   XLA's compile of the whole sampling program (ahead of time); "ratio" of a bfloat16 row is
   its speed-up over float32; "check": the samples are finite, and bfloat16's RMS difference
   to float32.
3. `overhead`: `benchmarks/sampler_overhead.py`'s cases (EDM Heun on an MLP with identical
   weights in JAX and torch, true float32 matmuls): the network alone, `jd.sample`, a
   hand-written `lax.scan`, k-diffusion eager and with `torch.compile`. Targets: `jd.sample`
   / network only <= 1.05, `jd.sample`'s compile (first call minus a run) <= 1 s, k-diffusion
   eager / `jd.sample` >= 2.5, k-diffusion compiled / `jd.sample` >= 1.5.
4. `diffrax`: raw diffrax (`diffrax.Heun`, `StepTo` on the same grid, then the Euler step to
   0, `jaxdiff.bench.run_diffrax`) on the same probability-flow ODE and the overhead MLP,
   against `jd.sample` Heun: ratio diffrax / `jd.sample`; the two must agree to float32
   rounding (they are the same method).

Every number is from this one run; "run ms" is a median of calls each waited on. The table is
rewritten after each part, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

# before JAX starts its backend: let torch share the GPU (the overhead rows)
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxdiff as jd
from jaxdiff import train as jt
from jaxdiff.bench import run_diffrax
from jaxdiff.bench._peers import diffrax_nfe

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sampler_overhead as so  # its cases, timing and peers

SIGMA_MIN, SIGMA_MAX, SIGMA_DATA = 0.002, 80.0, 0.5
MIB = 2**20


@dataclasses.dataclass(frozen=True)
class Size:
    """The sizes of one run of the suite."""

    steps: int  # Heun steps (2 steps - 1 NFE)
    mlp: tuple[int, int]  # (dim, hidden) of the jaxdiff MLP
    mlp_batches: tuple[int, ...]
    unet: tuple[int, int, int]  # (image size, channels, base width) of the jaxdiff U-Net
    unet_batches: tuple[int, ...]
    memory_batches: dict  # network -> batches of the memory rows (increasing)
    overhead_cases: tuple[tuple[int, int, int], ...]  # sampler_overhead's (dim, hidden, batch)
    diffrax_case: tuple[int, int, int]


SIZES = {
    "full": Size(
        steps=18,
        mlp=(2, 128),
        mlp_batches=(4096, 65536, 524288),
        unet=(32, 3, 64),
        unet_batches=(64, 1024),
        memory_batches={"unet": (64, 1024, 4096), "mlp": (4096, 65536, 524288, 2097152)},
        overhead_cases=so.DEFAULT_CASES,
        diffrax_case=(2, 256, 65536),
    ),
    "small": Size(  # the default without a GPU: about a minute on 2 CPU cores
        steps=4,
        mlp=(2, 32),
        mlp_batches=(256, 1024),
        unet=(8, 1, 8),
        unet_batches=(8,),
        memory_batches={"unet": (8,), "mlp": (256, 1024, 4096)},  # a U-Net compile is ~5 s
        overhead_cases=((2, 32, 256),),
        diffrax_case=(2, 32, 256),
    ),
}

COLUMNS = (
    "measurement",
    "network",
    "batch",
    "dtype",
    "method",
    "compile s",
    "run ms",
    "samples/s",
    "memory MiB",
    "ratio",
    "target",
    "check",
)


@dataclasses.dataclass
class Row:
    measurement: str
    network: str
    batch: int
    dtype: str
    method: str
    compile_s: float | None = None
    run_s: float | None = None
    memory: str = "-"
    ratio: str = "-"
    target: str = "-"
    check: str = "-"

    def cells(self) -> list[str]:
        per_s = self.batch / self.run_s if self.run_s else None
        return [
            self.measurement,
            self.network,
            str(self.batch),
            self.dtype,
            self.method,
            "-" if self.compile_s is None else f"{self.compile_s:.2f}",
            "-" if self.run_s is None else f"{self.run_s * 1e3:.3g}",
            "-" if per_s is None else f"{per_s:.4g}",
            self.memory,
            self.ratio,
            self.target,
            self.check,
        ]


def target(value: float | None, goal: float, le: bool) -> str:
    """``<= 1.05: met`` / ``>= 2.5: NOT met`` / ``>= 2.5: n/a``."""
    sign = "<=" if le else ">="
    if value is None or not math.isfinite(value):
        return f"{sign} {goal}: n/a"
    met = value <= goal if le else value >= goal
    return f"{sign} {goal}: {'met' if met else 'NOT met'}"


def timed(fn, repeats: int, budget: float) -> float:
    """Median seconds of `fn()` (already compiled), each call waited on
    (`sampler_overhead.time_methods`: one estimate, then as many calls as fit the budget)."""
    method = so.Method(fn, jax.block_until_ready, jax_method=False)
    so.time_methods({"m": method}, repeats, budget)
    if method.error:
        raise RuntimeError(method.error)
    return statistics.median(method.times)


# --- the networks of `jaxdiff train`, and one compiled sampling program per shape --------------


class Sampling:
    """`jd.sample` Heun with a jaxdiff network in float32 or bfloat16, compiled ahead of time
    for each batch (`compiled(batch)`), with its compile time and XLA's memory figures."""

    def __init__(self, kind: str, size: Size, dtype, built=None):
        if kind == "mlp":
            dim, hidden = size.mlp
            self.shape = (dim,)
            network = jt.network_config("vectors", self.shape, num_classes=0, width=hidden)
            self.name = f"MLP {dim}-D, hidden {hidden}"
        else:
            image, channels, width = size.unet
            self.shape = (image, image, channels)
            network = jt.network_config("images", self.shape, num_classes=0, width=width)
            self.name = f"U-Net {image}x{image}x{channels}, width {width}"
        # `built`: the (graph, float32 state) of another dtype's `Sampling`, not built again
        graph, state = built or _random_weights(jt.build_network(network, seed=0))
        self.built = graph, state
        if dtype == jnp.bfloat16:
            state = jax.tree.map(
                lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, state
            )
        self.graph, self.state, self.dtype = graph, state, dtype
        self.sigmas = jd.schedules.karras(size.steps, SIGMA_MIN, SIGMA_MAX)
        self.nfe = jd.samplers.Heun().nfe(size.steps)
        self._compiled: dict[int, tuple] = {}

    def _program(self, state, x):
        network = nnx.merge(self.graph, state)
        network.eval()
        raw = network
        if self.dtype != jnp.float32:  # the network in bfloat16; preconditioning, sampler float32

            def raw(x, c_noise, **kwargs):
                out = network(x.astype(self.dtype), c_noise.astype(self.dtype), **kwargs)
                return out.astype(x.dtype)

        denoiser = jd.parametrizations.EDMPrecond(raw=raw, sigma_data=SIGMA_DATA)
        return jd.sample(denoiser, x, self.sigmas, solver=jd.samplers.Heun())

    def noise(self, batch: int):
        key = jax.random.key(batch)
        return SIGMA_MAX * jax.random.normal(key, (batch, *self.shape), jnp.float32)

    def compiled(self, batch: int):
        """`(executable, compile s, XLA's peak estimate in bytes)`, compiled once per batch."""
        if batch not in self._compiled:
            x = self.noise(batch)
            start = time.perf_counter()
            executable = jax.jit(self._program).lower(self.state, x).compile()
            seconds = time.perf_counter() - start
            m = executable.memory_analysis()
            peak = None
            if m is not None:
                peak = (
                    m.argument_size_in_bytes
                    + m.output_size_in_bytes
                    + m.temp_size_in_bytes
                    - m.alias_size_in_bytes
                )
            self._compiled[batch] = (executable, seconds, peak)
        return self._compiled[batch]

    def run(self, batch: int):
        executable, _, _ = self.compiled(batch)
        return executable(self.state, self.noise(batch))


def _random_weights(network):
    """`(graph, state)` of `network` with every float weight moved by 0.02 N(0, 1): its
    zero-initialised output layers would make an untrained network's output exactly 0 (the
    same in float32 and bfloat16, whatever the precision)."""
    graph, state = nnx.split(network)
    rng = np.random.default_rng(0)

    def move(a):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            return a
        return a + jnp.asarray(0.02 * rng.standard_normal(a.shape), a.dtype)

    return graph, jax.tree.map(move, state)


def _mib(nbytes) -> str:
    return "-" if nbytes is None else f"{nbytes / MIB:.1f}"


def _device_peak() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


# --- the parts -------------------------------------------------------------------------------


def memory_rows(size: Size, programs: dict) -> list[Row]:
    rows = []
    for kind in ("unet", "mlp"):  # the U-Net first: the device's high-water mark is its own
        sampling = programs[kind, "float32"]
        for batch in size.memory_batches[kind]:
            _, seconds, estimate = sampling.compiled(batch)
            measured = None
            if kind == "unet" and _device_peak() is not None:  # a GPU's allocator
                jax.block_until_ready(sampling.run(batch))
                measured = _device_peak()
            memory = _mib(estimate) + (f" (device peak {_mib(measured)})" if measured else "")
            rows.append(
                Row(
                    "memory",
                    sampling.name,
                    batch,
                    "float32",
                    f"jd.sample Heun, {sampling.nfe} NFE",
                    compile_s=seconds,
                    memory=memory,
                    check="XLA buffer assignment" + ("; allocator peak" if measured else ""),
                )
            )
    return rows


def throughput_rows(size: Size, programs: dict, repeats: int, budget: float) -> list[Row]:
    rows = []
    for kind, batches in (("mlp", size.mlp_batches), ("unet", size.unet_batches)):
        for batch in batches:
            float32_s, float32_out = None, None
            for dtype in ("float32", "bfloat16"):
                sampling = programs[kind, dtype]
                _, seconds, estimate = sampling.compiled(batch)
                out = sampling.run(batch)
                run_s = timed(lambda s=sampling, b=batch: s.run(b), repeats, budget)
                out = np.asarray(out, np.float64)
                check = "finite" if np.all(np.isfinite(out)) else "NOT finite"
                ratio = "-"
                if dtype == "float32":
                    float32_s, float32_out = run_s, out
                else:
                    rms = np.sqrt(np.mean((out - float32_out) ** 2) / np.mean(float32_out**2))
                    check += f"; RMS vs float32 {rms:.1e}"
                    ratio = f"{float32_s / run_s:.2f}x vs float32"
                rows.append(
                    Row(
                        "throughput",
                        sampling.name,
                        batch,
                        dtype,
                        f"jd.sample Heun, {sampling.nfe} NFE",
                        compile_s=seconds,
                        run_s=run_s,
                        memory=_mib(estimate),
                        ratio=ratio,
                        check=check,
                    )
                )
    return rows


def overhead_rows(size: Size, repeats: int, budget: float, *, torch_compile: bool) -> list[Row]:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_float32_matmul_precision("highest")
    rows = []
    with jax.default_matmul_precision("highest"):
        for dim, hidden, batch in size.overhead_cases:
            measured = so.measure_case(
                dim,
                hidden,
                batch,
                seed=0,
                repeats=repeats,
                budget=budget,
                torch_device=device,
                use_compile=torch_compile,
            )
            run, checks = measured["run"], measured["checks"]
            network = f"sampler_overhead MLP {dim}-D, hidden {hidden}"
            for name, method in measured["methods"].items():
                if method.error is not None:
                    rows.append(
                        Row("overhead", network, batch, "float32", name, check=method.error)
                    )
                    continue
                r = run[name]
                ratio, goal = "-", "-"
                if name == so.JD and so.NET in run:
                    value = r / run[so.NET]
                    ratio = f"{value:.3f} / network"
                    goal = (
                        f"/ network {target(value, so.TARGETS['net'], True)}; compile "
                        f"{target(method.first_s - r, so.TARGETS['compile'], True)}"
                    )
                elif name in (so.KD, so.KDC) and so.JD in run:
                    value = r / run[so.JD]
                    ratio = f"{value:.2f} / jd.sample"
                    goal = target(
                        value, so.TARGETS["eager" if name == so.KD else "compiled"], False
                    )
                elif name == so.SCAN and so.JD in run:
                    ratio = f"{r / run[so.JD]:.2f} / jd.sample"
                rows.append(
                    Row(
                        "overhead",
                        network,
                        batch,
                        "float32",
                        name,
                        compile_s=method.first_s - r,
                        run_s=r,
                        ratio=ratio,
                        target=goal,
                        check=checks.get(name, "-"),
                    )
                )
            if not torch_compile:
                rows.append(
                    Row("overhead", network, batch, "float32", so.KDC, check="skipped (option)")
                )
    return rows


def diffrax_rows(size: Size, repeats: int, budget: float) -> list[Row]:
    dim, hidden, batch = size.diffrax_case
    weights = so.make_weights(dim, hidden, 0)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]
    denoiser = jax.tree_util.Partial(so.jax_denoiser, params)  # the weights are arguments
    x = jnp.asarray(SIGMA_MAX * np.random.default_rng(1).standard_normal((batch, dim)), jnp.float32)
    sigmas = jd.schedules.karras(size.steps, SIGMA_MIN, SIGMA_MAX)
    network = f"sampler_overhead MLP {dim}-D, hidden {hidden}"
    rows, times, outs = [], {}, {}
    with jax.default_matmul_precision("highest"):
        ours = f"jd.sample Heun, {jd.samplers.Heun().nfe(size.steps)} NFE"
        theirs = f"diffrax.Heun (StepTo), raw, {diffrax_nfe('heun', size.steps)} NFE"
        calls = {
            ours: lambda: jd.sample(denoiser, x, sigmas, solver=jd.samplers.Heun()),
            theirs: lambda: run_diffrax("heun", denoiser, x, sigmas),
        }
        for name, call in calls.items():
            start = time.perf_counter()
            outs[name] = np.asarray(jax.block_until_ready(call()), np.float64)
            first = time.perf_counter() - start
            times[name] = (first, timed(call, repeats, budget))
    diff = float(np.max(np.abs(outs[ours] - outs[theirs])) / np.max(np.abs(outs[ours])))
    base = times[ours][1]
    for name, (first, run_s) in times.items():
        peer = name != ours
        rows.append(
            Row(
                "diffrax",
                network,
                batch,
                "float32",
                name,
                compile_s=first - run_s,
                run_s=run_s,
                ratio=f"{run_s / base:.2f} / jd.sample" if peer else "1.00",
                check=f"vs jd.sample {'ok' if diff <= 1e-5 else 'FAIL'} ({diff:.1e})"
                if peer
                else "-",
            )
        )
    return rows


# --- the report ------------------------------------------------------------------------------


def header(command: str) -> str:
    dev = jax.devices()[0]
    try:
        import torch

        torch_part = f"torch {torch.__version__} ({'cuda' if torch.cuda.is_available() else 'cpu'})"
        if torch.cuda.is_available():
            torch_part += f" on {torch.cuda.get_device_name()}"
    except ImportError:
        torch_part = "torch missing"

    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "missing"

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"device: {dev.platform} ({dev.device_kind}), {jax.device_count()} device(s); "
        f"{platform.machine()}, {os.cpu_count()} CPU cores, load average "
        f"{os.getloadavg()[0]:.1f} at start; jax {jax.__version__}, jaxlib "
        f"{version('jaxlib')}, jaxdiff {jd.__version__}, diffrax {version('diffrax')}, "
        f"flax {version('flax')}, {torch_part}, k-diffusion {version('k-diffusion')}, "
        f"python {platform.python_version()}; {now}\n\ncommand: `{command}`"
    )


def table(rows: list[Row]) -> str:
    aligns = ["---"] * 5 + ["--:"] * 4 + ["---"] * 3
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def write(path, head: str, rows: list[Row], notes: list[str]) -> None:
    text = f"{head}\n\n{table(rows)}\n"
    if notes:
        text += "\n" + "".join(f"- {n}\n" for n in notes)
    if path:
        Path(path).write_text(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", metavar="FILE.md", help="write the table here (after every part)")
    p.add_argument(
        "--size",
        choices=tuple(SIZES),
        default=None,
        help="full (the default on a GPU) or small (the default elsewhere)",
    )
    p.add_argument(
        "--parts",
        nargs="+",
        choices=("memory", "throughput", "overhead", "diffrax"),
        default=("memory", "throughput", "overhead", "diffrax"),
    )
    p.add_argument(
        "--no-torch-compile",
        action="store_true",
        help="skip k-diffusion + torch.compile (minutes of compiling on a CPU)",
    )
    p.add_argument("--repeats", type=int, default=20, help="most timed calls per method")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds of timed calls per method (default: 3 for full, 0.3 for small)",
    )
    p.add_argument("--torch-threads", type=int, help="torch.set_num_threads(N) (CPU runs)")
    a = p.parse_args(argv)
    gpu = jax.default_backend() == "gpu"
    size_name = a.size or ("full" if gpu else "small")
    size = SIZES[size_name]
    budget = a.budget if a.budget is not None else (3.0 if size_name == "full" else 0.3)
    repeats = max(3, a.repeats if size_name == "full" else min(a.repeats, 5))
    if a.torch_threads:
        import torch

        torch.set_num_threads(a.torch_threads)
    command = "python benchmarks/gpu_suite.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    head = header(command.strip()) + f"\n\nsize: {size_name}"
    print(head, flush=True)
    began = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    programs = {}
    for kind in ("mlp", "unet"):
        programs[kind, "float32"] = Sampling(kind, size, jnp.float32)
        built = programs[kind, "float32"].built
        programs[kind, "bfloat16"] = Sampling(kind, size, jnp.bfloat16, built)
    parts = {
        "memory": lambda: memory_rows(size, programs),
        "throughput": lambda: throughput_rows(size, programs, repeats, budget),
        "overhead": lambda: overhead_rows(
            size, repeats, budget, torch_compile=not a.no_torch_compile
        ),
        "diffrax": lambda: diffrax_rows(size, repeats, budget),
    }
    for name in ("memory", "throughput", "overhead", "diffrax"):
        if name not in a.parts:
            continue
        start = time.perf_counter()
        new = parts[name]()
        for row in new:
            print(" | ".join(row.cells()), flush=True)
        rows += new
        notes.append(f"{name}: {time.perf_counter() - start:.0f} s")
        write(a.out, head, rows, notes)
    notes.append(f"total: {time.perf_counter() - began:.0f} s")
    write(a.out, head, rows, notes)
    print("\n" + table(rows) + "\n\n" + "\n".join(notes))
    if a.out:
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
