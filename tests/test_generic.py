"""The generic diffrax path: fixed and adaptive solves of the PF-ODE and the reverse SDE,
with the reported number of score evaluations equal to the counted one."""

import jax
import jax.random as jr
import numpy as np
import pytest

import jaxdiff as jd


def counting(score):
    calls = []

    def wrapped(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return score(x, t)

    return wrapped, calls


def loglik(gm, process, x):
    return gm.log_prob(x / process.scale(process.t_min), process.sigma(process.t_min))


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        ("ode", dict(solver="tsit5")),
        ("ode", dict(solver="dopri5", rtol=1e-4, atol=1e-4)),
        ("ode", dict(solver="heun", steps=40)),
        ("sde", dict(steps=150)),
        ("sde", dict(steps=100, solver="spark")),  # stochastic Runge-Kutta: drift stages
        ("sde", dict(steps=100, solver="srk")),  # one stage skips the drift
        ("sde", dict(steps=None, solver="heun", rtol=1e-2, atol=1e-2)),
    ],
)
def test_reported_nfe_is_exact_and_samples_are_right(kind, kwargs):
    gm = jd.analytic.ring()
    vp = jd.VP()
    score, calls = counting(gm.process_score(vp))
    x_T = vp.prior_sample(jr.key(0), (2000, 2))
    if kind == "ode":
        res = jd.sample_ode(score, x_T, vp, **kwargs)
    else:
        res = jd.sample_sde(score, x_T, vp, key=jr.key(1), **kwargs)
    jax.block_until_ready(res.x)
    jax.effects_barrier()
    assert int(res.nfe) == len(calls)
    assert int(res.num_steps) >= 1
    ll = np.asarray(loglik(gm, vp, res.x))
    exact = np.asarray(
        gm.log_prob(gm.sample_noisy(jr.key(2), 20000, vp.sigma(vp.t_min)), vp.sigma(vp.t_min))
    )
    se = np.hypot(ll.std() / np.sqrt(ll.size), exact.std() / np.sqrt(exact.size))
    # fixed coarse steps carry a discretisation bias of a few hundredths of a nat
    assert abs(ll.mean() - exact.mean()) < 4 * se + 0.05


def test_adaptive_tolerance_buys_accuracy():
    gm = jd.analytic.ring()
    ve = jd.VE()
    x_T = ve.prior_sample(jr.key(0), (256, 2))
    score = gm.process_score(ve)
    ref = jd.sample_ode(score, x_T, ve, rtol=1e-8, atol=1e-8, solver="dopri8").x
    loose = jd.sample_ode(score, x_T, ve, rtol=1e-3, atol=1e-3)
    tight = jd.sample_ode(score, x_T, ve, rtol=1e-6, atol=1e-6)
    err = lambda r: float(np.sqrt(np.mean(np.sum((np.asarray(r.x) - np.asarray(ref)) ** 2, -1))))
    assert err(tight) < err(loose)
    assert int(tight.nfe) > int(loose.nfe)


def test_bad_input():
    gm = jd.analytic.ring()
    vp = jd.VP()
    x = vp.prior_sample(jr.key(0), (4, 2))
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        jd.sample_ode(gm.process_score(vp), x, vp, steps=0)
    with pytest.raises(ValueError, match="rtol must be > 0"):
        jd.sample_ode(gm.process_score(vp), x, vp, rtol=-1.0)
    with pytest.raises(ValueError, match="unknown solver"):
        jd.sample_ode(gm.process_score(vp), x, vp, solver="rk99")
    with pytest.raises(TypeError, match="process must be a jaxdiff process"):
        jd.sample_ode(gm.process_score(vp), x, "vp")
    with pytest.raises(TypeError, match="score must be callable"):
        jd.sample_sde(None, x, vp, key=jr.key(0))
    with pytest.raises(TypeError, match="key must be a JAX PRNG key"):
        jd.sample_sde(gm.process_score(vp), x, vp, key=0)


def test_old_argument_order_warns_and_agrees():
    """The old order (score, process, x_T) still works for one release, with a warning."""
    gm = jd.analytic.ring()
    vp = jd.VP()
    x = vp.prior_sample(jr.key(0), (4, 2))
    new = jd.sample_ode(gm.process_score(vp), x, vp, steps=4, solver="heun")
    with pytest.warns(DeprecationWarning, match=r"sample_ode\(score, x_T, process\)"):
        old = jd.sample_ode(gm.process_score(vp), vp, x, steps=4, solver="heun")
    np.testing.assert_array_equal(old.x, new.x)
