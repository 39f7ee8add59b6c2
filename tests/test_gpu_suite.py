"""`benchmarks/gpu_suite.py` (every GPU measurement of the benchmarks README in one command)
at its small sizes, the default without a GPU: every part runs and writes its rows, and the
checks inside hold (jd.sample equals the hand-written scan, k-diffusion and raw diffrax on the
same weights; bfloat16 samples stay finite). The timings themselves are not asserted: they
mean something only on the GPU the suite is for. torch.compile is skipped here (tens of
seconds of compiling on this CPU); the script runs it by default."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PEER_MODULES
from jaxdiff_test_utils import require

ROOT = Path(__file__).resolve().parents[1]


def _rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    columns = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(columns, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in lines[1:]
    ]


@pytest.mark.slow
def test_gpu_suite_runs_every_part_at_small_sizes(tmp_path):
    require(*PEER_MODULES, why="the suite's k-diffusion rows")
    out = tmp_path / "suite.md"
    command = [sys.executable, "benchmarks/gpu_suite.py", "--out", str(out)]
    command += ["--no-torch-compile", "--torch-threads", "1"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    device, command, size = text.split("\n\n")[:3]  # the device, versions and date first
    assert device.startswith("device: cpu (cpu)") and device.endswith("UTC"), device
    for library in ("jax", "jaxdiff", "diffrax", "flax", "torch", "k-diffusion", "python"):
        assert f" {library} " in device, library
    assert command.startswith("command: `python benchmarks/gpu_suite.py --out")
    assert size == "size: small"
    rows = _rows(text)
    by = {}
    for row in rows:
        by.setdefault(row["measurement"], []).append(row)
    assert set(by) == {"memory", "throughput", "overhead", "diffrax"}
    for row in by["memory"]:
        assert float(row["memory MiB"]) > 0, row
    memory = [(r["network"].split()[0], int(r["batch"])) for r in by["memory"]]
    assert memory == [("U-Net", 8), ("MLP", 256), ("MLP", 1024), ("MLP", 4096)]
    dtypes = {(r["network"].split()[0], r["dtype"]) for r in by["throughput"]}
    assert dtypes == {(n, d) for n in ("MLP", "U-Net") for d in ("float32", "bfloat16")}
    for row in by["throughput"]:
        assert float(row["samples/s"]) > 0 and row["check"].startswith("finite"), row
        if row["dtype"] == "bfloat16":  # a bfloat16 network, a float32 sampler: close
            assert 0 < float(row["check"].split("RMS vs float32 ")[1]) < 2e-2, row
    methods = {r["method"]: r for r in by["overhead"]}
    assert methods["jd.sample Heun"]["check"].startswith("vs scan ok")
    assert "vs k-diff ok" in methods["jd.sample Heun"]["check"]
    assert "/ network <= 1.05" in methods["jd.sample Heun"]["target"]
    assert methods["k-diffusion eager"]["check"].startswith("vs jd ok")
    assert methods["k-diffusion eager"]["target"].startswith(">= 2.5")
    assert methods["k-diffusion + torch.compile"]["check"] == "skipped (option)"
    peer = [r for r in by["diffrax"] if r["method"].startswith("diffrax.Heun")]
    assert len(peer) == 1 and peer[0]["check"].startswith("vs jd.sample ok"), peer
