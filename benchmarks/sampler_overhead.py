"""Overhead of `jd.sample` (EDM Heun, 18 steps, 35 NFE) on an MLP denoiser, against the network
alone and against k-diffusion (eager and with `torch.compile`), all in one process.

The denoiser: an MLP with EDM preconditioning (Karras et al. 2022, sigma_data = 0.5),
`D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`, `c_noise = log(sigma) / 4` concatenated to
the input, `F` four `Linear` layers (`dim + 1 -> hidden -> hidden -> hidden -> dim`) with SiLU
between them. Random weights are drawn once in numpy and loaded identically into a plain JAX
params pytree (passed to `jd.sample` as a `(fn, params)` pair, so the weights are arguments of
the compiled program) and into a torch `nn.Module`. The initial noise `x = 80 * N(0, I)` is
drawn once in numpy too. Both sides run true float32 matmuls
(`jax_default_matmul_precision="highest"`, `torch.set_float32_matmul_precision("highest")`).

Rows of each case (`dim` x `hidden` x `batch`), timed in one process on the same device:

1. `network only`: the same 35 forward passes (at the sigmas Heun evaluates) in one jitted
   `lax.scan`, each pass's output the next one's input so nothing is hoisted: the baseline.
2. `jd.sample Heun`: `jd.sample((fn, params), x, jd.schedules.karras(18, 0.002, 80.0),
   solver=jd.samplers.Heun())`, called directly (it compiles inside).
3. `lax.scan Heun (by hand)`: the same sampler written as a plain jitted `lax.scan` (17 Heun
   steps, then the Euler step to sigma = 0), for reference.
4. `k-diffusion eager`: `sample_heun` (under `torch.no_grad`, as k-diffusion decorates it) on
   the torch module, with k-diffusion's own `get_sigmas_karras(18, 0.002, 80.0)`.
5. `k-diffusion + torch.compile`: the same with `torch.compile(module)`; if `torch.compile`
   fails on this machine the row says "unavailable: <reason>".

Columns: "first call s" is a method's first call (tracing and compiling included); "compile s"
is that first call minus the median run time; "run ms" is the median of the timed calls after
warm-up, each waited on (`jax.block_until_ready`, `torch.cuda.synchronize()` on cuda); "/ net"
is run time over the network-only run time and "/ jaxdiff" run time over `jd.sample`'s, both
from this one run. Before each JAX method's first call `jax.clear_caches()` drops every
compiled program, so no method reuses another's; the timed calls then go round-robin over the
methods so that changing load hits them alike. "check" compares outputs on the same inputs:
`jd.sample` against the hand-written scan (max |difference| / max |x|, tight: <= 1e-6) and every
k-diffusion row against `jd.sample` (float32 tolerance: <= 1e-4).

Targets from the issue (for a GPU): `jd.sample` / network only <= 1.05, compile <= 1 s,
k-diffusion eager / `jd.sample` >= 2.5, k-diffusion compiled / `jd.sample` >= 1.5.

The script runs on whatever JAX and torch see: JAX's default backend, torch on cuda when
available (else cpu). k-diffusion is loaded through `tests/kdiffusion_peer.py`; the script puts
`tests/` on `sys.path` itself.

    python benchmarks/sampler_overhead.py                   # 2x256x65536 and 3072x1024x512
    python benchmarks/sampler_overhead.py --quick           # small sizes, smoke run
    python benchmarks/sampler_overhead.py --batch 8192 64   # the default cases, smaller batches
    python benchmarks/sampler_overhead.py --cases 2x256x4096 --out table.md
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import itertools
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxdiff as jd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SIGMA_DATA = 0.5
SIGMA_MIN, SIGMA_MAX, STEPS = 0.002, 80.0, 18
NFE = 2 * STEPS - 1
DEFAULT_CASES = ((2, 256, 65536), (3072, 1024, 512))  # (dim, hidden, batch)
QUICK_CASES = ((2, 64, 4096), (256, 128, 64))
TIGHT, FLOAT32 = 1e-6, 1e-4  # check tolerances (relative to max |x|)
TARGETS = {"net": 1.05, "compile": 1.0, "eager": 2.5, "compiled": 1.5}

NET, JD, SCAN, KD, KDC = (
    "network only",
    "jd.sample Heun",
    "lax.scan Heun (by hand)",
    "k-diffusion eager",
    "k-diffusion + torch.compile",
)


# --- the denoiser, identical weights in numpy -> JAX and torch --------------------------------


def make_weights(dim: int, hidden: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Four layers `(W (in, out), b (out,))`, float32, LeCun-normal weights, small biases."""
    rng = np.random.default_rng(seed)
    sizes = (dim + 1, hidden, hidden, hidden, dim)
    return [
        (
            (rng.standard_normal((i, o)) / math.sqrt(i)).astype(np.float32),
            (0.01 * rng.standard_normal(o)).astype(np.float32),
        )
        for i, o in itertools.pairwise(sizes)
    ]


