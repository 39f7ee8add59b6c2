"""`jaxdiff.pretrained`: diffusers' `UNet2DModel` in flax NNX against diffusers itself.

Random-weight diffusers models of every supported configuration (small widths, 8x8 images),
written by `save_pretrained` and loaded by `from_diffusers`: the network's output equals
diffusers' forward pass on the same inputs (1e-5 relative in float32, 1e-10 in float64), the
loaded denoiser inside `jaxdiff.sample` with DDIM equals diffusers' `DDIMScheduler` loop on the
same model and noise (float64), and broken folders fail with one error naming the problem.

In float64, diffusers' torch model is run with `.double()` weights; diffusers computes its
sinusoidal time embedding in float32 whatever the weights' dtype (`get_timestep_embedding`'s
`torch.float32`), so those tests rebind `torch` in `diffusers.models.embeddings` to a view in
which `float32` is `float64` (the float64 harness of `jaxdiff.bench._diffusers` does the same
for schedulers); jaxdiff computes the embedding in the weights' dtype.
"""

import functools
import json
import math
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxdiff_test_utils import max_relative, require

import jaxdiff as jd
from jaxdiff import pretrained
from jaxdiff.bench._diffusers import _Float32IsFloat64
from jaxdiff.cli import main
from jaxdiff.pretrained._layers import Conv

FLOAT32 = 1e-5
FLOAT64 = 1e-10
SIZE = 8  # image side: every config downsamples once (two blocks)

