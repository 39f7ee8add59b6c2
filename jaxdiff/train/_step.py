"""The train state and the jit-compiled, data-parallel train step."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from .._parallel import data_mesh, host_copy
from ._ema import ema_decay_at, ema_update
from ._optim import learning_rate

__all__ = ["TrainState", "TrainStep", "data_mesh", "init_state", "make_train_step"]

LossFn = Callable[[nnx.Module, Mapping[str, jax.Array], jax.Array], jax.Array]

# sub-streams of the run key: the loss's noise and the data order never share a key
LOSS_STREAM, DATA_STREAM = 0, 1


class TrainState(NamedTuple):
    """Everything a training run carries from step to step (a pytree; checkpointed whole).

    Attributes:
        step: completed updates, an int32 scalar.
        params: the model's `nnx.Param` state.
        ema: the exponential moving average of ``params`` (same structure).
        extra: the model's other state (everything but `nnx.Param`, e.g. batch statistics),
            as returned by the model after the last loss evaluation.
        opt_state: the optimizer's state.
        rng: the run's key as raw key data (uint32, ``jax.random.key_data``); the key of step
            ``k``'s loss is ``fold_in(fold_in(rng, 0), k)``, the data order's ``fold_in(rng, 1)``.
    """

    step: jax.Array
    params: nnx.State
    ema: nnx.State
    extra: nnx.State
    opt_state: optax.OptState
    rng: jax.Array

    def key(self, stream: int) -> jax.Array:
        """The run's key for one sub-stream (`LOSS_STREAM` or `DATA_STREAM`)."""
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), stream)


def _fresh(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    # a host round trip: new buffers that alias nothing the caller holds (the step donates them)
    return jax.device_put(jax.tree.map(host_copy, tree), sharding)


def init_state(
    model: nnx.Module,
    optimizer: optax.GradientTransformation,
    *,
    seed: int | jax.Array = 0,
    mesh: Mesh | None = None,
) -> tuple[nnx.GraphDef, TrainState]:
    """Splits ``model`` into its graph and a fresh `TrainState` (step 0, EMA = the weights).

    The model itself is left untouched: the state holds copies, replicated over ``mesh``.

    Arguments:
        model: any flax NNX module.
        optimizer: an optax transformation (e.g. `adamw`).
        seed: an int seed or a `jax.random` key, the run's key.
        mesh: the device mesh (default: `data_mesh()`).

    Returns:
        ``(graphdef, state)``.
    """
    mesh = data_mesh() if mesh is None else mesh
    replicated = NamedSharding(mesh, P())
    graphdef, params, extra = nnx.split(model, nnx.Param, ...)
    if not jax.tree.leaves(params):
        raise ValueError(f"model {type(model).__name__} has no nnx.Param to train")
    key = jax.random.key(seed) if isinstance(seed, int) else seed
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    params = _fresh(params, replicated)
    # jitted: one compile instead of one per eager op
    opt_state = jax.jit(optimizer.init, out_shardings=replicated)(params)
    param_ids = {id(x) for x in jax.tree.leaves(params)}
    if any(id(x) in param_ids for x in jax.tree.leaves(opt_state)):  # a forwarded input
        opt_state = _fresh(opt_state, replicated)
    state = TrainState(
        step=jax.device_put(jnp.zeros((), jnp.int32), replicated),
        params=params,
        ema=_fresh(params, replicated),  # its own buffers: the step donates both
        extra=_fresh(extra, replicated),
        opt_state=opt_state,
        rng=_fresh(key, replicated),
    )
    return graphdef, state


class TrainStep:
    """``step(state, batch) -> (state, metrics)``: one jit-compiled update (see
    `make_train_step`). The state is donated: do not use the one you passed in again."""

    def __init__(self, jitted: Callable, mesh: Mesh):
        self.jitted = jitted  # (state, batch) -> (state, metrics), compiled
        self.mesh = mesh
        self.batch_sharding = NamedSharding(mesh, P("data"))

    def __call__(
        self, state: TrainState, batch: Mapping[str, jax.Array]
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        if "x" not in batch:
            raise ValueError(f"batch must be a dict with an 'x' entry; got keys {list(batch)}")
        n_dev = self.mesh.size
        for name, leaf in batch.items():
            if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] % n_dev:
                raise ValueError(
                    f"batch[{name!r}] has shape {jnp.shape(leaf)}; its leading (batch) axis "
                    f"must be divisible by the {n_dev} devices of the mesh"
                )
        batch = jax.device_put(dict(batch), self.batch_sharding)
        return self.jitted(state, batch)


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    ema_decay: float = 0.999,
    ema_warmup: bool = True,
    mesh: Mesh | None = None,
) -> TrainStep:
    """A jit-compiled train step, data-parallel over ``mesh``.

    The batch is sharded along its first axis over the mesh's ``"data"`` axis; the state
    (weights, EMA, optimizer) is replicated, and XLA all-reduces the gradient. With one device
    this is plain single-device training. The step compiles once per batch shape; new weights,
    steps and data reuse the program, and so does a new `make_train_step` with equal
    arguments (the same graph, ``loss_fn``, ``optimizer`` objects and options). The incoming
    state is donated.

    Arguments:
        graphdef: the model's graph, from `init_state`.
        loss_fn: ``loss_fn(model, batch, key) -> scalar``, with ``model = nnx.merge(graphdef,
            params, extra)``, ``batch`` a dict with ``"x"`` (and ``"labels"`` when the data has
            them) and ``key`` this step's key.
        optimizer: the optax transformation the state was initialized with.
        ema_decay: the EMA decay, in [0, 1].
        ema_warmup: warm the decay up as ``min(ema_decay, (1 + n) / (10 + n))``.
        mesh: the device mesh (default: `data_mesh()`).

    Returns:
        A `TrainStep`: ``step(state, batch) -> (state, metrics)``, metrics a dict of scalars
        ``loss``, ``grad_norm`` (before clipping) and ``lr`` (nan when the optimizer state does
        not record it).
    """
    if not 0.0 <= float(ema_decay) <= 1.0:
        raise ValueError(f"ema_decay must be in [0, 1]; got {ema_decay}")
    mesh = data_mesh() if mesh is None else mesh
    options = _StepOptions(
        graphdef, loss_fn, optimizer, float(ema_decay), bool(ema_warmup), NamedSharding(mesh, P())
    )
    return TrainStep(functools.partial(_train_step, options), mesh)


