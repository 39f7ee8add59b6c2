"""`jaxdiff bridge-train` / `bridge-sample` end to end on tiny runs, the paired datasets, the
digit degradation, and bad input."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdiff import nn as jnn, train as jt
from jaxdiff.cli import main
from jaxdiff.train._data import RING_RADIUS


def _run(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _listing(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _one_line_error(status, err, *needles):
    assert status == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxdiff bridge-")
    for needle in needles:
        assert needle in lines[0], lines[0]


# --------------------------------------------------------------------------- library pieces


def test_degrade_digits_is_seeded_blur_plus_noise():
    images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (5, 8, 8, 1)), jnp.float32)
    a = jt.degrade_digits(images, jax.random.key(1))
    b = jt.degrade_digits(images, jax.random.key(1))
    c = jt.degrade_digits(images, jax.random.key(2))
    assert a.shape == images.shape and a.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    clean = np.asarray(jt.degrade_digits(images, jax.random.key(1), noise=0.0))
    # constant on 2x2 blocks, equal to the block means
    blocks = np.asarray(images).reshape(5, 4, 2, 4, 2, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(clean[:, ::2, ::2], blocks, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(clean[:, 1::2, 1::2], clean[:, ::2, ::2])
    noise = np.asarray(a) - clean
    assert 0.07 < noise.std() < 0.13
    with pytest.raises(ValueError, match="divisible"):
        jt.degrade_digits(images[:, :7, :7], jax.random.key(0))


def test_pair_datasets():
    pairs = jt.pair_dataset("moons-to-ring", key=jax.random.key(0), n=500)
    assert pairs.x.shape == pairs.cond.shape == (500, 2) and pairs.labels is None
    # x_0 is moons, x_T the ring (whose points lie near radius RING_RADIUS)
    radius = np.linalg.norm(np.asarray(pairs.cond), axis=1)
    assert abs(np.median(radius) - RING_RADIUS) < 0.1
    # the angle coupling pairs the clouds in order of polar angle
    angle = lambda x: np.arctan2(x[:, 1], x[:, 0])
    order = np.argsort(angle(np.asarray(pairs.x)))
    assert np.all(np.diff(angle(np.asarray(pairs.cond))[order]) >= 0)
    indep = jt.pair_dataset("moons-to-ring", key=jax.random.key(0), n=500, coupling="independent")
    assert abs(np.corrcoef(angle(np.asarray(indep.x)), angle(np.asarray(indep.cond)))[0, 1]) < 0.2
    # the batch loader carries the pairs together
    batch = jt.batch_at(pairs, 3, 64, jax.random.key(1))
    assert set(batch) == {"x", "cond"}
    rows = {tuple(r) for r in np.asarray(jnp.concatenate([pairs.x, pairs.cond], 1))}
    assert all(
        tuple(r) in rows for r in np.asarray(jnp.concatenate([batch["x"], batch["cond"]], 1))
    )

    train = jt.pair_dataset("digits-restore", key=jax.random.key(0), part="train")
    test = jt.pair_dataset("digits-restore", key=jax.random.key(0), part="test")
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    assert train.cond.shape == train.x.shape == (len(train), 8, 8, 1)
    assert test.labels is not None and set(np.asarray(test.labels)) == set(range(10))
    held_x = {a.tobytes() for a in np.asarray(test.x)}
    assert not any(a.tobytes() in held_x for a in np.asarray(train.x))
    # a split keeps the pairs together
    _, part = jt.split(test, 0.5, jax.random.key(3))
    np.testing.assert_allclose(
        np.mean((np.asarray(part.cond) - np.asarray(part.x)) ** 2),
        np.mean((np.asarray(test.cond) - np.asarray(test.x)) ** 2),
        rtol=0.2,
    )
    for bad in ("moons-to-moons", "mnist", "ring-to-mnist"):
        with pytest.raises(ValueError, match="unknown pairing"):
            jt.pair_dataset(bad)


def test_concat_conditioned_networks():
    mlp = jnn.ConcatConditioned(jnn.MLP(2, in_dim=4, hidden=16, depth=1, rngs=nnx.Rngs(0)))
    x = jnp.ones((3, 2))
    assert mlp(x, jnp.zeros(3), 2 * x).shape == (3, 2)
    unet = jnn.ConcatConditioned(
        jnn.UNet(
            4,
            2,
            out_channels=1,
            channels=4,
            channel_mults=(1,),
            num_res_blocks=1,
            attention_resolutions=(),
            rngs=nnx.Rngs(0),
        )
    )
    img = jnp.ones((2, 4, 4, 1))
    # jitted: op-by-op dispatch of a U-Net costs more than compiling it
    out = jax.jit(lambda net, x, x_T: net(x, jnp.zeros(2), x_T))(unet, img, img)
    assert out.shape == (2, 4, 4, 1)
    with pytest.raises(ValueError, match="shape of x"):
        mlp(x, 0.0, jnp.ones((3, 3)))


# ------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
    """A tiny trained 2-D bridge run."""
    out = tmp_path_factory.mktemp("m2r")
    argv = ["bridge-train", "--data", "moons-to-ring", "--bridge", "vp", "--steps", "30"]
    argv += ["--out", str(out), "--quiet", "--width", "16", "--batch-size", "64"]
    assert main([*argv, "--ckpt-every", "15"]) == 0
    return out


def test_bridge_train_resume_and_sample(pair_run, capsys):
    config = jt.read_config(pair_run)
    assert config["command"] == "bridge-train" and config["bridge"]["kind"] == "vp"
    lines = [json.loads(s) for s in (pair_run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 30 and np.isfinite(lines[-1]["loss"])
    argv = ["bridge-train", "--data", "moons-to-ring", "--bridge", "vp", "--steps", "40"]
    argv += ["--out", str(pair_run), "--quiet", "--width", "16", "--batch-size", "64"]
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    assert "resumed from step 30" in out
    assert jt.latest_step(pair_run) == 40
    # other settings on the same --out: refused, nothing written
    before = _listing(pair_run)
    status, _, err = _run(
        [
            "bridge-train",
            "--data",
            "moons-to-ring",
            "--bridge",
            "ve",
            "--steps",
            "50",
            "--out",
            str(pair_run),
            "--quiet",
            "--width",
            "16",
            "--batch-size",
            "64",
        ],
        capsys,
    )
    _one_line_error(status, err, "other settings", "bridge")
    assert _listing(pair_run) == before

    npy = pair_run.parent / "m2r_dbim.npy"
    status, out, err = _run(
        [
            "bridge-sample",
            "--ckpt",
            str(pair_run),
            "--solver",
            "dbim",
            "--steps",
            "4",
            "--num",
            "200",
            "--out",
            str(npy),
        ],
        capsys,
    )
    assert status == 0, err
    assert "sliced Wasserstein" in out and "floor" in out and "5 NFE" in out
    x = np.load(npy)
    assert x.shape == (200, 2) and np.all(np.isfinite(x))
    assert np.load(npy.with_suffix(".x_T.npy")).shape == (200, 2)
    png = pair_run.parent / "m2r_ddbm.png"
    status, out, err = _run(
        [
            "bridge-sample",
            "--ckpt",
            str(pair_run),
            "--solver",
            "ddbm",
            "--steps",
            "3",
            "--churn",
            "0.5",
            "--num",
            "100",
            "--out",
            str(png),
        ],
        capsys,
    )
    assert status == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bridge_sample_bad_options(pair_run, tmp_path, capsys):
    base = ["bridge-sample", "--ckpt", str(pair_run), "--num", "10"]
    cases = [
        (["--solver", "heun"], ("heun", "dbim")),
        (["--solver", "ddbm", "--eta", "0.5"], ("--eta",)),
        (["--solver", "dbim", "--churn", "0.5"], ("--churn",)),
        (["--solver", "dbim", "--order", "2", "--eta", "0.5"], ("eta",)),
        (["--solver", "ddbm", "--churn", "1.5"], ("churn",)),
    ]
    for extra, needles in cases:
        status, _, err = _run(base + extra + ["--out", str(tmp_path / "s.npy")], capsys)
        _one_line_error(status, err, *needles)
    status, _, err = _run([*base, "--out", str(tmp_path / "s.txt")], capsys)
    _one_line_error(status, err, "--out")
    assert _listing(tmp_path) == []


def test_bridge_train_bad_input(tmp_path, capsys):
    out = tmp_path / "run"
    for argv, needles in [
        (["--data", "moons-to-moons"], ("moons-to-moons", "digits-restore")),
        (["--data", "ring"], ("unknown pairing",)),
        (["--data", "moons-to-ring", "--bridge", "vs"], ("--bridge", "vs")),
        (["--data", "moons-to-ring", "--coupling", "optimal"], ("--coupling",)),
    ]:
        status, _, err = _run(["bridge-train", *argv, "--steps", "2", "--out", str(out)], capsys)
        _one_line_error(status, err, *needles)
    assert not out.exists()


def test_bridge_sample_missing_or_corrupt_checkpoint(pair_run, tmp_path, capsys):
    target = tmp_path / "s.png"
    status, _, err = _run(
        ["bridge-sample", "--ckpt", str(tmp_path / "nothing"), "--out", str(target)], capsys
    )
    _one_line_error(status, err, "--ckpt")
    # corrupt runs: copies whose weights' metadata or stored config is garbage

    for part, garbage in (("model/_METADATA", "garbage"), ("config/metadata", "{not json")):
        broken = tmp_path / "broken"
        shutil.rmtree(broken, ignore_errors=True)
        shutil.copytree(pair_run, broken)
        for path in broken.glob(f"checkpoints/*/{part}"):
            path.write_text(garbage)
        status, _, err = _run(
            ["bridge-sample", "--ckpt", str(broken), "--out", str(target)], capsys
        )
        _one_line_error(status, err, "--ckpt", "corrupt")
    # a run of another command
    other = tmp_path / "plain"
    assert main(["train", "--data", "ring", "--steps", "2", "--out", str(other), "--quiet"]) == 0
    capsys.readouterr()
    status, _, err = _run(["bridge-sample", "--ckpt", str(other), "--out", str(target)], capsys)
    _one_line_error(status, err, "not a 'jaxdiff bridge-train' run")
    assert not target.exists()


@pytest.mark.slow
def test_digits_restore_end_to_end(tmp_path, capsys):
    out = tmp_path / "restore"
    argv = ["bridge-train", "--data", "digits-restore", "--steps", "3", "--out", str(out)]
    status, _, err = _run([*argv, "--quiet", "--width", "8", "--batch-size", "16"], capsys)
    assert status == 0, err
    png = tmp_path / "restore.png"
    status, text, err = _run(
        ["bridge-sample", "--ckpt", str(out), "--steps", "2", "--num", "20", "--out", str(png)],
        capsys,
    )
    assert status == 0, err
    assert "MSE to the clean digits" in text and "degraded input" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
