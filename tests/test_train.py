"""Training: the train step, EMA, checkpoints, exact resume, data parallelism (jaxdiff.train)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxdiff_test_utils import compiles

import jaxdiff.train as jt
from jaxdiff.train._step import _train_step

STEPS, BATCH = 12, 32


class TinyNet(nnx.Module):
    """A stand-in denoiser network for the generic training machinery."""

    def __init__(self, hidden: int = 16, *, rngs: nnx.Rngs):
        self.inp = nnx.Linear(2, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.inp(x)))


def denoising_loss(model, batch, key):
    x = batch["x"]
    noisy = x + 0.5 * jax.random.normal(key, x.shape)
    return jnp.mean((model(noisy) - x) ** 2)


def tree_equal(a, b):
    return jax.tree.all(jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), a, b))


@pytest.fixture(scope="module")
def moons():
    return jt.load_dataset("moons", key=jax.random.key(0), n=256)


# one optimizer object for all runs, so that they share one compiled step
OPTIMIZER = jt.adamw(1e-2, warmup_steps=2, total_steps=STEPS, weight_decay=1e-4)


def run_fit(out_dir, dataset, **kwargs):
    options = dict(
        steps=STEPS,
        batch_size=BATCH,
        out_dir=out_dir,
        optimizer=OPTIMIZER,
        ckpt_every=4,
        keep=2,
        log_every=4,
        config={"net": "tiny", "hidden": 16},
        key=jax.random.key(0),
    )
    return jt.fit(TinyNet(rngs=nnx.Rngs(0)), dataset, denoising_loss, **(options | kwargs))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, moons):
    """One uninterrupted run of STEPS steps."""
    out = tmp_path_factory.mktemp("reference")
    return run_fit(out, moons)


# ------------------------------------------------------------------------------ step


def test_loss_decreases_and_step_compiles_once(moons):
    model = TinyNet(rngs=nnx.Rngs(0))
    init = jax.tree.map(np.array, nnx.state(model, nnx.Param))
    graphdef, state = jt.init_state(model, OPTIMIZER, seed=0)
    step = jt.make_train_step(graphdef, denoising_loss, OPTIMIZER, ema_decay=0.999)
    get = jax.jit(jt.batch_at, static_argnums=2)
    key = jax.random.key(1)
    state, _ = step(state, get(moons, 0, BATCH, key))  # compiles (unless cached)
    losses = []
    with compiles(_train_step) as new:
        for k in range(1, 3 * STEPS):
            state, metrics = step(state, get(moons, k, BATCH, key))
            losses.append(metrics["loss"])
        # a new step function with equal arguments reuses the compiled program
        step = jt.make_train_step(graphdef, denoising_loss, OPTIMIZER, ema_decay=0.999)
        state, _ = step(state, get(moons, 0, BATCH, key))
    assert new.count == 0, f"the train step recompiled {new.count} times"
    losses = np.asarray(losses)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    assert int(state.step) == 3 * STEPS + 1
    assert set(metrics) == {"loss", "grad_norm", "lr"}
    assert float(metrics["lr"]) == 0.0  # the cosine schedule ended at STEPS
    # the EMA lags the weights but has left the initialization
    assert not tree_equal(state.ema, state.params) and not tree_equal(state.ema, init)
    # the model passed in is untouched (the state holds copies; the step donates them)
    assert tree_equal(jax.tree.map(np.array, nnx.state(model, nnx.Param)), init)


def test_ema_decay_warmup():
    assert float(jt.ema_decay_at(0, 0.999)) == pytest.approx(0.1)
    assert float(jt.ema_decay_at(10**6, 0.999)) == pytest.approx(0.999)
    assert float(jt.ema_decay_at(0, 0.999, warmup=False)) == pytest.approx(0.999)
    new = jt.ema_update({"w": jnp.zeros(2)}, {"w": jnp.ones(2)}, 0.75)
    np.testing.assert_allclose(new["w"], 0.25)


def test_adamw_schedule_and_validation():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    state = OPTIMIZER.init(params)
    lrs = []
    for _ in range(STEPS + 1):
        _, state = _update(params, state)
        lrs.append(float(jt.learning_rate(state)))
    np.testing.assert_allclose(lrs[:3], [0.0, 5e-3, 1e-2], rtol=1e-6)  # warm-up over 2 steps
    assert np.all(np.diff(lrs[2:]) <= 0) and lrs[STEPS] == 0.0  # cosine decay to 0
    with pytest.raises(ValueError, match="warmup_steps"):
        jt.adamw(1e-3, warmup_steps=200, total_steps=100)
    with pytest.raises(ValueError, match="lr"):
        jt.adamw(-1.0, total_steps=100)


@jax.jit
def _update(params, state):
    return OPTIMIZER.update(jax.tree.map(jnp.ones_like, params), state, params)


# ------------------------------------------------------------------------------- fit


def test_fit_writes_checkpoints_metrics_and_config(reference):
    out = reference.out_dir
    assert reference.resumed_from is None and reference.step == STEPS
    assert reference.losses.shape == (STEPS,) and np.all(np.isfinite(reference.losses))
    assert sorted(os.listdir(out / "checkpoints")) == ["12", "8"]  # keep=2
    assert jt.latest_step(out) == STEPS
    assert jt.read_config(out) == {"net": "tiny", "hidden": 16}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [4, 8, 12]
    assert set(lines[0]) == {"step", "loss", "lr", "grad_norm", "steps_per_s", "time"}
    np.testing.assert_allclose(lines[-1]["loss"], np.mean(reference.losses[8:]), rtol=1e-6)


def test_checkpoint_round_trip_is_exact(reference):
    restored = jt.restore(reference.out_dir, reference.state)
    assert jax.tree.structure(restored) == jax.tree.structure(reference.state)
    assert tree_equal(restored, reference.state)
    older = jt.restore(reference.out_dir, reference.state, step=8)
    assert int(older.step) == 8


def test_load_model_gives_the_ema_weights(reference):
    built = []

    def build(config):
        built.append(config)
        return TinyNet(config["hidden"], rngs=nnx.Rngs(123))

    model, config = jt.load_model(reference.out_dir, build)
    assert built == [config] == [{"net": "tiny", "hidden": 16}]
    assert tree_equal(nnx.state(model, nnx.Param), nnx.state(reference.ema_model, nnx.Param))
    raw, _ = jt.load_model(reference.out_dir, build, ema=False)
    assert tree_equal(nnx.state(raw, nnx.Param), reference.state.params)


def test_interrupt_keeps_last_step_and_resume_is_exact(tmp_path, moons, reference):
    """Same seed -> same losses; an interrupted run checkpoints its last completed step, and
    resuming reproduces the uninterrupted run's next losses and final state bit for bit."""
    seen = {}

    def progress(step, metrics):
        seen[step] = metrics["loss"]
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_fit(tmp_path, moons, log_every=1, progress=progress)
    assert jt.latest_step(tmp_path) == 6  # saved on the interrupt (not a multiple of 4)
    np.testing.assert_array_equal(np.float32([seen[k] for k in range(1, 7)]), reference.losses[:6])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]

    resumed = run_fit(tmp_path, moons)
    assert resumed.resumed_from == 6
    np.testing.assert_array_equal(resumed.losses, reference.losses[6:])
    assert tree_equal(resumed.state, reference.state)
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6, 8, 12]

    # already at `steps`: nothing runs, nothing is written
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    done = run_fit(tmp_path, moons)
    assert done.resumed_from == STEPS and done.losses.shape == (0,)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before


