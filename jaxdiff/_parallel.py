"""Sampling over many devices and in bounded memory: batch sharding and chunked sampling.

Data parallelism only: the batch axis of `x` is split over a 1-D device mesh with axis
``"data"`` (`jaxdiff.train.data_mesh`), the denoiser's weights are replicated. `jaxdiff.sample`
takes the sharded array as it is: its one compiled program is partitioned by XLA (GSPMD), every
device runs the sampler on its slice, and the result comes back sharded the same way. Noise
drawn from one key (`jax.random.normal(key, x.shape)`) is partitionable (JAX's default
``jax_threefry_partitionable``), so a sharded call draws the same numbers as an unsharded one.

Several hosts: call `jax.distributed.initialize()` first on every host; `data_mesh()` then
spans the local devices of this host, `jax.make_mesh((jax.device_count(),), ("data",))` all of
them (see the README's "Many devices and hosts").
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._checks import check_count, check_key, check_sample_key
from .samplers._core import resolve_sampler, sample

__all__ = ["per_sample_keys", "replicate", "sample_chunked", "shard_batch"]


def _mesh(mesh: Mesh | None) -> Mesh:
    if mesh is None:
        from .train._step import data_mesh

        return data_mesh()
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh must have an axis named 'data', got axes {mesh.axis_names}")
    return mesh


def shard_batch(x: Any, mesh: Mesh | None = None) -> Any:
    """Puts the batch axis (axis 0) of `x` (an array or a pytree of arrays) over the mesh axis
    ``"data"``; the other axes are not split.

    **Arguments:**

    - `x`: batch-first arrays; the batch size must be divisible by the number of devices.
    - `mesh`: a `jax.sharding.Mesh` with an axis ``"data"`` (default: `jaxdiff.train.data_mesh()`,
      all local devices).

    **Returns:** `x` as `jax.Array`s with a `NamedSharding(mesh, P("data"))`.
    """
    mesh = _mesh(mesh)
    n = mesh.shape["data"]
    sharding = NamedSharding(mesh, PartitionSpec("data"))

    def put(a):
        if jnp.ndim(a) < 1 or jnp.shape(a)[0] % n:
            raise ValueError(
                f"the batch size must be divisible by the {n} devices of the mesh, "
                f"got shape {jnp.shape(a)}"
            )
        return jax.device_put(a, sharding)

    return jax.tree.map(put, x)


def replicate(tree: Any, mesh: Mesh | None = None) -> Any:
    """A copy of `tree` (e.g. network weights) replicated on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(_mesh(mesh), PartitionSpec()))


def per_sample_keys(key: jax.Array, num: int, *, offset: int = 0) -> jax.Array:
    """`num` keys, the `i`-th `jax.random.fold_in(key, offset + i)`: the key of sample
    `offset + i` in `jaxdiff.sample(..., key=keys)`'s per-sample mode, whatever the batch or
    chunk it is computed in."""
    check_key(key)
    num = check_count("num", num)
    offset = check_count("offset", offset, minimum=0)
    return jax.vmap(lambda i: jr.fold_in(key, i))(offset + jnp.arange(num, dtype=jnp.uint32))


def sample_chunked(
    denoiser,
    x,
    sigmas,
    *,
    chunk_size: int,
    solver=None,
    key: jax.Array | None = None,
    mesh: Mesh | None = None,
    to_host: bool = False,
):
    """`jaxdiff.sample` over `x` in chunks of `chunk_size` samples: the same result as one
    call on all of `x`, in bounded memory.

    Every chunk runs the same compiled program (the last one is padded to `chunk_size`), so
    the device holds one chunk's working set at a time: the sampler's state for `chunk_size`
    samples (a few copies of the chunk for multistep samplers) and the denoiser's
    activations for one batch of `chunk_size`. `x` and the output stay on the host (numpy)
    until the end; with `to_host=False` the output is then put on the device as one array.

    Stochastic samplers need `key`; the noise of sample `i` comes from
    `jax.random.fold_in(key, i)` (`per_sample_keys`), so the result equals
    `jaxdiff.sample(denoiser, x, sigmas, solver=solver, key=per_sample_keys(key, len(x)))`
    exactly, for any `chunk_size` (not the single-key stream of `jaxdiff.sample(..., key=key)`).
    Deterministic samplers equal `jaxdiff.sample(denoiser, x, sigmas, solver=solver)` as long
    as the denoiser treats samples independently (no batch statistics).

    **Arguments:** as `jaxdiff.sample`, plus

    - `chunk_size`: samples per compiled call; with `mesh`, a multiple of its device count.
    - `mesh`: shard every chunk over this mesh's ``"data"`` axis (`shard_batch`).
    - `to_host`: return a numpy array (nothing of the output left on the device).

    **Returns:** the samples at sigma = 0, shaped like `x`.
    """
    chunk_size = check_count("chunk_size", chunk_size)
    solver = resolve_sampler(solver)
    if mesh is not None:
        mesh = _mesh(mesh)
        if chunk_size % mesh.shape["data"]:
            raise ValueError(
                f"chunk_size ({chunk_size}) must be divisible by the {mesh.shape['data']} "
                "devices of the mesh"
            )
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x must be batch-first with at least one sample, got shape {x.shape}")
    num = x.shape[0]
    stochastic = solver.stochastic
    if stochastic:
        if key is None:
            raise ValueError(f"{type(solver).__name__} is stochastic: pass key=")
        if check_sample_key(key, x):
            raise ValueError("sample_chunked draws per-sample keys itself: pass one key")
    outputs = []
    for start in range(0, num, chunk_size):
        stop = min(start + chunk_size, num)
        part = x[start:stop]
        if stop - start < chunk_size:  # pad: one program for every chunk
            pad = np.zeros((chunk_size - (stop - start), *x.shape[1:]), x.dtype)
            part = np.concatenate([part, pad])
        keys = per_sample_keys(key, chunk_size, offset=start) if stochastic else None
        part = jnp.asarray(part)
        if mesh is not None:
            part = shard_batch(part, mesh)
            keys = None if keys is None else shard_batch(keys, mesh)
        out = sample(denoiser, part, sigmas, solver=solver, key=keys)
        outputs.append(np.asarray(out)[: stop - start])
    result = np.concatenate(outputs)
    return result if to_host else jnp.asarray(result)
