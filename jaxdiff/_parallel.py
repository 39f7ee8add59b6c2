"""Sampling over many devices and in bounded memory: batch sharding and chunked sampling.

Data parallelism only: the batch axis of `x` is split over a 1-D device mesh with axis
``"data"`` (`jaxdiff.train.data_mesh`), the denoiser's weights are replicated. `jaxdiff.sample`
takes the sharded array as it is: its one compiled program is partitioned by XLA (GSPMD), every
device runs the sampler on its slice, and the result comes back sharded the same way. Noise
drawn from one key (`jax.random.normal(key, x.shape)`) is partitionable (JAX's default
``jax_threefry_partitionable``), so a sharded call draws the same numbers as an unsharded one.

Several processes (hosts): call `jax.distributed.initialize()` first in every process;
`data_mesh()` then spans the devices of all of them. With such a mesh every process passes its
own rows of the batch (`shard_batch` builds the global array from them,
`jax.make_array_from_process_local_data`), runs the same program, and reads back its own rows of
the result (`local_rows`); `process_slice` says which rows of the global batch those are (for
per-sample keys: `per_sample_keys(key, n, offset=process_slice(n).start)`). `sample_chunked`
does all of this itself. Tested with two processes on loopback (``tests/test_multihost.py``).
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._checks import check_count, check_key, check_sample_key
from .samplers._core import resolve_sampler, sample

__all__ = [
    "local_rows",
    "per_sample_keys",
    "process_slice",
    "replicate",
    "sample_chunked",
    "shard_batch",
]


def data_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all devices, ``jax.devices()``:
    this process's, and in a `jax.distributed` run those of every process, ordered by
    process)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must not be empty")
    return Mesh(np.asarray(devices), ("data",))


def host_copy(x: Any) -> Any:
    """`x` as a host (numpy) array; a typed PRNG key array stays a key, of the same
    implementation."""
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(x))  # e.g. the key of an nnx.Dropout's stream
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return np.asarray(x)


def _mesh(mesh: Mesh | None) -> Mesh:
    if mesh is None:
        return data_mesh()
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh must have an axis named 'data', got axes {mesh.axis_names}")
    return mesh


def _spans_processes(mesh: Mesh) -> bool:
    """Whether `mesh` holds devices of other processes (a `jax.distributed` run)."""
    me = jax.process_index()
    return any(d.process_index != me for d in mesh.devices.flat)


def _local_device_count(mesh: Mesh) -> int:
    me = jax.process_index()
    return sum(d.process_index == me for d in mesh.devices.flat)


def _block(mesh: Mesh, num_local: int) -> slice:
    """The rows of a global batch sharded `P("data")` over `mesh` that this process holds when
    every process holds `num_local` of them."""
    local = _local_device_count(mesh)
    if local == 0:
        raise ValueError(f"the mesh has no device of this process ({jax.process_index()})")
    total = num_local * (mesh.size // local)
    rows = NamedSharding(mesh, PartitionSpec("data")).addressable_devices_indices_map((total,))
    spans = sorted({(i[0].start or 0, i[0].stop or total) for i in rows.values()})
    start, stop = spans[0][0], spans[-1][1]
    if stop - start != num_local or any(a[1] != b[0] for a, b in itertools.pairwise(spans)):
        raise ValueError(
            "this process's devices do not hold one contiguous block of the mesh's 'data' axis; "
            "order the mesh's devices by process (as jax.devices() is)"
        )
    return slice(start, stop)


def shard_batch(x: Any, mesh: Mesh | None = None) -> Any:
    """Puts the batch axis (axis 0) of `x` (an array or a pytree of arrays) over the mesh axis
    ``"data"``; the other axes are not split.

    With a mesh over several processes (`jax.distributed`), `x` is this process's part of the
    batch, the same number of rows in every process: the global batch is the processes' parts
    in the order of the mesh (rows `process_slice(len(x), mesh)` are this process's), and no
    process holds more than its part (`jax.make_array_from_process_local_data`).

    **Arguments:**

    - `x`: batch-first arrays; the batch size (of this process's part) must be divisible by the
      number of (this process's) devices.
    - `mesh`: a `jax.sharding.Mesh` with an axis ``"data"`` (default: `jaxdiff.train.data_mesh()`,
      all devices of all processes).

    **Returns:** `x` as `jax.Array`s with a `NamedSharding(mesh, P("data"))`.
    """
    mesh = _mesh(mesh)
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    several = _spans_processes(mesh)
    n = _local_device_count(mesh) if several else mesh.shape["data"]
    where = "this process's " if several else ""

    def put(a):
        if jnp.ndim(a) < 1 or jnp.shape(a)[0] % n:
            raise ValueError(
                f"the batch size must be divisible by the {n} devices of {where}mesh, "
                f"got shape {jnp.shape(a)}"
            )
        if several:
            return jax.make_array_from_process_local_data(sharding, a)
        return jax.device_put(a, sharding)

    return jax.tree.map(put, x)


def local_rows(x: Any) -> Any:
    """This process's rows of a batch-sharded array (or pytree of arrays), e.g. the result of
    `jaxdiff.sample` on a `shard_batch` batch, as numpy: all of `x` in a single process, the
    rows `process_slice` names in a `jax.distributed` run. No communication between
    processes."""

    def rows(a):
        if not isinstance(a, jax.Array) or a.is_fully_addressable:
            return np.asarray(a)
        blocks: dict[int, Any] = {}
        for shard in a.addressable_shards:
            index = shard.index[0] if shard.index else slice(None)
            blocks.setdefault(index.start or 0, shard.data)
        starts = sorted(blocks)
        out = np.concatenate([np.asarray(blocks[s]) for s in starts])
        stops = [s + blocks[s].shape[0] for s in starts]
        if any(stop != start for stop, start in zip(stops[:-1], starts[1:], strict=True)):
            raise ValueError("this process's rows of x are not one contiguous block")
        return out

    return jax.tree.map(rows, x)


def process_slice(num_local: int, mesh: Mesh | None = None) -> slice:
    """The rows of the global batch that are this process's when every process passes
    `num_local` rows to `shard_batch(x, mesh)`: `slice(0, num_local)` in a single process,
    process `r`'s block of the mesh's order in a `jax.distributed` run. The key of global
    sample `i` in per-sample mode being `fold_in(key, i)`, this process's keys are
    `per_sample_keys(key, num_local, offset=process_slice(num_local, mesh).start)`."""
    num_local = check_count("num_local", num_local)
    mesh = _mesh(mesh)
    if not _spans_processes(mesh):
        return slice(0, num_local)
    if num_local % _local_device_count(mesh):
        raise ValueError(
            f"num_local ({num_local}) must be divisible by the {_local_device_count(mesh)} "
            "devices of this process"
        )
    return _block(mesh, num_local)


def replicate(tree: Any, mesh: Mesh | None = None) -> Any:
    """A copy of `tree` (e.g. network weights) replicated on every device of `mesh`; in a
    `jax.distributed` run, every process passes the same values."""
    mesh = _mesh(mesh)
    if _spans_processes(mesh):  # from host values: a local device's array is not global
        tree = jax.tree.map(host_copy, tree)
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


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

    Several processes (`jax.distributed`, a `mesh` over all of their devices): every process
    passes its own samples `x`, the same number in each, and gets back the results of its
    own samples; each chunk is one program over the whole mesh, to which every process
    contributes its share of `chunk_size`. Sample `j` of the process whose block of the mesh
    is the `r`-th is sample `r * len(x) + j` of the concatenated `x` (its key's index), so the
    processes' results, concatenated in that order, equal one process's `sample_chunked` on
    the concatenated `x`.

    **Arguments:** as `jaxdiff.sample`, plus

    - `chunk_size`: samples per compiled call (over all processes); with `mesh`, a multiple
      of its device count.
    - `mesh`: shard every chunk over this mesh's ``"data"`` axis (`shard_batch`).
    - `to_host`: return a numpy array (nothing of the output left on the device).

    **Returns:** the samples at sigma = 0, shaped like `x`.
    """
    chunk_size = check_count("chunk_size", chunk_size)
    solver = resolve_sampler(solver)
    several = False
    if mesh is not None:
        mesh = _mesh(mesh)
        if chunk_size % mesh.shape["data"]:
            raise ValueError(
                f"chunk_size ({chunk_size}) must be divisible by the {mesh.shape['data']} "
                "devices of the mesh"
            )
        several = _spans_processes(mesh)
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
    step, first = chunk_size, 0  # this process's rows per chunk, and its first sample's index
    if several:
        _same_in_every_process("the number of samples x", num)
        block = _block(mesh, chunk_size * _local_device_count(mesh) // mesh.size)
        step = block.stop - block.start
        first = (block.start // step) * num
    outputs = []
    for start in range(0, num, step):
        stop = min(start + step, num)
        part = x[start:stop]
        if stop - start < step:  # pad: one program for every chunk
            pad = np.zeros((step - (stop - start), *x.shape[1:]), x.dtype)
            part = np.concatenate([part, pad])
        keys = per_sample_keys(key, step, offset=first + start) if stochastic else None
        if several:
            part = shard_batch(part, mesh)
            keys = None if keys is None else shard_batch(keys, mesh)
        else:
            part = jnp.asarray(part)
            if mesh is not None:
                part = shard_batch(part, mesh)
                keys = None if keys is None else shard_batch(keys, mesh)
        out = sample(denoiser, part, sigmas, solver=solver, key=keys)
        outputs.append(local_rows(out)[: stop - start])
    result = np.concatenate(outputs)
    return result if to_host else jnp.asarray(result)


def _same_in_every_process(what: str, value: int) -> None:
    """Raises a ValueError (in every process) unless `value` is the same in all of them."""
    from jax.experimental import multihost_utils

    values = np.asarray(multihost_utils.process_allgather(np.asarray(value, np.int64)))
    if np.any(values != values[0]):
        raise ValueError(f"{what} must be the same in every process, got {values.tolist()}")
