"""The command line under real faults: a read-only directory, a full disk, an ``--out`` under a
file or with the wrong suffix, ``X.NPY``, an `OSError` or an interrupt escaping a command; and
``jaxdiff --help``/``--version`` without JAX.

Every failure must be one line on stderr (``jaxdiff CMD: error: ...``) with exit status 2, and
leave neither the output file nor a temporary file behind. As root (where file modes do not
stop writes), the read-only directory and the full disk are tmpfs mounts; elsewhere a mode
0o555 directory, and an `OSError(ENOSPC)` injected at the write.
"""

import builtins
import contextlib
import errno
import json
import logging
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from jaxdiff.cli import COMMANDS, _output, _sample, main

ROOT = os.geteuid() == 0
SAMPLE = ["--solver", "euler", "--steps", "1"]


def _error_line(capsys, status, command, *needles):
    """The one line a failed `command` printed, after checking it is alone on stderr, starts
    ``jaxdiff COMMAND: error:``, holds the `needles`, and came with status 2."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert status == 2, err
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith(f"jaxdiff {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _listing(directory):
    """Everything in `directory`, hidden temporary files included."""
    return sorted(p.name for p in directory.iterdir())


@contextlib.contextmanager
def _tmpfs(directory, options):
    """`directory` as a fresh tmpfs mounted with `options`, unmounted at the end; None when
    that cannot be done (not root, no mount permission in the container)."""
    directory.mkdir()
    mounted = (
        ROOT
        and not subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True
        ).returncode
    )
    try:
        yield directory if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=True)


#: a tmpfs of one page: an empty file fits, no figure and no array of 1000 samples does
FULL = "size=4k"


@pytest.fixture
def read_only(tmp_path):
    """A directory no file can be created in: a read-only tmpfs as root, else mode 0o555
    (which does not stop root)."""
    if not ROOT:
        directory = tmp_path / "ro"
        directory.mkdir(mode=0o555)
        yield directory
        directory.chmod(0o755)
        return
    with _tmpfs(tmp_path / "ro", "size=1m,ro") as directory:
        if directory is None:
            pytest.skip("cannot mount a tmpfs")
        yield directory


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A full disk, once: a tiny tmpfs as root, else an `OSError(ENOSPC)` injected at the
    writes (for commands too slow to run under both)."""
    with _tmpfs(tmp_path / "full", FULL) as directory:
        if directory is None:
            _disk_fills(monkeypatch)
            directory = tmp_path / "full"
        yield directory


class _DiskFills:
    """An open file whose disk fills after `room` more bytes: the write that crosses it
    writes what fits and raises `OSError(ENOSPC)`, without a file name, as a real one."""

    def __init__(self, f, room):
        self._f, self._room = f, room

    def write(self, data):
        part = data[: self._room]
        self._f.write(part)
        self._room -= len(part)
        if len(part) < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _disk_fills(monkeypatch):
    """Every file the commands write (through `jaxdiff.cli._output`) hits a full disk after
    100 bytes: a full disk without root."""
    monkeypatch.setattr(
        _output,
        "open",
        lambda *args, **kwargs: _DiskFills(builtins.open(*args, **kwargs), room=100),
        raising=False,
    )


# --------------------------------------------------------------------- help without JAX


def test_help_and_version_do_not_import_jax():
    code = """if True:
        import sys
        import jaxdiff.cli as cli
        for argv in (["--help"], ["--version"], []):
            try:
                status = cli.main(argv)
            except SystemExit as exit:
                status = exit.code
            print("status", status)
        print("imported", sorted(m for m in ("jax", "numpy", "matplotlib") if m in sys.modules))
        import jaxdiff
        print("subpackages", sorted(m for m in sys.modules if m.startswith("jaxdiff.")))
    """
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert lines[0].startswith("usage: jaxdiff") and "bridge-sample" in run.stdout
    assert [line for line in lines if line.startswith("status")] == [
        "status 0",
        "status 0",
        "status 2",
    ]
    assert "imported []" in lines
    assert "subpackages ['jaxdiff.cli', 'jaxdiff.cli._common']" in lines
    assert "a command is required" in run.stderr


