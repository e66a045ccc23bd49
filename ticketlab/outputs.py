"""Writing output files: the one rule every writer in ticketlab follows, the one lock and the one atomic writer.

Three guarantees, for ticket files, imports, exports, reports, plots and dataset downloads alike:

- **One writer per file.** :func:`output_lock` holds an exclusive lock on a sidecar file ``.<name>.lock``
  beside the output (a POSIX record lock, ``fcntl.lockf``, holding ``"pid host"`` for the message). A second
  writer of the same output — another process — is refused at once with :class:`OutputBusyError`
  (``FILE is being written by process N on HOST; ...``). The kernel drops the lock when its holder exits, even
  by SIGKILL, so a killed writer never blocks the next one. Within one process the lock is re-entrant: an IMP
  run holds it for the whole run and every transaction inside takes it again for free. The lock file is removed
  when the lock is released. Locks are advisory and per machine: on NFS they reach other clients only where
  the NFS lock service runs (NFSv4, or lockd with v3); don't write one file from two machines without it.
- **One check before any work.** :func:`prepare_output` (used by every writing command) refuses an output with
  the wrong extension, a directory, an input of the same command (``fairness run.h5 --report run.h5``), an
  existing file without ``--overwrite`` and ``--resume`` with nothing to resume; it creates missing parent
  directories (so the default ``runs/`` works on a fresh clone) and takes the lock *before* anything could be
  replaced.
- **No partial outputs.** :func:`atomic_outputs` never writes at the output path: it writes a hidden temporary
  file beside it (same directory, so ``os.replace`` is atomic), flushes it to disk and renames it into place
  only when the whole output is complete. If the block raises, or the process is interrupted, the temporary
  file is removed and the output keeps what it had (nothing, or the previous complete file). A full or
  read-only disk is one :class:`OutputError` naming the file and the cause; clean-up never raises over it.
  Temporary files of writers that were killed carry the writer's pid and are removed by the next writer.

This module knows nothing of HDF5: the ticket store (:mod:`ticketlab.store`), importers and exporters,
``intersect``, reports, plots and dataset downloads all build on it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ticketlab.errors import TicketFileError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; outputs are still written atomically
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputError", "OutputBusyError", "TICKET_SUFFIXES", "HTML_SUFFIXES", "prepare_output", "check_output",
           "output_lock", "lock_path", "make_parents", "temp_path", "atomic_outputs", "atomic_output", "fsync_path",
           "remove_stale_temps"]

#: The extensions of ticket files.
TICKET_SUFFIXES = (".h5", ".hdf5")
#: The extensions of HTML reports.
HTML_SUFFIXES = (".html", ".htm")

# errno values that mean "this output cannot be written here", whatever the writer was doing
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}
_ACCESS_ERRNOS = {errno.EACCES, errno.EPERM}


class OutputError(TicketFileError):
    """An output that cannot be written: a full or read-only disk, a missing permission, a bad path."""


class OutputBusyError(OutputError):
    """The output is being written by another process (its lock is held)."""

    def __init__(self, message: str, path: Path, pid: int | None, host: str | None) -> None:
        super().__init__(message)
        self.path, self.pid, self.host = path, pid, host


# ----------------------------------------------------------------------------------------------------------
# Paths


def temp_path(out: str | os.PathLike, tag: str = "tmp") -> Path:
    """A hidden temporary file beside ``out``: ``.<name>.<tag>-<pid>``."""
    out = Path(out)
    return out.with_name(f".{out.name}.{tag}-{os.getpid()}")


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of ``out``: ``.<name>.lock`` beside it."""
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


def _is_private_temp(path: Path) -> bool:
    # this process's own temporary file (a writer inside a writer): nobody else can be writing it
    return path.name.startswith(".") and path.name.endswith(f"-{os.getpid()}")


def _cause(err: OSError) -> str:
    return err.strerror or str(err)


