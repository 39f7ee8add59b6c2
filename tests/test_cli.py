"""The `jaxdiff` command line: parsing, help, errors, and `jaxdiff oracle` end to end."""

import re

import pytest

import jaxdiff
from jaxdiff.cli import COMMANDS, main

SAMPLERS = ("VP reverse SDE", "VP PF-ODE", "VE reverse SDE", "VE PF-ODE")


def _exit_code(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_top_level_help(capsys):
    assert _exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jaxdiff")
    for module in COMMANDS:
        assert module.NAME in out


def test_oracle_help(capsys):
    assert _exit_code(["oracle", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jaxdiff oracle")
    for option in ("--num", "--steps", "--mixture", "--ode-solver", "--seed", "--out", "--quiet"):
        assert option in out


def test_version(capsys):
    assert _exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"jaxdiff {jaxdiff.__version__}"


def test_no_command_is_an_error(capsys):
    assert main([]) == 2
    assert "a command is required" in capsys.readouterr().err


def test_unknown_command(capsys):
    assert _exit_code(["frobnicate"]) == 2
    assert "frobnicate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--num", "0"], "--num"),
        (["--num", "1"], "--num"),
        (["--num", "many"], "--num"),
        (["--steps", "-3"], "--steps"),
        (["--steps", "2.5"], "--steps"),
        (["--seed", "-1"], "--seed"),
        (["--mixture", "moons"], "--mixture"),
        (["--ode-solver", "rk99"], "--ode-solver"),
    ],
)
def test_oracle_bad_arguments(capsys, argv, option):
    assert _exit_code(["oracle", *argv]) == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err
    assert "usage: jaxdiff oracle" in err


def test_oracle_out_directory_must_exist(capsys, tmp_path):
    # Checked before any sampling, so this is fast; one line, as every command's errors.
    assert main(["oracle", "--out", str(tmp_path / "missing" / "d.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxdiff oracle: error: --out") and err.count("\n") == 1


def _table_rows(out):
    """{sampler label: (mean log p, s.e., exact, diff/s.e.)} from the oracle run's table."""
    number = r"([-+]?\d+\.\d+)"
    rows = {}
    for label in SAMPLERS:
        pattern = (
            rf"^{re.escape(label)}\s+\S+\s+\d+\s+\d+\s+{number}\s+{number}\s+{number}\s+{number}"
        )
        match = re.search(pattern, out, flags=re.MULTILINE)
        assert match, f"no table row for {label!r} in:\n{out}"
        rows[label] = tuple(float(g) for g in match.groups())
    return rows


@pytest.mark.slow
def test_oracle_end_to_end(capsys, tmp_path):
    out_png = tmp_path / "d.png"
    argv = ["oracle", "--num", "300", "--steps", "200", "--quiet", "--out", str(out_png)]
    assert main(argv) == 0
    out = capsys.readouterr().out

    data = out_png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000

    assert "mean log p" in out and "exact" in out
    rows = _table_rows(out)
    for label, (mean, se, exact, z) in rows.items():
        # The exact value is E_p[log p] of the 8-mode ring (stds 0.15) at sigma ~ 0.01.
        assert exact == pytest.approx(-1.128, abs=2e-3), label
        # 300 samples: s.e. ~ 1 / sqrt(300); the table's diff/s.e. is consistent with it.
        assert 0.03 < se < 0.1, label
        assert z == pytest.approx((mean - exact) / se, abs=0.02), label
        # With the exact score, only 200 steps' discretisation error (well under one s.e. at
        # this sample size) separates the samplers from the exact value: 4 s.e. is a
        # ~1e-4 false-alarm tolerance per sampler for an unbiased one.
        assert abs(mean - exact) < 4 * se, f"{label}: {mean} vs {exact} ± {se}"
    # The quadrature and its Monte Carlo cross-check agree.
    checks = re.findall(r"quadrature (-\d+\.\d+) \(mass (\d\.\d+)\).*?([-+]\d+\.\d+) s\.e\.", out)
    assert len(checks) == 2
    for _, mass, z in checks:
        assert float(mass) == pytest.approx(1.0, abs=1e-4)
        assert abs(float(z)) < 4


# ------------------------------------------------------------------------- jaxdiff demo
def test_demo_help(capsys):
    assert _exit_code(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jaxdiff demo")
    for option in ("--data", "--steps", "--num", "--seed", "--run-dir", "--out", "--quiet"):
        assert option in out


def test_demo_bad_arguments(capsys, tmp_path):
    assert _exit_code(["demo", "--data", "mnist"]) == 2
    assert "argument --data" in capsys.readouterr().err
    assert _exit_code(["demo", "--steps", "0"]) == 2
    assert main(["demo", "--out", str(tmp_path / "missing" / "d.png")]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_trains_samples_and_scores(capsys, tmp_path):
    out_png = tmp_path / "d.png"
    run_dir = tmp_path / "run"
    argv = [
        "demo",
        "--steps",
        "600",
        "--num",
        "600",
        "--quiet",
        "--out",
        str(out_png),
        "--run-dir",
        str(run_dir),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out_png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    table = out_png.with_suffix(".md").read_text()
    assert (run_dir / "checkpoints").is_dir()
    rows = re.findall(
        r"^\| (\w+) \| (\d+) \| (\d+) \| (\d+\.\d+) \| (\d+\.\d+) \|", table, flags=re.MULTILINE
    )
    assert [r[0] for r in rows] == ["heun", "dpmpp_2m", "dpmpp_2m_sde"]
    floor = float(re.search(r"floor\) \| - \| - \| (\d+\.\d+)", table).group(1))
    for name, _, _nfe, sw, ratio in rows:
        assert float(sw) == pytest.approx(float(ratio) * floor, rel=0.02), name
        # 600 steps is a short run; an untrained model (the preconditioner's c_skip x alone)
        # is many times the floor away, a working one within a few times it
        assert float(ratio) < 4.0, (name, ratio, table)
    assert "floor" in out
