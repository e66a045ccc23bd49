"""OpenLTH's results layout: directories, model files, ``logger`` and ``hparams.log``.

OpenLTH (facebookresearch/open_lth) writes ``<root>/lottery_<md5>/replicate_<r>/level_<L>/<experiment>/`` where
the experiment is ``main`` (the IMP trunk) or ``lottery_branch_<name>_<md5>`` (a control trained on level L's
mask), plus ``level_pretrain/main`` when rewinding. This module finds runs, replicates and experiments and parses
the text files; it reads no tensors. :mod:`ticketlab.io.openlth` maps what it finds onto a ticket file.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ticketlab.errors import TicketFileError

__all__ = ["parse_logger", "parse_hparams", "hparam", "Experiment", "Replicate", "discover", "output_paths",
           "scan_replicate", "read_text", "LOTTERY_DIR",
           "DATASETS"]

_LEVEL_DIR = re.compile(r"^level_(\d+|pretrain)$")
_BRANCH_DIR = re.compile(r"^lottery_branch_(?P<name>.+)_(?P<hash>[0-9a-f]{32})$")
_MODEL_FILE = re.compile(r"^model_ep(\d+)_it(\d+)\.pth$")
_REPLICATE_DIR = re.compile(r"^replicate_(\d+)$")
LOTTERY_DIR = re.compile(r"^lottery_(?P<hash>[0-9a-f]{32})$")

#: OpenLTH dataset names → (classes, training examples), for rewind points given in epochs.
DATASETS = {"mnist": (10, 60_000), "cifar10": (10, 50_000), "imagenet": (1000, 1_281_167)}


# ----------------------------------------------------------------------------------------------------------
# Text files


def parse_logger(text: str) -> dict[str, list[float]]:
    """OpenLTH's ``logger`` (lines ``name,iteration,value``) as columns: ``iteration`` (sorted, unique) and one
    list per metric, ``nan`` where a metric was not logged at an iteration."""
    rows: dict[int, dict[str, float]] = {}
    names: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 3:
            raise ValueError(f"line {n} is not 'name,iteration,value': {line[:80]!r}")
        name, it, value = parts[0], int(parts[1]), float(parts[2])
        if name not in names:
            names.append(name)
        rows.setdefault(it, {})[name] = value
    its = sorted(rows)
    cols: dict[str, list[float]] = {"iteration": [float(i) for i in its]}
    for name in names:
        cols[name] = [rows[i].get(name, math.nan) for i in its]
    return cols


def _coerce(value: str) -> Any:
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def parse_hparams(text: str) -> dict[str, dict[str, Any]]:
    """OpenLTH's ``hparams.log`` (section titles, then ``    * field => value`` lines) as
    ``{section: {field: value}}``; numbers and booleans are converted, everything else stays a string. The file
    is a display, not a lossless serialisation: default values are not listed."""
    out: dict[str, dict[str, Any]] = {}
    section: dict[str, Any] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if not line[0].isspace():
            section = out.setdefault(line.strip(), {})
            continue
        m = re.match(r"^\s+\*\s+(\S+)\s+=>\s?(.*)$", line)
        if m is None or section is None:
            raise ValueError(f"line {n} is neither a section title nor '    * field => value': {line[:80]!r}")
        section[m[1]] = _coerce(m[2])
    return out


def hparam(hparams: dict[str, dict[str, Any]], section: str, name: str, default: Any = None) -> Any:
    return hparams.get(f"{section} Hyperparameters", {}).get(name, default)



# ----------------------------------------------------------------------------------------------------------
# Discovery


@dataclass
class Experiment:
    """One experiment directory: ``main`` or a branch."""

    path: Path
    name: str                      # "main" or the ticket-file branch name
    openlth_name: str              # "main" or the OpenLTH branch name, e.g. "randomly_prune"
    hash: str | None
    models: list[tuple[tuple[int, int], Path]]
    logger: dict[str, list[float]] | None
    has_checkpoint: bool

    @property
    def mask_path(self) -> Path:
        return self.path / "mask.pth"

    @property
    def start(self) -> Path | None:
        return self.models[0][1] if self.models else None

    @property
    def end(self) -> Path | None:
        """The trained model: the last model file, when training finished (OpenLTH writes the logger last)."""
        return self.models[-1][1] if self.models and self.logger is not None else None

    def metrics(self) -> dict[str, list[float]]:
        return self.logger or {}

    def final(self) -> dict[str, float]:
        """The last logged value of every metric, and ``end_iteration``."""
        if not self.logger or not self.logger["iteration"]:
            return {}
        out = {"end_iteration": int(self.logger["iteration"][-1])}
        for k, col in self.logger.items():
            if k != "iteration" and not math.isnan(col[-1]):
                out[k] = float(col[-1])
        return out


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise TicketFileError(f"{path}: cannot read ({err})") from None


def _scan_experiment(path: Path, name: str, openlth_name: str, md5: str | None) -> Experiment:
    models = []
    for f in path.iterdir():
        m = _MODEL_FILE.match(f.name)
        if m:
            models.append(((int(m[1]), int(m[2])), f))
    models.sort()
    logger = None
    if (path / "logger").is_file():
        try:
            logger = parse_logger(read_text(path / "logger"))
        except ValueError as err:
            raise TicketFileError(f"{path / 'logger'}: not an OpenLTH logger ({err})") from None
    return Experiment(path, name, openlth_name, md5, models, logger, (path / "checkpoint.pth").exists())


def discover(src: str | os.PathLike) -> tuple[list[tuple[Path, Path]], list[str]]:
    """The (``lottery_<md5>`` directory, ``replicate_<r>`` directory) pairs under ``src``, and notes.

    ``src`` may be an OpenLTH results root, one ``lottery_<md5>`` directory, or one ``replicate_<r>`` directory.
    """
    src = Path(src)
    if not src.is_dir():
        raise TicketFileError(f"{src}: not a directory; give an OpenLTH results directory (holding lottery_<hash>/"
                              "replicate_<r>/level_<L>/main/)")
    notes: list[str] = []

    def replicates(lottery: Path) -> list[tuple[Path, Path]]:
        reps = [d for d in lottery.iterdir() if d.is_dir() and _REPLICATE_DIR.match(d.name)]
        return [(lottery, d) for d in sorted(reps, key=lambda d: int(d.name.split("_")[1]))]

    if _REPLICATE_DIR.match(src.name):
        runs = [(src.parent, src)]
    elif LOTTERY_DIR.match(src.name):
        runs = replicates(src)
    else:
        runs = []
        for d in sorted(src.iterdir()):
            if d.is_dir() and LOTTERY_DIR.match(d.name):
                runs += replicates(d)
            elif d.is_dir() and d.name.startswith("train_"):
                notes.append(f"{d}: a dense 'train' run (no masks); skipped")
    if not runs:
        found = " (only dense 'train' runs, which have no masks)" if notes else ""
        raise TicketFileError(f"{src}: no OpenLTH lottery run found{found}; expected lottery_<md5>/replicate_<r>/"
                              "level_<L>/main/ below it")
    return runs, notes


def output_paths(out: Path, runs: list[tuple[Path, Path]]) -> list[Path]:
    """``out`` for a single run; otherwise ``<stem>_replicate<r>.h5`` (one experiment) or
    ``<stem>_<md5[:8]>_replicate<r>.h5`` (several)."""
    if len(runs) == 1:
        return [out]
    several = len({lot for lot, _ in runs}) > 1
    paths = []
    for lot, rep in runs:
        tag = rep.name.replace("_", "")
        if several:
            tag = f"{lot.name.split('_', 1)[1][:8]}_{tag}"
        paths.append(out.with_name(f"{out.stem}_{tag}{out.suffix or '.h5'}"))
    return paths


@dataclass
class Replicate:
    """One ``replicate_<r>`` directory, scanned: its levels' experiments and the parsed ``hparams.log``."""

    path: Path
    order: list[int]                                   # level numbers present, ascending
    mains: dict[int, Experiment]                       # level → its ``main`` experiment
    branches: dict[int, list[Experiment]]              # level → its branches
    pre: Experiment | None                             # ``level_pretrain/main`` (rewinding runs only)
    hparams: dict[str, dict[str, Any]]
    hparams_log: str
    notes: list[str] = field(default_factory=list)


