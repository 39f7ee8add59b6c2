"""The API reference's table of contents: which public names each page documents.

The reference is generated from this table and from the package itself (`jaxdiff.__all__`, the
subpackages and each subpackage's `__all__`), so a new name appears on its page by itself. A
new public *subpackage* must be given a page here: add ``"jaxdiff.<name>"`` to the entries of
the group where a user would look for it (or a new `Group`). tests/test_docs.py fails, naming
the subpackage and this file, until it is; it also fails on a top-level name that no page
documents and on an entry here that names nothing public.

Entries are either a subpackage (``"jaxdiff.samplers"``: every name of its `__all__`, in that
order) or one top-level name (``"jaxdiff.sample"``). A top-level name that is the same object
as a member of a documented subpackage (``jaxdiff.VP`` is ``jaxdiff.processes.VP``) needs no
entry: the subpackage's page lists it as an alias.

Only the standard library is imported here (the tests read this table without mkdocs).
"""

from __future__ import annotations

from typing import NamedTuple


class Group(NamedTuple):
    """One page of the API reference."""

    #: the page's title (and its entry in the navigation)
    title: str
    #: the page's file name under docs/api/ (generated, without ".md")
    slug: str
    #: one line under the title: what a user finds here
    summary: str
    #: subpackages ("jaxdiff.sde") and top-level names ("jaxdiff.sample"), in page order
    entries: tuple[str, ...]


GROUPS: tuple[Group, ...] = (
    Group(
        "SDEs and Brownian paths",
        "sde",
        "Itô SDEs as drift/diffusion pairs, solved on diffrax forward or in reverse time.",
        ("jaxdiff.sde",),
    ),
    Group(
        "Processes and flows",
        "processes",
        "Noising processes in EDM's form `x_t = s(t) (x_0 + sigma(t) eps)` and the affine flow "
        "paths of flow matching, with their SDEs and probability-flow ODEs.",
        ("jaxdiff.processes",),
    ),
    Group(
        "Sampling",
        "sampling",
        "The fixed-grid sampler driver, chunked and per-sample-key sampling, and the generic "
        "diffrax path.",
        (
            "jaxdiff.sample",
            "jaxdiff.SampleResult",
            "jaxdiff.sample_chunked",
            "jaxdiff.per_sample_keys",
            "jaxdiff.sample_ode",
            "jaxdiff.sample_sde",
            "jaxdiff.GenericResult",
        ),
    ),
    Group(
        "Samplers",
        "samplers",
        "Every sampler with its paper, order and network evaluations (NFE) per step.",
        ("jaxdiff.samplers",),
    ),
    Group(
        "Schedules",
        "schedules",
        "Noise grids: closed forms, tuned tables, flow grids, discrete timesteps and the grid "
        "optimizer.",
        ("jaxdiff.schedules",),
    ),
    Group(
        "Guidance",
        "guidance",
        "Classifier-free guidance, autoguidance, classifier guidance and CFG++ as denoiser "
        "transforms.",
        ("jaxdiff.guidance",),
    ),
    Group(
        "Inverse problems",
        "inverse",
        "Posterior sampling for linear observations `y = A x_0 + noise` with a diffusion prior: "
        "DPS, PiGDM, TMPD, RePaint and sequential Monte Carlo.",
        ("jaxdiff.inverse",),
    ),
    Group(
        "Models: networks and parametrizations",
        "models",
        "flax NNX networks, and the converters that turn eps-, v-, x0-, score- and velocity "
        "networks into denoisers.",
        ("jaxdiff.nn", "jaxdiff.parametrizations"),
    ),
    Group(
        "Pretrained models",
        "pretrained",
        "diffusers' `UNet2DModel` checkpoints (DDPM, NCSN++) ported to flax NNX and loaded "
        "without torch, as sigma-space denoisers for every sampler.",
        ("jaxdiff.pretrained",),
    ),
    Group(
        "Training",
        "train",
        "Losses, the train step and `fit`, checkpoints, data and the run recipes.",
        ("jaxdiff.train",),
    ),
    Group(
        "Likelihood",
        "likelihood",
        "Log-likelihoods through the probability-flow ODE, bits per dimension, dequantization.",
        (
            "jaxdiff.log_likelihood",
            "jaxdiff.log_likelihood_process",
            "jaxdiff.log_likelihood_flow",
            "jaxdiff.LikelihoodResult",
            "jaxdiff.bits_per_dim",
            "jaxdiff.dequantize",
        ),
    ),
    Group(
        "Discrete time and Analytic-DPM",
        "discrete",
        "The DDPM chain (betas, alpha-bars, timesteps) and Analytic-DPM's optimal variances.",
        ("jaxdiff.discrete", "jaxdiff.analytic_dpm"),
    ),
    Group(
        "Diffusion bridges",
        "bridges",
        "DDBM and DBIM bridges between paired distributions, their loss and oracle.",
        ("jaxdiff.bridges",),
    ),
    Group(
        "Exact oracles and metrics",
        "oracles",
        "Gaussian mixtures with closed-form scores, denoisers and densities at every noise "
        "level; the sliced Wasserstein distance.",
        ("jaxdiff.analytic", "jaxdiff.metrics"),
    ),
    Group(
        "Many devices",
        "parallel",
        "Data-parallel sampling: shard a batch over a mesh, replicate the weights.",
        ("jaxdiff.shard_batch", "jaxdiff.local_rows", "jaxdiff.process_slice", "jaxdiff.replicate"),
    ),
    Group(
        "Benchmark harness",
        "bench",
        "Samplers x schedules x NFE on exact problems, the peers (k-diffusion, diffusers, "
        "diffrax) on identical inputs.",
        ("jaxdiff.bench",),
    ),
    Group(
        "Command line (Python)",
        "cli",
        "The `jaxdiff` command's entry points; its commands and options are in the "
        "[CLI reference](../cli.md).",
        ("jaxdiff.cli",),
    ),
)
