"""Training that survives faults (`jaxdiff.train.fit` and ``jaxdiff train``): signals during a
checkpoint save, a full or read-only disk, non-finite losses, unreadable checkpoints, and the
one-line errors of the command line.

The faults are real: signals are sent to a process while it is inside a save (the save is held
open by a shim that waits before writing, so the test is not a race), full disks are small
tmpfs mounts (when the tests run as root, as CI does; otherwise the test injects ENOSPC at the
write), read-only directories are read-only mounts.
"""

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxdiff.train as jt
from jaxdiff.cli import main
from jaxdiff.train import _checkpoint

STEPS, BATCH = 8, 16


class TinyNet(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.lin = nnx.Linear(2, 2, rngs=rngs)

    def __call__(self, x):
        return self.lin(x)


def loss(model, batch, key):
    x = batch["x"]
    return jnp.mean((model(x + 0.1 * jax.random.normal(key, x.shape)) - x) ** 2)


OPTIMIZER = jt.adamw(1e-2, warmup_steps=0, total_steps=STEPS)


@pytest.fixture(scope="module")
def moons():
    return jt.load_dataset("moons", key=jax.random.key(0), n=64)


def fit(out_dir, dataset, **kwargs):
    options = dict(
        steps=STEPS,
        batch_size=BATCH,
        out_dir=out_dir,
        optimizer=OPTIMIZER,
        ckpt_every=4,
        log_every=2,
        key=jax.random.key(0),
        config={"net": "tiny"},
    )
    return jt.fit(TinyNet(rngs=nnx.Rngs(0)), dataset, loss, **(options | kwargs))


def _tree_equal(a, b):
    return jax.tree.all(jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), a, b))


def _leftovers(out_dir):
    """Temporary or half-written files in a run directory."""
    return [p.name for p in (out_dir / "checkpoints").glob("*") if "tmp" in p.name]


@contextlib.contextmanager
def _tmpfs(path, options):
    """A tmpfs mounted at `path` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ---------------------------------------------------------------- signals (in process)


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGINT, signal.SIGINT]])
def test_ctrl_c_during_a_save_completes_it_and_stops(tmp_path, moons, monkeypatch, signals):
    """One or two Ctrl-C arriving while a checkpoint is being written: the save completes,
    the loop stops at that step with TrainingInterrupted, and a resume is exact."""
    real_save = _checkpoint.Checkpointer.save

    def interrupted_save(self, state, config=None):
        if int(state.step) == 4:
            for signum in signals:
                os.kill(os.getpid(), signum)  # delivered to the handler before the write
        return real_save(self, state, config)

    monkeypatch.setattr(_checkpoint.Checkpointer, "save", interrupted_save)
    # Python's own handler, whatever this worker inherited (a background job ignores SIGINT)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(jt.TrainingInterrupted) as info:
            fit(tmp_path, moons)
        # the handlers are restored: SIGINT is Python's again
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert info.value.signal == signal.SIGINT and info.value.checkpoint == 4
    assert isinstance(info.value, KeyboardInterrupt)
    assert jt.latest_step(tmp_path) == 4 and not _leftovers(tmp_path)
    monkeypatch.undo()
    resumed = fit(tmp_path, moons)
    reference = fit(tmp_path / "reference", moons)
    assert resumed.resumed_from == 4
    assert _tree_equal(resumed.state, reference.state)


def test_sigterm_between_steps_checkpoints_the_step(tmp_path, moons):
    def progress(step, metrics):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(jt.TrainingInterrupted) as info:
        fit(tmp_path, moons, progress=progress)
    assert info.value.signal == signal.SIGTERM and info.value.checkpoint == 2
    assert jt.latest_step(tmp_path) == 2


def test_a_third_signal_forces_the_exit_without_saving(tmp_path, moons, monkeypatch):
    real_save = _checkpoint.Checkpointer.save
    calls = []

    def save(self, state, config=None):
        calls.append(int(state.step))
        if int(state.step) == 4:
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGINT)
        return real_save(self, state, config)

    monkeypatch.setattr(_checkpoint.Checkpointer, "save", save)
    with pytest.raises(KeyboardInterrupt) as info:
        fit(tmp_path, moons)
    assert not isinstance(info.value, jt.TrainingInterrupted)
    assert calls == [4]  # nothing more was saved after the forced exit
    assert jt.latest_step(tmp_path) is None and not _leftovers(tmp_path)


# ------------------------------------------------------- signals (a real CLI process)

SHIM = textwrap.dedent(
    """
    import pathlib, signal, sys, time
    # as from a terminal: a worker started in the background ignores SIGINT, and a child
    # inherits that (jaxdiff train then keeps ignoring it, as it should)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from jaxdiff.train import _checkpoint
    real = _checkpoint.Checkpointer.save
    def slow_save(self, state, config=None):
        pathlib.Path(sys.argv[1]).write_text(str(int(state.step)))  # "a save is in flight"
        time.sleep(2.0)
        return real(self, state, config)
    _checkpoint.Checkpointer.save = slow_save
    from jaxdiff.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _train_argv(out, steps, *extra):
    return [
        "train",
        "--data",
        "moons",
        "--steps",
        str(steps),
        "--out",
        str(out),
        "--width",
        "8",
        "--batch-size",
        "16",
        "--ckpt-every",
        "4",
        "--quiet",
        *extra,
    ]