def scan_replicate(rep: Path) -> Replicate:
    """Find every level and experiment of ``rep`` and parse its text files (the configuration is written with
    the ticket file, so all of it is read first); refuse an incomplete run directory."""
    notes: list[str] = []
    levels: dict[int, Path] = {}
    pretrain = None
    for d in rep.iterdir():
        m = _LEVEL_DIR.match(d.name)
        if m and d.is_dir():
            if m[1] == "pretrain":
                pretrain = d
            else:
                levels[int(m[1])] = d
    if 0 not in levels or not (levels[0] / "main").is_dir():
        raise TicketFileError(f"{rep}: missing level_0/main (the dense level, with the initial weights and "
                              "hparams.log); not a complete OpenLTH lottery replicate")
    order = sorted(levels)
    gaps = sorted(set(range(order[-1] + 1)) - set(order))
    if gaps:
        notes.append(f"{rep}: levels {', '.join(map(str, gaps))} are missing; imported the others")

    hp_path = levels[0] / "main" / "hparams.log"
    if not hp_path.is_file():
        raise TicketFileError(f"{levels[0] / 'main'}: missing hparams.log; the run directory is incomplete")
    hp_text = read_text(hp_path)
    try:
        hparams = parse_hparams(hp_text)
    except ValueError as err:
        raise TicketFileError(f"{hp_path}: not an OpenLTH hparams.log ({err})") from None

    mains: dict[int, Experiment] = {}
    branches: dict[int, list[Experiment]] = {}
    skipped_checkpoints = 0
    for level in order:
        main = levels[level] / "main"
        if not main.is_dir():
            raise TicketFileError(f"{levels[level]}: missing main/ (the level's trunk experiment)")
        mains[level] = _scan_experiment(main, "main", "main", None)
        for d in sorted(levels[level].iterdir()):
            m = _BRANCH_DIR.match(d.name)
            if m and d.is_dir():
                branches.setdefault(level, []).append(
                    _scan_experiment(d, f"{m['name']}_{m['hash'][:8]}", m["name"], m["hash"]))
    pre = _scan_experiment(pretrain / "main", "main", "main", None) if pretrain is not None else None
    for exp in [*mains.values(), *(b for bs in branches.values() for b in bs), *([pre] if pre else [])]:
        skipped_checkpoints += exp.has_checkpoint
        if exp.openlth_name == "main" and exp is not pre and not exp.mask_path.is_file():
            raise TicketFileError(f"{exp.path}: missing mask.pth; the run directory is incomplete")
        if exp.start is None and (exp is mains[0] or exp is pre):
            raise TicketFileError(f"{exp.path}: no model_ep<E>_it<I>.pth file (the initial weights); the run "
                                  "directory is incomplete")
    if skipped_checkpoints:
        notes.append(f"skipped {skipped_checkpoints} checkpoint.pth file(s): resume state that needs unpickling of "
                     "numpy objects (ticketlab loads only with weights_only=True); nothing in them is needed")
    return Replicate(rep, order, mains, branches, pre, hparams, hp_text, notes)
