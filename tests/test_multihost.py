"""Several processes (`jax.distributed`) on one machine: 2 processes x 2 simulated CPU devices,
a coordinator on a free loopback port, gloo collectives.

Each scenario starts its processes once (`tests/multihost_worker.py`, or the `jaxdiff`
command line), with a hard timeout: processes still running then are killed and the test
fails with their stderr. The single-process references are computed in this process, on one
device, while the workers run.

- sampling: a deterministic and a stochastic sampler (one key for the batch, per-sample keys)
  and `sample_chunked` return, in every process, exactly its rows of the one-process result;
- a failure: one process raises, the others are in a collective; all exit at once with its
  error (`jaxdiff.cli._distributed`);
- the command line: `jaxdiff train` on two processes for one step, resumed for a second,
  equals a one-process run of two steps; only process 0 writes; `jaxdiff sample` on two
  processes writes what one process writes; a process failing a check stops the other.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.random as jr
import numpy as np
import pytest
from flax import nnx
from multihost_worker import CASES, CHUNK, CHUNKED, NUM, NUM_CHUNKED, problem

import jaxdiff as jd
from jaxdiff import train as jt
from jaxdiff._parallel import per_sample_keys, sample_chunked

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("multihost_worker.py")
PROCESSES, DEVICES = 2, 2
#: seconds before a scenario's processes are killed (a hang fails the test, never blocks it)
TIMEOUT_S = 240
#: seconds within which the other processes must exit after one fails (JAX alone would take
#: its heartbeat timeout, 100 s, or its shutdown timeout, 300 s)
FAILURE_EXIT_S = 15
#: the `jaxdiff` program
CLI = [sys.executable, "-c", "import sys; from jaxdiff.cli import main; sys.exit(main())"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Launch:
    """`PROCESSES` processes started together, `command(port, i)` the argv of process i."""

    def __init__(self, command, logs: Path):
        port = _free_port()
        flags = os.environ.get("XLA_FLAGS", "")
        env = dict(
            os.environ,
            XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count={DEVICES}".strip(),
            JAX_PLATFORMS="cpu",
            JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}",  # loopback only
        )
        logs.mkdir(parents=True, exist_ok=True)
        self.logs = logs
        self.procs = []
        for i in range(PROCESSES):
            out = open(logs / f"{i}.out", "w")  # closed in wait
            err = open(logs / f"{i}.err", "w")
            proc = subprocess.Popen(
                command(port, i),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: killed whole on a hang
            )
            self.procs.append((proc, out, err))
        self.start = time.monotonic()

    def wait(self, timeout: float = TIMEOUT_S) -> list[dict]:
        """Every process's `status`, `out`, `err` and `ended` (seconds after the start)."""
        ended = [None] * len(self.procs)
        deadline = self.start + timeout
        while any(e is None for e in ended) and time.monotonic() < deadline:
            for i, (proc, _, _) in enumerate(self.procs):
                if ended[i] is None and proc.poll() is not None:
                    ended[i] = time.monotonic() - self.start
            time.sleep(0.05)
        hung = [i for i, e in enumerate(ended) if e is None]
        for i in hung:
            os.killpg(self.procs[i][0].pid, signal.SIGKILL)
            self.procs[i][0].wait()
        results = []
        for i, (proc, out, err) in enumerate(self.procs):
            out.close()
            err.close()
            results.append(
                {
                    "status": proc.returncode,
                    "out": _quiet((self.logs / f"{i}.out").read_text()),
                    "err": (self.logs / f"{i}.err").read_text(),
                    "ended": ended[i],
                }
            )
        if hung:
            pytest.fail(
                f"processes {hung} still ran after {timeout} s and were killed:\n"
                + "\n".join(
                    f"--- process {i} stderr:\n{_tail(r['err'])}" for i, r in enumerate(results)
                )
            )
        return results


def _quiet(text: str) -> str:
    """A process's stdout without gloo's lines (it prints its connections there)."""
    return "".join(line for line in text.splitlines(True) if not line.startswith("[Gloo]"))


def _tail(text: str, lines: int = 30) -> str:
    """The last lines of a process's stderr, without gloo's and absl's chatter."""
    kept = [
        line
        for line in text.splitlines()
        if not line.startswith(("[Gloo]", "W0000", "I0000", "E0000", "    @"))
    ]
    return "\n".join(kept[-lines:])


def _succeeded(results) -> None:
    for i, r in enumerate(results):
        assert r["status"] == 0, f"process {i} exited with {r['status']}:\n{_tail(r['err'])}"