@pytest.mark.parametrize(
    "signals, status, word",
    [
        ([signal.SIGINT, signal.SIGINT], 130, "interrupted"),
        ([signal.SIGTERM], 143, "terminated (SIGTERM)"),
    ],
)
def test_cli_signal_during_a_save(tmp_path, signals, status, word, capsys):
    """``jaxdiff train`` receives Ctrl-C twice (or SIGTERM) while its first checkpoint is being
    written: it finishes the save, exits within seconds with one line, and the next run
    resumes from that checkpoint."""
    marker, out = tmp_path / "saving", tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", SHIM, str(marker), *_train_argv(out, 100_000)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint save began"
            time.sleep(0.05)
        for signum in signals:
            process.send_signal(signum)
            time.sleep(0.2)
        sent = time.monotonic()
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert time.monotonic() - sent < 15
    assert process.returncode == status
    assert err.strip().count("\n") == 0, err
    step = int(marker.read_text())
    assert err.startswith(f"jaxdiff train: {word}") and f"checkpoint at step {step}" in err
    assert jt.latest_step(out) == step and not _leftovers(out)
    assert main(_train_argv(out, step + 1)) == 0
    assert f"resumed from step {step}" in capsys.readouterr().out


# --------------------------------------------------------------------- full disks


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, moons, monkeypatch):
    """A save that fails (ENOSPC injected at the write) raises a CheckpointError naming the
    cause, removes what it wrote, and the previous checkpoint stays the newest."""
    real_save = _checkpoint.Checkpointer.save

    def full_at_8(self, state, config=None):
        if int(state.step) == 8:
            directory = _checkpoint._ckpt_dir(self.out_dir) / "8.orbax-checkpoint-tmp-0"
            directory.mkdir()
            (directory / "part").write_bytes(b"half")
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as err:
                self._remove_unfinished(8)
                raise jt.CheckpointError(
                    f"cannot write checkpoint: {_checkpoint._reason(err)}"
                ) from err
        return real_save(self, state, config)

    monkeypatch.setattr(_checkpoint.Checkpointer, "save", full_at_8)
    with pytest.raises(jt.CheckpointError, match="No space left on device"):
        fit(tmp_path, moons)
    assert jt.latest_step(tmp_path) == 4 and not _leftovers(tmp_path)


def test_a_full_tmpfs(tmp_path, moons, capsys):
    """A real full file system: the library raises a CheckpointError and leaves nothing
    half-written; the command line says so in one line and exits 2."""
    with _tmpfs(tmp_path / "disk", "size=96k") as disk:
        with pytest.raises(jt.CheckpointError, match="No space left on device"):
            fit(disk / "run", moons)
        assert not _leftovers(disk / "run")
        shutil.rmtree(disk / "run")
        status = main(_train_argv(disk / "cli", 4))
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1, err
        assert err.startswith("jaxdiff train: error: cannot write checkpoint")
        assert "No space left on device" in err and not _leftovers(disk / "cli")


# ------------------------------------------------------------- read-only directories


def test_read_only_run_directories(tmp_path, capsys):
    finished = tmp_path / "finished"
    assert main(_train_argv(finished, 4)) == 0
    capsys.readouterr()
    with _tmpfs(tmp_path / "ro", "size=8m") as disk:
        shutil.copytree(finished, disk / "finished")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        # a new run there: one line, before any work
        status = main(_train_argv(disk / "new", 4))
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1, err
        assert "cannot write in" in err and "Read-only file system" in err
        # resuming a finished run needs no writing: nothing to do
        status = main(_train_argv(disk / "finished", 4))
        captured = capsys.readouterr()
        assert status == 0 and "nothing to do" in captured.out, captured.err
        # more steps do need writing
        status = main(_train_argv(disk / "finished", 8))
        err = capsys.readouterr().err
        assert status == 2 and "Read-only file system" in err


def test_out_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    status = main(_train_argv(tmp_path / "file" / "run", 4))
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "not a directory" in err, err


