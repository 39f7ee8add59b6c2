"""Flow grids (`jd.schedules.flow`, `flux`, `diffusers_flow_match`): every time shift is a
rescaling of sigma = t / (1 - t), the grid contract with an `inf` start, the terminal stretch,
diffusers' own arithmetic (its last positive time), jit, dtype and bad input. The peers
(diffusers' scheduler, Meta's flow_matching) are in test_flow_peers.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff as jd

S = jd.schedules
MU = S.flux_mu(1024)  # a 512 x 512 Flux image: 0.6325


def _times(n):
    """The uniform flow times 1 - i/n, i = 0 .. n (float64 numpy)."""
    return 1 - np.arange(n + 1) / n


def _sd3_shift(t, shift):
    return shift * t / (1 + (shift - 1) * t)


# -- the shifts are rescalings of sigma ---------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 28])
def test_shifts_rescale_sigma(x64, n):
    base = np.asarray(S.flow(n))
    i = np.arange(1, n)
    np.testing.assert_array_equal(base[1:-1], (n - i) / i)  # sigma_i = t_i / (1 - t_i)
    for shift in (0.5, 1.0, 3.0, 7.5):
        ours = np.asarray(S.flow(n, shift))
        np.testing.assert_allclose(ours[1:-1], shift * base[1:-1], rtol=1e-15)
        t = _times(n)  # SD3's time shift, in time
        np.testing.assert_allclose(S.flow_times(ours), _sd3_shift(t, shift), rtol=1e-14)
    for mu in (-0.7, 0.0, MU, 1.15):
        ours = np.asarray(S.flux(n, mu))
        np.testing.assert_allclose(ours[1:-1], math.exp(mu) * base[1:-1], rtol=1e-15)
        np.testing.assert_allclose(ours, S.flow(n, math.exp(mu)), rtol=1e-15)
        with np.errstate(divide="ignore"):  # diffusers' time_shift(mu, 1, t): 1/0 at t = 0
            t_shift = math.exp(mu) / (math.exp(mu) + (1 / _times(n) - 1))
        np.testing.assert_allclose(S.flow_times(ours), t_shift, rtol=1e-14)
    for mu in (0.25, 1.0, 3.0):
        ours = np.asarray(S.flux(n, mu, shift_type="linear"))
        np.testing.assert_allclose(ours[1:-1], mu * base[1:-1], rtol=1e-15)
        with np.errstate(divide="ignore"):
            t_shift = mu / (mu + (1 / _times(n) - 1))
        np.testing.assert_allclose(S.flow_times(ours), t_shift, rtol=1e-14)


# -- the grid contract --------------------------------------------------------------------------
GRIDS = {
    "flow": lambda n, **kw: S.flow(n, **kw),
    "flow_shift3": lambda n, **kw: S.flow(n, 3.0, **kw),
    "flow_terminal": lambda n, **kw: S.flow(n, 3.0, terminal=0.1, **kw),
    "flux": lambda n, **kw: S.flux(n, MU, **kw),
    "flux_linear": lambda n, **kw: S.flux(n, 2.0, shift_type="linear", terminal=0.05, **kw),
    "diffusers": lambda n, **kw: S.diffusers_flow_match(n, shift=3.0, **kw),
    "diffusers_mu": lambda n, **kw: S.diffusers_flow_match(n, mu=MU, terminal=0.1, **kw),
}


def check_flow_grid(sigmas, n, dtype):
    s = np.asarray(sigmas)
    assert sigmas.shape == (n + 1,) and sigmas.dtype == dtype
    assert s[0] == np.inf and s[-1] == 0
    assert np.all(np.isfinite(s[1:]))
    assert np.all(np.diff(s) < 0), s
    t = np.asarray(S.flow_times(sigmas))
    assert t[0] == 1 and t[-1] == 0 and np.all(np.diff(t) < 0)


@pytest.mark.parametrize("n", [2, 50])
@pytest.mark.parametrize("name", sorted(GRIDS))
def test_contract(name, n, dtype):
    check_flow_grid(GRIDS[name](n), n, dtype)  # the default dtype follows x64
    check_flow_grid(GRIDS[name](n, dtype=jnp.float32), n, jnp.float32)


@pytest.mark.parametrize("name", ["flow", "flow_shift3", "flux", "diffusers"])
def test_one_step_is_pure_noise_to_data(name):
    np.testing.assert_array_equal(GRIDS[name](1), [np.inf, 0.0])


def test_flow_schedules_names():
    assert set(S.FLOW_SCHEDULES) <= set(S.__all__)
    for name in S.FLOW_SCHEDULES:
        check_flow_grid(getattr(S, name)(4), 4, jnp.float32)
    assert {"flux", "flux_mu", "flow_times", "flow_sigmas", "FLOW_SCHEDULES"} <= set(S.__all__)


def test_dtype_keyword(x64):
    for name, f in GRIDS.items():
        ours64, ours32 = f(9), f(9, dtype=jnp.float32)
        assert ours64.dtype == jnp.float64 and ours32.dtype == jnp.float32, name
        np.testing.assert_allclose(ours32, ours64, rtol=4e-7)


# -- the terminal stretch -----------------------------------------------------------------------
@pytest.mark.parametrize("terminal", [0.02, 0.1, 0.5])
@pytest.mark.parametrize("n", [2, 9])
def test_terminal_stretch(x64, n, terminal):
    t_shift = _sd3_shift(_times(n), 3.0)
    # diffusers' stretch_shift_to_terminal on the positive times, then the final 0
    one_minus = 1 - t_shift[:n]
    expected = np.append(1 - one_minus / (one_minus[-1] / (1 - terminal)), 0.0)
    t = np.asarray(S.flow_times(S.flow(n, 3.0, terminal=terminal)))
    np.testing.assert_allclose(t, expected, rtol=1e-14)
    assert t[0] == 1 and t[-1] == 0
    np.testing.assert_allclose(t[-2], terminal, rtol=1e-15)  # hits the terminal time
    t = np.asarray(S.flow_times(S.flux(n, MU, terminal=terminal)))
    np.testing.assert_allclose(t[-2], terminal, rtol=1e-15)


# -- diffusers' arithmetic, without diffusers ---------------------------------------------------
def test_diffusers_grid_ends_at_t_min_shifted_twice(x64):
    f32 = np.float32
    t_min = f32(1) / f32(1000)  # the scheduler's training grid ends at 1/1000, in float32
    once = f32(3.0) * t_min / (f32(1) + f32(2.0) * t_min)  # shifted at construction ...
    twice = f32(3.0 * float(once) / (1 + 2.0 * float(once)))  # ... and again by set_timesteps
    for n in (2, 10, 28):
        t = np.asarray(S.flow_times(S.diffusers_flow_match(n, shift=3.0)))
        assert t[0] == 1 and t[-1] == 0
        np.testing.assert_allclose(t[-2], twice, rtol=1e-15)
        assert abs(t[-2] - 0.00892857) < 1e-8 and abs(once - 0.00299401) < 1e-8
    # no shift: uniform in t from 1 to 1/1000 (as float32), then 0
    t = np.asarray(S.flow_times(S.diffusers_flow_match(5)))
    expected = np.linspace(1.0, float(t_min), 5).astype(np.float32)
    np.testing.assert_allclose(t, np.append(expected, 0.0), rtol=1e-15)
    # dynamic shifting: 1/1000 is not shifted at construction, only once by time_shift
    t = np.asarray(S.flow_times(S.diffusers_flow_match(5, shift=3.0, mu=MU)))
    last = math.exp(MU) / (math.exp(MU) + (1 / float(t_min) - 1))
    np.testing.assert_allclose(t[-2], np.float32(last), rtol=1e-15)


# -- t <-> sigma --------------------------------------------------------------------------------
def test_flow_times_and_sigmas(x64):
    ts = np.array([1.0, 0.75, 0.5, 0.1, 0.0])
    sigmas = np.asarray(S.flow_sigmas(ts))
    np.testing.assert_allclose(sigmas, [np.inf, 3.0, 1.0, 1 / 9, 0.0], rtol=1e-15)
    np.testing.assert_allclose(S.flow_times(sigmas), ts, rtol=1e-15)
    rf = jd.RectifiedFlow()
    np.testing.assert_allclose(S.flow_times(sigmas[1:]), rf.t_of_sigma(sigmas[1:]), rtol=1e-15)
    assert S.flow_sigmas(ts, dtype=jnp.float32).dtype == jnp.float32
    assert S.flow_times(jnp.arange(3)).dtype == jnp.float64


def test_flux_mu():
    assert S.flux_mu(256) == 0.5
    assert abs(S.flux_mu(4096) - 1.15) < 1e-15
    # diffusers' calculate_shift, in its order of operations
    m = (1.15 - 0.5) / (4096 - 256)
    assert S.flux_mu(1024) == 1024 * m + (0.5 - m * 256)
    assert S.flux_mu(100, base_seq_len=100, max_seq_len=200, base_shift=1.0, max_shift=2.0) == 1.0


# -- jit ----------------------------------------------------------------------------------------
def test_jit_with_traced_shift_no_retrace():
    traces = []

    def grid(n, shift, mu):
        traces.append(None)
        return S.flow(n, shift, terminal=0.1), S.flux(n, mu)

    jitted = jax.jit(grid, static_argnums=0)
    for shift, mu in [(1.0, 0.0), (3.0, MU), (0.5, -1.0)]:
        ours = jitted(6, jnp.float32(shift), jnp.float32(mu))
        np.testing.assert_allclose(ours[0], S.flow(6, shift, terminal=0.1), rtol=2e-6)
        np.testing.assert_allclose(ours[1], S.flux(6, mu), rtol=2e-6)
    assert len(traces) == 1


# -- bad input ----------------------------------------------------------------------------------
NAN = float("nan")


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "error", "match"),
    [
        (S.flow, (0,), {}, ValueError, "n must be an int >= 1"),
        (S.flow, (2.0,), {}, TypeError, "n must be an int"),
        (S.flow, (4, 0.0), {}, ValueError, "shift must be > 0"),
        (S.flow, (4, -3.0), {}, ValueError, "shift must be > 0"),
        (S.flow, (4, NAN), {}, ValueError, "shift must be finite"),
        (S.flow, (4, "3"), {}, TypeError, "shift must be a real number"),
        (S.flow, (4,), {"terminal": 0.0}, ValueError, r"terminal must be in \(0, 1\)"),
        (S.flow, (4,), {"terminal": 1.0}, ValueError, r"terminal must be in \(0, 1\)"),
        (S.flow, (4,), {"terminal": NAN}, ValueError, "terminal must be finite"),
        (S.flow, (1,), {"terminal": 0.5}, ValueError, "terminal needs n >= 2"),
        (S.flow, (4,), {"dtype": jnp.int32}, TypeError, "dtype must be a floating dtype"),
        (S.flux, (4, NAN), {}, ValueError, "mu must be finite"),
        (S.flux, (4, float("inf")), {}, ValueError, "mu must be finite"),
        (S.flux, (4, None), {}, TypeError, "mu must be a number"),
        (S.flux, (4, 0.5), {"shift_type": "cubic"}, ValueError, "shift_type must be one of"),
        (S.flux, (4, 0.5), {"shift_type": 1}, TypeError, "shift_type must be one of"),
        (S.flux, (4, -0.5), {"shift_type": "linear"}, ValueError, "mu must be > 0"),
        (S.flux_mu, (0,), {}, ValueError, "seq_len must be > 0"),
        (S.flux_mu, (1024,), {"max_seq_len": 100}, ValueError, "base_seq_len must be <"),
        (S.flux_mu, (1024,), {"base_shift": NAN}, ValueError, "base_shift must be finite"),
        (S.diffusers_flow_match, (0,), {}, ValueError, "n must be an int >= 1"),
        (S.diffusers_flow_match, (4,), {"shift": 0}, ValueError, "shift must be > 0"),
        (S.diffusers_flow_match, (4,), {"mu": NAN}, ValueError, "mu must be finite"),
        (S.diffusers_flow_match, (4,), {"terminal": 2.0}, ValueError, "terminal must be in"),
        (S.diffusers_flow_match, (4,), {"shift_type": "x"}, ValueError, "shift_type must be"),
        (
            S.diffusers_flow_match,
            (4,),
            {"mu": -1.0, "shift_type": "linear"},
            ValueError,
            "mu must be > 0",
        ),
        (
            S.diffusers_flow_match,
            (4,),
            {"num_train_timesteps": 0},
            ValueError,
            "num_train_timesteps must be an int >= 1",
        ),
        (S.flow_sigmas, ([1.5, 0.0],), {}, ValueError, r"ts must be flow times in \[0, 1\]"),
    ],
)
def test_bad_input(fn, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


def test_diffusers_grid_needs_concrete_numbers():
    with pytest.raises(TypeError, match="shift must be a concrete number"):
        jax.jit(lambda s: S.diffusers_flow_match(4, shift=s))(3.0)