def test_the_command_table_matches_the_modules():
    """`COMMANDS` repeats each module's NAME and HELP (so that --help imports none)."""
    for entry in COMMANDS:
        module = entry.load()
        assert (entry.NAME, entry.HELP) == (module.NAME, module.HELP)


def test_figure_suffixes_are_matplotlib_formats():
    from matplotlib.backend_bases import FigureCanvasBase

    supported = FigureCanvasBase.get_supported_filetypes()
    assert {s[1:] for s in _output.FIGURE_SUFFIXES} <= set(supported)


# ------------------------------------------------------- what escapes a command, in main


def _fake_run(monkeypatch, run):
    """`jaxdiff sample` doing `run` instead (main reads the module's `run` when it parses)."""
    monkeypatch.setattr(_sample, "run", run)
    return ["sample", "--ckpt", "nowhere", "--out", "x.png"]


def test_an_os_error_escaping_a_command_is_one_line(monkeypatch, capsys):
    def run(args):
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
        logging.getLogger("absl").warning("orbax's log noise")
        logging.getLogger("jax._src.xla_bridge").warning("jax's log noise")
        raise PermissionError(errno.EACCES, "Permission denied", "/data/x.png")

    filters, show = list(warnings.filters), warnings.showwarning
    disabled = logging.root.manager.disable
    status = main(_fake_run(monkeypatch, run))
    line = _error_line(capsys, status, "sample")
    assert line == "jaxdiff sample: error: '/data/x.png': Permission denied"
    # the warning filters and logging are as they were
    assert warnings.filters == filters and warnings.showwarning is show
    assert logging.root.manager.disable == disabled


def test_jaxdiffs_own_warnings_are_one_line_each(monkeypatch, capsys):
    ours = type("SkippedWarning", (UserWarning,), {"__module__": "jaxdiff.train._fake"})

    def run(args):
        warnings.warn("a library's warning", DeprecationWarning, stacklevel=1)
        warnings.warn("skipped the unreadable checkpoint 'run/5'", ours, stacklevel=1)
        return 0

    assert main(_fake_run(monkeypatch, run)) == 0
    err = capsys.readouterr().err
    assert err == "jaxdiff sample: warning: skipped the unreadable checkpoint 'run/5'\n"


def test_an_interrupt_is_one_line_with_status_130(monkeypatch, capsys):
    def run(args):
        raise KeyboardInterrupt

    assert main(_fake_run(monkeypatch, run)) == 130
    assert capsys.readouterr().err == "jaxdiff sample: interrupted\n"


def test_a_bug_keeps_its_traceback(monkeypatch):
    def run(args):
        raise ZeroDivisionError("a genuine bug")

    with pytest.raises(ZeroDivisionError):
        main(_fake_run(monkeypatch, run))


# ----------------------------------------------------------- --out, before any work


def _argv(command, out):
    """The cheapest argv of `command` writing to `out` (a file; a directory for bench)."""
    return {
        "sample": ["sample", "--ckpt", "nowhere", *SAMPLE, "--num", "2", "--out", str(out)],
        "bridge-sample": ["bridge-sample", "--ckpt", "nowhere", "--out", str(out)],
        "oracle": ["oracle", "--num", "2", "--steps", "1", "--quiet", "--out", str(out)],
        "demo": ["demo", "--steps", "1", "--num", "2", "--quiet", "--out", str(out)],
        "bench": ["bench", "--quick", "--out", str(out)],
        "restore": [
            *("restore", "--ckpt", "nowhere", "--task", "inpaint", "--method", "pigdm"),
            *("--out", str(out)),
        ],
    }[command]