# ------------------------------------------------------------------ non-finite losses


@pytest.fixture(scope="module")
def exploding(tmp_path_factory):
    """Data scaled by 1e30: the loss overflows at the first step."""
    path = tmp_path_factory.mktemp("data") / "huge.npy"
    np.save(path, (np.random.default_rng(0).normal(size=(64, 2)) * 1e30).astype(np.float32))
    return jt.load_dataset(str(path)), path


def test_nonfinite_loss_stops_fit_and_is_never_checkpointed(tmp_path, exploding):
    dataset, _ = exploding
    with pytest.raises(jt.NonFiniteLossError, match="not finite at step 1") as info:
        fit(tmp_path / "stop", dataset)
    assert info.value.step == 1 and info.value.checkpoint is None
    assert jt.latest_step(tmp_path / "stop") is None
    done = fit(tmp_path / "continue", dataset, on_nonfinite="continue")
    assert done.step == STEPS and not np.isfinite(done.losses).any()
    assert jt.latest_step(tmp_path / "continue") is None  # no checkpoint of NaN weights


def test_nonfinite_weights_after_a_checkpoint(tmp_path, moons):
    """The weights turn NaN at step 6 (a learning rate that becomes NaN): the run stops at the
    first NaN loss (step 7) with the finite checkpoint of step 4 the newest; a checkpoint due
    at step 6 is refused rather than written with NaN weights."""
    nan_from_step_6 = optax.inject_hyperparams(optax.sgd)(
        learning_rate=lambda count: jnp.where(count >= 5, jnp.nan, 1e-2)
    )
    with pytest.raises(jt.NonFiniteLossError) as info:
        fit(tmp_path / "a", moons, optimizer=nan_from_step_6)
    assert (info.value.step, info.value.checkpoint) == (7, 4)
    assert jt.latest_step(tmp_path / "a") == 4
    with pytest.raises(jt.NonFiniteLossError, match="weights is not finite at step 6"):
        fit(tmp_path / "b", moons, optimizer=nan_from_step_6, ckpt_every=6, log_every=4)
    assert jt.latest_step(tmp_path / "b") is None


def test_cli_nonfinite_loss_is_one_line(tmp_path, exploding, capsys):
    _, path = exploding
    argv = [
        "train",
        "--data",
        str(path),
        "--steps",
        "4",
        "--out",
        str(tmp_path / "run"),
        "--width",
        "8",
        "--batch-size",
        "16",
    ]
    status = main(argv)  # with the progress bar on: it must not crash on a NaN loss
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert "not finite at step 1" in err and "--on-nonfinite continue" in err
    assert main([*argv, "--on-nonfinite", "continue", "--quiet"]) == 0
    assert "final loss nan; no checkpoint" in capsys.readouterr().out


# --------------------------------------------------------------- unreadable checkpoints


def test_cli_resumes_past_a_corrupt_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_argv(out, 8)) == 0
    for path in (out / "checkpoints" / "8").rglob("*"):
        if path.is_file() and path.parent.name != "config":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    capsys.readouterr()
    assert main(_train_argv(out, 8)) == 0
    captured = capsys.readouterr()
    assert "skipped the unreadable checkpoint of step 8" in captured.out
    assert "resumed from step 4" in captured.out and "8.corrupt" in captured.out
    assert jt.latest_step(out) == 8 and (out / "checkpoints" / "8.corrupt").is_dir()


# ------------------------------------------------------------------- one-line errors


def test_cli_training_options_are_checked(tmp_path, capsys):
    status = main([*_train_argv(tmp_path / "w", 4), "--warmup", "10"])
    err = capsys.readouterr().err
    assert status == 2 and err == "jaxdiff train: error: --warmup 10 exceeds --steps 4\n"
    # a resumed run keeps its width when --width is not repeated, and names it when it differs
    out = tmp_path / "width"
    argv = [a for a in _train_argv(out, 2) if a not in ("--width", "8")]
    assert main([*argv, "--width", "12"]) == 0
    assert main([*argv[:4], "4", *argv[5:]]) == 0
    assert "resumed from step 2" in capsys.readouterr().out
    status = main([*argv[:4], "6", *argv[5:], "--width", "16"])
    err = capsys.readouterr().err
    assert status == 2 and "network.hidden: stored 12, given 16" in err


def test_ignored_signals_stay_ignored():
    """A process that ignores SIGINT (nohup, a background job) keeps ignoring it while the
    loop defers the signals it does handle."""
    from jaxdiff.train._signals import DeferredSignals

    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with DeferredSignals() as deferred:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert deferred.received is None
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited)
