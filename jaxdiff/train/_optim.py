"""The optimizer: AdamW with linear warm-up, cosine decay and gradient clipping (optax)."""

from __future__ import annotations

import math

import jax
import optax

__all__ = ["adamw", "learning_rate"]


def _decay_mask(params):
    # weight decay on matrices and kernels only: biases and normalization scales are left alone
    return jax.tree.map(lambda p: p.ndim > 1, params)


def adamw(
    lr: float = 2e-4,
    *,
    warmup_steps: int = 0,
    total_steps: int,
    weight_decay: float = 0.0,
    clip_norm: float | None = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    final_lr_fraction: float = 0.0,
) -> optax.GradientTransformation:
    """AdamW (Loshchilov & Hutter 2019) on a warm-up + cosine schedule, after global-norm
    gradient clipping: ``optax.chain(clip_by_global_norm, adamw)``.

    The learning rate rises linearly from 0 to ``lr`` over ``warmup_steps`` steps, then
    follows a half cosine down to ``final_lr_fraction * lr`` at ``total_steps``. The current
    learning rate lives in the optimizer state (``optax.inject_hyperparams``), where
    `learning_rate` reads it for the metrics. Weight decay applies to parameters of rank >= 2.

    Arguments:
        lr: the peak learning rate.
        warmup_steps: steps of linear warm-up, at most ``total_steps``.
        total_steps: the length of the schedule (the run's total step count).
        weight_decay: decoupled weight decay.
        clip_norm: clip gradients to this global norm; None turns clipping off.
        b1: Adam's first-moment decay.
        b2: Adam's second-moment decay.
        eps: Adam's denominator offset.
        final_lr_fraction: the learning rate at ``total_steps``, as a fraction of ``lr``.

    Returns:
        An `optax.GradientTransformation`.

    >>> import jaxdiff.train as jt
    >>> tx = jt.adamw(1e-3, warmup_steps=100, total_steps=1000)
    """
    lr = float(lr)
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be positive and finite; got {lr}")
    if int(total_steps) < 1:
        raise ValueError(f"total_steps must be >= 1; got {total_steps}")
    if not 0 <= int(warmup_steps) <= int(total_steps):
        raise ValueError(
            f"warmup_steps must be in [0, total_steps={total_steps}]; got {warmup_steps}"
        )
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive or None; got {clip_norm}")
    if not 0.0 <= final_lr_fraction <= 1.0:
        raise ValueError(f"final_lr_fraction must be in [0, 1]; got {final_lr_fraction}")
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=lr,
        warmup_steps=int(warmup_steps),
        decay_steps=max(int(total_steps), int(warmup_steps) + 1),
        end_value=lr * final_lr_fraction,
    )
    inner = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=schedule,
        b1=b1,
        b2=b2,
        eps=eps,
        weight_decay=weight_decay,
        mask=_decay_mask,
    )
    clip = optax.identity() if clip_norm is None else optax.clip_by_global_norm(clip_norm)
    return optax.chain(clip, inner)


def learning_rate(opt_state) -> jax.Array | None:
    """The learning rate of the last update, read from an optimizer state that injects it
    (`adamw` does); None when the state holds no learning rate."""
    try:
        return optax.tree_utils.tree_get(
            opt_state, "learning_rate", filtering=lambda _, v: isinstance(v, jax.Array)
        )
    except KeyError:
        return None