COMMAND_OUTS = [
    ("sample", "s.npy"),
    ("bridge-sample", "b.png"),
    ("oracle", "o.png"),
    ("demo", "d.png"),
    ("bench", "bench"),
    ("restore", "r.png"),
]


@pytest.mark.parametrize(("command", "name"), COMMAND_OUTS)
def test_out_in_a_read_only_directory(read_only, capsys, command, name):
    status = main(_argv(command, read_only / name))
    reason = "Read-only file system" if ROOT else "Permission denied"
    line = _error_line(capsys, status, command, "--out: cannot write in", reason)
    assert line.endswith(f"cannot write in {str(read_only)!r}: {reason}")
    assert _listing(read_only) == []


@pytest.mark.parametrize(("command", "name"), COMMAND_OUTS)
def test_out_under_a_file(tmp_path, capsys, command, name):
    (tmp_path / "notes.txt").write_text("a file")
    status = main(_argv(command, tmp_path / "notes.txt" / name))
    line = _error_line(capsys, status, command)
    assert line.endswith(f"--out: {str(tmp_path / 'notes.txt')!r} is a file, not a directory")
    assert _listing(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize(
    ("command", "name", "expected"),
    [
        ("sample", "s.xyz", ".png or .npy"),
        ("bridge-sample", "b.pdf", ".png or .npy"),
        ("oracle", "o.xyz", ".png, .pdf, .svg"),
        ("demo", "d.npy", ".png, .pdf, .svg"),
        ("restore", "r.svg", ".png or .npy"),
    ],
)
def test_out_with_a_suffix_the_command_cannot_write(tmp_path, capsys, command, name, expected):
    status = main(_argv(command, tmp_path / name))
    line = _error_line(capsys, status, command, f"--out must end in {expected}")
    assert line.endswith(f"got {str(tmp_path / name)!r}")
    assert _listing(tmp_path) == []


def test_out_that_is_a_directory(tmp_path, capsys):
    (tmp_path / "x.npy").mkdir()
    status = main(_argv("sample", tmp_path / "x.npy"))
    _error_line(capsys, status, "sample", f"--out {str(tmp_path / 'x.npy')!r} is a directory")


def test_oracle_missing_directory_is_one_line(tmp_path, capsys):
    status = main(_argv("oracle", tmp_path / "missing" / "o.png"))
    _error_line(capsys, status, "oracle", "--out: directory", "does not exist")


# ------------------------------------------------------------- writes, atomically


@pytest.mark.slow
def test_sample_writes_exactly_what_it_names_or_nothing(tmp_path, monkeypatch, capsys, subtests):
    """The cases that need a trained run share one (one step: the training's compilation is
    most of this test's time, so it is one test, not one per case)."""
    run = tmp_path / "run"
    argv = ["train", "--data", "ring", "--steps", "1", "--batch-size", "64", "--quiet"]
    assert main([*argv, "--out", str(run)]) == 0
    capsys.readouterr()

    def sample(out, num=1000):
        return main(["sample", "--ckpt", str(run), *SAMPLE, "--num", str(num), "--out", str(out)])

    with subtests.test("--out X.NPY writes X.NPY"):
        out = tmp_path / "upper" / "X.NPY"
        out.parent.mkdir()
        assert sample(out, num=3) == 0
        assert capsys.readouterr().out.startswith(f"wrote {out}:")
        assert _listing(out.parent) == ["X.NPY"]  # not X.NPY.npy, and no temporary file
        with open(out, "rb") as f:
            assert np.load(f).shape == (3, 2)
        # the permissions of any new file (not the owner-only ones of a temporary file)
        assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()

    for name in ("s.npy", "s.png"):
        with subtests.test(f"a full tmpfs, --out {name}"):
            with _tmpfs(tmp_path / f"full-{name}", FULL) as disk:
                if disk is None:
                    pytest.skip("mounting a tmpfs needs root")
                status = sample(disk / name)
                line = _error_line(capsys, status, "sample")
                expected = f"cannot write {str(disk / name)!r}: No space left on device"
                assert line == f"jaxdiff sample: error: {expected}"
                assert _listing(disk) == []

        with subtests.test(f"ENOSPC injected, --out {name}"), monkeypatch.context() as patch:
            _disk_fills(patch)
            disk = tmp_path / f"fills-{name}"
            disk.mkdir()
            status = sample(disk / name)
            line = _error_line(capsys, status, "sample")
            expected = f"cannot write {str(disk / name)!r}: No space left on device"
            assert line == f"jaxdiff sample: error: {expected}"
            assert _listing(disk) == []


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_oracle_on_a_full_disk_is_status_2(full_disk, capsys):
    # status 1 before: the oracle's write failure now exits as every other failure
    out = full_disk / "o.png"
    status = main(_argv("oracle", out))
    line = _error_line(capsys, status, "oracle")
    assert line == f"jaxdiff oracle: error: cannot write {str(out)!r}: No space left on device"
    assert _listing(full_disk) == []


@pytest.mark.slow
def test_bench_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch, capsys):
    from jaxdiff import bench as jb

    with _tmpfs(tmp_path / "full", FULL) as disk:
        if disk is None:  # the results' writer (not the CLI's) hits a full disk at its end
            disk = tmp_path / "full"
            write_results = jb.write_results

            def write_results_then_fill(result, out, **kwargs):
                write_results(result, out, **kwargs)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "results.json"))

            monkeypatch.setattr(jb, "write_results", write_results_then_fill)
        out = disk / "bench"
        argv = ["bench", "--problems", "ring", "--samplers", "euler", "--schedules", "karras"]
        argv += ["--nfe", "1", "--no-peers", "--samples", "2", "--ref-steps", "2"]
        status = main([*argv, "--out", str(out)])
        line = _error_line(capsys, status, "bench", "No space left on device")
        assert line.startswith(f"jaxdiff bench: error: cannot write '{out}")
        # the partial results are gone, and so is the directory the command created
        assert _listing(disk) == []


