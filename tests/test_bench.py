"""`jaxdiff.bench` and `jaxdiff bench`: the solver benchmark."""

import csv
import json

import jax
import numpy as np
import pytest

import jaxdiff.bench as jb
from jaxdiff.cli import main


@pytest.mark.slow
def test_cli_quick_writes_results(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--out", str(out)]) == 0
    for name in ("results.md", "results.csv", "results.json", "error_vs_nfe.png"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    libraries = {r["library"] for r in rows}
    assert {"jaxdiff", "diffrax"} <= libraries
    assert {r["problem"] for r in rows} == {"ring", "mixture16"}
    assert {r["metric"] for r in rows} == {"trajectory_rms", "sliced_w2"}
    assert all(np.isfinite(float(r["error"])) for r in rows)
    data = json.loads((out / "results.json").read_text())
    assert data["orders"] and len(data["rows"]) == len(rows)
    md = (out / "results.md").read_text()
    assert "Empirical order" in md and "ring" in md
    assert (out / "error_vs_nfe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empirical_order_of_euler_and_heun():
    with jax.enable_x64(True):
        prob = jb.problem("ring", num_samples=32)
    result = jb.run_bench(
        [prob], ["euler", "heun"], ["karras"], [60, 120, 240], peers=False, ref_steps=1000
    )
    order = {o["sampler"]: o["order"] for o in result.orders}
    assert 0.8 < order["euler"] < 1.3, order
    assert 1.7 < order["heun"] < 2.6, order
    assert len(result.rows) == 6 and all(r["wall_s"] >= 0 for r in result.rows)


def test_fit_order_and_max_steps():
    nfe = np.array([10, 20, 40, 80])
    assert jb.fit_order(nfe, 3.0 * nfe**-2.0) == pytest.approx(2.0)
    assert np.isnan(jb.fit_order([10, 10], [1.0, 2.0]))
    assert np.isnan(jb.fit_order([10, 20], [np.inf, 1.0]))
    assert jb.max_steps(lambda n: 2 * n - 1, 10) == 5
    assert jb.max_steps(lambda n: 2 * n - 1, 0) == 0


def test_bad_input():
    with jax.enable_x64(True):
        prob = jb.problem("ring", num_samples=8)
    with pytest.raises(ValueError, match="unknown problem"):
        jb.problem("moon")
    with pytest.raises(ValueError, match="unknown samplers 'eular'"):
        jb.run_bench([prob], ["eular"], ["karras"], [10])
    with pytest.raises(ValueError, match="unknown schedules"):
        jb.run_bench([prob], ["euler"], ["karas"], [10])
    with pytest.raises(ValueError, match="nfes"):
        jb.run_bench([prob], ["euler"], ["karras"], [0])
    with pytest.raises(ValueError, match="unknown peers"):
        jb.run_bench([prob], ["euler"], ["karras"], [10], peers=["torchdiffeq"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--problems", "moon"], "unknown problem 'moon'"),
        (["--samplers", "eular"], "unknown samplers 'eular'"),
        (["--nfe", "0"], "argument --nfe"),
        (["--process", "vp"], "argument --process"),
        (["--schedules", "flow"], "no schedule for the EDM problems"),
        (["--ckpt", "/nonexistent/run"], "--ckpt"),
    ],
)
def test_cli_errors(tmp_path, capsys, argv, message):
    try:
        code = main(["bench", "--out", str(tmp_path / "o"), *argv])
    except SystemExit as e:  # argparse errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
