"""Running a study: expand the spec, reconcile it with the directory, run every unfinished chain, record results.

    from ticketlab.study import load_spec, run_study
    outcome = run_study(load_spec("studies/rewinding.toml"), "runs/rewinding", workers=2)

Resumable and idempotent: each chain's ticket file holds its completed levels, so running the same spec on the
same directory again continues every unfinished chain from its last completed level and leaves finished ones
alone; a directory whose chains are all complete is not touched at all.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.study.manifest import StudyLock, chain_file, merge, new_manifest, read_manifest, write_manifest
from ticketlab.study.spec import Chain, StudySpec
from ticketlab.study.tasks import ChainResult, ChainTask, group_tasks

_LEVEL_LINE = re.compile(r"^level (\d+):")


@dataclass
class StudyOutcome:
    """What a :func:`run_study` call did."""

    directory: Path
    chains: int
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    wall_time: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def chain_progress(path: Path, config) -> tuple[int, bool]:
    """(completed levels, complete) of a chain's ticket file as the IMP engine counts them: a level is done when
    its main line and every control branch are stored."""
    from ticketlab.store import open_ticket

    if not path.exists():
        return 0, False
    try:
        with open_ticket(path) as t:
            levels = t.levels
            done = sum(1 for lv in levels if lv <= config.levels
                       and (lv == 0 or set(t.branches(lv)) >= set(config.controls)))
            complete = t.status == "complete" and done == config.levels + 1
    except TicketlabError:
        return 0, False
    return done, complete


def default_workers(device: str) -> tuple[int, list[int]]:
    """One worker on CPU; one per visible GPU (and their indices) when the chains run on CUDA."""
    if device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            n = torch.cuda.device_count()
            return n, list(range(n))
    return 1, []


def run_study(spec: StudySpec, directory: str | os.PathLike, *, extend: bool = False, workers: int | None = None,
              scheduler: str | None = None, shared_fs: bool = True, chains_per_process: int = 1,
              device: str | None = None, data_dir: str | None = None, threads: int | None = None, retries: int = 2,
              progress: bool | None = None, log: Callable[[str], None] | None = None,
              verbose: bool = False) -> StudyOutcome:
    """Run (or continue) every chain of ``spec`` into ``directory``; see the module docstring.

    Parameters
    ----------
    extend : bool
        Allow the spec to add axis values (new chains) or raise ``levels`` over what the directory was made with.
    workers : int, optional
        Local worker processes (default: one per GPU when chains run on CUDA, else 1 = in this process).
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://HOST:8786``); tasks then run on its workers.
    shared_fs : bool
        Whether Dask workers see ``directory``; if not, chain files travel as bytes through the scheduler.
    chains_per_process : int
        Chains per task (K); with 1 every chain file equals a standalone ``ticketlab train`` run bit for bit (CPU).
    device, data_dir : str, optional
        Override the spec's ``device`` / ``data-dir`` (where chains run; not part of the study's identity).
    threads : int, optional
        torch intra-op threads of every chain (default: this process's count, which is what a standalone
        ``ticketlab train`` here uses). On CPU, results are equal bit for bit only between runs with equal
        counts, so every executor sets it explicitly (Dask workers otherwise default to 1).
    retries : int
        Retries of a task whose worker died (Dask: also of a task that raised an unexpected error).
    progress : bool or None
        One progress bar (chains × levels) on stderr; ``None`` = when stderr is a terminal.
    log : callable(str), optional
        Receives the runner's notes (what is left to run, failures).
    verbose : bool
        Also send ``log`` one line per completed level of each chain.
    """
    if chains_per_process < 1:
        raise ConfigError(f"--chains-per-process must be >= 1; got {chains_per_process}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1; got {threads}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1; got {workers}")
    if not shared_fs and scheduler is None:
        raise ConfigError("--no-shared-fs goes with --scheduler (local workers share this file system)")
    directory = Path(directory)
    chains = _placed(spec.chains(), device, data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    say = log or (lambda line: None)
    with StudyLock(directory):
        manifest = read_manifest(directory, required=False)
        if manifest is None:
            manifest, changed = new_manifest(spec, chains), True
        else:
            changed = merge(manifest, spec, chains, directory, extend=extend)
        entries = {e["name"]: e for e in manifest["chains"]}
        todo, done_levels = [], 0
        for chain in chains:
            entry = entries[chain.name]
            done, complete = chain_progress(chain_file(directory, entry), chain.config)
            done_levels += done
            if complete:
                if entry["status"] != "complete" or entry["error"]:
                    entry.update(status="complete", error=None)
                    changed = True
            else:
                todo.append(chain)
        outcome = StudyOutcome(directory, len(chains))
        if not todo:
            if changed:
                write_manifest(directory, manifest)
            say(f"study {directory}: all {len(chains)} chains complete; nothing to do")
            return outcome
        write_manifest(directory, manifest)
        total = sum(c.config.levels + 1 for c in chains)
        say(f"study {directory}: {len(todo)} of {len(chains)} chains to run, {total - done_levels} levels")
        executor = _executor(workers, scheduler, chains, retries, say)
        start = time.perf_counter()
        seen: dict[str, set[int]] = {}
        bar = _bar(total, done_levels, progress)

        def report(name: str, line: str) -> None:
            m = _LEVEL_LINE.match(line)
            if m and int(m.group(1)) not in seen.setdefault(name, set()):
                seen[name].add(int(m.group(1)))
                bar.update(1)
            if verbose:
                say(f"{name}: {line}")

        if threads is None:
            import torch

            threads = torch.get_num_threads()
        tasks = [_task(c, directory, entries[c.name], shared_fs, threads) for c in todo]
        groups = group_tasks(tasks, chains_per_process)
        try:
            for result in executor.run(groups, report):
                _record(directory, entries[result.name], result, outcome)
                write_manifest(directory, manifest)
                if result.error:
                    say(f"{result.name}: failed: {result.error}")
        finally:
            bar.close()
            executor.close()
        outcome.wall_time = time.perf_counter() - start
        return outcome


def _placed(chains: list[Chain], device: str | None, data_dir: str | None) -> list[Chain]:
    import dataclasses

    out = []
    for c in chains:
        config = dataclasses.replace(c.config, data_dir=data_dir) if data_dir else c.config
        out.append(dataclasses.replace(c, config=config, device=device or c.device))
    return out


def _task(chain: Chain, directory: Path, entry: dict, shared_fs: bool, threads: int) -> ChainTask:
    path = chain_file(directory, entry)
    if shared_fs:
        return ChainTask(chain.name, str(path.resolve()), chain.config, chain.device, threads)
    data = path.read_bytes() if path.exists() else None
    return ChainTask(chain.name, path.name, chain.config, chain.device, threads, shared_fs=False, data=data)


def _record(directory: Path, entry: dict, result: ChainResult, outcome: StudyOutcome) -> None:
    if result.data is not None:  # no shared file system: the worker sent the file back
        from ticketlab.outputs import atomic_output

        path = chain_file(directory, entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, tag="received") as tmp:
            tmp.write_bytes(result.data)
    entry["attempts"] += 1
    entry["wall_time"] = round(entry["wall_time"] + result.wall_time, 3)
    entry["status"] = "complete" if result.ok else "failed"
    entry["error"] = result.error if not result.ok else None
    if entry["status"] == "failed" and not entry["error"]:
        entry["error"] = "the chain stopped before its last level"
    outcome.ran.append(result.name)
    if not result.ok:
        outcome.failed[result.name] = entry["error"]


def _executor(workers: int | None, scheduler: str | None, chains: list[Chain], retries: int,
              note: Callable[[str], None]):
    from ticketlab.study.executors import DaskExecutor, InlineExecutor, ProcessExecutor

    if scheduler:
        if workers is not None:
            raise ConfigError("--workers is for local runs; with --scheduler the cluster's workers run the chains")
        return DaskExecutor(scheduler, retries=retries)
    devices = {c.device for c in chains}
    n, gpus = default_workers(devices.pop() if len(devices) == 1 else "cpu")
    if workers is not None:
        n, gpus = workers, [gpus[i % len(gpus)] for i in range(workers)] if gpus else []
    if n == 1:
        return InlineExecutor()
    return ProcessExecutor(n, gpus=gpus, retries=retries, note=note)


def _bar(total: int, initial: int, progress: bool | None):
    from tqdm.auto import tqdm

    disable = None if progress is None else not progress
    return tqdm(total=total, initial=initial, unit="level", desc="study", file=sys.stderr, disable=disable,
                dynamic_ncols=True)