# ------------------------------------------------------------------------- bad input


def test_missing_or_empty_run_directory(tmp_path):
    missing = tmp_path / "nope"
    assert jt.latest_step(missing) is None
    for call in (lambda: jt.read_config(missing), lambda: jt.load_model(missing, TinyNet)):
        with pytest.raises(jt.CheckpointError, match="no run directory .*nope"):
            call()
    assert not missing.exists()  # nothing created
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(jt.CheckpointError, match="no checkpoint in .*empty"):
        jt.read_config(tmp_path / "empty")
    assert issubclass(jt.CheckpointError, ValueError)


def _corrupt(step_dir, how):
    files = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name != "config"]
    for path in files:
        if how == "garbage":
            path.write_bytes(b"\x00garbage\xff" * 3)
        elif how == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:
            path.unlink()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("how", ["garbage", "truncated", "deleted"])
def test_corrupt_latest_checkpoint_falls_back_to_the_newest_valid_one(
    tmp_path, moons, reference, how
):
    run = tmp_path / "run"
    shutil.copytree(reference.out_dir, run)
    _corrupt(run / "checkpoints" / str(STEPS), how)
    # asked for explicitly (no fallback), the corrupt checkpoint is a one-line error
    with pytest.raises(jt.CheckpointError, match=f"checkpoint .*run/checkpoints/{STEPS}") as info:
        jt.restore(run, reference.state)
    assert "\n" not in str(info.value) and "tensorstore" not in str(info.value).lower()
    # with fallback, the older intact checkpoint is restored and the skipped one named
    with pytest.warns(jt.CheckpointWarning, match=f"checkpoints/{STEPS}'"):
        assert int(jt.restore(run, reference.state, fallback=True).step) == 8
    assert jt.read_config(run, fallback=True) == {"net": "tiny", "hidden": 16}
    # fit resumes from step 8, sets the corrupt one aside, and redoes steps 9..12 exactly
    done = run_fit(run, moons)
    assert done.resumed_from == 8 and [s for s, _ in done.skipped] == [STEPS]
    assert (run / "checkpoints" / f"{STEPS}.corrupt").is_dir()
    assert jt.latest_step(run) == STEPS
    assert tree_equal(done.state, reference.state)
    assert tree_equal(jt.restore(run, reference.state), reference.state)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_valid_checkpoint_is_a_clear_error_and_nothing_is_overwritten(
    tmp_path, moons, reference
):
    run = tmp_path / "run"
    shutil.copytree(reference.out_dir, run)
    for step in (8, STEPS):
        _corrupt(run / "checkpoints" / str(step), "truncated")
    snapshot = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(jt.CheckpointError, match=f"checkpoints/{STEPS}.*older ones fail too"):
        run_fit(run, moons, steps=2 * STEPS)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == snapshot  # nothing overwritten, nothing added, nothing renamed


