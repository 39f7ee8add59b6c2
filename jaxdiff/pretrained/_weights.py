"""diffusers' safetensors checkpoints of a `UNet2DModel` as flax NNX parameters.

The checkpoint's keys are diffusers' module paths (`down_blocks.0.resnets.1.conv1.weight`);
the port's parameters sit at the same paths (`down_blocks[0].resnets[1].conv1.kernel`).
Tensors are read with safetensors' numpy API (no torch), transposed from torch's layouts
(convolutions `(out, in, kh, kw)` to flax's `(kh, kw, in, out)`, linear layers `(out, in)` to
`(in, out)`) and cast to the network's dtype.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._winograd import kernel_transform

#: The weights file of a diffusers model folder, and the index of a sharded one.
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"

# diffusers' deprecated attention blocks (checkpoints from before diffusers 0.14) name the
# projections query/key/value/proj_attn; diffusers renames them on loading, as here
_DEPRECATED_ATTENTION = {
    "query": "to_q",
    "key": "to_k",
    "value": "to_v",
    "proj_attn": "to_out.0",
}

_LISTED = 8  # how many keys an error message names


def _safetensors_numpy():
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ImportError(
            "jaxdiff.pretrained reads diffusers checkpoints with the safetensors package: "
            "pip install 'jaxdiff[pretrained]' (or pip install safetensors)"
        ) from None
    return load_file


def read_safetensors(path) -> dict[str, np.ndarray]:
    """The tensors of a `.safetensors` file as numpy arrays (bfloat16 ones through
    safetensors' flax API, numpy having no bfloat16)."""
    load_file = _safetensors_numpy()
    path = Path(path)
    try:
        return load_file(str(path))
    except TypeError:  # a dtype numpy does not know (bfloat16)
        from safetensors.flax import load_file as load_flax

        return {k: np.asarray(v.astype(jnp.float32)) for k, v in load_flax(str(path)).items()}
    except Exception as err:  # safetensors' SafetensorError, a truncated file
        raise ValueError(f"cannot read {str(path)!r} as safetensors: {err}") from None


def read_checkpoint(folder) -> dict[str, np.ndarray]:
    """The tensors of a diffusers model folder: `diffusion_pytorch_model.safetensors`, or
    the shards its `.index.json` lists. A folder with neither is a `FileNotFoundError` naming
    what it holds instead (PyTorch's pickled `.bin` is not read: it needs torch)."""
    folder = Path(folder)
    single, index = folder / WEIGHTS_NAME, folder / WEIGHTS_INDEX_NAME
    if single.is_file():
        return read_safetensors(single)
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{str(index)!r} is not a safetensors index: {err}") from None
        tensors: dict[str, np.ndarray] = {}
        for shard in shards:
            tensors.update(read_safetensors(folder / shard))
        return tensors
    others = sorted(p.name for p in folder.glob("diffusion_pytorch_model*"))
    hint = ""
    if any(name.endswith(".bin") for name in others):
        hint = (
            f" (it holds {', '.join(others)}: PyTorch pickles, which need torch; save the "
            "model with diffusers' save_pretrained(..., safe_serialization=True))"
        )
    elif others:
        hint = f" (it holds {', '.join(others)}: a variant; rename the one to load)"
    raise FileNotFoundError(f"missing weights file {str(single)!r}{hint}")


def _renamed(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in tensors.items():
        head, _, leaf = key.rpartition(".")
        module, _, name = head.rpartition(".")
        if name in _DEPRECATED_ATTENTION and leaf in ("weight", "bias"):
            key = f"{module}.{_DEPRECATED_ATTENTION[name]}.{leaf}"
        out[key] = value
    return out


def _checkpoint_key(path: tuple) -> tuple[str, str]:
    """(diffusers' key, kind) of an NNX parameter path."""
    *modules, leaf = (str(p) for p in path)
    name = {
        "kernel": "weight",
        "winograd_kernel": "weight",
        "scale": "weight",
        "embedding": "weight",
    }.get(leaf, leaf)
    return ".".join([*modules, name]), leaf


def _torch_shape(leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if leaf == "winograd_kernel":  # (6, 6, in, out) <- (out, in, 3, 3)
        return (shape[3], shape[2], 3, 3)
    if leaf == "kernel" and len(shape) == 4:  # (kh, kw, in, out) <- (out, in, kh, kw)
        return (shape[3], shape[2], shape[0], shape[1])
    if leaf == "kernel" and len(shape) == 2:  # (in, out) <- (out, in)
        return (shape[1], shape[0])
    return tuple(shape)


def _from_torch(leaf: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if leaf == "winograd_kernel":  # transformed in float64, then cast by the caller
        return kernel_transform(np.transpose(value, (2, 3, 1, 0)))
    if leaf == "kernel" and len(shape) == 4:
        return np.transpose(value, (2, 3, 1, 0))
    if leaf == "kernel" and len(shape) == 2:
        if value.ndim == 4:  # a 1x1 convolution stored for a linear layer
            value = value[:, :, 0, 0]
        return np.transpose(value)
    return value


def _listing(keys) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return ", ".join(repr(k) for k in keys[:_LISTED]) + more


def load_weights(network: nnx.Module, tensors: Mapping[str, np.ndarray], *, source: str = ""):
    """`network` (a `jaxdiff.pretrained.UNet2DModel`, possibly abstract, from `nnx.eval_shape`)
    with the parameters of the checkpoint `tensors` (diffusers' key -> numpy array, as
    `safetensors.numpy.load_file` returns them). Every parameter must be present with
    diffusers' shape, and every tensor must have a parameter: otherwise one `ValueError`
    naming the keys (`source` names the file in it). Returns a new module."""
    where = f" {source}" if source else ""
    graphdef, state = nnx.split(network)
    tensors = _renamed(tensors)
    flat = list(nnx.to_flat_state(state))
    wanted = {_checkpoint_key(path)[0]: (path, v) for path, v in flat}
    missing = set(wanted) - set(tensors)
    unexpected = set(tensors) - set(wanted)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} tensor(s) the config needs: {_listing(missing)}")
        if unexpected:
            parts.append(
                f"holds {len(unexpected)} tensor(s) the config has no place for: "
                f"{_listing(unexpected)}"
            )
        raise ValueError(
            f"the checkpoint{where} does not match its config.json: {'; '.join(parts)}"
        )
    loaded = []
    for key, (path, variable) in wanted.items():
        leaf = str(path[-1])
        shape = tuple(variable.shape)
        value = np.asarray(tensors[key])
        expect = _torch_shape(leaf, shape)
        squeezable = leaf == "kernel" and len(shape) == 2 and value.shape == (*expect, 1, 1)
        if tuple(value.shape) != expect and not squeezable:
            raise ValueError(
                f"tensor {key!r}{where} has shape {tuple(value.shape)}, but config.json "
                f"gives {expect}"
            )
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"tensor {key!r}{where} has dtype {value.dtype}, not a float")
        array = jnp.asarray(_from_torch(leaf, value, shape), variable.dtype)
        loaded.append((path, variable.replace(array)))
    return nnx.merge(graphdef, nnx.from_flat_state(loaded))