def jax_denoiser(params, x, sigma):
    """EDM-preconditioned MLP, `x` (batch, dim), `sigma` a scalar."""
    sigma = jnp.asarray(sigma, x.dtype)
    s2 = sigma**2 + SIGMA_DATA**2
    c_skip = SIGMA_DATA**2 / s2
    c_out = sigma * SIGMA_DATA / jnp.sqrt(s2)
    c_in = 1 / jnp.sqrt(s2)
    c_noise = jnp.log(sigma) / 4
    h = jnp.concatenate([c_in * x, jnp.broadcast_to(c_noise, (x.shape[0], 1))], axis=1)
    for k, (w, b) in enumerate(params):
        h = h @ w + b
        if k < len(params) - 1:
            h = jax.nn.silu(h)
    return c_skip * x + c_out * h


def torch_denoiser(weights, device):
    """The same network as a torch module, `forward(x, sigma)` with per-sample `sigma` (batch,)
    as k-diffusion passes it."""
    import torch

    class Denoiser(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList()
            for w, b in weights:
                lin = torch.nn.Linear(*w.shape)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                    lin.bias.copy_(torch.from_numpy(b))
                self.layers.append(lin)

        def forward(self, x, sigma):
            sigma = sigma.reshape(-1, 1).to(x.dtype)
            s2 = sigma**2 + SIGMA_DATA**2
            c_skip = SIGMA_DATA**2 / s2
            c_out = sigma * SIGMA_DATA / torch.sqrt(s2)
            c_in = 1 / torch.sqrt(s2)
            c_noise = torch.log(sigma) / 4
            h = torch.cat([c_in * x, c_noise], dim=1)
            for k, lin in enumerate(self.layers):
                h = lin(h)
                if k < len(self.layers) - 1:
                    h = torch.nn.functional.silu(h)
            return c_skip * x + c_out * h

    return Denoiser().to(device).eval()


# --- the JAX methods --------------------------------------------------------------------------


def heun_sigma_sequence(sigmas: np.ndarray) -> np.ndarray:
    """The sigmas at which Heun evaluates the denoiser, in order (2 n - 1 of them)."""
    n = len(sigmas) - 1
    seq = [s for i in range(n - 1) for s in (sigmas[i], sigmas[i + 1])] + [sigmas[n - 1]]
    return np.asarray(seq, sigmas.dtype)


@jax.jit
def network_only(params, x, sigma_seq):
    def body(x, sigma):
        return jax_denoiser(params, x, sigma), None

    x, _ = jax.lax.scan(body, x, sigma_seq)
    return x


@jax.jit
def scan_heun(params, x, sigmas):
    def denoise(x, sigma):
        return jax_denoiser(params, x, sigma)

    def body(x, pair):
        sigma, sigma_next = pair
        d = (x - denoise(x, sigma)) / sigma
        dt = sigma_next - sigma
        x_euler = x + d * dt
        d_next = (x_euler - denoise(x_euler, sigma_next)) / sigma_next
        return x + 0.5 * (d + d_next) * dt, None

    x, _ = jax.lax.scan(body, x, (sigmas[:-2], sigmas[1:-1]))
    sigma = sigmas[-2]  # the last step, to sigma = 0: Euler
    return x + (x - denoise(x, sigma)) / sigma * (sigmas[-1] - sigma)


# --- timing -----------------------------------------------------------------------------------


class Method:
    """`fn()` runs the method once; `sync(out)` waits for it; `jax` says whether its first call
    follows `jax.clear_caches()`."""

    def __init__(self, fn: Callable, sync: Callable, *, jax_method: bool):
        self.fn, self.sync, self.jax = fn, sync, jax_method
        self.times: list[float] = []
        self.first_s = math.nan
        self.out = None
        self.error: str | None = None
        self.wanted = 0

    def call(self) -> float:
        t = time.perf_counter()
        out = self.fn()
        self.sync(out)
        dt = time.perf_counter() - t
        self.out = out
        return dt


def time_methods(methods: dict[str, Method], repeats: int, budget_s: float) -> None:
    """First call, one estimate call (sets the repeats: `budget_s` worth, 3 to `repeats`), then
    the timed calls round-robin. A method whose first call raises is marked unavailable."""
    for m in methods.values():
        if m.jax:
            jax.clear_caches()
        try:
            m.first_s = m.call()
            est = m.call()
        except Exception as e:  # torch.compile without a toolchain, out of memory, ...
            m.error = (
                f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e) else ''}"
            )
            continue
        m.times = [est]
        m.wanted = max(3, min(repeats, int(budget_s / max(est, 1e-9))))
    live = [m for m in methods.values() if m.error is None]
    for m in live:
        if m.jax:
            m.call()  # recompile what later clear_caches() threw away, outside the timings
    for r in range(1, max((m.wanted for m in live), default=0)):
        for m in live:
            if r < m.wanted:
                m.times.append(m.call())


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def verdict(diff: float, tol: float) -> str:
    return f"{'ok' if diff <= tol else 'FAIL'} ({diff:.1e})"


