"""jaxdiff: the SDEs and ODEs behind diffusion generative models, in JAX.

The public surface; everything is implemented in private modules. The packages follow the
layers, bottom to top: `sde` (Itô SDEs on diffrax), `processes` (noising processes),
`parametrizations`, `samplers` and `schedules` (the fixed-grid sampler core), `discrete` (the
DDPM chain) and `analytic_dpm`, `analytic` (exact oracles), `metrics`, `nn` and `train`
(networks and training), `bridges` (diffusion bridges), `bench` (the benchmark harness); the
command line (`jaxdiff.cli`) sits on top and nothing below it imports it.

The names are loaded lazily (Scientific Python's SPEC 1): ``import jaxdiff`` imports neither
JAX nor any subpackage, so that ``jaxdiff --help`` answers at once; each public name is
imported from its private module on first access (``jaxdiff.sample``,
``from jaxdiff import sample``, ``from jaxdiff import *``). The ``TYPE_CHECKING`` block below
holds the same imports written out, for type checkers and documentation tools;
tests/test_layout.py checks that it and the tables agree.
"""

import importlib
import importlib.metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import (
        analytic as analytic,
        analytic_dpm as analytic_dpm,
        bench as bench,
        bridges as bridges,
        discrete as discrete,
        guidance as guidance,
        inverse as inverse,
        metrics as metrics,
        nn as nn,
        parametrizations as parametrizations,
        pretrained as pretrained,
        processes as processes,
        samplers as samplers,
        schedules as schedules,
        sde as sde,
        train as train,
    )
    from ._generic import sample_ode as sample_ode, sample_sde as sample_sde
    from ._likelihood import (
        bits_per_dim as bits_per_dim,
        dequantize as dequantize,
        log_likelihood as log_likelihood,
        log_likelihood_flow as log_likelihood_flow,
        log_likelihood_process as log_likelihood_process,
    )
    from ._parallel import (
        local_rows as local_rows,
        per_sample_keys as per_sample_keys,
        process_slice as process_slice,
        replicate as replicate,
        sample_chunked as sample_chunked,
        shard_batch as shard_batch,
    )
    from ._results import (
        GenericResult as GenericResult,
        LikelihoodResult as LikelihoodResult,
        SampleResult as SampleResult,
    )
    from .processes import (
        EDM as EDM,
        VE as VE,
        VP as VP,
        AbstractFlow as AbstractFlow,
        AbstractProcess as AbstractProcess,
        AffineFlow as AffineFlow,
        CosineVP as CosineVP,
        RectifiedFlow as RectifiedFlow,
        SubVP as SubVP,
        TrigFlow as TrigFlow,
        denoiser_from_score as denoiser_from_score,
        score_from_denoiser as score_from_denoiser,
    )
    from .samplers._core import sample as sample
    from .sde import (
        SDE as SDE,
        DiscreteBrownianPath as DiscreteBrownianPath,
        brownian_tree as brownian_tree,
        solve_sde as solve_sde,
    )

__version__ = importlib.metadata.version("jaxdiff")

#: the public subpackages, imported on first access as attributes (``jaxdiff.train``)
_SUBPACKAGES = (
    "analytic",
    "analytic_dpm",
    "bench",
    "bridges",
    "discrete",
    "guidance",
    "inverse",
    "metrics",
    "nn",
    "parametrizations",
    "pretrained",
    "processes",
    "samplers",
    "schedules",
    "sde",
    "train",
)

#: the private (or sub-) module each other public name is imported from on first access
_ATTRIBUTES = {
    **dict.fromkeys(("sample_ode", "sample_sde"), "._generic"),
    **dict.fromkeys(
        (
            "bits_per_dim",
            "dequantize",
            "log_likelihood",
            "log_likelihood_flow",
            "log_likelihood_process",
        ),
        "._likelihood",
    ),
    **dict.fromkeys(
        (
            "local_rows",
            "per_sample_keys",
            "process_slice",
            "replicate",
            "sample_chunked",
            "shard_batch",
        ),
        "._parallel",
    ),
    **dict.fromkeys(("GenericResult", "LikelihoodResult", "SampleResult"), "._results"),
    **dict.fromkeys(
        (
            "EDM",
            "VE",
            "VP",
            "AbstractFlow",
            "AbstractProcess",
            "AffineFlow",
            "CosineVP",
            "RectifiedFlow",
            "SubVP",
            "TrigFlow",
            "denoiser_from_score",
            "score_from_denoiser",
        ),
        ".processes",
    ),
    "sample": ".samplers._core",
    **dict.fromkeys(("SDE", "DiscreteBrownianPath", "brownian_tree", "solve_sde"), ".sde"),
}


def __getattr__(name: str):
    """Imports a public name on first access and caches it in the module's namespace (so
    later accesses do not come here)."""
    if name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The loaded names and the public ones not loaded yet (for completion and `dir`)."""
    return sorted({*globals(), *__all__})


__all__ = [
    "EDM",
    "SDE",
    "VE",
    "VP",
    "AbstractFlow",
    "AbstractProcess",
    "AffineFlow",
    "CosineVP",
    "DiscreteBrownianPath",
    "GenericResult",
    "LikelihoodResult",
    "RectifiedFlow",
    "SampleResult",
    "SubVP",
    "TrigFlow",
    "analytic",
    "analytic_dpm",
    "bench",
    "bits_per_dim",
    "bridges",
    "brownian_tree",
    "denoiser_from_score",
    "dequantize",
    "discrete",
    "guidance",
    "inverse",
    "local_rows",
    "log_likelihood",
    "log_likelihood_flow",
    "log_likelihood_process",
    "metrics",
    "nn",
    "parametrizations",
    "per_sample_keys",
    "pretrained",
    "process_slice",
    "processes",
    "replicate",
    "sample",
    "sample_chunked",
    "sample_ode",
    "sample_sde",
    "samplers",
    "schedules",
    "score_from_denoiser",
    "sde",
    "shard_batch",
    "solve_sde",
    "train",
]
