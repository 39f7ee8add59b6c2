"""k-diffusion's `sampling.py`, loaded on its own as the peer implementation.

k-diffusion's package `__init__` imports heavy optional dependencies (torchvision, kornia,
clean-fid, wandb ...), so only `k_diffusion/sampling.py` is loaded, with a tiny stand-in for
the one helper it takes from `k_diffusion.utils`. Install: `pip install torch==2.13.0
torchsde torchdiffeq` and `pip install --no-deps k-diffusion`.
"""

from __future__ import annotations

import numpy as np


def load():
    """The module `k_diffusion.sampling`, or raise ImportError when k-diffusion is missing
    (`jaxdiff.bench.load_kdiffusion`, shared with the benchmark)."""
    from jaxdiff.bench import load_kdiffusion

    return load_kdiffusion()


def torch_denoiser(gm):
    """The mixture's exact denoiser in float64 torch (closed form, per-sample sigma)."""
    import torch

    means = torch.tensor(np.asarray(gm.means, np.float64))
    variances = torch.tensor(np.asarray(gm.variances, np.float64))
    log_w = torch.log(torch.tensor(np.asarray(gm.weights, np.float64)))

    def denoise(x, sigma):
        x64 = x.double()
        s2 = sigma.double().reshape(-1, 1, 1) ** 2  # (batch, 1, 1)
        var = variances[None] + s2  # (batch, K, d)
        diff = x64[:, None, :] - means[None]
        log_joint = log_w[None] - 0.5 * torch.sum(diff**2 / var + torch.log(2 * torch.pi * var), -1)
        resp = torch.softmax(log_joint, -1)[..., None]
        post = means[None] + variances[None] / var * diff
        return torch.sum(resp * post, 1).to(x.dtype)

    return denoise


def run_both(sampler, kd_name, *, gm, sigmas, x, kd_kwargs=None):
    """Run a jaxdiff sampler and its k-diffusion namesake on identical inputs (float64 on
    both sides, the mixture's exact denoiser); returns both results as numpy arrays.

    Call inside `jax.enable_x64(True)`. `sigmas` and `x` are numpy arrays.
    """
    import jax.numpy as jnp
    import torch

    import jaxdiff as jd

    kd = load()
    ours = jd.sample(gm.denoiser, jnp.asarray(x), jnp.asarray(sigmas), solver=sampler)
    theirs = getattr(kd, kd_name)(
        torch_denoiser(gm),
        torch.tensor(x, dtype=torch.float64),
        torch.tensor(sigmas, dtype=torch.float64),
        disable=True,
        **(kd_kwargs or {}),
    )
    return np.asarray(ours), theirs.numpy()