# ---------------------------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """The worker's results (`process-<i>.npz`), its processes' endings, and the reference."""
    out = tmp_path_factory.mktemp("multihost-sampling")
    launch = Launch(
        lambda port, i: [
            sys.executable,
            str(WORKER),
            str(port),
            str(i),
            str(PROCESSES),
            str(out),
            "--fail-at-end",
        ],
        out / "logs",
    )
    gm, sigmas, x = problem()  # the one-process reference, on one device, meanwhile
    reference = {}
    for name, (solver, kind) in CASES.items():
        key = {None: None, "one": jr.key(1), "per_sample": per_sample_keys(jr.key(2), NUM)}[kind]
        reference[name] = np.asarray(jd.sample(gm.denoiser, x, sigmas, solver=solver, key=key))
    for name, (solver, seed) in CHUNKED.items():
        key = None if seed is None else jr.key(seed)
        reference[name] = sample_chunked(
            gm.denoiser,
            x[:NUM_CHUNKED],
            sigmas,
            solver=solver,
            key=key,
            chunk_size=CHUNK,
            to_host=True,
        )
    results = launch.wait()
    files = [out / f"process-{i}.npz" for i in range(PROCESSES)]
    missing = [str(f) for f in files if not f.exists()]
    assert not missing, f"no results {missing}:\n" + "\n".join(_tail(r["err"]) for r in results)
    return [dict(np.load(f)) for f in files], results, reference