# (name, UNet2DModel config, class labels): together they use every supported block and option
SMALL = dict(sample_size=SIZE, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=4)
CONFIGS = {
    # google/ddpm-cifar10-32's options (its blocks, bottom-right downsampling padding, sin-cos
    # embedding with freq_shift 1, one attention head)
    "ddpm": (
        dict(
            SMALL,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            downsample_padding=0,
            flip_sin_to_cos=False,
            freq_shift=1,
            attention_head_dim=None,
            norm_eps=1e-6,
        ),
        None,
    ),
    # google/ncsnpp-*'s: skip blocks with FIR resampling, Fourier embedding, groups min(C/4, 32)
    "ncsnpp": (
        dict(
            sample_size=SIZE,
            block_out_channels=(32, 64),  # its attention blocks have 32 groups
            layers_per_block=1,
            down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
            up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"),
            time_embedding_type="fourier",
            norm_num_groups=None,
            attention_head_dim=None,
            mid_block_scale_factor=math.sqrt(2),
            norm_eps=1e-6,
        ),
        None,
    ),
    # class embedding, scale-shift conditioning, resnet resampling, several heads, ...
    "classes": (
        dict(
            SMALL,
            down_block_types=("AttnDownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "AttnUpBlock2D"),
            num_class_embeds=5,
            resnet_time_scale_shift="scale_shift",
            downsample_type="resnet",
            upsample_type="resnet",
            attention_head_dim=8,
            attn_norm_num_groups=2,
            in_channels=4,
            out_channels=2,
            act_fn="mish",
            center_input_sample=True,
            time_embedding_dim=24,
        ),
        [3, 0],
    ),
    # a learned time embedding, class labels through it, no attention in the middle
    "learned": (
        dict(
            SMALL,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            time_embedding_type="learned",
            num_train_timesteps=1000,
            class_embed_type="timestep",
            add_attention=False,
            act_fn="gelu",
        ),
        [7, 912],
    ),
    # no middle block, an identity class embedding (labels are embeddings)
    "identity": (
        dict(
            SMALL,
            down_block_types=("AttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "AttnUpBlock2D"),
            mid_block_type=None,
            class_embed_type="identity",
            act_fn="swish",
        ),
        "embedding",
    ),
}


@pytest.fixture(scope="module")
def diffusers():
    require("torch", "diffusers", "safetensors", why="the diffusers UNet2DModel peer")
    import diffusers

    return diffusers


@pytest.fixture(scope="module")
def saved(diffusers, tmp_path_factory):
    """`saved(name) -> (torch model, folder)`: a random diffusers model of `CONFIGS[name]`
    (every parameter perturbed, so that GroupNorm's unit scales are not trivially right),
    saved once per module; "ddpm" as a DDPM pipeline folder with a DDIM scheduler."""
    import torch

    @functools.cache
    def make(name):
        torch.manual_seed(len(name))
        model = diffusers.UNet2DModel(**CONFIGS[name][0]).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
        folder = tmp_path_factory.mktemp(name)
        if name == "ddpm":
            scheduler = diffusers.DDIMScheduler(clip_sample=False)
            diffusers.DDPMPipeline(unet=model, scheduler=scheduler).save_pretrained(folder)
        else:
            model.save_pretrained(folder)
        return model, folder

    return make


def _inputs(name, config, dtype):
    """A batch of 2 inputs (NCHW), timesteps and labels for `config`."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, config.get("in_channels", 3), SIZE, SIZE)).astype(dtype)
    if config.get("time_embedding_type") == "fourier":
        t = np.array([0.05, 30.0], dtype)  # sigma
    else:
        t = np.array([3, 517], np.int64)
    labels = CONFIGS[name][1]
    if labels == "embedding":
        width = config.get("time_embedding_dim") or 4 * config["block_out_channels"][0]
        labels = rng.standard_normal((2, width)).astype(dtype)
    elif labels is not None:
        labels = np.asarray(labels, np.int64)
    return x, t, labels


def _theirs(model, x, t, labels):
    import torch

    with torch.no_grad():
        out = model(
            torch.from_numpy(x),
            torch.from_numpy(t),
            class_labels=None if labels is None else torch.from_numpy(labels),
        )
    return out.sample.numpy()


@functools.cache
def _forward():
    return jax.jit(lambda net, x, t, labels: net(x, t, labels))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_network_equals_diffusers_float32(saved, name):
    model, folder = saved(name)
    config = CONFIGS[name][0]
    x, t, labels = _inputs(name, config, np.float32)
    theirs = _theirs(model, x, t, labels)
    m = pretrained.from_diffusers(folder, dtype=jnp.float32, conv="direct")
    for key, value in config.items():  # the config read back, with diffusers' defaults
        assert m.config[key] == (list(value) if isinstance(value, tuple) else value)
    lab = None if labels is None else jnp.asarray(labels)
    ours = _forward()(m.network, jnp.asarray(x), jnp.asarray(t), lab)
    assert ours.dtype == jnp.float32 and ours.shape == theirs.shape
    assert max_relative(ours, theirs) < FLOAT32  # measured <= 3.1e-6
    # Winograd F(4x4, 3x3) in every 3x3 stride-1 convolution (these widths are below the
    # default threshold): the same to float32 rounding
    winograd = m.network
    assert winograd.to_winograd(min_channels=1) >= 2 * len(config["block_out_channels"])
    ours = _forward()(winograd, jnp.asarray(x), jnp.asarray(t), lab)
    assert max_relative(ours, theirs) < FLOAT32  # measured <= 5.1e-6
    if name == "ddpm":  # the NHWC layout: the same numbers, no transposes
        nhwc = pretrained.from_diffusers(folder, dtype=jnp.float32, layout="NHWC")
        ours = _forward()(nhwc.network, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(t), lab)
        assert max_relative(np.asarray(ours).transpose(0, 3, 1, 2), theirs) < FLOAT32


@pytest.mark.parametrize("name", ["ddpm", "ncsnpp"])
def test_network_and_denoiser_equal_diffusers_float64(saved, x64, monkeypatch, name):
    import diffusers.models.embeddings
    import torch

    monkeypatch.setattr(diffusers.models.embeddings, "torch", _Float32IsFloat64(torch))
    model, folder = saved(name)
    x, t, labels = _inputs(name, CONFIGS[name][0], np.float64)
    sigma = 30.0  # the VE model's denoiser at this sigma
    model.double()
    try:
        theirs = _theirs(model, x, t, labels)
        at_sigma = _theirs(model, x, np.full(2, sigma), labels)
    finally:
        model.float()  # float32 -> float64 -> float32 is exact
    m = pretrained.from_diffusers(folder, dtype=jnp.float64, conv="winograd")
    assert m.conv == "winograd"
    xj = jnp.asarray(x)
    direct = pretrained.from_diffusers(folder, dtype=jnp.float64, conv="direct")
    ours = _forward()(direct.network, xj, jnp.asarray(t), None)
    assert max_relative(ours, theirs) < FLOAT64  # measured <= 5.8e-15
    if name == "ncsnpp":  # a VE score model: D(x, sigma) = x + sigma^2 net(x, sigma)
        assert (m.prediction, m.sigma_min, m.sigma_max) == ("score", 0.01, 1348.0)
        both = jax.jit(lambda net, d, x: (net(x, t), d(x, sigma)))
        ours, denoised = both(m.network, m.denoiser, xj)
        assert max_relative(denoised, x + sigma**2 * at_sigma) < FLOAT64  # measured 8.6e-14
    else:
        ours = _forward()(m.network, xj, jnp.asarray(t), None)
    assert ours.dtype == jnp.float64
    assert max_relative(ours, theirs) < FLOAT64  # Winograd's: measured <= 8.0e-15


def test_ddim_equals_diffusers_ddim_scheduler_loop(saved, x64, monkeypatch):
    """`jaxdiff.sample(m.denoiser, ..., DDIM())` on the scheduler's own timesteps is
    diffusers' `DDIMScheduler` loop (eta 0, its float64 arithmetic) on the same model and
    noise, step for step to the end (`set_alpha_to_one`: the last step lands on sigma 0)."""
    import diffusers.models.embeddings
    import diffusers.schedulers.scheduling_ddim as ddim_module
    import torch

    view = _Float32IsFloat64(torch)
    monkeypatch.setattr(diffusers.models.embeddings, "torch", view)
    monkeypatch.setattr(ddim_module, "torch", view)  # its betas and alphas in float64
    monkeypatch.setattr(ddim_module, "np", _Float32IsFloat64(np))
    model, folder = saved("ddpm")
    m = pretrained.from_diffusers(folder, dtype=jnp.float64)
    assert (m.scheduler.class_name, m.prediction) == ("DDIMScheduler", "eps")
    steps = 5
    noise = np.random.default_rng(2).standard_normal((2, 3, SIZE, SIZE))

    scheduler = ddim_module.DDIMScheduler.from_config(m.scheduler.config)
    scheduler.set_timesteps(steps)
    assert scheduler.alphas_cumprod.dtype == torch.float64
    np.testing.assert_allclose(scheduler.alphas_cumprod.numpy(), m.alphas_cumprod, rtol=1e-13)
    sample = torch.from_numpy(noise)
    model.double()
    try:
        with torch.no_grad():
            for t in scheduler.timesteps:
                eps = model(sample, t).sample
                sample = scheduler.step(eps, t, sample, eta=0.0).prev_sample
    finally:
        model.float()
    theirs = sample.numpy()

    sigmas = m.sigmas(steps, "discrete")  # diffusers' "leading" timesteps 800, 600, .., 0
    assert sigmas.dtype == jnp.float64 and sigmas[-1] == 0
    x = jnp.asarray(noise) * jnp.sqrt(1 + sigmas[0] ** 2)  # unit-variance latents, sigma-space
    ours = jd.sample(m.denoiser, x, sigmas, solver=jd.samplers.DDIM())
    assert max_relative(ours, theirs) < FLOAT64  # measured 1.8e-15


def test_scheduler_tables_equal_diffusers(diffusers):
    """The float64 tables rebuilt from scheduler configs, against diffusers' own (float32)."""
    cases = [
        (diffusers.DDPMScheduler(), "eps"),
        (diffusers.DDIMScheduler(beta_schedule="scaled_linear", prediction_type="sample"), "x0"),
        (diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2"), "eps"),
        (diffusers.DDPMScheduler(beta_schedule="sigmoid", num_train_timesteps=50), "eps"),
        (diffusers.DDIMScheduler(rescale_betas_zero_snr=True, prediction_type="v_prediction"), "v"),
        (diffusers.PNDMScheduler(trained_betas=np.linspace(1e-3, 0.2, 20).tolist()), "eps"),
    ]
    for scheduler, prediction in cases:
        config = {"_class_name": type(scheduler).__name__, **scheduler.config}
        info = pretrained.scheduler_info(config, time_embedding_type="positional")
        assert info.prediction == prediction and info.kind == "discrete"
        theirs = scheduler.alphas_cumprod.numpy()
        np.testing.assert_allclose(info.alphas_cumprod, theirs, rtol=2e-6, atol=1e-12)
    ve = diffusers.ScoreSdeVeScheduler(sigma_min=0.02, sigma_max=378.0)
    config = {"_class_name": "ScoreSdeVeScheduler", **ve.config}
    info = pretrained.scheduler_info(config, time_embedding_type="fourier")
    assert (info.kind, info.sigma_min, info.sigma_max) == ("ve", 0.02, 378.0)


# -- broken folders: one error each, naming the problem ----------------------------------------


def _edit_config(folder, **changes):
    path = folder / "unet" / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _break(folder, how):
    unet = folder / "unet"
    if how == "missing weights":
        (unet / "diffusion_pytorch_model.safetensors").unlink()
    elif how == "pytorch weights":
        (unet / "diffusion_pytorch_model.safetensors").rename(unet / "diffusion_pytorch_model.bin")
    elif how == "missing config":
        (unet / "config.json").unlink()
    elif how == "unsupported block":
        _edit_config(folder, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"])
    elif how == "unknown key":
        _edit_config(folder, frobnication_level=3)
    elif how == "unsupported value":
        _edit_config(folder, resnet_time_scale_shift="spatial")
    elif how == "mismatched shape":
        _edit_config(folder, in_channels=4)
    elif how == "missing tensors":
        _edit_config(folder, layers_per_block=2)
    elif how == "unsupported scheduler":
        path = folder / "scheduler" / "scheduler_config.json"
        path.write_text(json.dumps({"_class_name": "CMStochasticIterativeScheduler"}))


BROKEN = {
    "missing weights": (FileNotFoundError, r"missing weights file .*safetensors"),
    "pytorch weights": (FileNotFoundError, r"diffusion_pytorch_model\.bin: PyTorch pickles"),
    "missing config": (FileNotFoundError, r"missing model config .*config\.json"),
    "unsupported block": (ValueError, r"unsupported down block type 'CrossAttnDownBlock2D'"),
    "unknown key": (ValueError, r"unknown UNet2DModel config key\(s\) 'frobnication_level'"),
    "unsupported value": (ValueError, r"unsupported resnet_time_scale_shift 'spatial'"),
    "mismatched shape": (
        ValueError,
        r"tensor 'conv_in\.weight' .* has shape \(16, 3, 3, 3\), but config\.json gives "
        r"\(16, 4, 3, 3\)",
    ),
    "missing tensors": (ValueError, r"lacks \d+ tensor\(s\) the config needs: 'down_blocks"),
    "unsupported scheduler": (ValueError, r"unsupported scheduler 'CMStochasticIterative"),
}


@pytest.mark.parametrize("how", list(BROKEN))
def test_broken_folders_fail_with_one_clear_error(saved, tmp_path, how):
    _, folder = saved("ddpm")
    copy = tmp_path / "pipeline"
    shutil.copytree(folder, copy)
    _break(copy, how)
    error, message = BROKEN[how]
    with pytest.raises(error, match=message):
        pretrained.from_diffusers(copy)


def test_not_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no diffusers model folder"):
        pretrained.from_diffusers(tmp_path / "nothing")


def test_loading_needs_no_torch(saved):
    """`from_diffusers` reads the weights with safetensors' numpy API: torch is never imported
    (a fresh interpreter, as a user without torch has)."""
    _, folder = saved("ddpm")
    code = (
        "import sys; from jaxdiff import pretrained; "
        f"m = pretrained.from_diffusers({str(folder)!r}); "
        "assert m.network.conv_in.kernel.shape == (3, 3, 3, 16); "
        "print(sorted(k for k in ('torch', 'diffusers') if k in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_missing_safetensors_names_the_extra(saved, monkeypatch):
    _, folder = saved("ddpm")
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)  # import fails
    with pytest.raises(ImportError, match=r"jaxdiff\[pretrained\]"):
        pretrained.from_diffusers(folder)


# -- the command line --------------------------------------------------------------------------


def test_cli_samples_a_pipeline_folder(saved, tmp_path, capsys):
    """`jaxdiff sample --diffusers DIR` writes what `Pretrained.sample` draws (NHWC) with the
    same sampler, grid and seed."""
    _, folder = saved("ddpm")
    out = tmp_path / "samples.npy"
    argv = ["sample", "--diffusers", str(folder), "--solver", "euler", "--steps", "2"]
    assert main([*argv, "--num", "3", "--batch", "2", "--seed", "5", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: 3 samples")
    m = pretrained.from_diffusers(folder, layout="NHWC")
    expected = m.sample(3, m.sigmas(2), solver="euler", key=jax.random.key(5), batch=2)
    written = np.load(out)
    assert written.shape == (3, SIZE, SIZE, 3)
    np.testing.assert_array_equal(written, expected)


def test_cli_errors(saved, tmp_path, capsys):
    out = str(tmp_path / "x.npy")
    missing = str(tmp_path / "nothing")
    assert main(["sample", "--diffusers", missing, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxdiff sample: error: --diffusers: no diffusers model folder")
    assert err.count("\n") == 1
    _, folder = saved("ddpm")
    assert main(["sample", "--diffusers", str(folder), "--schedule", "flow", "--out", out]) == 2
    assert "--schedule: 'flow' is not a grid" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # one source of weights
        main(["sample", "--diffusers", str(folder), "--ckpt", missing, "--out", out])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_deprecated_attention_names_load(saved):
    """Checkpoints from before diffusers 0.14 name the attention projections query, key,
    value and proj_attn: renamed on loading, as diffusers does."""
    _, folder = saved("ddpm")
    tensors = pretrained.read_checkpoint(folder / "unet")
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    renamed = {}
    for key, value in tensors.items():
        for new, name in old.items():
            key = key.replace(f".{new}.", f".{name}.")
        renamed[key] = value
    assert "mid_block.attentions.0.proj_attn.weight" in renamed
    m = pretrained.from_diffusers(folder)
    net = pretrained.load_weights(m.network, renamed)
    for a, b in zip(jax.tree.leaves(net), jax.tree.leaves(m.network), strict=True):
        np.testing.assert_array_equal(a, b)


def test_winograd_is_the_convolution(x64):
    """`_winograd`: Toom-Cook's F(m, r) is the correlation exactly (rationals); `conv3x3` with
    `kernel_transform`'s kernel is XLA's 3x3 "same" convolution in float64 on sizes that are
    and are not multiples of the 4x4 tile; `Conv.to_winograd` refuses what it cannot do."""
    from fractions import Fraction

    from jaxdiff.pretrained import _layers, _winograd

    rng = np.random.default_rng(5)
    cases = [
        (2, 3, (0, 1, -1)),
        (4, 3, (0, 1, -1, 2, -2)),
        (3, 2, (0, 1, -1)),
        (6, 3, (0, 1, -1, 2, -2, 0.5, -0.5)),
    ]
    for m, r, points in cases:
        at, g, bt = _winograd.toom_cook(m, r, points)
        d, w = rng.standard_normal(m + r - 1), rng.standard_normal(r)
        expect = [sum(d[i + k] * w[k] for k in range(r)) for i in range(m)]
        np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), expect, rtol=0, atol=1e-12)
    assert _winograd.toom_cook(4, 3, [Fraction(p) for p in _winograd.POINTS])[2].shape == (6, 6)
    with pytest.raises(ValueError, match="distinct finite points"):
        _winograd.toom_cook(4, 3, (0, 1, 1, 2, -2))
    with pytest.raises(ValueError, match="kernel must have shape"):
        _winograd.kernel_transform(np.zeros((1, 1, 2, 2)))

    for height, width in [(8, 8), (5, 7), (1, 4)]:
        x = rng.standard_normal((2, height, width, 3))
        kernel = rng.standard_normal((3, 3, 3, 5))
        direct = jax.lax.conv_general_dilated(
            x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        ours = _winograd.conv3x3(jnp.asarray(x), jnp.asarray(_winograd.kernel_transform(kernel)))
        assert ours.shape == direct.shape
        assert max_relative(ours, direct) < 1e-13

    conv = _layers.Conv(3, 5, 3, dtype=jnp.float64, rngs=None)
    assert conv.winograd_eligible(min_channels=1) and not conv.winograd_eligible()
    conv.to_winograd()  # an abstract layer stays abstract
    assert conv.winograd and conv.winograd_kernel.shape == (6, 6, 3, 5)
    with pytest.raises(ValueError, match="3x3, stride-1"):
        conv.to_winograd()
    strided = _layers.Conv(3, 5, 3, stride=2, dtype=jnp.float64, rngs=None)
    with pytest.raises(ValueError, match="3x3, stride-1"):
        strided.to_winograd()


def test_conv_option(saved):
    """`from_diffusers(conv=)`: "auto" is Winograd on the CPU backend, only for convolutions
    of at least 32 channels (the default threshold); a bad value is refused by name."""
    _, folder = saved("ncsnpp")  # widths 32 and 64
    auto = pretrained.from_diffusers(folder)
    assert auto.conv == ("winograd" if jax.default_backend() == "cpu" else "direct")
    direct = pretrained.from_diffusers(folder, conv="direct")
    winograd = pretrained.from_diffusers(folder, conv="winograd")
    assert direct.conv == "direct" and winograd.conv == "winograd"
    convs = [m for _, m in nnx.iter_modules(winograd.network) if isinstance(m, Conv)]
    changed = [c for c in convs if c.winograd]
    assert changed and len(changed) < len(convs)  # conv_in (3 -> 32) and conv_out stay direct
    assert all(min(c.winograd_kernel.shape[2:]) >= 32 for c in changed)
    with pytest.raises(ValueError, match="conv"):
        pretrained.from_diffusers(folder, conv="fft")
