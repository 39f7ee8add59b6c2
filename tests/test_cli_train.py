"""`jaxdiff train` and `jaxdiff sample`: end to end on tiny runs, resume, and bad input."""

import json

import numpy as np
import pytest

from jaxdiff.cli import main


def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _listing(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    """A tiny trained 2-D run (shared by the sampling tests)."""
    out = tmp_path_factory.mktemp("ring")
    assert (
        main(
            [
                "train",
                "--data",
                "ring",
                "--steps",
                "40",
                "--out",
                str(out),
                "--quiet",
                "--ckpt-every",
                "20",
                "--batch-size",
                "64",
            ]
        )
        == 0
    )
    return out


@pytest.mark.slow
def test_train_writes_checkpoints_metrics_and_resumes(ring_run, capsys):
    assert (ring_run / "checkpoints").is_dir()
    lines = [json.loads(s) for s in (ring_run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 40 and np.isfinite(lines[-1]["loss"])
    status, out, _ = _run(
        [
            "train",
            "--data",
            "ring",
            "--steps",
            "50",
            "--out",
            str(ring_run),
            "--quiet",
            "--ckpt-every",
            "20",
            "--batch-size",
            "64",
        ],
        capsys,
    )
    assert status == 0
    assert "resumed from step 40" in out
    lines = [json.loads(s) for s in (ring_run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 50
    # asking for fewer steps than done: nothing to do, nothing written
    before = _listing(ring_run)
    status, out, _ = _run(
        [
            "train",
            "--data",
            "ring",
            "--steps",
            "10",
            "--out",
            str(ring_run),
            "--quiet",
            "--batch-size",
            "64",
        ],
        capsys,
    )
    assert status == 0 and "nothing to do" in out
    assert _listing(ring_run) == before


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(ring_run, capsys):
    before = _listing(ring_run)
    status, _, err = _run(
        ["train", "--data", "moons", "--steps", "80", "--out", str(ring_run), "--quiet"], capsys
    )
    assert status == 2
    assert "other settings" in err and "data" in err
    assert len(err.strip().splitlines()) == 1
    assert _listing(ring_run) == before


@pytest.mark.slow
@pytest.mark.parametrize("solver", ["heun", "dpmpp_2m", "euler_ancestral", "edm", "unipc"])
def test_sample_to_npy(ring_run, tmp_path, capsys, solver):
    out = tmp_path / "s.npy"
    status, text, err = _run(
        [
            "sample",
            "--ckpt",
            str(ring_run),
            "--solver",
            solver,
            "--steps",
            "6",
            "--num",
            "300",
            "--batch",
            "128",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert status == 0, err
    x = np.load(out)
    assert x.shape == (300, 2) and np.all(np.isfinite(x))
    assert solver in text


@pytest.mark.slow
def test_sample_png_scatter(ring_run, tmp_path, capsys):
    out = tmp_path / "s.png"
    status, _, err = _run(
        ["sample", "--ckpt", str(ring_run), "--steps", "5", "--num", "200", "--out", str(out)],
        capsys,
    )
    assert status == 0, err
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_conditional_digits_with_guidance(tmp_path, capsys):
    run = tmp_path / "digits"
    status, _, err = _run(
        [
            "train",
            "--data",
            "digits",
            "--conditional",
            "--steps",
            "3",
            "--batch-size",
            "16",
            "--width",
            "8",
            "--out",
            str(run),
            "--quiet",
        ],
        capsys,
    )
    assert status == 0, err
    config = json.loads(json.dumps(__import__("jaxdiff").train.read_config(run)))
    assert config["network"]["num_classes"] == 10 and config["kind"] == "images"
    png = tmp_path / "g.png"
    status, _, err = _run(
        [
            "sample",
            "--ckpt",
            str(run),
            "--solver",
            "dpmpp_2m",
            "--steps",
            "4",
            "--num",
            "20",
            "--class",
            "3",
            "--guidance",
            "2.0",
            "--out",
            str(png),
        ],
        capsys,
    )
    assert status == 0, err
    assert png.read_bytes().startswith(b"\x89PNG")
    npy = tmp_path / "g.npy"
    status, _, err = _run(
        [
            "sample",
            "--ckpt",
            str(run),
            "--solver",
            "dpmpp_2m",
            "--steps",
            "4",
            "--num",
            "20",
            "--guidance",
            "2.0",
            "--out",
            str(npy),
        ],  # the solver, grid, batch and guidance of the call above: no second compile
        capsys,
    )
    assert status == 0, err
    assert np.load(npy).shape == (20, 8, 8, 1)
    assert list(np.load(tmp_path / "g.labels.npy")) == [i % 10 for i in range(20)]
    status, _, err = _run(
        ["sample", "--ckpt", str(run), "--class", "10", "--out", str(npy)], capsys
    )
    assert status == 2 and "--class 10" in err


# ------------------------------------------------------------------------------ bad input
def _one_line_error(status, err, *needles):
    assert status == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0]


def test_unknown_dataset(tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = _run(["train", "--data", "mnist", "--steps", "5", "--out", str(out)], capsys)
    _one_line_error(status, err, "mnist", "ring", "digits")
    assert not out.exists()


def test_npy_of_wrong_rank(tmp_path, capsys):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((4, 3, 3, 3, 1), np.float32))
    out = tmp_path / "run"
    status, _, err = _run(["train", "--data", str(path), "--steps", "5", "--out", str(out)], capsys)
    _one_line_error(status, err, "bad.npy")
    assert not out.exists()


def test_image_size_the_unet_cannot_downsample(tmp_path, capsys):
    path = tmp_path / "odd.npy"
    np.save(path, np.zeros((32, 7, 7, 1), np.float32))
    out = tmp_path / "run"
    status, _, err = _run(["train", "--data", str(path), "--steps", "5", "--out", str(out)], capsys)
    _one_line_error(status, err, "image_size")
    assert not out.exists()


def test_conditional_without_labels(tmp_path, capsys):
    status, _, err = _run(
        ["train", "--data", "moons", "--conditional", "--steps", "5", "--out", str(tmp_path / "r")],
        capsys,
    )
    _one_line_error(status, err, "--conditional")


def test_sample_missing_checkpoint(tmp_path, capsys):
    status, _, err = _run(
        ["sample", "--ckpt", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s.npy")], capsys
    )
    _one_line_error(status, err, "--ckpt")
    assert not (tmp_path / "s.npy").exists()


def test_sample_corrupt_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints" / "10").mkdir(parents=True)
    (run / "checkpoints" / "10" / "garbage").write_bytes(b"\x00not a checkpoint")
    status, _, err = _run(["sample", "--ckpt", str(run), "--out", str(tmp_path / "s.npy")], capsys)
    _one_line_error(status, err, "--ckpt")
    assert not (tmp_path / "s.npy").exists()


def test_sample_bad_out_and_schedule(tmp_path, capsys):
    status, _, err = _run(
        ["sample", "--ckpt", str(tmp_path), "--out", str(tmp_path / "s.txt")], capsys
    )
    _one_line_error(status, err, "--out")
    status, _, err = _run(
        [
            "sample",
            "--ckpt",
            str(tmp_path),
            "--schedule",
            "linear",
            "--out",
            str(tmp_path / "s.npy"),
        ],
        capsys,
    )
    _one_line_error(status, err, "--schedule")


@pytest.mark.slow
def test_trained_model_runs_through_every_sampler_under_jit(ring_run):
    """The trained network, wrapped as a denoiser, through every sampler of the core inside
    an outer jax.jit (one program per sampler; finite samples near the data's scale)."""
    import jax
    import jax.numpy as jnp

    import jaxdiff as jd
    from jaxdiff.train import build_network, sampling_denoiser

    network, config = jd.train.load_model(ring_run, lambda c: build_network(c["network"]))
    denoiser = sampling_denoiser(network, config)
    sigmas = jd.schedules.karras(6, 0.002, 80.0)
    x = 80.0 * jax.random.normal(jax.random.key(0), (64, 2))

    @jax.jit
    def run(denoiser, x, key, solver):
        return jd.sample(denoiser, x, sigmas, solver=solver, key=key)

    for name, cls in jd.samplers.SAMPLERS.items():
        solver = cls()
        key = jax.random.key(1) if solver.stochastic else None
        out = run(denoiser, x, key, solver)
        assert out.shape == x.shape and out.dtype == x.dtype, name
        assert bool(jnp.all(jnp.isfinite(out))), name
        # data of unit scale; a diverging sampler ends at ~80 (the initial noise) or beyond
        assert float(jnp.max(jnp.abs(out))) < 40.0, name
