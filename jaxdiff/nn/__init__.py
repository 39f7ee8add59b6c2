"""Flax NNX score/denoiser networks: `MLP` for vectors, `UNet` for NHWC images, and the
noise-level embeddings they use. Every network is called as `F(x, c_noise, labels=None)` and
plugs into `jaxdiff.parametrizations` (`EDMPrecond(net)` etc.); `ConcatConditioned(net)` is
called as `F(x, c_noise, x_T)`, the raw network of a bridge (`jaxdiff.bridges.BridgePrecond`)."""

from ._bridge import ConcatConditioned
from ._embedding import FourierEmbedding, SinusoidalEmbedding
from ._mlp import MLP
from ._unet import UNet

__all__ = ["MLP", "ConcatConditioned", "FourierEmbedding", "SinusoidalEmbedding", "UNet"]