# ------------------------------------------------------------------ the helpers alone


def test_atomic_paths_are_all_or_none(tmp_path):
    """A figure and its table: the second write fails, the first is not put in place."""
    (tmp_path / "a.png").write_text("previous")
    targets = tmp_path / "a.png", tmp_path / "a.md"
    with pytest.raises(OSError) as info, _output.atomic_paths(*targets) as tmps:
        _output.write_text(tmps[0], "new")
        # the disk fills writing the second: the error names it, not its temporary file
        with open(tmps[1], "w") as f, _DiskFills(f, room=2) as full:
            full.write("new table")
    assert info.value.filename == str(targets[1])
    assert _listing(tmp_path) == ["a.png"]
    assert (tmp_path / "a.png").read_text() == "previous"


def test_an_interrupted_write_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), _output.atomic_path(tmp_path / "x.npy") as tmp:
        _output.write_npy(tmp, np.zeros(3))
        raise KeyboardInterrupt
    assert _listing(tmp_path) == []


def test_atomic_directory_moves_everything_or_nothing(tmp_path):
    out = tmp_path / "deep" / "results"
    with pytest.raises(OSError) as info, _output.atomic_directory(out) as tmp:
        (tmp / "results.md").write_text("partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "results.json"))
    assert info.value.filename == str(out / "results.json")
    assert _listing(tmp_path) == []  # the directories it created went with it
    out.mkdir(parents=True)
    (out / "results.json").write_text("{}")
    with _output.atomic_directory(out) as tmp:
        (tmp / "results.json").write_text(json.dumps([1]))
        (tmp / "results.md").write_text("done")
    assert _listing(out) == ["results.json", "results.md"]
    assert json.loads((out / "results.json").read_text()) == [1]