def make_parents(out: str | os.PathLike, what: str = "--out") -> Path:
    """Create the missing parent directories of ``out``; an :class:`OutputError` if that is impossible."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot write {what} {out}: a parent of it is a file, not a directory") from None
    except OSError as err:
        raise OutputError(f"cannot create the directory {out.parent} for {what} {out}: {_cause(err)}") from None
    return out


# ----------------------------------------------------------------------------------------------------------
# One writer per file


_held: dict[str, list] = {}  # lock key -> [fd, lock file, count]: the locks this process holds
_held_guard = threading.Lock()
_WAIT_POLL_S = 0.2


def _key(out: Path) -> str:
    return os.path.join(os.path.realpath(out.parent), out.name)


def _holder(fd: int) -> tuple[int | None, str | None]:
    try:
        text = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    except OSError:
        return None, None
    pid = int(text[0]) if text and text[0].isdigit() else None
    return pid, (text[1] if len(text) > 1 else None)


def _acquire(out: Path, what: str) -> tuple[int, Path]:
    """Take the lock of ``out`` without waiting (the caller holds ``_held_guard``)."""
    lock = lock_path(out)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as err:
            raise OutputError(f"cannot write {out}: {_cause(err)} (creating its lock file {lock.name} in "
                              f"{lock.parent})") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            pid, host = _holder(fd)
            os.close(fd)  # this process holds no lock on the file (see _held), so closing drops nothing
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise OutputError(f"cannot lock {out}: {_cause(err)}") from None
            who = f"process {pid} on {host}" if pid is not None else "another process"
            raise OutputBusyError(f"{out} is being written by {who}; wait for it or choose another {what}",
                                  out, pid, host) from None
        # the previous holder may have removed the lock file between our open and our lock: then ours is a
        # lock on a deleted file, which nobody else will see; start again on the file that is there now
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    except OSError:
        pass  # the lock holds without its note (a full disk); the message then says "another process"
    return fd, lock


def _release(fd: int, lock: Path) -> None:
    # remove the file first, so that a process waiting on it notices and locks the next one
    with contextlib.suppress(OSError):
        os.unlink(lock)
    with contextlib.suppress(OSError):
        os.close(fd)  # closing drops this process's lock


@contextlib.contextmanager
def output_lock(out: str | os.PathLike, *, wait: bool = False, what: str = "--out") -> Iterator[Path]:
    """Hold the one-writer lock of ``out`` for the block (see the module docstring).

    Parameters
    ----------
    out : path-like
        The output; its directory must exist.
    wait : bool
        Wait for another holder to finish instead of raising :class:`OutputBusyError`.
    what : str
        How the command names the output, for the message (``--out``, ``--report``).

    Re-entrant within a process: a nested ``output_lock`` of the same output (also from another thread) does
    nothing. Without ``fcntl`` (Windows) there is no lock.
    """
    out = Path(out)
    if fcntl is None or _is_private_temp(out):
        yield out
        return
    key = _key(out)
    while True:
        # POSIX locks belong to the process, and closing any descriptor of the file drops them: so this process
        # opens the lock file once (under the guard) and counts its nested holders
        with _held_guard:
            entry = _held.get(key)
            if entry is None:
                try:
                    entry = _held[key] = [*_acquire(out, what), 0]
                except OutputBusyError:
                    if not wait:
                        raise
            if entry is not None:
                entry[2] += 1
                break
        time.sleep(_WAIT_POLL_S)
    try:
        yield out
    finally:
        with _held_guard:  # released under the guard: another thread must not open the file in between
            entry[2] -= 1
            if entry[2] == 0:
                del _held[key]
                _release(entry[0], entry[1])


# ----------------------------------------------------------------------------------------------------------
# One rule for every writer


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _input_paths(inputs: Iterable[str | os.PathLike | None]) -> Iterator[Path]:
    """The paths of inputs, ``FILE:LEVEL`` specs included (both readings of a name ending in ``:<int>``)."""
    for spec in inputs:
        if spec is None:
            continue
        text = os.fspath(spec)
        yield Path(text)
        head, sep, tail = text.rpartition(":")
        if sep and head and tail.lstrip("-").isdigit():
            yield Path(head)


def check_output(out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                 overwrite: bool = False, resume: bool | None = None, suffixes: Sequence[str] | None = None,
                 what: str = "--out", create_parents: bool = True) -> Path:
    """The checks of :func:`prepare_output`, without the lock (for library functions that lock as they write).

    ``resume`` is ``None`` where the command has no ``--resume``; ``True`` requires the file to exist, ``False``
    refuses an existing file unless ``overwrite`` (and the message mentions ``--resume``).
    """
    out = _check_path(out, inputs, suffixes, what)
    if create_parents:
        make_parents(out, what)
    _check_existing(out, overwrite, resume, what)
    return out


def _check_path(out: str | os.PathLike, inputs: Iterable, suffixes: Sequence[str] | None, what: str) -> Path:
    out = Path(out)
    for path in _input_paths(inputs):
        if _same_file(path, out):
            raise OutputError(f"{what} {out} is also an input of this command; writing it would destroy the input; "
                              f"choose another {what}")
    if out.is_dir():
        raise OutputError(f"{what} {out} is a directory; name the file to write in it (e.g. "
                          f"{out / ('out' + (suffixes[0] if suffixes else ''))})")
    if suffixes and out.suffix.lower() not in suffixes:
        names = list(suffixes)
        text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise OutputError(f"{what} must name a {text} file; got {str(out)!r}")
    return out


def _check_existing(out: Path, overwrite: bool, resume: bool | None, what: str) -> None:
    if resume:
        if not out.exists():
            raise OutputError(f"nothing to resume at {out}; drop --resume to start a new run")
        return
    if out.exists() and not overwrite:
        if resume is None:
            raise OutputError(f"{out}: already exists; choose another {what} or pass --overwrite to replace it")
        raise OutputError(f"{out} already exists; use --resume to continue it or --overwrite to replace it")


@contextlib.contextmanager
def prepare_output(out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = (),
                   overwrite: bool = False, resume: bool | None = None, suffixes: Sequence[str] | None = None,
                   what: str = "--out") -> Iterator[Path]:
    """Check an output before any work and hold its lock for the block; yields the output path.

    In this order: ``out``'s extension is one of ``suffixes``; it is no directory and none of ``inputs`` (paths
    or ``FILE:LEVEL`` specs); its missing parent directories are created; the one-writer lock is taken
    (:class:`OutputBusyError` if another process holds it); then an existing file is refused unless
    ``overwrite`` (or ``resume``), and ``resume`` with no file is refused. Every refusal is an
    :class:`OutputError` (exit status 2 on the command line) and leaves the file system as it was, apart from
    the created directories.
    """
    path = _check_path(out, list(inputs), suffixes, what)
    make_parents(path, what)
    with output_lock(path, what=what):
        _check_existing(path, overwrite, resume, what)
        yield path


# ----------------------------------------------------------------------------------------------------------
# No partial outputs


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


def _write_failure(err: OSError, outs: list[Path], tmps: list[Path]) -> OutputError | None:
    """The one-line error for an OSError that means the outputs cannot be written; None for other errors."""
    names = {os.fspath(p): o for p, o in zip(tmps + outs, outs + outs)}
    out = names.get(os.fspath(err.filename)) if err.filename is not None else None
    if err.errno in _WRITE_ERRNOS or (err.errno in _ACCESS_ERRNOS and out is not None):
        out = out or (outs[0] if len(outs) == 1 else ", ".join(map(str, outs)))
        kept = "the existing file is unchanged" if any(o.exists() for o in outs) else "nothing was written"
        return OutputError(f"cannot write {out}: {_cause(err)}; {kept}")
    return None


@contextlib.contextmanager
def atomic_outputs(outs: Sequence[str | os.PathLike], *, tag: str = "tmp", copy_existing: bool = False,
                   durable: bool = True) -> Iterator[list[Path]]:
    """Yield temporary paths for ``outs``; rename every one of them into place only if the block succeeds.

    Each output's one-writer lock (:func:`output_lock`) is held from before its temporary file exists until
    after the rename. An ``OSError`` that means the disk cannot take the output (full, read-only, quota, no
    permission on the file) becomes one :class:`OutputError` naming the output; other errors pass unchanged.

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
    with contextlib.ExitStack() as locks:
        for out in outs:
            locks.enter_context(output_lock(out))
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
        except BaseException as err:
            for tmp in tmps:
                _discard(tmp)
            failure = _write_failure(err, outs, tmps) if isinstance(err, OSError) else None
            if failure is not None:
                raise failure from err
            raise


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike, **kwargs) -> Iterator[Path]:
    """:func:`atomic_outputs` for one output: yields its temporary path."""
    with atomic_outputs([out], **kwargs) as (tmp,):
        yield tmp
