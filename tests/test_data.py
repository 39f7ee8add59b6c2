"""Offline datasets, .npy loading and the keyed batch loader (jaxdiff.train)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff as jd
import jaxdiff.train as jt
from jaxdiff.train._data import RING_RADIUS, RING_STD


@pytest.mark.parametrize("name", jt.TOYS)
def test_toys_are_2d_unit_scale_and_keyed(name):
    x = jt.toy(name, 4000, jax.random.key(0))
    assert x.shape == (4000, 2) and x.dtype == jnp.float32
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(np.mean(x, 0), 0.0, atol=0.1)
    np.testing.assert_allclose(np.std(x, 0), 1.0, atol=0.1)
    np.testing.assert_array_equal(x, jt.toy(name, 4000, jax.random.key(0)))
    assert not np.array_equal(x, jt.toy(name, 4000, jax.random.key(1)))


def test_ring_is_the_analytic_ring():
    """Samples sit around the 8 means of jd.analytic.ring(8, RING_RADIUS, RING_STD)."""
    gm = jd.analytic.ring(8, RING_RADIUS, RING_STD)
    means = np.asarray(gm.means)
    x = np.asarray(jt.toy("ring", 4000, jax.random.key(0)))
    nearest = np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), axis=1)
    residual = x - means[nearest]
    np.testing.assert_allclose(residual.std(0), RING_STD, rtol=0.1)
    np.testing.assert_allclose(np.bincount(nearest, minlength=8) / 4000, 1 / 8, atol=0.03)


def test_digits():
    images, labels = jt.digits()
    assert images.shape == (1797, 8, 8, 1) and images.dtype == jnp.float32
    images = np.asarray(images)
    assert images.min() == -1.0 and images.max() == 1.0
    assert labels.shape == (1797,) and labels.dtype == jnp.int32
    assert set(np.unique(labels)) == set(range(10))
    ds = jt.load_dataset("digits")
    assert ds.kind == "images" and ds.num_classes == 10 and len(ds) == 1797


def test_load_dataset_toy():
    ds = jt.load_dataset("moons", key=jax.random.key(1), n=4000)
    assert ds.x.shape == (4000, 2) and ds.labels is None and ds.kind == "vectors"
    assert ds.name == "moons" and ds.num_classes == 0


@pytest.mark.parametrize("name", ["mnist", "ring2", ""])
def test_unknown_dataset_lists_the_names(name):
    with pytest.raises(ValueError, match="ring, swissroll, moons, checkerboard, digits"):
        jt.load_dataset(name)


def test_unknown_toy():
    with pytest.raises(ValueError, match="unknown toy 'spiral'"):
        jt.toy("spiral", 10, jax.random.key(0))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((5, 3), (5, 3)), ((5, 4, 4), (5, 4, 4, 1)), ((5, 4, 4, 3), (5, 4, 4, 3))],
)
def test_load_npy_shapes(tmp_path, shape, expected):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(np.prod(shape), dtype=np.int64).reshape(shape))
    x = jt.load_npy(path)
    assert x.shape == expected and x.dtype == jnp.float32
    ds = jt.load_dataset(str(path))
    assert ds.kind == ("vectors" if len(expected) == 2 else "images")
    assert ds.x.shape == expected


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros(5, np.float32), r"shape \(5,\); expected \(N, D\)"),
        (np.zeros((2, 3, 4, 5, 6), np.float32), r"shape \(2, 3, 4, 5, 6\); expected"),
        (np.zeros((0, 3), np.float32), "no data"),
        (np.array([[0.0, np.nan]], np.float32), "non-finite"),
        (np.array([["a", "b"]]), "expected real numbers"),
    ],
)
def test_load_npy_rejects(tmp_path, array, match):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=match) as info:
        jt.load_npy(path)
    assert "bad.npy" in str(info.value)
    assert path.read_bytes() == before  # nothing overwritten


def test_load_npy_missing_and_garbage(tmp_path):
    with pytest.raises(ValueError, match="nope.npy.*no such file"):
        jt.load_dataset(str(tmp_path / "nope.npy"))
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match="garbage.npy.*not a readable"):
        jt.load_npy(garbage)


def _indexed(n):
    """A dataset whose example i is the vector (i, i): batches reveal their indices."""
    x = jnp.repeat(jnp.arange(n, dtype=jnp.float32)[:, None], 2, axis=1)
    return jt.Dataset(x, jnp.arange(n, dtype=jnp.int32), name="indexed", kind="vectors")


def test_batch_at_visits_every_example_once_per_epoch():
    n, b = 10, 4  # batches straddle epochs
    ds = _indexed(n)
    key = jax.random.key(0)
    get = jax.jit(jt.batch_at, static_argnums=2)
    stream = np.concatenate([np.asarray(get(ds, s, b, key)["labels"]) for s in range(10)])
    for epoch in range(4):
        assert sorted(stream[epoch * n : (epoch + 1) * n]) == list(range(n))
    assert not np.array_equal(stream[:n], stream[n : 2 * n])  # reshuffled per epoch
    batch = get(ds, 7, b, key)  # a pure function of (key, step)
    np.testing.assert_array_equal(batch["labels"], stream[28:32])
    np.testing.assert_array_equal(batch["x"][:, 0], stream[28:32].astype(np.float32))
    other = get(ds, 7, b, jax.random.key(1))["labels"]
    assert not np.array_equal(other, batch["labels"])


def test_batch_at_rejects_too_large_batch():
    with pytest.raises(ValueError, match="batch_size must be <= the 10 examples"):
        jt.batch_at(_indexed(10), 0, 11, jax.random.key(0))


def test_split():
    ds = _indexed(50)
    train, held = jt.split(ds, 0.2, jax.random.key(0))
    assert len(train) == 40 and len(held) == 10
    ids = np.concatenate([train.labels, held.labels])
    assert sorted(ids) == list(range(50))
    np.testing.assert_array_equal(held.x[:, 0], np.asarray(held.labels, np.float32))
    with pytest.raises(ValueError, match="fraction"):
        jt.split(ds, 1.0, jax.random.key(0))