class _StepOptions(NamedTuple):
    # hashable (a static argument): equal options reuse the compiled step across calls,
    # e.g. across `fit` calls with the same model structure, loss function and optimizer
    graphdef: nnx.GraphDef
    loss_fn: LossFn
    optimizer: optax.GradientTransformation
    ema_decay: float
    ema_warmup: bool
    replicated: NamedSharding


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def _train_step(options: _StepOptions, state: TrainState, batch: dict[str, jax.Array]):
    graphdef, loss_fn, optimizer = options.graphdef, options.loss_fn, options.optimizer
    key = jax.random.fold_in(state.key(LOSS_STREAM), state.step)

    # merged outside the gradient so that stateful layers (e.g. nnx.Dropout's RNG counter) may
    # update their state inside it; nnx.value_and_grad differentiates the nnx.Param only
    model = nnx.merge(graphdef, state.params, state.extra)

    def loss_of(model):
        loss = loss_fn(model, batch, key)
        if jnp.shape(loss) != ():
            raise ValueError(f"loss_fn must return a scalar; got shape {jnp.shape(loss)}")
        return loss

    loss, grads = nnx.value_and_grad(loss_of, argnums=nnx.DiffState(0, nnx.Param))(model)
    _, _, extra = nnx.split(model, nnx.Param, ...)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = ema_decay_at(state.step, options.ema_decay, warmup=options.ema_warmup)
    lr = learning_rate(opt_state)
    metrics = {
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),
        "lr": jnp.asarray(jnp.nan if lr is None else lr, jnp.float32),
    }
    new_state = TrainState(
        step=state.step + 1,
        params=params,
        ema=ema_update(state.ema, params, decay),
        extra=extra,
        opt_state=opt_state,
        rng=state.rng,
    )
    # the state stays replicated; the gradient's mean over the sharded batch is all-reduced
    return jax.lax.with_sharding_constraint((new_state, metrics), options.replicated)
