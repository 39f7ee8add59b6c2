"""Training: offline datasets, the optax train step with EMA, orbax checkpoints, the fit loop,
and the model recipes that rebuild a ``jaxdiff train`` / ``bridge-train`` run's model."""

from ._checkpoint import (
    Checkpointer as Checkpointer,
    CheckpointError as CheckpointError,
    latest_step as latest_step,
    read_config as read_config,
    restore as restore,
)
from ._data import (
    DATASETS as DATASETS,
    TOYS as TOYS,
    Dataset as Dataset,
    batch_at as batch_at,
    digits as digits,
    load_dataset as load_dataset,
    load_npy as load_npy,
    split as split,
    toy as toy,
)
from ._ema import ema_decay_at as ema_decay_at, ema_update as ema_update
from ._fit import FitResult as FitResult, fit as fit, load_model as load_model
from ._losses import (
    cosine_betas as cosine_betas,
    ddpm_loss as ddpm_loss,
    dsm_loss as dsm_loss,
    edm_loss as edm_loss,
    linear_betas as linear_betas,
)
from ._optim import adamw as adamw, learning_rate as learning_rate
from ._pairs import (
    COUPLINGS as COUPLINGS,
    PAIRINGS as PAIRINGS,
    degrade_digits as degrade_digits,
    pair_dataset as pair_dataset,
)
from ._recipe import (
    RecipeError as RecipeError,
    bridge_precond as bridge_precond,
    build_bridge as build_bridge,
    build_bridge_network as build_bridge_network,
    build_network as build_network,
    data_sigma as data_sigma,
    draw_samples as draw_samples,
    edm_loss_fn as edm_loss_fn,
    network_config as network_config,
    sampling_denoiser as sampling_denoiser,
)
from ._step import (
    TrainState as TrainState,
    TrainStep as TrainStep,
    data_mesh as data_mesh,
    init_state as init_state,
    make_train_step as make_train_step,
)

__all__ = [
    "COUPLINGS",
    "DATASETS",
    "PAIRINGS",
    "TOYS",
    "CheckpointError",
    "Checkpointer",
    "Dataset",
    "FitResult",
    "RecipeError",
    "TrainState",
    "TrainStep",
    "adamw",
    "batch_at",
    "bridge_precond",
    "build_bridge",
    "build_bridge_network",
    "build_network",
    "cosine_betas",
    "data_mesh",
    "data_sigma",
    "ddpm_loss",
    "degrade_digits",
    "digits",
    "draw_samples",
    "dsm_loss",
    "edm_loss",
    "edm_loss_fn",
    "ema_decay_at",
    "ema_update",
    "fit",
    "init_state",
    "latest_step",
    "learning_rate",
    "linear_betas",
    "load_dataset",
    "load_model",
    "load_npy",
    "make_train_step",
    "network_config",
    "pair_dataset",
    "read_config",
    "restore",
    "sampling_denoiser",
    "split",
    "toy",
]