def test_each_process_gets_its_rows_of_the_one_process_result(sampled):
    parts, _, reference = sampled
    local = NUM // PROCESSES
    for i, part in enumerate(parts):
        rows = slice(i * local, (i + 1) * local)  # jax.devices() is ordered by process
        assert part["rows"].tolist() == [rows.start, rows.stop]
        for name in CASES:
            np.testing.assert_allclose(
                part[name], reference[name][rows], rtol=1e-5, atol=1e-5, err_msg=name
            )
            assert part[name + "_devices"] == PROCESSES * DEVICES  # sharded over all devices
            assert part[name + "_shard_rows"].tolist() == [local // DEVICES] * DEVICES
        chunk = NUM_CHUNKED // PROCESSES
        for name in CHUNKED:
            np.testing.assert_allclose(
                part[name], reference[name][i * chunk : (i + 1) * chunk], rtol=1e-5, atol=1e-5
            )
    # the stochastic samplers' noise is noise: another key, other samples
    assert not np.allclose(reference["per_sample"], reference["euler_ancestral"], atol=1e-2)


def test_a_failing_process_ends_all_of_them_at_once(sampled):
    _, results, _ = sampled
    failed, other = results[1], results[0]
    assert failed["status"] == 1, _tail(failed["err"])
    assert "RuntimeError: injected failure in process 1" in failed["err"]
    assert other["status"] == 1, _tail(other["err"])
    assert (
        "jaxdiff worker: error: process 1 of 2 failed: RuntimeError: injected failure in "
        "process 1" in other["err"]
    )
    assert abs(other["ended"] - failed["ended"]) < FAILURE_EXIT_S


# ------------------------------------------------------------------------------ command line


def _distributed(port, i):
    return [
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        str(PROCESSES),
        "--process-id",
        str(i),
    ]


TRAIN = ["train", "--data", "ring", "--batch-size", "16", "--width", "16", "--ckpt-every", "1"]
TRAIN += ["--quiet"]
SAMPLE = ["sample", "--solver", "euler_ancestral", "--steps", "4", "--num", "10", "--seed", "3"]


#: runs commands one after the other in one process (`jaxdiff.cli.main`, the `jaxdiff`
#: program's entry point): one start of Python and JAX for the three commands
COMMANDS = """
import json, sys
from jaxdiff.cli import main
for argv in json.loads(sys.argv[1]):
    status = main(argv)
    print("--- status", status, flush=True)
    if status:
        sys.exit(status)
"""


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """On two processes: `jaxdiff train` for 1 step, then again up to 2 (resuming), then
    `jaxdiff sample`; in this process: the 2 steps in one run, and the same sampling."""
    from jaxdiff.cli import main

    base = tmp_path_factory.mktemp("multihost-cli")
    run, ref = base / "run", base / "ref"

    def commands(port, i):
        options = _distributed(port, i)
        return [
            [*TRAIN, "--steps", "1", "--out", str(run), *options],
            [*TRAIN, "--steps", "2", "--out", str(run), *options],
            [*SAMPLE, "--ckpt", str(run), "--out", str(base / "two.npy"), *options],
        ]

    launch = Launch(
        lambda port, i: [sys.executable, "-c", COMMANDS, json.dumps(commands(port, i))],
        base / "logs",
    )
    assert main([*TRAIN, "--steps", "2", "--out", str(ref)]) == 0  # meanwhile
    results = launch.wait()
    _succeeded(results)
    assert main([*SAMPLE, "--ckpt", str(run), "--out", str(base / "one.npy")]) == 0
    outputs = [_without_gloo_reports(r["out"]).split("--- status 0\n") for r in results]
    return {"run": run, "ref": ref, "base": base, "outputs": outputs}


#: what gloo (XLA's CPU collectives) itself prints to stdout, now and then, when its ranks
#: connect: "2 is connected to 3 peer ranks. Expected number of connected peer ranks is : 3"
GLOO_REPORT = re.compile(r"^\d+ is connected to \d+ peer ranks\..*\n", re.MULTILINE)


def _without_gloo_reports(text: str) -> str:
    return GLOO_REPORT.sub("", text)


def _weights(run, step, ema):
    model, _ = jt.load_model(run, lambda c: jt.build_network(c["network"]), ema=ema, step=step)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_cli_training_on_two_processes_equals_one(cli_runs):
    run, ref = cli_runs["run"], cli_runs["ref"]
    for step in (1, 2):  # one data-parallel step; then a step after resuming from it
        for ema in (False, True):
            for a, b in zip(_weights(run, step, ema), _weights(ref, step, ema), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # process 0 wrote the metrics, once per line: step 1, and step 2 of the resumed run
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    ref_lines = [json.loads(s) for s in (ref / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    assert [line["step"] for line in ref_lines] == [2]
    mean = (lines[0]["loss"] + lines[1]["loss"]) / 2
    np.testing.assert_allclose(mean, ref_lines[0]["loss"], rtol=1e-5)
    # process 0 alone wrote the checkpoints (no shards of process 1)
    written = [str(p.relative_to(run)) for p in (run / "checkpoints").rglob("*")]
    assert written and not [p for p in written if "process_1" in p]
    (first, second, _, _), others = cli_runs["outputs"]  # process 0 prints, 1 does not
    assert "trained 1 steps" in first and "checkpoint at step 1" in first
    assert "resumed from step 1" in second and "checkpoint at step 2" in second
    assert others == ["", "", "", ""]


def test_cli_sampling_on_two_processes_equals_one(cli_runs):
    base = cli_runs["base"]
    two, one = np.load(base / "two.npy"), np.load(base / "one.npy")
    assert two.shape == one.shape == (10, 2)
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5)
    (_, _, sampling, _), others = cli_runs["outputs"]
    assert f"wrote {base / 'two.npy'}: 10 samples" in sampling and others[2] == ""


def test_cli_process_failing_a_check_stops_the_others(cli_runs, tmp_path):
    """Process 0 (which writes, and hosts the coordination service) fails its check of --out;
    process 1, which does not write, is loading the model or sampling."""
    out = tmp_path / "missing" / "x.npy"
    launch = Launch(
        lambda port, i: [
            *CLI,
            *SAMPLE,
            "--ckpt",
            str(cli_runs["run"]),
            "--out",
            str(out),
            *_distributed(port, i),
        ],
        tmp_path / "logs",
    )
    process_0, process_1 = launch.wait()
    error = f"--out: directory '{out.parent}' does not exist"
    assert process_0["status"] == 2, _tail(process_0["err"])
    assert f"jaxdiff sample: error: {error}" in process_0["err"]
    assert process_1["status"] == 1, _tail(process_1["err"])
    assert f"jaxdiff sample: error: process 0 of 2 failed: {error}" in process_1["err"]
    assert abs(process_0["ended"] - process_1["ended"]) < FAILURE_EXIT_S


def test_cli_distributed_options_are_checked(capsys):
    from jaxdiff.cli import main

    status = main([*SAMPLE, "--ckpt", "x", "--out", "x.npy", "--num-processes", "2"])
    assert status == 2
    assert "--coordinator, --process-id missing" in capsys.readouterr().err
    argv = [*SAMPLE, "--ckpt", "x", "--out", "x.npy", "--coordinator", "localhost"]
    status = main([*argv, "--num-processes", "2", "--process-id", "0"])
    assert "--coordinator must be HOST:PORT, got 'localhost'" in capsys.readouterr().err
    status = main([*argv[:-1], "h:1", "--num-processes", "2", "--process-id", "2"])
    assert status == 2
    assert "--process-id 2 must be < --num-processes 2" in capsys.readouterr().err
    argv = ["sample", "--diffusers", "d", "--out", "x.npy", "--distributed"]
    assert main(argv) == 2
    assert "--diffusers samples in one process" in capsys.readouterr().err


def test_cli_processes_must_get_the_same_options():
    """Checked when the processes start (`jaxdiff.cli._distributed.run`): with other options
    they would run other programs and wait for each other forever."""
    from jaxdiff.cli import _distributed, build_parser

    def parsed(*extra):
        argv = [*SAMPLE, "--ckpt", "r", "--out", "x.npy", "--coordinator", "h:1", *extra]
        return _distributed.options(build_parser("sample").parse_args(argv))

    zero = parsed("--num-processes", "2", "--process-id", "0")
    one = parsed("--num-processes", "2", "--process-id", "1")
    assert _distributed.differences(zero, one, 1) == []  # the rank may differ
    other = parsed("--num-processes", "2", "--process-id", "1", "--steps", "5")
    assert _distributed.differences(zero, other, 1) == ["--steps 4 here, 5 in process 1"]
