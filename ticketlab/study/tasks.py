"""What a worker runs: a group of chains, each resumed from its ticket file by the IMP engine.

A :class:`ChainTask` is self-contained and picklable (its :class:`~ticketlab.lottery.RunConfig`, the ticket file's path
and the device), so the same function serves the study process itself, local worker processes and Dask workers.
Each chain runs as ``run_imp(config, path, resume=True)``: a chain that was interrupted (the study killed, a worker
lost) continues from its last completed level, and a chain that is complete costs nothing but a look at its file.

Without a shared file system the task carries the chain's file as bytes (or none, to start it), runs it in a
temporary directory and returns the bytes; the study process writes them.

A task of several chains (``--chains-per-process K``, :func:`group_tasks` puts compatible chains together) runs them
as one batched group (:class:`ticketlab.lottery.IMPGroup`): every level of every chain, controls included, trains
in one stacked model, each chain still resumed from and written to its own file.

Per-level progress goes to a ``report`` callable as ``(chain name, line)``; executors route it to the study
process (a queue for local workers, Dask's event log for a cluster).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ticketlab.errors import TicketlabError

Report = Callable[[str, str], None]


@dataclass
class ChainTask:
    """One chain to run (or resume): its name, ticket file, config and device."""

    name: str
    path: str
    config: Any
    device: str = "auto"
    threads: int | None = None  # torch intra-op threads; CPU results are bit-identical only at equal counts
    shared_fs: bool = True
    data: bytes | None = None  # without a shared file system: the chain's file as the study process has it

    @property
    def wants_gpu(self) -> bool:
        return self.device.startswith("cuda")


@dataclass
class ChainResult:
    """What became of a :class:`ChainTask`: ``ok``, the levels its file holds, and the error if any."""

    name: str
    ok: bool
    levels: int = 0
    complete: bool = False
    wall_time: float = 0.0
    error: str | None = None
    data: bytes | None = None


def _ignore(name: str, line: str) -> None:
    pass


def run_chain(task: ChainTask, report: Report = _ignore) -> ChainResult:
    """Run or resume one chain. Input errors (:class:`~ticketlab.errors.TicketlabError`) are returned as a failed
    result; anything else propagates, so that an executor may retry the task."""
    start = time.perf_counter()
    with _threads(task.threads):
        if task.shared_fs:
            return _run(task, Path(task.path), report, start)
        with tempfile.TemporaryDirectory(prefix="ticketlab-chain-") as tmp:
            path = Path(tmp) / Path(task.path).name
            if task.data is not None:
                path.write_bytes(task.data)
            result = _run(task, path, report, start)
            if path.exists():
                result.data = path.read_bytes()
            return result


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (CPU matrix products sum in an order that
    depends on it, so equal counts are what make two runs' weights equal bit for bit)."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _engine() -> Callable[..., Path]:
    """The IMP engine's ``run_imp`` — the study's one import of it."""
    from ticketlab.lottery import run_imp

    return run_imp


def _run(task: ChainTask, path: Path, report: Report, start: float) -> ChainResult:
    from ticketlab.study.manifest import chain_lock

    path.parent.mkdir(parents=True, exist_ok=True)
    error = None
    try:
        with chain_lock(path):
            _engine()(task.config, path, resume=True, device=task.device, progress=False,
                    log=lambda line: report(task.name, line))
    except TicketlabError as err:
        error = str(err)
    return _outcome(task, path, error, start)


def _outcome(task: ChainTask, path: Path, error: str | None, start: float) -> ChainResult:
    """The result of a task whose chain file is ``path``: the levels it holds and whether it is complete."""
    from ticketlab.store import open_ticket

    levels, complete = 0, False
    if path.exists():
        try:
            with open_ticket(path) as t:
                levels, complete = len(t.levels), t.status == "complete"
        except TicketlabError as err:
            error = error or str(err)
    return ChainResult(task.name, error is None and complete, levels, complete, time.perf_counter() - start, error)


def run_batched(tasks: list[ChainTask], report: Report = _ignore) -> list[ChainResult]:
    """Run or resume the chains of ``tasks`` together as one batched group (:class:`ticketlab.lottery.IMPGroup`),
    every level's trainings of every chain (controls included) in one stacked model. The tasks share a device
    and thread count (:func:`group_tasks`). Input errors propagate (:func:`run_group` then runs the chains one by
    one, so that each error lands on its own chain)."""
    from ticketlab.lottery.group import build_runs, run_runs
    from ticketlab.study.manifest import chain_lock

    start = time.perf_counter()
    first = tasks[0]
    with _threads(first.threads), contextlib.ExitStack() as stack:
        tmp = None if all(t.shared_fs for t in tasks) else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="ticketlab-chains-")))
        paths = []
        for task in tasks:
            if task.shared_fs:
                path = Path(task.path)
            else:
                path = tmp / Path(task.path).name
                if task.data is not None:
                    path.write_bytes(task.data)
            path.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(chain_lock(path))
            paths.append(path)
        logs = [lambda line, name=t.name: report(name, line) for t in tasks]
        runs = build_runs([t.config for t in tasks], paths, device=first.device, progress=False, logs=logs)
        chains = sum(1 + len(t.config.controls) for t in tasks)  # a level of every chain in one group
        run_runs(runs, resume=True, chains_per_process=chains)
        results = [_outcome(t, p, None, start) for t, p in zip(tasks, paths)]
        for t, p, r in zip(tasks, paths, results):
            if not t.shared_fs and p.exists():
                r.data = p.read_bytes()
    return results


def run_group(tasks: list[ChainTask], report: Report = _ignore, *, catch: bool = False) -> list[ChainResult]:
    """Run the chains of one task: a task of several chains as one batched group (:func:`run_batched`), a task of
    one chain by the IMP engine's single path (:func:`run_chain`).

    With ``catch``, a chain that raises becomes a failed result and the group goes on; without, the error
    propagates (so that Dask retries the task). An input error of a batched group
    (:class:`~ticketlab.errors.TicketlabError`) runs its chains one by one, so that each chain's error is its own
    and the others still complete.
    """
    if len(tasks) > 1:
        start = time.perf_counter()
        try:
            return run_batched(tasks, report)
        except TicketlabError:
            pass
        except Exception as err:
            if not catch:
                raise
            return [failure(task, err, time.perf_counter() - start) for task in tasks]
    results = []
    for task in tasks:
        start = time.perf_counter()
        try:
            results.append(run_chain(task, report))
        except Exception as err:
            if not catch:
                raise
            results.append(failure(task, err, time.perf_counter() - start))
    return results


def group_tasks(tasks: list[ChainTask], chains_per_process: int) -> list[list[ChainTask]]:
    """Tasks of up to ``chains_per_process`` chains that can train as one batched group: the same device, threads
    and file system, and the same model, data, batch size, length and optimizer settings
    (:func:`ticketlab.lottery.group.compatibility_key`), in order of first appearance, balanced so that groups of
    one kind differ in size by at most one. With 1, every chain is its own task (and runs by the single path)."""
    if chains_per_process <= 1:
        return [[task] for task in tasks]
    from ticketlab.batched.spec import balanced_chunks
    from ticketlab.lottery.group import compatibility_key

    kinds: dict[tuple, list[ChainTask]] = {}
    for task in tasks:
        key = (task.device, task.threads, task.shared_fs, compatibility_key(task.config))
        kinds.setdefault(key, []).append(task)
    return [chunk for members in kinds.values() for chunk in balanced_chunks(members, chains_per_process)]


def failure(task: ChainTask, err: BaseException, wall_time: float = 0.0) -> ChainResult:
    """A failed result for a task that raised ``err`` (one line; the traceback's last frame names where)."""
    where = ""
    tb = traceback.extract_tb(err.__traceback__)
    if tb:
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})"
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return ChainResult(task.name, False, wall_time=wall_time, error=f"{type(err).__name__}: {text}{where}")
