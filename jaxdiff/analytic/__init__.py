"""Exact oracles: distributions whose score and denoiser are known at every noise level (Gaussian
mixtures with diagonal or full covariances, their class-conditionals and their exact posteriors
under a linear-Gaussian observation), and samplers scored exactly on them."""

from ._full_covariance import FullGaussianMixture as FullGaussianMixture
from ._gaussian_mixture import GaussianMixture as GaussianMixture
from ._mixture import (
    AbstractGaussianMixture as AbstractGaussianMixture,
    ProcessScore as ProcessScore,
)
from ._oracle import (
    ExpectedLogProb as ExpectedLogProb,
    OracleResult as OracleResult,
    OracleSampler as OracleSampler,
    expected_log_prob as expected_log_prob,
    oracle_samplers as oracle_samplers,
    quadrature_expected_log_prob as quadrature_expected_log_prob,
    run_oracle_sampler as run_oracle_sampler,
)
from ._presets import (
    grid as grid,
    ill_conditioned as ill_conditioned,
    random_mixture as random_mixture,
    ring as ring,
)

__all__ = [
    "AbstractGaussianMixture",
    "ExpectedLogProb",
    "FullGaussianMixture",
    "GaussianMixture",
    "OracleResult",
    "OracleSampler",
    "ProcessScore",
    "expected_log_prob",
    "grid",
    "ill_conditioned",
    "oracle_samplers",
    "quadrature_expected_log_prob",
    "random_mixture",
    "ring",
    "run_oracle_sampler",
]
