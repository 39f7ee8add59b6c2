"""Atomic writes of the commands' outputs: arrays, figures, reports.

Every file a command writes is first written under a temporary name in the directory of its
target, flushed to disk, and renamed over the target (`os.replace`, atomic within one file
system) only once the whole write has succeeded; on any failure the temporary file is removed.
A full disk, a quota or an interrupt thus leaves the target as it was (absent, or the previous
complete file) instead of a truncated ``.npy`` or a 0-byte ``.png``, and leaves no temporary
file behind. The temporary names are hidden (``.NAME.XXXXXXXX.tmp``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

#: the figure formats ``--out`` may name: those matplotlib writes on its own (not .pgf, which
#: needs LaTeX, nor .gif and .avif, which depend on Pillow's build), less the headerless
#: pixel dumps .raw and .rgba
FIGURE_SUFFIXES = (
    ".png",
    ".pdf",
    ".svg",
    ".svgz",
    ".eps",
    ".ps",
    ".jpg",
    ".jpeg",
    ".webp",
    ".tif",
    ".tiff",
)


def _temporary(path: Path) -> Path:
    """A new empty file beside `path`, created with the permissions an ordinary ``open``
    gives (the process's umask; `tempfile.mkstemp` would make it private to the user)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {str(path)!r}")


def _name_target(err: BaseException, tmp: Path, path: Path) -> None:
    """Points an `OSError` about the temporary file at the target the user named."""
    if isinstance(err, OSError) and err.filename in (None, str(tmp), tmp):
        err.filename = str(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write; renames it over `path` when the block
    succeeds, removes it when the block raises (the exception goes on, an `OSError` naming
    `path` rather than the temporary file)."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        _name_target(err, tmp, path)
        raise


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """`atomic_path` for several files that go together (a figure and its table, samples and
    their labels): yields their temporary paths, renamed into place only when the block has
    written all of them, all removed when it raises."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]


def _write(path: Path, write: Callable[[IO], object], mode: str = "wb", **kwargs: Any) -> None:
    """Opens `path` in `mode`, lets `write` fill it, and syncs it to disk before closing:
    a full disk or a quota on a network file system may only show there, and must show
    before the file is renamed into place."""
    with open(path, mode, **kwargs) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


class _WriteOnly:
    """Only the ``write`` of an open file. numpy writes an array to a real file with
    ``ndarray.tofile``, which reports a full disk as ``40000 requested and 16352 written``,
    without the OS's reason; through this it writes in chunks with ``write``, whose `OSError`
    says ``No space left on device``."""

    def __init__(self, f: IO):
        self.write = f.write


def write_npy(path: str | os.PathLike, array) -> None:
    """Writes `array` in .npy format to exactly `path` (`numpy.save` given a name adds
    ``.npy`` to one that does not end in lowercase ``.npy``, e.g. ``X.NPY``, or a temporary
    name)."""
    import numpy as np

    _write(Path(path), lambda f: np.save(_WriteOnly(f), np.asarray(array), allow_pickle=False))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `path`."""
    _write(Path(path), lambda f: f.write(text), "w", encoding="utf-8")


def write_figure(fig, path: str | os.PathLike, format: str, **kwargs: Any) -> None:
    """``fig.savefig`` to exactly `path` in `format` (a suffix without its dot: matplotlib
    would take it from the name, and add one to a name without)."""
    _write(Path(path), lambda f: fig.savefig(f, format=format.lower(), **kwargs))


def save_npy(path: str | os.PathLike, array) -> None:
    """`write_npy` to `path`, atomically."""
    save_arrays({path: array})


def save_arrays(arrays: Mapping[str | os.PathLike, Any]) -> None:
    """`write_npy` of each array of ``{path: array}``, all or none (`atomic_paths`)."""
    with atomic_paths(*arrays) as tmps:
        for tmp, array in zip(tmps, arrays.values(), strict=True):
            write_npy(tmp, array)


def save_figure(fig, path: str | os.PathLike, **kwargs: Any) -> None:
    """`write_figure` to `path`, atomically, in the format of its suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        write_figure(fig, tmp, path.suffix[1:], **kwargs)


@contextlib.contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary directory inside `directory` (created, with its parents, if
    missing) for a block to write files into; moves each of them into `directory` once the
    block has written all of them (replacing files of the same names). When the block
    raises, removes the temporary directory and the directories this call created (when
    nothing else was put in them), and points an `OSError` at the file in `directory`."""
    directory = Path(directory)
    created = [d for d in (directory, *directory.parents) if not d.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".jaxdiff-"))
    try:
        yield tmp
        for path in sorted(tmp.iterdir()):
            os.replace(path, directory / path.name)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in created:  # innermost first; stops at the first that is not empty
            try:
                d.rmdir()
            except OSError:
                break
        if isinstance(err, OSError) and err.filename is not None:
            with contextlib.suppress(ValueError):
                err.filename = str(directory / Path(err.filename).relative_to(tmp))
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def save_samples(path: str | os.PathLike, x, labels=None) -> None:
    """Samples to `path` (.npy) and, when given, their class labels beside it
    (``PATH.labels.npy``), both or neither."""
    path = Path(path)
    arrays = {path: x}
    if labels is not None:
        arrays[path.with_suffix(".labels.npy")] = labels
    save_arrays(arrays)
