"""Training losses: the exact denoiser / score of a Gaussian mixture minimises them, the EDM
loss meets its analytic value for Gaussian data, a tiny Adam run decreases the loss."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from flax import nnx

import jaxdiff as jd
import jaxdiff.parametrizations as P
from jaxdiff.nn import MLP
from jaxdiff.train import cosine_betas, ddpm_loss, dsm_loss, edm_loss, linear_betas

B = 4096


def data(gm, n=B, seed=0):
    return gm.sample(jr.key(seed), n)


def test_edm_loss_is_one_at_the_optimum_for_gaussian_data():
    # one Gaussian of variance sigma_data^2 per element: lambda * MMSE = 1 exactly
    gm = jd.analytic.GaussianMixture(jnp.array([[0.3, -0.2, 1.0]]), jnp.full((1, 3), 0.25))
    x0 = data(gm, 8192)
    losses = jnp.stack([edm_loss(gm.denoiser, x0, key=jr.key(10 + k)) for k in range(4)])
    assert abs(float(jnp.mean(losses)) - 1.0) < 0.03


def test_edm_loss_is_minimised_by_the_exact_denoiser():
    gm = jd.analytic.random_mixture(dim=4, num_components=3)
    x0, key = data(gm), jr.key(1)
    exact = edm_loss(gm.denoiser, x0, key=key)
    for delta in [0.05, -0.05]:
        worse = edm_loss(lambda x, s, d=delta: gm.denoiser(x, s) + d, x0, key=key)
        assert float(worse) > float(exact)
    worse = edm_loss(lambda x, s: gm.denoiser(x, 0.9 * s), x0, key=key)
    assert float(worse) > float(exact)


def test_edm_loss_labels_and_checks():
    calls = {}

    def den(x, sigma, labels=None):
        calls["sigma"], calls["labels"] = sigma.shape, labels
        return x

    x0 = jnp.ones((5, 2, 2, 1))
    out = edm_loss(den, x0, key=jr.key(0), labels=jnp.arange(5))
    assert out.shape == () and out.dtype == jnp.float32 and calls["sigma"] == (5,)
    assert calls["labels"].shape == (5,)
    edm_loss(lambda x, s: x, x0, key=jr.key(0))  # no labels: no labels keyword
    with pytest.raises(ValueError, match="labels"):
        edm_loss(den, x0, key=jr.key(0), labels=jnp.arange(4))
    with pytest.raises(ValueError, match="x0"):
        edm_loss(den, jnp.ones(5), key=jr.key(0))
    with pytest.raises(ValueError, match="shaped like x"):
        edm_loss(lambda x, s: x[:, 0], x0, key=jr.key(0))
    with pytest.raises(TypeError, match="denoiser"):
        edm_loss(None, x0, key=jr.key(0))


def test_losses_keep_float64(x64):
    x0 = jnp.ones((4, 2), jnp.float64)
    assert edm_loss(lambda x, s: x, x0, key=jr.key(0)).dtype == jnp.float64
    assert dsm_loss(lambda x, t: -x, x0, jd.VP(), key=jr.key(0)).dtype == jnp.float64
    assert ddpm_loss(lambda x, n: x, x0, key=jr.key(0), betas=linear_betas(10)).dtype == jnp.float64


@pytest.mark.parametrize(
    "process", [jd.VP(), jd.SubVP(), jd.VE(), jd.EDM()], ids=lambda p: type(p).__name__
)
@pytest.mark.parametrize("weighting", ["likelihood", "sigma2", "none"])
def test_dsm_loss_is_minimised_by_the_exact_score(process, weighting):
    gm = jd.analytic.random_mixture(dim=2, num_components=4)
    x0, key = data(gm), jr.key(2)
    score = gm.process_score(process)

    def perturbed(x, t):
        # a shift of the predicted noise by 0.3 in every element: same scale as the target
        std = process.scale(t) * process.sigma(t)
        return score(x, t) + 0.3 / std[:, None]

    kw = dict(weighting=weighting, t_eps=1e-2 * float(process.t_max))
    exact = dsm_loss(score, x0, process, key=key, **kw)
    worse = dsm_loss(perturbed, x0, process, key=key, **kw)
    assert jnp.isfinite(exact) and float(worse) > float(exact)


def test_dsm_loss_checks():
    x0 = jnp.ones((4, 2))
    with pytest.raises(ValueError, match="weighting"):
        dsm_loss(lambda x, t: x, x0, jd.VP(), key=jr.key(0), weighting="sigma")
    with pytest.raises(TypeError, match="process"):
        dsm_loss(lambda x, t: x, x0, "vp", key=jr.key(0))
    with pytest.raises(ValueError, match="t_eps"):
        dsm_loss(lambda x, t: x, x0, jd.VP(), key=jr.key(0), t_eps=2.0)
    seen = {}

    def score(x, t, labels=None):
        seen["t"], seen["labels"] = t.shape, labels.shape
        return -x

    dsm_loss(score, x0, jd.VE(), key=jr.key(0), labels=jnp.zeros(4, int))
    assert seen == {"t": (4,), "labels": (4,)}


def test_ddpm_loss_and_betas():
    lin, cos = linear_betas(), cosine_betas()
    assert lin.shape == cos.shape == (1000,)
    assert jnp.isclose(lin[0], 1e-4) and jnp.isclose(lin[-1], 0.02)
    assert float(jnp.max(cos)) <= 0.999 + 1e-6 and float(jnp.min(cos)) > 0
    # the cosine alpha_bar follows cos^2 at the middle step
    ab = np.cumprod(1 - np.asarray(cos, np.float64))
    want = (
        np.cos((500 / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
        / np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    )
    assert abs(ab[499] - want) < 1e-4
    # the exact eps-predictor of a Gaussian mixture beats a perturbed one
    gm = jd.analytic.random_mixture(dim=2, num_components=4)
    x0, key, betas = data(gm), jr.key(3), linear_betas(100)
    alpha_bar = jnp.cumprod(1 - betas)

    def eps(x, n):
        a = alpha_bar[n][:, None]
        sigma = jnp.sqrt((1 - a) / a)
        y = x / jnp.sqrt(a)
        return (y - gm.denoiser(y, sigma[:, 0])) / sigma

    exact = ddpm_loss(eps, x0, key=key, betas=betas)
    worse = ddpm_loss(lambda x, n: eps(x, n) + 0.1, x0, key=key, betas=betas)
    assert float(worse) > float(exact)
    assert (
        abs(float(ddpm_loss(lambda x, n: jnp.zeros_like(x), x0, key=key, betas=betas)) - 1) < 0.05
    )
    with pytest.raises(ValueError, match="betas"):
        ddpm_loss(eps, x0, key=key, betas=jnp.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="n must"):
        linear_betas(0)


@pytest.mark.slow
def test_tiny_adam_run_decreases_the_edm_loss():
    gm = jd.analytic.ring()
    x0 = gm.sample(jr.key(0), 2048)
    net = MLP(2, hidden=32, depth=2, emb_dim=16, rngs=nnx.Rngs(jr.key(0, impl="rbg")))
    graph, params, rest = nnx.split(net, nnx.Param, ...)
    opt = optax.adam(3e-3)
    state = opt.init(params)

    def loss_fn(params, key):
        return edm_loss(P.EDMPrecond(nnx.merge(graph, params, rest)), x0, key=key)

    @jax.jit
    def step(params, state, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, key)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    eval_keys = jr.split(jr.key(99), 8)

    def evaluate(params):
        return float(jnp.mean(jnp.stack([jax.jit(loss_fn)(params, k) for k in eval_keys])))

    before = evaluate(params)
    for i in range(100):
        params, state, _ = step(params, state, jr.key(i))
    after = evaluate(params)
    assert after < 0.8 * before


def test_old_loss_spellings_warn_and_agree():
    """Positional keys and the process before the data still work for one release."""
    gm = jd.analytic.ring()
    x0 = gm.sample(jr.key(0), 8)
    key = jr.key(1)
    with pytest.warns(DeprecationWarning, match="positional key"):
        old = edm_loss(gm.denoiser, x0, key)
    assert old == edm_loss(gm.denoiser, x0, key=key)
    vp = jd.VP()
    score = gm.process_score(vp)
    with pytest.warns(DeprecationWarning) as record:
        old = dsm_loss(score, vp, x0, key)
    said = " ".join(str(w.message) for w in record)
    assert "positional key" in said and "dsm_loss(score_model, x0, process" in said
    assert old == dsm_loss(score, x0, vp, key=key)


def test_old_positional_key_with_later_arguments_by_keyword():
    """`bridge_loss(d, x0, x_T, key, bridge=b)` (key positional, a later argument by keyword)
    is the old spelling too."""
    import jaxdiff.bridges as B

    br = B.VE()
    pair = B.GaussianPair(*(jnp.full(2, v) for v in (0.0, 0.0, 0.25, 0.25, 0.0)))
    x0, x_T = jnp.ones((4, 2)), -jnp.ones((4, 2))
    with pytest.warns(DeprecationWarning, match="positional key"):
        old = B.bridge_loss(pair.denoiser(br), x0, x_T, jr.key(0), bridge=br)
    assert old == B.bridge_loss(pair.denoiser(br), x0, x_T, br, key=jr.key(0))
