"""IMP for several runs at once: runs that share a model and data advance level by level together, and each level's
trainings (every run's chain and its controls) train as batched groups (:mod:`ticketlab.batched`).

    from ticketlab.lottery import RunConfig, run_imps
    configs = [RunConfig(model="lenet300", levels=5, controls=("reinit",), seed=s) for s in range(5)]
    run_imps(configs, [f"runs/lenet_seed{s}.h5" for s in range(5)], chains_per_process=10)

How it runs. :func:`run_imps` builds one :class:`~ticketlab.lottery.IMPRun` per config (:func:`build_runs`: runs
with the same data settings share one loaded dataset) and splits them into sets of runs with the same model and data
(:func:`run_runs`). A set is an :class:`IMPGroup`: at each level, every training still to do (a run's chain, and
each of its controls not yet written) is one :class:`~ticketlab.batched.ChainSpec` with the start weights, masks,
window and config that IMPRun would train (the same code: the reset mode's and the control's registry entries,
through IMPRun's hooks); the level's chains are trained in groups of at most ``chains_per_process`` compatible
chains (:func:`ticketlab.batched.plan_groups`: same batch size, step count and optimizer settings); then each run
writes its level and branches and prunes the next level from what it wrote, as IMPRun does.

``chains_per_process=1`` runs the runs one after another through :meth:`IMPRun.run` itself: every file equals a
standalone run's bit for bit. Batched, a chain equals its standalone run up to float rounding (weights within
1e-5 relative, accuracies within 0.1 point; ``tests/test_batched_imp.py``), and depends at rounding level on which
chains share its group. Every level and branch a batched group trained records it in its attributes: ``engine``
(``"batched"``), ``precision`` and ``engine_info`` (JSON: chains in the group, device, dtype, autocast, TF32, CUDA
graph, optimizer implementation, torch version). Levels without ``engine`` were trained by the single path.

Kill-safety and resuming. Each file is written level by level through the store (one atomic transaction per level
or branch; every file's one-writer lock is held for the whole call). Before any file of a level is written, each
trained group's results are saved to a group checkpoint beside its first chain's file
(``.<file>.batched-L<level>-<digest>.pt``, :func:`ticketlab.batched.save_checkpoint`); a call killed between two
file writes is completed from them on resume instead of retrained, and a level's checkpoints are removed once all
its files are written. A resumed set continues every run from its last complete level; the chains still to train at
a level are planned into groups as the uninterrupted call planned them (groups are cut in order, so the groups left
after a kill are those the uninterrupted call trained next), so a resumed set ends with the same files as an
uninterrupted one on the same device and thread count.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ticketlab import store
from ticketlab.errors import ConfigError
from ticketlab.lottery.config import RunConfig
from ticketlab.lottery.data import RunData, load_data
from ticketlab.lottery.run import IMPRun, _masked, _torch_weights
from ticketlab.lottery.start import start_record
from ticketlab.outputs import make_parents, output_lock
from ticketlab.training.checks import check_int

__all__ = ["IMPGroup", "run_imps", "build_runs", "run_runs", "compatibility_key", "data_key"]

Log = Callable[[str], None]


def data_key(config: RunConfig) -> tuple:
    """Runs with equal keys train on the same data (:func:`~ticketlab.lottery.load_data` gives equal tensors)."""
    return (config.dataset, config.data_dir, tuple(config.classes), config.val_size, config.split_seed)


def compatibility_key(config: RunConfig) -> tuple:
    """Runs with equal keys can share batched groups from level 0 on: the same model, data and augmentation, and the
    same batch size, length and optimizer settings (everything :func:`ticketlab.batched.group_key` asks of the
    dense trainings; the retrainings of different reset modes may still differ in length and then group apart)."""
    t = config.train
    return (config.model, data_key(config), config.augment, t.batch_size, t.iterations, t.optimizer, t.momentum,
            t.nesterov, t.weight_decay, tuple(t.betas), t.eps)


def build_runs(configs: Sequence[RunConfig], paths: Sequence[str | os.PathLike], *, device: str = "auto",
               progress: bool | None = None, log: Log | None = None, logs: Sequence[Log | None] | None = None,
               data: RunData | None = None, model_factory: Callable[[int], torch.nn.Module] | None = None
               ) -> list[IMPRun]:
    """One :class:`IMPRun` per config and path; runs with equal data settings (:func:`data_key`) share one loaded
    :class:`RunData` (or all use ``data``). ``logs`` gives each run its own log; else ``log`` receives every run's
    lines, prefixed with the file name when there are several runs."""
    configs, paths = list(configs), [Path(p) for p in paths]
    if not configs:
        raise ConfigError("no runs given")
    if len(configs) != len(paths):
        raise ConfigError(f"got {len(configs)} configs and {len(paths)} paths; give one path per config")
    for c in configs:
        if not isinstance(c, RunConfig):
            raise ConfigError(f"configs must be RunConfig objects; got {type(c).__name__}")
    seen: dict[Path, int] = {}
    for i, p in enumerate(paths):
        key = p.resolve()
        if key in seen:
            raise ConfigError(f"runs {seen[key]} and {i} write the same file {p}; give each run its own path")
        seen[key] = i
    loaded: dict[tuple, RunData] = {}
    runs = []
    for i, (c, p) in enumerate(zip(configs, paths)):
        d = data
        if d is None:
            key = data_key(c)
            if key not in loaded:
                loaded[key] = load_data(c)
            d = loaded[key]
        run_log = logs[i] if logs is not None else _prefixed(log, p.name if len(paths) > 1 else "")
        runs.append(IMPRun(c, p, model_factory=model_factory, data=d, device=device, progress=progress, log=run_log))
    return runs


def _prefixed(log: Log | None, prefix: str) -> Log | None:
    if log is None or not prefix:
        return log
    return lambda line: log(f"{prefix}: {line}")


def run_imps(configs: Sequence[RunConfig], paths: Sequence[str | os.PathLike], *, resume: bool = False,
             overwrite: bool = False, device: str = "auto", progress: bool | None = None, log: Log | None = None,
             chains_per_process: int | None = None, precision: str = "float32",
             start_mask: Mapping[str, np.ndarray] | None = None, start_init: Mapping[str, Any] | None = None,
             data: RunData | None = None, model_factory: Callable[[int], torch.nn.Module] | None = None,
             start_source: str | None = None) -> list[Path]:
    """Run IMP for every config into its path, the chains of compatible runs trained together; see the module
    docstring.

    Parameters
    ----------
    configs, paths : sequences of equal length
        One run per config, written to its own ticket file.
    resume, overwrite, device, progress, start_mask, start_init
        As :meth:`IMPRun.run` (the start mask and initial weights apply to every run).
    log : callable(str), optional
        Receives each run's per-level lines (prefixed with the file name when there are several runs).
    chains_per_process : int, optional
        The most chains trained together in one group (default:
        :func:`ticketlab.batched.default_chains_per_process` of the device: batched on CUDA, 1 on CPU). 1 runs the
        runs one after another, each exactly as :func:`run_imp` would.
    precision : str
        Of batched groups: ``"float32"`` (default), ``"tf32"`` or ``"bf16"`` (:func:`ticketlab.batched.train_chains`);
        recorded in every level's attributes.
    data, model_factory : optional
        Your own data and model for every run (as :class:`IMPRun`).
    start_source : str, optional
        Names the start mask (``"FILE:LEVEL"``) in every file's config and method (:func:`start_record`).

    Returns
    -------
    list of Path
        The ticket files, in the order of ``configs``.
    """
    runs = build_runs(configs, paths, device=device, progress=progress, log=log, data=data,
                      model_factory=model_factory)
    for r in runs:
        r.start = start_record(start_source, start_mask, start_init)
    return run_runs(runs, resume=resume, overwrite=overwrite, chains_per_process=chains_per_process,
                    precision=precision, start_mask=start_mask, start_init=start_init)


def run_runs(runs: Sequence[IMPRun], *, resume: bool = False, overwrite: bool = False,
             chains_per_process: int | None = None, precision: str = "float32",
             start_mask: Mapping[str, np.ndarray] | None = None, start_init: Mapping[str, Any] | None = None
             ) -> list[Path]:
    """Run the :class:`IMPRun` objects ``runs``: one after another with ``chains_per_process`` 1, else as one
    :class:`IMPGroup` per set of runs sharing a model, data and device (in order of first appearance)."""
    runs = list(runs)
    if not runs:
        return []
    if chains_per_process is None:
        from ticketlab.batched import default_chains_per_process

        chains_per_process = default_chains_per_process(runs[0].device)
    chains_per_process = check_int("chains_per_process", chains_per_process, 1)
    if chains_per_process == 1:
        return [r.run(resume=resume, overwrite=overwrite, start_mask=start_mask, start_init=start_init) for r in runs]
    sets: dict[tuple, list[IMPRun]] = {}
    for r in runs:
        factory = getattr(r._factory, "__func__", r._factory)  # the registry factory: one function for every run
        key = (r.config.model, id(r.data), r.config.augment, str(r.device), id(factory))
        sets.setdefault(key, []).append(r)
    for members in sets.values():
        IMPGroup(members, chains_per_process=chains_per_process, precision=precision).run(
            resume=resume, overwrite=overwrite, start_mask=start_mask, start_init=start_init)
    return [r.path for r in runs]


# ----------------------------------------------------------------------------------------------------------
# One set of runs in lockstep


@dataclass
class _RunState:
    """One run of the group: its IMPRun, writer, initial weights, level-0 masks and rewind point."""

    imp: IMPRun
    writer: store.TicketWriter
    init: dict[str, torch.Tensor]
    initial_masks: dict[str, np.ndarray]
    done: list[int]
    checkpoint: str | None
    rewind_k: int | None
    rewind: dict[str, torch.Tensor] | None = None


@dataclass
class _Chain:
    """One training of a level: the run it belongs to, its role (``"level"`` or a control's name), its spec, and
    what its branch records (masks, start weights, seed and the control's entry)."""

    run: _RunState
    role: str
    spec: Any
    masks: dict[str, np.ndarray]
    seed: int | None = None
    entry: Any = None


class IMPGroup:
    """Runs that share a model, data and device, advanced level by level together (see the module docstring).

    Parameters
    ----------
    runs : sequence of IMPRun
        Built with the same data object and model (:func:`build_runs`).
    chains_per_process : int
        The most chains trained in one batched group.
    precision : str
        See :func:`run_imps`.
    """

    def __init__(self, runs: Sequence[IMPRun], *, chains_per_process: int, precision: str = "float32") -> None:
        from ticketlab.batched import PRECISIONS

        self.runs = list(runs)
        if not self.runs:
            raise ConfigError("no runs given")
        self.k = check_int("chains_per_process", chains_per_process, 1)
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
        self.precision = precision
        first = self.runs[0]
        for r in self.runs:
            if r.dist.active:
                raise ConfigError("batched chains do not run under torchrun; use chains_per_process 1")
            if r.data is not first.data or r.config.model != first.config.model or str(r.device) != str(first.device):
                raise ConfigError(f"{r.path}: a group's runs must share the model, the data object and the device")

    # -- the loop -----------------------------------------------------------------------------------------------

    def run(self, *, resume: bool = False, overwrite: bool = False,
            start_mask: Mapping[str, np.ndarray] | None = None, start_init: Mapping[str, Any] | None = None
            ) -> list[Path]:
        """Run (or resume) every run of the group; returns the ticket files' paths."""
        with contextlib.ExitStack() as locks:
            for r in self.runs:  # one writer per file, for the whole call, before anything is replaced
                locks.enter_context(output_lock(make_parents(r.path)))
            points = [r._start_point(start_mask, start_init) for r in self.runs]
            for r in self.runs:
                if start_mask is not None and r.start is None:  # given through the API: record it all the same
                    r.start = start_record(None, start_mask, start_init)
            for r in self.runs:  # refuse before creating any file
                if r.path.exists() and not (resume or overwrite):
                    raise ConfigError(f"{r.path} already exists; use --resume to continue it or --overwrite to "
                                      "replace it")
                if resume and r.path.exists():
                    r._check_resumable()
            states = [self._prepare(r, masks, init, resume, overwrite) for r, (masks, init) in zip(self.runs, points)]
            self._level0(states)
            self._finish(states, 0)
            for level in range(1, max(r.config.levels for r in self.runs) + 1):
                self._level(states, level)
                self._finish(states, level)
        return [r.path for r in self.runs]

    def _prepare(self, r: IMPRun, initial_masks, start_init, resume: bool, overwrite: bool) -> _RunState:
        resumed = resume and r.path.exists()
        done = r._prepare_file(resume, overwrite, start_init)
        if not resumed:  # a new file: group checkpoints beside it belong to a file that is gone
            for old in _checkpoints(r.path, "*"):
                old.unlink(missing_ok=True)
        with store.open_ticket(r.path) as t:
            init = _torch_weights(t.weights("init"))
        c = r.config
        checkpoint = c.reset_mode.checkpoint
        rewind_k = c.rewind_iteration(r.steps_per_epoch) if checkpoint else None
        return _RunState(r, store.TicketWriter(r.path), init, initial_masks, done, checkpoint, rewind_k)

    def _level0(self, states: list[_RunState]) -> None:
        from ticketlab.batched import ChainSpec

        chains = []
        for st in states:
            if 0 in st.done:
                continue
            c = st.imp.config
            spec = ChainSpec(weights=_masked(st.init, st.initial_masks), config=c.train, seed=c.seed,
                             masks=st.initial_masks, start_iteration=0, stop_iteration=c.train.iterations,
                             snapshot_iterations=(st.rewind_k,) if st.checkpoint else (),
                             name=f"{st.imp.path.name} level 0")
            chains.append(_Chain(st, "level", spec, st.initial_masks))
        results = self._train(chains, 0)
        for ch, res in zip(chains, results):
            st = ch.run
            if st.checkpoint:
                st.writer.write_checkpoint(st.checkpoint, res.snapshots[st.rewind_k], iteration=st.rewind_k,
                                           overwrite=True)
            st.writer.write_level(0, ch.masks, evaluation=res.to_evaluation(st.imp.data.num_classes),
                                  weights=res.weights, attrs={"wall_time": res.result.wall_time, **_engine_attrs(res)})
            st.imp.log(st.imp._line(0))
        self._clear(0)
        for st in states:
            if st.checkpoint:
                with store.open_ticket(st.imp.path) as t:
                    st.rewind = _torch_weights(t.weights(st.checkpoint))

    def _level(self, states: list[_RunState], level: int) -> None:
        from ticketlab.batched import ChainSpec

        chains: list[_Chain] = []
        for st in states:
            imp, c = st.imp, st.imp.config
            if level > c.levels:
                continue
            inputs = imp._level_inputs(level, st.init, st.rewind)
            if inputs is None:
                continue
            start_weights, masks, stored, have_branches = inputs
            first, stop = c.retrain_window(imp.steps_per_epoch)
            config = c.retrain_config()

            def spec(weights, m, role: str) -> ChainSpec:
                return ChainSpec(weights=weights, config=config, seed=c.seed, masks=m, start_iteration=first,
                                 stop_iteration=stop, name=f"{imp.path.name} level {level} {role}")

            if not stored:
                chains.append(_Chain(st, "level", spec(_masked(start_weights, masks), masks, "chain"), masks))
            for control in c.controls:
                if control not in have_branches:
                    entry, seed, m, w = imp._control_inputs(control, level, masks, start_weights)
                    chains.append(_Chain(st, control, spec(w, m, control), m, seed=seed, entry=entry))
        results = self._train(chains, level)
        for i, (ch, res) in enumerate(zip(chains, results)):
            st, c = ch.run, ch.run.imp.config
            ev = res.to_evaluation(st.imp.data.num_classes)
            if ch.role == "level":
                st.writer.write_level(level, ch.masks, evaluation=ev, weights=res.weights,
                                      attrs={"rate": c.rate, "wall_time": res.result.wall_time, **_engine_attrs(res)})
            else:
                st.writer.write_branch(level, ch.role, ch.masks, kind=ch.role, evaluation=ev,
                                       init_weights=ch.spec.weights, weights=res.weights, seed=ch.seed,
                                       description=ch.entry.description, attrs=_engine_attrs(res))
            if i + 1 == len(chains) or chains[i + 1].run is not st:  # the run's last training of the level
                st.imp.log(st.imp._line(level))
        self._clear(level)

    def _finish(self, states: list[_RunState], level: int) -> None:
        for st in states:
            if st.imp.config.levels == level:
                st.writer.set_status("complete")

    # -- training, with the group checkpoints -------------------------------------------------------------------

    def _train(self, chains: list[_Chain], level: int) -> list[Any]:
        """Each chain's :class:`~ticketlab.batched.ChainResult`: from a checkpoint of this level when one holds it,
        else trained in groups of at most ``chains_per_process`` (each group checkpointed before any file write)."""
        from ticketlab.batched import plan_groups, save_checkpoint, train_chains

        if not chains:
            return []
        keys = [self._key(ch, level) for ch in chains]
        found = self._stored(level)
        results = [found.get(k) for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        if not todo:
            return results
        first = self.runs[0]
        template = first._new_model(0)
        train, val, test = first.data.train, first.data.val, first.data.test
        for members in plan_groups([chains[i].spec for i in todo], self.k):
            idx = [todo[m] for m in members]
            got = train_chains(template, [chains[i].spec for i in idx], train, val=val, test=test, device=first.device,
                               augment=first.augment, progress=first.progress, precision=self.precision,
                               desc=f"level {level}: {len(idx)} chains")
            path = _checkpoint_path(chains[idx[0]].run.imp.path, level, [keys[i] for i in idx])
            save_checkpoint(path, [{"key": keys[i]} for i in idx], got)
            for i, r in zip(idx, got):
                results[i] = r
        return results

    def _key(self, ch: _Chain, level: int) -> str:
        """What a stored result must match to stand for this chain: file, level, role, precision and the chain's
        identity (seed, config, window, digests of its start weights and masks)."""
        from ticketlab.batched import chain_identity

        ident = {"file": str(ch.run.imp.path.resolve()), "level": level, "role": ch.role,
                 "precision": self.precision, **chain_identity(ch.spec)}
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()

    def _stored(self, level: int) -> dict[str, Any]:
        """Results held by this level's group checkpoints beside the runs' files, by chain key."""
        from ticketlab.batched import load_checkpoint, load_results

        found: dict[str, Any] = {}
        for path in self._level_checkpoints(level):
            try:
                keys = [chain["identity"].get("key") for chain in load_checkpoint(path)]
                results = load_results(path)
            except (ConfigError, KeyError, AttributeError):
                continue  # another file that happens to match the pattern
            found.update(zip(keys, results))
        return found

    def _level_checkpoints(self, level: int) -> list[Path]:
        out: list[Path] = []
        for r in self.runs:
            out += [p for p in _checkpoints(r.path, str(level)) if p not in out]
        return out

    def _clear(self, level: int) -> None:
        """Remove this level's group checkpoints: every file of the level is written."""
        for path in self._level_checkpoints(level):
            path.unlink(missing_ok=True)


def _checkpoint_path(ticket: Path, level: int, keys: Sequence[str]) -> Path:
    digest = hashlib.sha256("|".join(keys).encode()).hexdigest()[:12]
    return ticket.parent / f".{ticket.name}.batched-L{level}-{digest}.pt"


def _checkpoints(ticket: Path, level: str) -> list[Path]:
    """The group checkpoints beside ``ticket`` of ``level`` (``"*"``: of every level)."""
    pattern = os.path.join(glob.escape(str(ticket.parent)), f".{glob.escape(ticket.name)}.batched-L{level}-*.pt")
    return sorted(Path(p) for p in glob.glob(pattern))


def _engine_attrs(result: Any) -> dict[str, Any]:
    """The attributes a batched training records on its level or branch."""
    engine = dict(result.engine)
    return {"engine": str(engine.get("engine", "batched")), "precision": str(engine.get("precision", "")),
            "engine_info": json.dumps(engine, sort_keys=True, default=str)}