# orbax leaves a coroutine un-awaited when a restore fails
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_mismatched_model_is_a_checkpoint_error(reference):
    with pytest.raises(jt.CheckpointError, match="does not match"):
        jt.load_model(reference.out_dir, lambda config: TinyNet(8, rngs=nnx.Rngs(0)))


def test_unfinished_save_does_not_hide_the_last_checkpoint(tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference.out_dir, run)
    tmp = run / "checkpoints" / f"{STEPS + 4}.orbax-checkpoint-tmp-1234567"
    (tmp / "model").mkdir(parents=True)
    (tmp / "model" / "junk").write_bytes(b"half a checkpoint")
    assert jt.latest_step(run) == STEPS
    assert tree_equal(jt.restore(run, reference.state), reference.state)


def test_fit_rejects_bad_arguments(tmp_path, moons):
    out = tmp_path / "run"
    with pytest.raises(TypeError, match="JSON"):
        run_fit(out, moons, config={"f": object()})
    with pytest.raises(ValueError, match="batch_size must be <= the 256"):
        run_fit(out, moons, batch_size=1000)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        run_fit(out, moons, steps=0)
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        run_fit(out, moons, key=0)
    with pytest.raises(TypeError, match="not both"):
        run_fit(out, moons, seed=1)
    assert not out.exists()


# ---------------------------------------------------------------------- data parallel

_DATA_PARALLEL = """
import json
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
import jaxdiff.train as jt
from jaxdiff.train._step import _train_step
from test_train import TinyNet, denoising_loss

assert jax.local_device_count() == 4
data = jt.load_dataset("moons", key=jax.random.key(0), n=256)
tx = jt.adamw(1e-2, warmup_steps=1, total_steps=4)  # one object: one compiled step
get = jax.jit(jt.batch_at, static_argnums=2)
out = {}
for name, devices in [("one", jax.local_devices()[:1]), ("four", None)]:
    mesh = jt.data_mesh(devices)
    graphdef, state = jt.init_state(TinyNet(rngs=nnx.Rngs(0)), tx, mesh=mesh)
    step = jt.make_train_step(graphdef, denoising_loss, tx, mesh=mesh)
    losses = []
    for k in range(4):
        state, metrics = step(state, get(data, k, 32, jax.random.key(1)))
        losses.append(float(metrics["loss"]))
    out[name] = {"losses": losses, "params": [np.asarray(x).tolist() for x in
                 jax.tree.leaves(state.params)], "devices": len(state.params["inp"]["kernel"]
                 .value.sharding.device_set)}
try:
    step(state, get(data, 0, 30, jax.random.key(1)))
except ValueError as err:
    out["error"] = str(err)
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_data_parallel_matches_single_device():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_DATA_PARALLEL)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["one"]["devices"] == 1 and out["four"]["devices"] == 4
    np.testing.assert_allclose(out["four"]["losses"], out["one"]["losses"], rtol=1e-5)
    for a, b in zip(out["four"]["params"], out["one"]["params"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert "divisible by the 4 devices" in out["error"]


class DropoutNet(nnx.Module):
    """A stand-in with RNG state outside nnx.Param (nnx.Dropout's stream)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.inp = nnx.Linear(2, 8, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(jnp.tanh(self.inp(x))))


def test_stateful_layers_train_checkpoint_and_resume(tmp_path, moons):
    def run(steps):
        return jt.fit(
            DropoutNet(rngs=nnx.Rngs(0)),
            moons,
            denoising_loss,
            steps=steps,
            batch_size=BATCH,
            out_dir=tmp_path,
            optimizer=OPTIMIZER,
            log_every=1,
            key=jax.random.key(0),
        )

    first = run(2)
    resumed = run(3)
    assert resumed.resumed_from == 2 and resumed.losses.shape == (1,)
    assert int(resumed.state.extra["drop"]["rngs"]["count"][...]) == 3
    assert resumed.ema_model.drop.deterministic  # returned in eval mode
    assert first.step == 2


def test_fit_old_seed_spelling_warns_and_agrees(tmp_path, moons, reference):
    """`seed=N` is `key=jax.random.key(N)`, deprecated for one release."""
    with pytest.warns(DeprecationWarning, match="seed=N"):
        old = run_fit(tmp_path, moons, key=None, seed=0)
    np.testing.assert_array_equal(old.losses, reference.losses)
