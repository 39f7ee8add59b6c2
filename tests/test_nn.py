"""Networks (jaxdiff.nn): shapes and dtypes, jit without recompilation for new weights, vmap,
label conditioning, input checks; conditioning wrappers of jaxdiff.parametrizations."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from flax import nnx
from jaxdiff_test_utils import cache_size

import jaxdiff.parametrizations as P
from jaxdiff.nn import MLP, FourierEmbedding, SinusoidalEmbedding, UNet


def rngs(seed):
    # rbg keys: parameter initialisation compiles far faster on CPU than with threefry
    return nnx.Rngs(jr.key(seed, impl="rbg"))


def randomize(model, seed):
    """The model with every parameter redrawn (zero-initialised layers would hide bugs), from
    numpy so that no new shape is compiled."""
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    leaves, tree = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(seed)
    leaves = [jnp.asarray(0.3 * rng.standard_normal(p.shape), p.dtype) for p in leaves]
    return nnx.merge(graph, jax.tree_util.tree_unflatten(tree, leaves), rest)


@functools.cache
def small_mlp(seed=0, num_classes=0):
    return randomize(
        MLP(3, hidden=16, depth=2, emb_dim=8, num_classes=num_classes, rngs=rngs(seed)), seed
    )


@functools.cache
def small_unet(seed=0, num_classes=3):
    net = UNet(8, 1, channels=8, num_res_blocks=1, num_classes=num_classes, rngs=rngs(seed))
    return randomize(net, seed)


@jax.jit
def apply(net, x, c, labels=None):
    return net(x, c, labels)


def normal(seed, shape, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


@pytest.mark.parametrize("cls", [FourierEmbedding, SinusoidalEmbedding])
def test_embeddings_shapes(cls, dtype):
    emb = cls(6, rngs=nnx.Rngs(0)) if cls is FourierEmbedding else cls(6)
    assert emb(jnp.asarray(0.3, dtype)).shape == (6,)
    out = emb(jnp.linspace(-1, 1, 5, dtype=dtype))
    assert out.shape == (5, 6) and out.dtype == dtype
    with pytest.raises(ValueError, match="dim"):
        cls(5, rngs=nnx.Rngs(0)) if cls is FourierEmbedding else cls(5)


NETS = [("mlp", (4, 3)), pytest.param("unet", (4, 8, 8, 1), marks=pytest.mark.slow)]


def net_of(name, **kw):
    return small_mlp(**kw) if name == "mlp" else small_unet(**kw)


@pytest.mark.parametrize("name, shape", NETS)
def test_shapes_and_dtypes(name, shape, dtype):
    net = net_of(name)
    x = normal(0, shape, dtype)
    c = jnp.linspace(-1, 1, shape[0], dtype=dtype)
    out = apply(net, x, c)
    assert out.shape == shape and out.dtype == dtype
    assert jnp.all(jnp.isfinite(out))
    # a scalar c_noise is the same as one broadcast over the batch
    c0 = jnp.asarray(0.2, dtype)
    assert jnp.allclose(apply(net, x, c0), apply(net, x, jnp.full(shape[0], c0)), atol=1e-5)


@pytest.mark.parametrize("name, shape", NETS)
def test_jit_no_recompile_and_vmap(name, shape):
    f = jax.jit(lambda net, x, c: net(x, c))
    x, c = normal(0, shape), jnp.linspace(-1, 1, shape[0])
    a, b = net_of(name), randomize(net_of(name), 7)
    out_a, out_b = f(a, x, c), f(b, x, c)
    assert cache_size(f) == 1
    assert not jnp.allclose(out_a, out_b)
    # vmap over a stack of batches equals batch-by-batch calls
    xs, cs = normal(1, (2, *shape)), normal(2, (2, shape[0]))
    got = jax.jit(jax.vmap(f, in_axes=(None, 0, 0)))(a, xs, cs)
    want = jnp.stack([f(a, xs[i], cs[i]) for i in range(2)])
    assert jnp.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name, shape", NETS)
def test_labels_and_null_label(name, shape):
    net = net_of(name, num_classes=3)
    x, c = normal(0, shape), jnp.asarray(0.1)
    null = apply(net, x, c)
    assert jnp.allclose(null, apply(net, x, c, jnp.full(shape[0], -1)))
    labelled = apply(net, x, c, jnp.array([0, 1, 2, -1]))
    assert not jnp.allclose(labelled[:3], null[:3])
    assert jnp.allclose(labelled[3], null[3], atol=1e-6)
    # values are checked outside jit, shapes and dtypes always
    with pytest.raises(ValueError, match="labels"):
        net(x, c, labels=jnp.array([0, 1, 3, 0]))  # out of range
    with pytest.raises(ValueError, match="labels"):
        apply(net, x, c, jnp.array([0, 1]))  # wrong shape
    with pytest.raises(TypeError, match="labels"):
        apply(net, x, c, jnp.zeros(shape[0]))  # not integers


def test_unconditional_network_rejects_labels():
    with pytest.raises(ValueError, match="unconditional"):
        small_mlp()(jnp.zeros((2, 3)), 0.0, labels=jnp.zeros(2, int))


def test_unet_checks_sizes():
    nnx.eval_shape(lambda: UNet(8, 1, channels=8, channel_mults=(1, 2, 2), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="image_size"):
        UNet(6, 1, channels=8, channel_mults=(1, 2, 2, 2), rngs=nnx.Rngs(0))
    # shapes are checked before any parameter is used: an abstract network will do
    net = nnx.eval_shape(lambda: UNet(8, 1, channels=8, num_res_blocks=1, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="image_size"):
        net(jnp.zeros((2, 16, 16, 1)), 0.0)
    with pytest.raises(ValueError, match="in_channels"):
        net(jnp.zeros((2, 8, 8, 3)), 0.0)
    with pytest.raises(ValueError, match="c_noise"):
        net(jnp.zeros((2, 8, 8, 1)), jnp.zeros(3))
    with pytest.raises(ValueError, match="x must have shape"):
        small_mlp()(jnp.zeros((2, 4)), 0.0)
    with pytest.raises(ValueError, match="num_heads"):
        UNet(8, 1, channels=6, num_heads=5, rngs=nnx.Rngs(0))


def test_unet_group_norm_groups_divide_odd_widths():
    def make():
        return UNet(4, 3, channels=12, channel_mults=(1, 3), num_res_blocks=1, rngs=nnx.Rngs(0))

    net = nnx.eval_shape(make)
    out = jax.eval_shape(
        lambda n, x: n(x, 0.0), net, jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32)
    )
    assert out.shape == (1, 4, 4, 3)


# -- preconditioning with per-sample sigma and class conditioning ----------------------------
def image_raw(x, c_noise, labels=None):
    c = jnp.reshape(c_noise, (-1, 1, 1, 1))
    return jnp.sin(x) * (1 + c) + (0.0 if labels is None else labels.reshape(-1, 1, 1, 1))


@pytest.mark.parametrize("make", [P.EDMPrecond, P.VPPrecond, P.VEPrecond])
def test_per_sample_sigma_equals_scalar_calls(make):
    sigma = jnp.array([0.05, 1.0, 20.0])
    labels = jnp.array([0, -1, 1])
    for den, x in [
        (make(image_raw), normal(0, (3, 4, 4, 2))),
        (make(small_mlp(num_classes=3)), normal(0, (3, 3))),
    ]:
        got = den(x, sigma, labels=labels)
        for i in range(3):
            want = den(x[i : i + 1], sigma[i], labels=labels[i : i + 1])
            assert jnp.allclose(got[i : i + 1], want, rtol=1e-4, atol=1e-5)
        with pytest.raises(ValueError, match="sigma"):
            den(x, sigma[:2], labels=labels)


def mlp_denoiser(num_classes=3):
    return P.EDMPrecond(small_mlp(num_classes=num_classes))


def test_conditional_and_guidance():
    den = mlp_denoiser()
    x = normal(0, (4, 3))
    sigma = jnp.asarray(0.7)
    labels = jnp.array([0, 1, 2, 1])
    d_c = den(x, sigma, labels=labels)
    d_u = den(x, sigma, labels=jnp.full(4, -1))
    cond = P.Conditional(den, labels)
    assert jnp.allclose(cond(x, sigma), d_c)
    for w in [0.0, 1.0, 2.5]:
        cfg = P.ClassifierFreeGuidance(den, labels, w)
        assert jnp.allclose(cfg(x, sigma), d_u + w * (d_c - d_u), atol=1e-5)
    assert jnp.allclose(P.ClassifierFreeGuidance(den, labels, 1.0)(x, sigma), cond(x, sigma))
    assert jnp.allclose(P.ClassifierFreeGuidance(den, labels, 0.0)(x, sigma), d_u, atol=1e-6)
    # per-sample sigma goes through too
    sig = jnp.array([0.1, 0.5, 1.0, 5.0])
    cfg = P.ClassifierFreeGuidance(den, labels, 2.0)
    want = den(x, sig, labels=jnp.full(4, -1)) + 2.0 * (
        den(x, sig, labels=labels) - den(x, sig, labels=jnp.full(4, -1))
    )
    assert jnp.allclose(cfg(x, sig), want, atol=1e-5)


def test_guidance_is_one_network_call_and_traced():
    calls = []

    def raw(x, c, labels=None):
        calls.append(x.shape)
        return jnp.zeros_like(x) + labels[:, None]

    den = P.EDMPrecond(raw)
    x = jnp.ones((2, 3))
    P.ClassifierFreeGuidance(den, jnp.array([0, 1]), 3.0)(x, 1.0)
    assert calls == [(4, 3)]
    # labels and scale are leaves: new values do not recompile
    net_den = mlp_denoiser()
    f = eqx.filter_jit(lambda d, x: d(x, jnp.asarray(0.5)))
    a = f(P.ClassifierFreeGuidance(net_den, jnp.array([0, 1]), 1.5), x)
    b = f(P.ClassifierFreeGuidance(net_den, jnp.array([2, 2]), 3.0), x)
    f(P.Conditional(net_den, jnp.array([0, 1])), x)
    f(P.Conditional(net_den, jnp.array([1, 2])), x)
    assert cache_size(f) == 2
    assert not jnp.allclose(a, b)


def test_conditioning_checks():
    den = mlp_denoiser()
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="labels"):
        P.Conditional(den, jnp.array([0, 1, 2]))(x, 1.0)
    with pytest.raises(ValueError, match="labels"):
        P.ClassifierFreeGuidance(den, jnp.array([-2, 0]), 1.0)
    with pytest.raises(TypeError, match="labels"):
        P.Conditional(den, jnp.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="scale"):
        P.ClassifierFreeGuidance(den, jnp.array([0, 1]), jnp.ones(2))
    with pytest.raises(TypeError, match="denoiser"):
        P.Conditional(None, jnp.array([0, 1]))
    # a scalar label serves the whole batch
    assert jnp.allclose(P.Conditional(den, 1)(x, 1.0), den(x, 1.0, labels=jnp.array([1, 1])))
