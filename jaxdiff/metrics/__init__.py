"""Sample-quality metrics that need no trained judge."""

from ._sliced_wasserstein import sliced_wasserstein as sliced_wasserstein

__all__ = ["sliced_wasserstein"]
