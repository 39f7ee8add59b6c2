"""Flow matching: the loss against a hand computation, its minimiser (the exact velocity of a
mixture), the logit-normal times, the minibatch OT couplings against brute force, and a short
class-conditional flow run whose samples land on the data."""

import itertools
import sys

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.stats

import jaxdiff as jd
import jaxdiff.train as jt
from jaxdiff.train import flow_matching_loss, ot_pairing

FLOWS = [jd.RectifiedFlow(), jd.TrigFlow()]


def per_sample(velocity):
    """A velocity `v(x, t)` of one time for the whole batch, called with one time per sample."""
    return lambda x, t: jax.vmap(lambda xi, ti: velocity(xi[None], ti)[0])(x, t)


@pytest.mark.parametrize("time_sampling", ["uniform", "logit_normal"])
@pytest.mark.parametrize("flow", FLOWS, ids=["rectified", "trig"])
def test_loss_is_the_hand_computation(flow, time_sampling):
    x0 = jr.normal(jr.key(0), (6, 3))
    a, b = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.1, 0.2, -0.3])
    seen = {}

    def velocity(x, t, labels=None):
        seen["labels"] = labels
        return x * a + t[:, None] * b

    key = jr.key(7)
    labels = jnp.arange(6)
    loss = flow_matching_loss(
        velocity, x0, flow, key=key, time_sampling=time_sampling, labels=labels, logit_std=0.5
    )
    assert seen["labels"] is labels and loss.shape == () and loss.dtype == jnp.float32
    # by hand, in float64 from the same draws
    k_t, k_noise, _ = jr.split(key, 3)
    if time_sampling == "uniform":
        t = np.asarray(jr.uniform(k_t, (6,)), np.float64)
    else:
        t = 1 / (1 + np.exp(-0.5 * np.asarray(jr.normal(k_t, (6,)), np.float64)))
    eps = np.asarray(jr.normal(k_noise, (6, 3)), np.float64)
    x = np.asarray(x0, np.float64)
    if isinstance(flow, jd.RectifiedFlow):
        alpha, beta, d_alpha, d_beta = 1 - t, t, -np.ones(6), np.ones(6)
    else:
        h = np.pi / 2
        alpha, beta = np.cos(h * t), np.sin(h * t)
        d_alpha, d_beta = -h * np.sin(h * t), h * np.cos(h * t)
    x_t = alpha[:, None] * x + beta[:, None] * eps
    target = d_alpha[:, None] * x + d_beta[:, None] * eps
    out = x_t * np.asarray(a) + t[:, None] * np.asarray(b)
    expected = np.mean((out - target) ** 2)
    np.testing.assert_allclose(float(loss), expected, rtol=2e-5)


@pytest.mark.parametrize("flow", FLOWS, ids=["rectified", "trig"])
def test_the_exact_velocity_minimises_the_loss(flow, x64):
    # the loss is quadratic in a perturbation d h of the field: L(d) = L(0) + 2 d B + d^2 C,
    # minimised at d* = -B / C; B is the mean of (v - target) . h, zero in expectation only
    # for the exact marginal velocity (float64: B / C from three losses cancels digits)
    gm = jd.analytic.ring()
    x0, key = gm.sample(jr.key(0), 65536).astype(jnp.float64), jr.key(1)
    exact = per_sample(gm.process_velocity(flow))

    def h(x, t):
        return 0.3 + 0.5 * x * t[:, None]

    def best_shift(velocity):
        @jax.jit
        def losses():
            return jnp.stack(
                [
                    flow_matching_loss(
                        lambda x, t, d=d: velocity(x, t) + d * h(x, t), x0, flow, key=key
                    )
                    for d in (-1.0, 0.0, 1.0)
                ]
            )

        loss = np.asarray(losses(), np.float64)
        return -(loss[2] - loss[0]) / (2 * (loss[2] + loss[0] - 2 * loss[1]))

    assert abs(best_shift(exact)) < 0.04
    # the test can tell: a wrong field (shifted by -0.1 h) is found 0.1 away from the optimum
    assert abs(best_shift(lambda x, t: exact(x, t) - 0.1 * h(x, t)) - 0.1) < 0.04


