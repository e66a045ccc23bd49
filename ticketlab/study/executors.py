"""Where a study's tasks run: in the study process, in local worker processes, or on a Dask cluster.

Every executor takes groups of :class:`~ticketlab.study.tasks.ChainTask` (one group = one task) and yields one
:class:`~ticketlab.study.tasks.ChainResult` per chain as they finish, passing per-level progress lines to a
``report(chain, line)`` callable in the study process.

- :class:`InlineExecutor` — one chain after another in this process (``--workers 1``, the CPU default).
- :class:`ProcessExecutor` — ``N`` spawned worker processes (``--workers N``; on GPUs one per device, each seeing
  only its own through ``CUDA_VISIBLE_DEVICES``). Workers die with the study process (Linux), so a killed study
  leaves no orphan writing a chain. A worker that dies breaks the pool; the unfinished tasks are resubmitted to
  a fresh pool (up to ``retries`` times) and resume from their files.
- :class:`DaskExecutor` — tasks submitted to an existing ``distributed`` scheduler (``--scheduler
  tcp://HOST:8786``) with ``retries``; a task that asks for a CUDA device declares the resource ``GPU=1``. Dask
  reschedules the task of a worker it lost, which then resumes from the chain's file.
"""

from __future__ import annotations

import os
import queue
import time
import uuid
from typing import Callable, Iterator

from ticketlab.errors import ConfigError
from ticketlab.study.tasks import ChainResult, ChainTask, Report, failure, run_group

_POLL = 0.2  # seconds between looks at running tasks and progress messages


class InlineExecutor:
    """Runs every task in this process, one after another."""

    def run(self, groups: list[list[ChainTask]], report: Report) -> Iterator[ChainResult]:
        for group in groups:
            yield from run_group(group, report, catch=True)

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------------------
# Local worker processes

_EVENTS = None  # in a worker process: the queue progress lines go to


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _init_worker(events, slots, parent: int) -> None:
    global _EVENTS
    _die_with_parent(parent)
    _EVENTS = events
    try:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slots.get_nowait())
    except queue.Empty:
        pass


def _report_to_queue(name: str, line: str) -> None:
    _EVENTS.put((name, line))


def _pool_group(group: list[ChainTask]) -> list[ChainResult]:
    return run_group(group, _report_to_queue, catch=True)


class ProcessExecutor:
    """Runs tasks in ``workers`` spawned processes.

    Parameters
    ----------
    workers : int
    gpus : list of int, optional
        One device index per worker: worker ``i`` sees only GPU ``gpus[i]``.
    retries : int
        Fresh pools started after a worker died, before the unfinished chains are reported failed.
    note : callable(str), optional
        Told when a worker died.
    """

    def __init__(self, workers: int, *, gpus: list[int] | None = None, retries: int = 2,
                 note: Callable[[str], None] | None = None) -> None:
        self.workers = workers
        self.gpus = list(gpus or [])
        self.retries = retries
        self.note = note or (lambda line: None)

    def run(self, groups: list[list[ChainTask]], report: Report) -> Iterator[ChainResult]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context("spawn")
        pending = dict(enumerate(groups))
        breaks = 0
        while pending:
            events, slots = ctx.Queue(), ctx.Queue()
            for gpu in self.gpus:
                slots.put(gpu)
            broken = False
            pool = ProcessPoolExecutor(min(self.workers, len(pending)), mp_context=ctx, initializer=_init_worker,
                                       initargs=(events, slots, os.getpid()))
            try:
                futures = {pool.submit(_pool_group, group): i for i, group in pending.items()}
                while futures:
                    done, _ = wait(futures, timeout=_POLL, return_when=FIRST_COMPLETED)
                    _drain(events, report)
                    for fut in done:
                        i = futures.pop(fut)
                        try:
                            results = fut.result()
                        except BrokenProcessPool:
                            broken = True
                            continue
                        except Exception as err:  # e.g. a result that could not be pickled
                            results = [failure(t, err) for t in pending[i]]
                        del pending[i]
                        yield from results
                _drain(events, report)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            if broken:
                breaks += 1
                chains = sum(len(g) for g in pending.values())
                self.note(f"a worker process died; {chains} unfinished chain(s) "
                          + ("resume in a fresh pool" if breaks <= self.retries else "are given up for this run"))
                if breaks > self.retries:
                    for group in pending.values():
                        for task in group:
                            yield ChainResult(task.name, False, error="a worker process died (killed, or out of "
                                              f"memory) {breaks} times; the chain resumes on the next run")
                    return

    def close(self) -> None:
        pass


def _drain(events, report: Report) -> None:
    while True:
        try:
            name, line = events.get_nowait()
        except (queue.Empty, OSError, EOFError):
            return
        report(name, line)


# ----------------------------------------------------------------------------------------------------------
# Dask

DASK_HINT = "pip install 'ticketlab[distributed]'"


def _dask_group(group: list[ChainTask], topic: str) -> list[ChainResult]:
    from distributed import get_worker

    worker = get_worker()
    return run_group(group, lambda name, line: worker.log_event(topic, {"chain": name, "line": line}))


class DaskExecutor:
    """Submits tasks to the Dask scheduler at ``address`` (``tcp://HOST:8786``)."""

    def __init__(self, address: str, *, retries: int = 2, timeout: float = 30.0) -> None:
        try:
            import distributed
        except ImportError:
            raise ConfigError(f"--scheduler needs Dask distributed, which is not installed: {DASK_HINT}") from None
        self._distributed = distributed
        self.retries = retries
        try:
            self.client = distributed.Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ConfigError(f"cannot reach the Dask scheduler at {address}: {err}") from None

    def check_gpus(self, groups: list[list[ChainTask]]) -> None:
        """Refuse CUDA tasks when no worker of the cluster declares a GPU resource (they would wait forever)."""
        if not any(t.wants_gpu for g in groups for t in g):
            return
        workers = self.client.scheduler_info().get("workers", {}).values()
        if not any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers):
            raise ConfigError("the chains run on CUDA, but no worker of the Dask cluster declares a GPU resource; "
                              "start workers with 'dask worker ADDRESS --nthreads 1 --resources GPU=1'")

    def run(self, groups: list[list[ChainTask]], report: Report) -> Iterator[ChainResult]:
        self.check_gpus(groups)
        run_id = uuid.uuid4().hex[:8]
        topic = f"ticketlab-study-{run_id}"
        events: queue.Queue = queue.Queue()
        self.client.subscribe_topic(topic, lambda event: events.put(event[1]))
        futures = {}
        for i, group in enumerate(groups):
            resources = {"GPU": 1} if any(t.wants_gpu for t in group) else None
            key = f"ticketlab-chain-{run_id}-{i}"
            fut = self.client.submit(_dask_group, group, topic, key=key, pure=False, retries=self.retries,
                                     resources=resources)
            futures[fut] = group
        try:
            while futures:
                time.sleep(_POLL)
                self._drain(events, report)
                for fut in [f for f in futures if f.done()]:
                    group = futures.pop(fut)
                    try:
                        results = fut.result()
                    except Exception as err:  # the task raised after its retries, or Dask gave it up (KilledWorker)
                        results = [failure(t, err) for t in group]
                    yield from results
            time.sleep(_POLL)
            self._drain(events, report)
        finally:
            if futures:
                self.client.cancel(list(futures))
            self.client.unsubscribe_topic(topic)

    @staticmethod
    def _drain(events: queue.Queue, report: Report) -> None:
        while True:
            try:
                msg = events.get_nowait()
            except queue.Empty:
                return
            report(msg["chain"], msg["line"])

    def close(self) -> None:
        self.client.close()