# --- one case ---------------------------------------------------------------------------------


def measure_case(dim, hidden, batch, *, seed, repeats, budget, torch_device, use_compile):
    """Times the methods of one case; returns a dict: `methods` (name -> `Method`, with its
    `times`, `first_s` and `error`), `run` (name -> median run time, s), `checks` (name ->
    verdict), `kd_nfe` (the network calls of k-diffusion's Heun) and `sigma_gap` (k-diffusion's
    grid against jaxdiff's). `benchmarks/gpu_suite.py` reads it too."""
    import torch
    from kdiffusion_peer import load

    kd = load()
    weights = make_weights(dim, hidden, seed)
    x_np = (SIGMA_MAX * np.random.default_rng(seed + 1).standard_normal((batch, dim))).astype(
        np.float32
    )

    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]
    x_j = jnp.asarray(x_np)
    sigmas_j = jd.schedules.karras(STEPS, SIGMA_MIN, SIGMA_MAX, dtype=jnp.float32)
    seq_j = jnp.asarray(heun_sigma_sequence(np.asarray(sigmas_j)))
    solver = jd.samplers.Heun()
    assert solver.nfe(STEPS) == NFE == seq_j.shape[0]

    model = torch_denoiser(weights, torch_device)
    x_t = torch.from_numpy(x_np).to(torch_device)
    sigmas_t = kd.get_sigmas_karras(STEPS, SIGMA_MIN, SIGMA_MAX, device=torch_device)
    sigma_gap = rel_diff(sigmas_t.cpu().numpy(), np.asarray(sigmas_j))

    calls = {"n": 0}

    def counted(net):
        def f(x, sigma):
            calls["n"] += 1
            return net(x, sigma)

        return f

    if torch_device.type == "cuda":

        def tsync(out):
            torch.cuda.synchronize()
    else:

        def tsync(out):
            pass

    def kd_heun(net):
        return lambda: kd.sample_heun(net, x_t, sigmas_t, disable=True)

    methods = {
        NET: Method(
            lambda: network_only(params, x_j, seq_j), jax.block_until_ready, jax_method=True
        ),
        JD: Method(
            lambda: jd.sample((jax_denoiser, params), x_j, sigmas_j, solver=solver),
            jax.block_until_ready,
            jax_method=True,
        ),
        SCAN: Method(
            lambda: scan_heun(params, x_j, sigmas_j), jax.block_until_ready, jax_method=True
        ),
        KD: Method(kd_heun(model), tsync, jax_method=False),
    }
    if use_compile:
        try:
            compiled = torch.compile(model)
            methods[KDC] = Method(kd_heun(compiled), tsync, jax_method=False)
        except Exception as e:
            methods[KDC] = Method(None, tsync, jax_method=False)
            methods[KDC].error = f"{type(e).__name__}: {str(e).strip()[:120]}"
    with torch.no_grad():
        time_methods({k: m for k, m in methods.items() if m.fn is not None}, repeats, budget)

    # the network calls k-diffusion makes, counted in one extra untimed call
    with torch.no_grad():
        kd.sample_heun(counted(model), x_t, sigmas_t, disable=True)
    kd_nfe = calls["n"]

    ref = methods[JD].out
    checks = {NET: "-", SCAN: "reference"}
    if ref is not None and methods[SCAN].out is not None:
        checks[JD] = "vs scan " + verdict(rel_diff(ref, methods[SCAN].out), TIGHT)
    for name in (KD, KDC):
        m = methods.get(name)
        if m is not None and m.error is None and ref is not None:
            checks[name] = "vs jd " + verdict(rel_diff(m.out.cpu().numpy(), ref), FLOAT32)
    if ref is not None and methods[KD].error is None:
        checks[JD] += "; vs k-diff " + verdict(
            rel_diff(ref, methods[KD].out.cpu().numpy()), FLOAT32
        )

    run = {k: statistics.median(m.times) for k, m in methods.items() if m.error is None}
    return {
        "methods": methods,
        "run": run,
        "checks": checks,
        "kd_nfe": kd_nfe,
        "sigma_gap": sigma_gap,
    }