def test_time_distributions():
    seen = []

    def velocity(x, t):
        seen.append(np.asarray(t))
        return x

    x0 = jnp.zeros((4000, 1))
    flow = jd.RectifiedFlow()
    flow_matching_loss(velocity, x0, flow, key=jr.key(0))
    assert scipy.stats.kstest(seen[-1], "uniform").pvalue > 1e-3
    flow_matching_loss(
        velocity,
        x0,
        flow,
        key=jr.key(1),
        time_sampling="logit_normal",
        logit_mean=0.5,
        logit_std=0.7,
    )
    t = seen[-1]
    assert np.all((t > 0) & (t < 1))
    assert scipy.stats.kstest(np.log(t / (1 - t)), "norm", args=(0.5, 0.7)).pvalue > 1e-3


def _cost(x, noise, pairs):
    return float(np.sum((np.asarray(x) - np.asarray(noise)[np.asarray(pairs)]) ** 2))


def test_exact_pairing_is_the_optimal_permutation():
    x0, noise = jr.normal(jr.key(0), (7, 3)), jr.normal(jr.key(1), (7, 3))
    pairs = jax.jit(lambda a, b: ot_pairing(a, b, method="exact"))(x0, noise)
    assert pairs.dtype == jnp.int32 and sorted(np.asarray(pairs).tolist()) == list(range(7))
    # brute force over all 5040 permutations
    costs = np.sum((np.asarray(x0)[:, None] - np.asarray(noise)[None]) ** 2, axis=-1)
    perms = np.array(list(itertools.permutations(range(7))))
    totals = costs[np.arange(7), perms].sum(axis=1)
    assert _cost(x0, noise, pairs) == pytest.approx(totals.min(), rel=1e-5)
    # with labels, only within equal labels, and optimal among those permutations
    labels = np.array([0, 1, 0, 1, 2, 0, 1])
    pairs = np.asarray(ot_pairing(x0, noise, labels=jnp.asarray(labels)))
    assert np.array_equal(labels[pairs], labels)
    within = np.all(labels[perms] == labels, axis=1)
    assert _cost(x0, noise, pairs) == pytest.approx(totals[within].min(), rel=1e-5)


def test_sinkhorn_pairing_lowers_the_cost():
    # with a zero field the rectified-flow loss is the mean squared distance of the pairs
    # (the target eps - x0 does not depend on t): the cost of the coupling per element
    x0 = jd.analytic.ring().sample(jr.key(0), 128)
    labels = jnp.arange(128) % 4  # pairs within labels

    def loss(w, coupling):
        return flow_matching_loss(
            lambda x, t, labels: x * w,
            x0,
            jd.RectifiedFlow(),
            key=jr.key(3),
            coupling=coupling,
            labels=labels,
        )

    independent = float(loss(0.0, None))
    exact = float(loss(0.0, "exact"))
    # compiled with its gradient, as in the train step
    sinkhorn, grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)(0.0, "sinkhorn")
    assert exact <= float(sinkhorn) < 0.6 * independent
    assert np.isfinite(grad)


def test_bad_arguments_and_a_missing_ott(monkeypatch):
    x0, key, flow = jnp.ones((4, 2)), jr.key(0), jd.RectifiedFlow()

    def v(x, t):
        return x

    with pytest.raises(TypeError, match="flow"):
        flow_matching_loss(v, x0, jd.VP(), key=key)
    with pytest.raises(TypeError, match="velocity"):
        flow_matching_loss(None, x0, flow, key=key)
    with pytest.raises(TypeError, match="key"):
        flow_matching_loss(v, x0, flow, key=None)
    with pytest.raises(ValueError, match="time_sampling"):
        flow_matching_loss(v, x0, flow, key=key, time_sampling="beta")
    with pytest.raises(ValueError, match="coupling"):
        flow_matching_loss(v, x0, flow, key=key, coupling="greedy")
    with pytest.raises(ValueError, match="logit_std"):
        flow_matching_loss(v, x0, flow, key=key, logit_std=0.0)
    with pytest.raises(ValueError, match="labels"):
        flow_matching_loss(v, x0, flow, key=key, labels=jnp.arange(3))
    with pytest.raises(ValueError, match="shaped like x"):
        flow_matching_loss(lambda x, t: x[:, :1], x0, flow, key=key)
    with pytest.raises(ValueError, match="same shape"):
        ot_pairing(x0, jnp.ones((3, 2)))
    with pytest.raises(TypeError, match="key"):
        ot_pairing(x0, x0, method="sinkhorn")
    for name in ("ott.geometry.geometry", "ott.problems.linear.linear_problem"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"jaxdiff\[ot\]"):
        flow_matching_loss(v, x0, flow, key=key, coupling="sinkhorn")


