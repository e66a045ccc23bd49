"""Writing output files atomically: the one copy-and-rename helper every writer in ticketlab uses.

A writer never writes at its output path. It writes a hidden temporary file beside it (same directory, so the
same file system and ``os.replace`` is atomic), flushes it to disk, and renames it into place only when the
whole output is complete. If the block raises, or the process is interrupted, the temporary file is removed
and the output path keeps what it had before (nothing, or the previous complete file). Temporary files of
writers that were killed (SIGKILL leaves no chance to clean up) carry the writer's pid and are removed by the
next writer of the same output once that pid no longer runs.

This module knows nothing of HDF5: the ticket store (:mod:`ticketlab.store`), importers and exporters,
``intersect``, reports, plots and dataset downloads all build on it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator, Sequence

__all__ = ["temp_path", "atomic_outputs", "atomic_output", "fsync_path", "remove_stale_temps"]


def temp_path(out: str | os.PathLike, tag: str = "tmp") -> Path:
    """A hidden temporary file beside ``out``: ``.<name>.<tag>-<pid>``."""
    out = Path(out)
    return out.with_name(f".{out.name}.{tag}-{os.getpid()}")


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file (or, where the platform allows, a directory entry) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a directory be opened
        fsync_path(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(out: str | os.PathLike) -> None:
    """Delete temporary files beside ``out`` left by writers whose process no longer runs."""
    out = Path(out)
    with contextlib.suppress(OSError):
        for tmp in out.parent.glob(f".{out.name}.*-*"):
            pid = tmp.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    tmp.unlink()


def _discard(tmp: Path) -> None:
    # Clean-up must never raise over the error that caused it (a read-only or full disk fails here too).
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_outputs(outs: Sequence[str | os.PathLike], *, tag: str = "tmp", copy_existing: bool = False,
                   durable: bool = True) -> Iterator[list[Path]]:
    """Yield temporary paths for ``outs``; rename every one of them into place only if the block succeeds.

    Parameters
    ----------
    outs : paths
        The final output paths.
    tag : str
        Part of the temporary names (``.<name>.<tag>-<pid>``), to tell writers apart in a listing.
    copy_existing : bool
        Start each temporary file as a copy of the existing output (copy-on-write update of a file).
    durable : bool
        ``fsync`` each file before the rename and its directory after, so a power loss cannot leave a renamed
        but empty file.
    """
    outs = [Path(o) for o in outs]
    tmps = [temp_path(o, tag) for o in outs]
    try:
        for out, tmp in zip(outs, tmps):
            remove_stale_temps(out)
            if copy_existing:
                shutil.copyfile(out, tmp)
        yield tmps
        for tmp, out in zip(tmps, outs):
            if durable:
                fsync_path(tmp)
            os.replace(tmp, out)
            if durable:
                _fsync_dir(out.parent)
    except BaseException:
        for tmp in tmps:
            _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike, **kwargs) -> Iterator[Path]:
    """:func:`atomic_outputs` for one output: yields its temporary path."""
    with atomic_outputs([out], **kwargs) as (tmp,):
        yield tmp
