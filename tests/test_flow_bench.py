"""`jaxdiff.bench` on flow problems (`process="rectified_flow"`, `"trig_flow"`): grids from
`sigma = inf`, the exact flow-ODE reference, diffusers' flow-matching Euler as the peer."""

import csv
import math

import jax
import numpy as np
import pytest

import jaxdiff as jd
import jaxdiff.bench as jb
from jaxdiff.cli import main


def test_flow_bench_end_to_end(tmp_path, capsys):
    """`jaxdiff bench --process rectified_flow`, tiny: diffusers' Euler (computed in JAX) is
    jaxdiff's Euler on the same grid, every grid starts at inf, the NFE counts the step from
    inf, IPNDM on the tuned flow grid beats the peer, and the results are written."""
    out = tmp_path / "bench"
    argv = ["bench", "--process", "rectified_flow", "--problems", "ring", "--nfe", "10"]
    argv += ["--samplers", "euler", "ipndm", "--schedules", "diffusers_flow_match", "tuned_flow"]
    assert main([*argv, "--samples", "16", "--out", str(out)]) == 0
    with open(out / "results.csv", newline="") as f:
        rows = {(r["library"], r["sampler"], r["schedule"]): r for r in csv.DictReader(f)}
    assert {lib for lib, _, _ in rows} == {"jaxdiff", "diffusers"}  # no k-diffusion, diffrax
    assert {r["problem"] for r in rows.values()} == {"ring/rectified_flow"}
    peer = float(rows["diffusers", "flow_match_euler", "diffusers_flow_match"]["error"])
    assert ("diffusers", "flow_match_euler", "diffusers_flow_match_shift3") in rows
    euler = float(rows["jaxdiff", "euler", "diffusers_flow_match"]["error"])
    assert euler == pytest.approx(peer, rel=1e-9)
    for r in rows.values():
        assert math.isinf(float(r["sigma_first"])) and r["nfe"] == r["steps"] == "10", r
    ipndm = float(rows["jaxdiff", "ipndm", "tuned_flow"]["error"])
    assert ipndm < 0.7 * peer, (ipndm, peer)
    md = (out / "results.md").read_text()
    assert "Dopri8" in md and "best diffusers" in md
    assert "run once to confirm" in md or "diffusers not installed" in md


def test_flow_grids():
    """A time grid means the flow's own times (on a trigonometric flow, `sigma = tan(pi t /
    2)`); `tuned_flow` is the same sigma grid on every flow (they share the sigma-space ODE);
    a sigma-space schedule follows the step from inf."""
    trig, rf = jd.TrigFlow(), jd.RectifiedFlow()
    with jax.enable_x64(True):
        grid = np.asarray(jb.flow_grid("flow", 4, trig))
        expected = [np.inf, *np.tan(np.pi / 2 * np.array([0.75, 0.5, 0.25])), 0.0]
        np.testing.assert_allclose(grid, expected, rtol=1e-12)
        np.testing.assert_allclose(jb.flow_grid("flow_shift3", 4, rf), [np.inf, 9, 3, 1, 0])
        tuned = jb.flow_grid("tuned_flow", 7, trig)
        np.testing.assert_array_equal(tuned, jb.flow_grid("tuned_flow", 7, rf))
        karras = np.asarray(jb.flow_grid("karras", 5, rf))
    assert np.isinf(karras[0]) and karras[1] == pytest.approx(jb.FLOW_SIGMA_FIRST)
    assert karras.shape == (6,) and karras[-2] == pytest.approx(0.002)
    assert jd.samplers.num_evaluations("heun", karras) == 1 + jd.samplers.Heun().nfe(4)


def test_flow_bad_input():
    with pytest.raises(ValueError, match="unknown process 'vp'"):
        jb.problem("ring", process="vp")
    with jax.enable_x64(True):
        prob = jb.problem("ring", num_samples=8)
        assert prob.process == "edm" and prob.flow is None
        flow = jb.problem("ring", num_samples=8, process="trig_flow")
    assert flow.name == "ring/trig_flow" and isinstance(flow.flow, jd.TrigFlow)
    with pytest.raises(ValueError, match="no schedule for the EDM problems"):
        jb.run_bench([prob], ["euler"], ["flow"], [4])
    with pytest.raises(ValueError, match="unknown schedules 'flow_shift7'"):
        jb.run_bench([prob], ["euler"], ["flow_shift7"], [4])
