"""`jaxdiff restore` end to end on a tiny digits run, and its bad input."""

import numpy as np
import pytest

from jaxdiff.cli import main
from jaxdiff.cli._restore import plot_rows, psnr


def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _one_line_error(status, err, *needles):
    assert status == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], err


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A digits prior trained for 3 steps on the digits without the held-out fifth."""
    out = tmp_path_factory.mktemp("digits")
    argv = ["train", "--data", "digits-train", "--steps", "3", "--out", str(out), "--quiet"]
    assert main([*argv, "--width", "8", "--batch-size", "16"]) == 0
    return out


@pytest.mark.slow
def test_restore_writes_degraded_samples_truth_and_psnr(digits_run, tmp_path, capsys):
    npy = tmp_path / "r.npy"
    argv = ["restore", "--ckpt", str(digits_run), "--task", "inpaint", "--method", "repaint"]
    argv += ["--steps", "3", "--num", "3", "--samples", "2", "--out", str(npy)]
    status, text, err = _run(argv, capsys)
    assert status == 0, err
    samples = np.load(npy)
    degraded, truth = np.load(tmp_path / "r.degraded.npy"), np.load(tmp_path / "r.truth.npy")
    assert samples.shape == (3, 2, 8, 8, 1) and truth.shape == degraded.shape == (3, 8, 8, 1)
    # inpainting the lower half, noise-free: RePaint keeps the observed upper half exactly
    np.testing.assert_allclose(samples[:, :, :4], np.repeat(truth[:, None, :4], 2, 1), atol=1e-6)
    np.testing.assert_array_equal(degraded[:, 4:], 0.0)
    mean_psnr = psnr(samples.mean(1), truth)
    assert f"their mean {mean_psnr:.2f} dB" in text and "degraded input" in text
    assert "3 held-out digits x 2 samples with repaint (3 steps," in text


def test_plot_rows_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.uniform(-1, 1, (3, 8, 8, 1))
    png = tmp_path / "rows.png"
    plot_rows(png, truth * 0.5, rng.uniform(-1, 1, (3, 4, 8, 8, 1)), truth, title="a\nb")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_psnr():
    truth = np.zeros((2, 8, 8, 1))
    assert psnr(truth + 0.2, truth) == pytest.approx(10 * np.log10(4 / 0.04))


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--method", "pigdm", "--zeta", "2"], ("--zeta", "dps")),
        (["--method", "dps", "--particles", "4"], ("--particles", "smc")),
        (["--method", "repaint", "--task", "superres"], ("repaint", "inpaint")),
        (["--method", "repaint", "--task", "denoise"], ("repaint", "--task inpaint")),
        (["--method", "dps", "--out", "x.txt"], ("--out", ".png")),
    ],
)
def test_restore_bad_input(extra, needles, tmp_path, capsys):
    argv = ["restore", "--ckpt", str(tmp_path), "--task", "inpaint", "--out"]
    argv += [str(tmp_path / "r.png"), "--method", "dps"]
    status, _, err = _run([*argv, *extra], capsys)
    _one_line_error(status, err, *needles)


def test_restore_needs_a_run(tmp_path, capsys):
    argv = ["restore", "--ckpt", str(tmp_path / "none"), "--task", "denoise", "--method", "smc"]
    status, _, err = _run([*argv, "--out", str(tmp_path / "r.png")], capsys)
    _one_line_error(status, err, "--ckpt")