def run_case(dim, hidden, batch, *, seed, repeats, budget, torch_device, use_compile):
    """The table rows and notes of one case (`measure_case`)."""
    measured = measure_case(
        dim,
        hidden,
        batch,
        seed=seed,
        repeats=repeats,
        budget=budget,
        torch_device=torch_device,
        use_compile=use_compile,
    )
    methods, run, checks = measured["methods"], measured["run"], measured["checks"]
    kd_nfe, sigma_gap = measured["kd_nfe"], measured["sigma_gap"]
    case = f"{dim} x {hidden} x {batch}"
    rows = []
    for name, m in methods.items():
        if m.error is not None:
            rows.append((case, name, "-", "-", "-", "-", "-", 0, f"unavailable: {m.error}"))
            continue
        r = run[name]
        rows.append(
            (
                case,
                name,
                f"{m.first_s:.2f}",
                f"{m.first_s - r:.2f}",
                f"{r * 1e3:.3g}",
                f"{r / run[NET]:.3f}" if NET in run else "-",
                f"{r / run[JD]:.2f}" if JD in run else "-",
                len(m.times),
                checks.get(name, "-"),
            )
        )

    def target(label, value, goal, le):
        if value is None:
            return f"{label}: n/a (target {'<=' if le else '>='} {goal})"
        met = "met" if (value <= goal if le else value >= goal) else "NOT met"
        return f"{label} = {value:.3g} (target {'<=' if le else '>='} {goal}: {met})"

    def ratio(a, b):
        return run[a] / run[b] if a in run and b in run else None

    jd_compile = methods[JD].first_s - run[JD] if JD in run else None
    notes = [
        f"{case}: "
        + "; ".join(
            (
                target("jd.sample / network only", ratio(JD, NET), TARGETS["net"], True),
                target("jd.sample compile s", jd_compile, TARGETS["compile"], True),
                target("k-diffusion eager / jd.sample", ratio(KD, JD), TARGETS["eager"], False),
                target(
                    "k-diffusion compiled / jd.sample", ratio(KDC, JD), TARGETS["compiled"], False
                ),
            )
        ),
        f"{case}: NFE {NFE} (jd.samplers.Heun().nfe({STEPS})), k-diffusion sample_heun called the "
        f"network {kd_nfe} times; max |sigmas k-diffusion - jaxdiff| / 80 = {sigma_gap:.1e}",
    ]
    return rows, notes


def parse_case(s: str) -> tuple[int, int, int]:
    try:
        dim, hidden, batch = (int(v) for v in s.lower().split("x"))
        return dim, hidden, batch
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"case must look like DIMxHIDDENxBATCH, got {s!r}") from e


