r"""Inverse problems with a diffusion prior: a linear observation `y = A x_0 + noise` and
posterior samplers.

    obs = jd.inverse.LinearObservation(A, y, noise_std)   # A: a matrix or an operator
    x0 = jd.inverse.sample(denoiser, obs, x, sigmas, method="pigdm", key=key)

Operators (each with `apply`, `transpose`, `as_matrix` and its SVD): `Dense(matrix)`,
`Mask(mask)` (inpainting), `Blur(kernel)` / `Blur.gaussian(size, std)` (deblurring),
`Downsample(factor)` (super-resolution).

Methods (`sample(..., method=name, **options)`):

- `"dps"` (`DPS`): the denoiser plus DPS's likelihood gradient (Chung et al. 2023); biased.
- `"pigdm"` (`PiGDM`): a Gaussian `p(x_0 | x_t)` of variance `r_t^2` (Song et al. 2023);
  exact for isotropic Gaussian priors.
- `"tmpd"` (`TMPD`): Tweedie's covariance `sigma^2 dD/dx` (Boys et al. 2023); exact for
  Gaussian priors.
- `"repaint"` (`RePaint`): masked replacement with resampling (Lugmayr et al. 2022); biased.
- `"smc"` (`MCGdiff`): sequential Monte Carlo (Cardoso et al. 2024), asymptotically exact
  as `num_particles` grows; `num_particles` times the sampler's NFE, no gradients.

The first three are denoiser transforms (`method.denoiser(D, obs)`) that run on any sampler
of `jaxdiff.samplers` (`solver=`), at the sampler's NFE, each evaluation with a backward pass
(TMPD: plus Jacobian-vector products). Every call is one compiled program; a new `y` does
not recompile.
"""

from ._dps import DPS as DPS
from ._guided import AbstractGuidance as AbstractGuidance, GuidedDenoiser as GuidedDenoiser
from ._mcgdiff import MCGdiff as MCGdiff
from ._observation import LinearObservation as LinearObservation
from ._operators import (
    AbstractOperator as AbstractOperator,
    Blur as Blur,
    Dense as Dense,
    Downsample as Downsample,
    Mask as Mask,
    gaussian_kernel as gaussian_kernel,
)
from ._pigdm import PiGDM as PiGDM
from ._repaint import RePaint as RePaint
from ._sample import METHODS as METHODS, num_evaluations as num_evaluations, sample as sample
from ._tmpd import TMPD as TMPD

__all__ = [
    "DPS",
    "METHODS",
    "TMPD",
    "AbstractGuidance",
    "AbstractOperator",
    "Blur",
    "Dense",
    "Downsample",
    "GuidedDenoiser",
    "LinearObservation",
    "MCGdiff",
    "Mask",
    "PiGDM",
    "RePaint",
    "gaussian_kernel",
    "num_evaluations",
    "sample",
]