# ------------------------------------------------------------------ a short training run


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    """A class-conditional rectified flow on the 8-mode ring (label = mode), label dropout,
    exact OT coupling within labels: 400 steps of a small MLP."""
    gm = jd.analytic.ring(8, jt._data.RING_RADIUS, jt._data.RING_STD)
    x = gm.sample(jr.key(0), 4096).astype(jnp.float32)
    means = np.asarray(gm.means)
    labels = np.argmin(np.linalg.norm(np.asarray(x)[:, None] - means[None], axis=-1), axis=1)
    dataset = jt.Dataset(jnp.asarray(x), jnp.asarray(labels, jnp.int32), "ring", "vectors")
    config = {
        "shape": [2],
        "sigma_data": jt.data_sigma(x),
        "network": jt.network_config("vectors", (2,), num_classes=8, width=64) | {"depth": 2},
        "label_dropout": 0.3,
        "objective": "flow",
        "flow": jt.flow_config("rectified", coupling="exact"),
    }
    steps = 400
    result = jt.fit(
        jt.build_network(config["network"]),
        dataset,
        jt.training_loss_fn(config),
        steps=steps,
        batch_size=128,
        out_dir=tmp_path_factory.mktemp("flow"),
        optimizer=jt.adamw(3e-3, warmup_steps=20, total_steps=steps),
        key=jr.key(0),
        log_every=50,
        config=config,
    )
    return result, config, means


def _near(x, means):
    """The index of the nearest mode of each sample, and whether it lies within 0.35."""
    d = np.linalg.norm(np.asarray(x)[:, None] - means[None], axis=-1)
    return np.argmin(d, axis=1), np.min(d, axis=1) < 0.35


def test_flow_training_lowers_the_loss_and_samples_land_on_the_data(ring_run):
    result, config, means = ring_run
    assert np.mean(result.losses[-50:]) < 0.5 * np.mean(result.losses[:50])
    sigmas = jd.schedules.flow(10)
    x = jt.draw_samples(
        result.ema_model, config, solver="euler", sigmas=sigmas, num=800, key=jr.key(1)
    )
    mode, near = _near(x, means)
    # unconditional (the null label): on every mode (N(0, I) puts 0.18 within 0.35 of a mode,
    # the exact velocity on this grid 0.98; this short run about 0.6)
    assert near.mean() > 0.45 and len(set(mode[near].tolist())) == 8
    # class-conditional with classifier-free guidance: class 3 lands on mode 3
    x = jt.draw_samples(
        result.ema_model,
        config,
        solver="heun",
        sigmas=sigmas,
        num=400,
        key=jr.key(2),
        labels=np.full(400, 3),
        guidance=2.0,
    )
    mode, near = _near(x, means)
    assert np.mean(near & (mode == 3)) > 0.9


def test_a_flow_run_loads_as_a_flow_denoiser(ring_run):
    result = ring_run[0]
    network, stored = jt.load_model(result.out_dir, lambda c: jt.build_network(c["network"]))
    assert jt.objective_of(stored) == "flow" and isinstance(jt.flow_of(stored), jd.RectifiedFlow)
    assert jt.objective_of({}) == "edm"  # configs written before flows
    d = jt.sampling_denoiser(network, stored, labels=np.zeros(5, np.int32))
    x = jr.normal(jr.key(0), (5, 2))
    # at sigma = inf the denoiser of a flow is finite (the velocity at t = 1)
    assert bool(jnp.all(jnp.isfinite(d(x, jnp.inf))))
    # D = x_t - t v for the rectified flow (x_t = x / (1 + sigma) at t = sigma / (1 + sigma))
    v = jt.FlowVelocity(network, jd.RectifiedFlow(), float(stored["sigma_data"]))
    t = 0.4
    x_t = (1 - t) * x
    expected = x_t - t * v(x_t, jnp.float32(t), labels=jnp.zeros(5, jnp.int32))
    np.testing.assert_allclose(d(x, jnp.float32(t / (1 - t))), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(jt.RecipeError, match="objective"):
        jt.objective_of({"objective": "gan"})