def override(cases, values, field, p):
    if not values:
        return cases
    if len(values) not in (1, len(cases)):
        p.error(f"--{field} takes one value or one per case ({len(cases)}), got {len(values)}")
    values = values * len(cases) if len(values) == 1 else values
    i = ("dim", "hidden", "batch").index(field)
    return [(*c[:i], v, *c[i + 1 :]) for c, v in zip(cases, values, strict=True)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description="Time EDM Heun (18 steps, 35 NFE) on an MLP denoiser: network only vs "
        "jd.sample vs a hand-written lax.scan vs k-diffusion eager and torch.compile.",
    )
    p.add_argument(
        "--cases",
        nargs="+",
        type=parse_case,
        metavar="DIMxHIDDENxBATCH",
        help="cases to run (default: 2x256x65536 3072x1024x512)",
    )
    for field in ("dim", "hidden", "batch"):
        p.add_argument(
            f"--{field}",
            nargs="+",
            type=int,
            metavar=field[0].upper(),
            help=f"override the {field} of the cases: one value for all, or one per case",
        )
    p.add_argument("--quick", action="store_true", help="small cases, few repeats (smoke run)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per method (default 20)")
    p.add_argument(
        "--budget",
        type=float,
        default=3.0,
        help="seconds of timed calls per method and case (at least 3 repeats; default 3)",
    )
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    p.add_argument(
        "--torch-threads",
        type=int,
        help="torch.set_num_threads(N) (CPU runs: on a loaded machine torch's OpenMP threads "
        "can stall each other by orders of magnitude; 1 avoids it). Default: torch's own",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE.md", help="also write the table (Markdown) here")
    a = p.parse_args(argv)

    cases = list(a.cases or (QUICK_CASES if a.quick else DEFAULT_CASES))
    for field in ("dim", "hidden", "batch"):
        cases = override(cases, getattr(a, field), field, p)
    repeats = 5 if a.quick and a.repeats == 20 else a.repeats
    budget = 0.5 if a.quick else a.budget
    if repeats < 3:
        p.error("--repeats must be at least 3")

    # before JAX creates its backend: let torch share the GPU, and use true float32 matmuls
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    jax.config.update("jax_default_matmul_precision", "highest")
    import torch

    torch.set_float32_matmul_precision("highest")
    if a.torch_threads:
        torch.set_num_threads(a.torch_threads)
    torch_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    dev = jax.devices()[0]
    tdev = torch.cuda.get_device_name() if torch_device.type == "cuda" else "cpu"
    try:
        kd_version = importlib.metadata.version("k-diffusion")
    except importlib.metadata.PackageNotFoundError:
        kd_version = "?"
    header = (
        f"device: jax {dev.platform} ({dev.device_kind}), torch {torch_device.type} ({tdev}); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, load average "
        f"{os.getloadavg()[0]:.1f} at start; jax {jax.__version__}, jaxdiff {jd.__version__}, "
        f"torch {torch.__version__}, k-diffusion {kd_version}, python "
        f"{platform.python_version()}; torch threads {torch.get_num_threads()}; float32, "
        f"matmul precision highest; "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )
    if (dev.platform == "gpu") != (torch_device.type == "cuda"):
        header += " (WARNING: JAX and torch are not on the same kind of device)"
    command = "python benchmarks/sampler_overhead.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(header)
    print(f"command: {command.strip()}", flush=True)

    rows, notes = [], []
    for dim, hidden, batch in cases:
        r, n = run_case(
            dim,
            hidden,
            batch,
            seed=a.seed,
            repeats=repeats,
            budget=budget,
            torch_device=torch_device,
            use_compile=not a.no_compile,
        )
        for row in r:
            print(" | ".join(map(str, row)), flush=True)
        rows += r
        notes += n

    cols = (
        "case (dim x hidden x batch)",
        "method",
        "first call s",
        "compile s",
        "run ms",
        "/ net",
        "/ jaxdiff",
        "repeats",
        "check",
    )
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join(["---"] * 2 + ["--:"] * 6 + ["---"]) + "|",
    ]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    table = "\n".join(lines)
    print()
    print(table)
    print()
    for note in notes:
        print(note)
    if a.out:
        with open(a.out, "w") as f:
            f.write(f"{header}\n\ncommand: `{command.strip()}`\n\n{table}\n\n")
            f.writelines(f"- {note}\n" for note in notes)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
