"""`jaxdiff train / sample / demo` with `--objective flow`: a tiny flow run end to end, its
stored recipe, sampling from pure noise with any sampler and grid, and one-line errors."""

import argparse
import json
import shutil
import sys

import numpy as np
import pytest

from jaxdiff.cli import _train, main


def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _one_line_error(status, err, *needles):
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for needle in needles:
        assert needle in err


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    """A tiny rectified-flow run on the ring (the default flow options, so the demo can
    reuse it)."""
    out = tmp_path_factory.mktemp("flow")
    argv = ["train", "--data", "ring", "--objective", "flow", "--steps", "30", "--out", str(out)]
    assert main([*argv, "--batch-size", "64", "--quiet"]) == 0
    return out


def _config(run):
    [step] = [p for p in (run / "checkpoints").iterdir() if p.name.isdigit()]
    return step / "config" / "metadata"


def test_train_stores_a_flow_recipe(flow_run):
    config = json.loads(_config(flow_run).read_text())
    assert config["objective"] == "flow"
    assert config["flow"] == {
        "path": "rectified",
        "time_sampling": "uniform",
        "logit_mean": 0.0,
        "logit_std": 1.0,
        "coupling": "none",
    }
    lines = [json.loads(s) for s in (flow_run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 30 and np.isfinite(lines[-1]["loss"])


def test_flow_options_go_into_the_config():
    parser = argparse.ArgumentParser()
    _train.add_arguments(parser)
    argv = ["--data", "ring", "--steps", "5", "--out", "x", "--objective", "flow"]
    argv += ["--flow", "trig", "--time-sampling", "logit_normal", "--coupling", "exact"]

    class Data:
        kind = "vectors"
        x = np.zeros((10, 2), np.float32)

    config = _train.training_config(parser.parse_args(argv), Data())
    assert config["flow"]["path"] == "trig" and config["flow"]["coupling"] == "exact"
    assert config["flow"]["time_sampling"] == "logit_normal"
    # an EDM run's config has no objective (as before flows), so old runs resume
    edm = _train.training_config(parser.parse_args(argv[:6]), Data())
    assert "objective" not in edm and "flow" not in edm


@pytest.mark.parametrize(
    "options",
    [
        ["--solver", "euler", "--steps", "4"],  # the default flow grid from sigma = inf
        ["--solver", "heun", "--steps", "3", "--shift", "3"],
        ["--solver", "dpmpp_2m", "--steps", "4", "--schedule", "karras"],
    ],
    ids=["euler", "heun-shift", "dpmpp_2m-karras"],
)
def test_sample_a_flow_run(flow_run, tmp_path, capsys, options):
    out = tmp_path / "s.npy"
    status, text, err = _run(
        ["sample", "--ckpt", str(flow_run), "--num", "200", "--out", str(out), *options], capsys
    )
    assert status == 0, err
    x = np.load(out)
    assert x.shape == (200, 2) and np.all(np.isfinite(x))
    assert np.abs(x).max() < 10
    assert f"wrote {out}" in text


def test_demo_trains_and_samples_a_flow(flow_run, tmp_path, capsys):
    out = tmp_path / "demo.png"
    argv = ["demo", "--objective", "flow", "--steps", "30", "--num", "200", "--quiet"]
    status, text, err = _run([*argv, "--run-dir", str(flow_run), "--out", str(out)], capsys)
    assert status == 0, err
    assert out.exists() and out.with_suffix(".md").exists()
    table = out.with_suffix(".md").read_text()
    assert "rectified flow" in table and "| euler | 20 | 20 |" in table
    assert "nothing to do" in text  # the run was reused


def test_bad_flow_input_is_one_line(flow_run, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "run")
    train = ["train", "--data", "ring", "--steps", "5", "--out", out, "--quiet"]
    status, _, err = _run([*train, "--coupling", "exact"], capsys)
    _one_line_error(status, err, "--coupling need --objective flow")
    status, _, err = _run([*train, "--flow", "trig", "--time-sampling", "uniform"], capsys)
    _one_line_error(status, err, "--flow, --time-sampling need --objective flow")
    for name in ("ott.geometry.geometry", "ott.problems.linear.linear_problem"):
        monkeypatch.setitem(sys.modules, name, None)
    status, _, err = _run([*train, "--objective", "flow", "--coupling", "sinkhorn"], capsys)
    _one_line_error(status, err, "jaxdiff[ot]")
    # resuming a flow run with other flow options
    status, _, err = _run(
        [*train[:6], str(flow_run), "--objective", "flow", "--flow", "trig", "--quiet"], capsys
    )
    _one_line_error(status, err, "other settings", "flow")
    npy = str(tmp_path / "s.npy")
    sample = ["sample", "--ckpt", str(flow_run), "--num", "10", "--out", npy]
    status, _, err = _run([*sample, "--schedule", "karras", "--shift", "2"], capsys)
    _one_line_error(status, err, "--shift applies to the flow grids")
    status, _, err = _run([*sample, "--schedule", "nope"], capsys)
    _one_line_error(status, err, "--schedule", "flow")
    # a score (EDM) run cannot start from pure noise: the same run relabelled as one
    edm = tmp_path / "edm"
    shutil.copytree(flow_run, edm)
    config = json.loads(_config(edm).read_text())
    del config["objective"], config["flow"]
    _config(edm).write_text(json.dumps(config))
    status, _, err = _run([*sample[:2], str(edm), *sample[3:], "--schedule", "flow"], capsys)
    _one_line_error(status, err, "--schedule flow", "needs a flow model")
    # argparse's own errors name the option
    with pytest.raises(SystemExit) as info:
        main([*train, "--objective", "flow", "--coupling", "greedy"])
    assert info.value.code == 2 and "argument --coupling" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main([*sample, "--shift", "0"])
    assert info.value.code == 2 and "argument --shift" in capsys.readouterr().err
