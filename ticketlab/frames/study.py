"""A study directory (``ticketlab study run``) as the input of the analysis commands and of the study report.

A study directory holds ``manifest.json`` and one ticket file per chain. Read here:

- :func:`read_study` — its chains (those whose file holds a level), each with its *method* (its axis values but
  the seed, :func:`ticketlab.study.tables.method_label`) and seed; :meth:`Study.populations` groups the chains
  that differ only in their seed, the unit of every statistic over seeds;
- :func:`study_argument` — what ``overlap``, ``fairness``, ``structure`` and ``report`` do with a ``DIR``
  given in place of files: the study and the level;
- :func:`study_overlap` — every pair of chains of one model at one matched level, as ``ticketlab overlap`` on
  the chain files computes it, with the chains' methods and seeds; :func:`method_overlap` summarises it method
  by method (pairs of one seed, which share their initialisation, apart from pairs of different seeds);
- :func:`study_fairness` — ``ticketlab fairness`` on the chain files with the study's populations;
- :func:`study_structure` — fully pruned groups and effective density of every chain and level, pooled over layers.

The tidy table of results (one row per chain × level × branch) is :func:`ticketlab.study.study_frame`, re-exported
here as :func:`study_runs` (and :func:`ticketlab.study.study_status` as :func:`study_status`). Example::

    from ticketlab import frames, plots
    study = frames.read_study("runs/rewinding")
    plots.study_accuracy(frames.study_runs(study.directory))
    plots.method_overlap_heatmap(frames.method_overlap(frames.study_overlap(study).frame))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.frames.fairness import FairnessResult, fairness_of_files
from ticketlab.frames.files import levels_text
from ticketlab.frames.identity import Population
from ticketlab.frames.overlap import FileComparison, compare_files
from ticketlab.store import TicketFile, parse_spec
from ticketlab.study.manifest import MANIFEST, chain_file, read_manifest
from ticketlab.study.tables import chain_methods, method_axes
from ticketlab.study.tables import study_frame as study_runs
from ticketlab.study.tables import study_status

#: ``seeds`` values of :func:`method_overlap`: pairs of chains with one seed share their initial weights.
SAME_SEED, DIFFERENT_SEEDS = "same seed", "different seeds"


@dataclass(frozen=True)
class StudyChain:
    """One chain of a study whose ticket file holds at least one level."""

    name: str                 # "reset=rewind-init,seed=0"
    file: str                 # its ticket file (the study directory joined with the manifest's path)
    axes: dict[str, Any]      # its axis values
    method: str               # its axis values but the seed: "rewind-init"
    seed: int | None
    model: str
    levels: tuple[int, ...]
    eval_every: int = 0       # iterations between validations during training (0: none, no early stopping)


@dataclass
class Study:
    """A study directory: its chains with levels, and the chains not started yet.

    Attributes
    ----------
    directory : Path
    description : str
        The spec's description.
    preset : str
    axes : list of str
        The grid's axes, in the spec's order; all but ``seed`` tell methods apart.
    chains : list of StudyChain
        The chains whose file holds at least one level, in the manifest's order.
    not_started : list of str
        Names of the chains without a level yet.
    """

    directory: Path
    description: str
    preset: str
    axes: list[str]
    chains: list[StudyChain]
    not_started: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        """The chains' ticket files, in order."""
        return [c.file for c in self.chains]

    @property
    def methods(self) -> list[str]:
        """The methods, in the order of their first chain."""
        return list(dict.fromkeys(c.method for c in self.chains))

    @property
    def method_axes(self) -> list[str]:
        return method_axes(self.axes)

    def populations(self) -> list[Population]:
        """One population per method: the positions (in :attr:`chains`) of the chains that differ only in seed."""
        return [Population(m, tuple(i for i, c in enumerate(self.chains) if c.method == m), ("study", m))
                for m in self.methods]

    def by_file(self) -> dict[str, StudyChain]:
        return {c.file: c for c in self.chains}

    def summary(self) -> str:
        """``"runs/tiny: 4 chains (2 methods by reset x seeds 0, 1)"``, for the first line of a table."""
        seeds = sorted({c.seed for c in self.chains if c.seed is not None})
        by = " x ".join(self.method_axes) or self.preset
        text = (f"{self.directory}: {len(self.chains)} chain{'s' if len(self.chains) != 1 else ''} "
                f"({len(self.methods)} method{'s' if len(self.methods) != 1 else ''} by {by}; seeds "
                f"{', '.join(map(str, seeds)) or 'unknown'})")
        if self.not_started:
            text += f"; {len(self.not_started)} not started"
        return text


def is_study(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a study directory (a directory holding ``manifest.json``)."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).is_file()


def read_study(directory: str | os.PathLike) -> Study:
    """The chains of a study directory that hold a level (refused when none does)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    identity = manifest["identity"]
    axes = list(identity["grid"])
    chains, waiting = [], []
    for entry, method in zip(manifest["chains"], chain_methods(manifest)):
        path = chain_file(directory, entry)
        levels: tuple[int, ...] = ()
        if path.exists():
            with TicketFile(path) as t:
                levels = tuple(t.levels)
                model = t.model
        if not levels:
            waiting.append(entry["name"])
            continue
        config = entry["config"]
        chains.append(StudyChain(entry["name"], str(path), dict(entry["axes"]), method, config.get("seed"), model,
                                 levels, int((config.get("train") or {}).get("eval_every") or 0)))
    if not chains:
        raise TicketFileError(f"{directory}: no chain of the study has a completed level yet; run it with "
                              "'ticketlab study run SPEC --out DIR'")
    return Study(directory, str(manifest.get("spec", {}).get("description", "")), str(identity.get("preset", "")),
                 axes, chains, waiting)


def study_argument(specs: Sequence[str], level: int | None = None) -> tuple[Study, int | None] | None:
    """A study directory given in place of ticket files: ``(study, level)``, or None when ``specs`` names none.

    ``DIR:N`` chooses level N like ``FILE:N``. A study directory stands alone: given with other specs, it is
    refused (one line), since its chains are already all the files.
    """
    found = [(s, *parse_spec(s)) for s in specs]
    studies = [(s, p, own) for s, p, own in found if is_study(p)]
    if not studies:
        return None
    if len(specs) > 1:
        raise ConfigError(f"{studies[0][0]} is a study directory, which stands for all its chains; give it alone, "
                          "or give ticket files")
    _, path, own = studies[0]
    return read_study(path), own if own is not None else level


def matched_level(study: Study, level: int | None = None, *, pruned: bool = True,
                  chains: Sequence[StudyChain] | None = None) -> int:
    """The level every chain is compared at: ``level`` (refused, naming the chains, when some lack it), else the
    last level all chains have (with ``pruned``, level 0, the dense network, does not count)."""
    chains = study.chains if chains is None else list(chains)
    common = sorted(set.intersection(*(set(c.levels) for c in chains)))
    if level is not None:
        if level < 0:
            level = common[level] if -level <= len(common) else level
        lacking = [c.name for c in chains if level not in c.levels]
        if lacking:
            raise TicketFileError(f"level {level} is not done in every chain of {study.directory} (missing in "
                                  f"{', '.join(lacking[:3])}{', ...' if len(lacking) > 3 else ''}); levels in all: "
                                  f"{levels_text(common)}")
        return level
    usable = [lv for lv in common if not (pruned and lv == 0)]
    if not usable:
        raise TicketFileError(f"the chains of {study.directory} share no pruned level yet (levels in all: "
                              f"{levels_text(common)})")
    return usable[-1]


# ----------------------------------------------------------------------------------------------------------
# Overlap


@dataclass
class StudyOverlap:
    """Every pair of chains of one model compared at ``level``.

    Attributes
    ----------
    level : int
    comparisons : dict of str to FileComparison
        Per model, what ``ticketlab overlap`` on its chain files computes.
    frame : pandas.DataFrame
        Every pair's per-layer and total rows (:attr:`FileComparison.frame`; ``a``, ``b`` are the chain files),
        with ``chain_a``, ``chain_b``, ``method_a``, ``method_b``, ``seed_a`` and ``seed_b`` added.
    """

    level: int
    comparisons: dict[str, FileComparison]
    frame: pd.DataFrame
    #: The columns of ``ticketlab overlap DIR --json``: those of the files, then the chains' identities.
    IDENTITY = ["chain_a", "chain_b", "method_a", "method_b", "seed_a", "seed_b"]

    @property
    def columns(self) -> list[str]:
        first = next(iter(self.comparisons.values()))
        return first.columns + self.IDENTITY

    @property
    def metrics(self) -> list[str]:
        """The extra metric columns (registry names)."""
        return next(iter(self.comparisons.values())).metrics


def study_overlap(study: Study, *, level: int | None = None, metrics: Sequence[str] = (),
                  pvalue_method: str = "auto") -> StudyOverlap:
    """Every pair of chains of one model at one matched level (:func:`matched_level`), per layer and in total.

    The numbers are those of :func:`ticketlab.frames.compare_files` on the chain files (``ticketlab overlap``);
    chains of different models (a ``model`` axis) are not compared with each other.
    """
    level = matched_level(study, level)
    models: dict[str, list[StudyChain]] = {}
    for c in study.chains:
        models.setdefault(c.model, []).append(c)
    if all(len(cs) < 2 for cs in models.values()):
        raise ConfigError(f"{study.directory}: overlap needs two chains of one model; the study has "
                          + ", ".join(f"{len(cs)} of {m}" for m, cs in models.items()))
    by_file = study.by_file()
    comparisons, frames = {}, []
    for model, chains in models.items():
        if len(chains) < 2:
            continue
        comparison = compare_files([c.file for c in chains], level=level, metrics=metrics,
                                   pvalue_method=pvalue_method)
        comparisons[model] = comparison
        f = comparison.frame
        for side in ("a", "b"):
            cs = [by_file[str(x)] for x in f[side]]
            f[f"chain_{side}"] = [c.name for c in cs]
            f[f"method_{side}"] = [c.method for c in cs]
            f[f"seed_{side}"] = pd.array([c.seed for c in cs], dtype="Int64")
        frames.append(f)
    return StudyOverlap(level, comparisons, pd.concat(frames, ignore_index=True))


def method_overlap(pairs: pd.DataFrame, *, layer: str = "total") -> pd.DataFrame:
    """The method × method summary of a pairwise overlap frame: mean Jaccard over pairs of chains, beside chance.

    Parameters
    ----------
    pairs : pandas.DataFrame
        :attr:`StudyOverlap.frame` (needs ``method_a``, ``method_b``, ``seed_a``, ``seed_b``, ``layer``,
        ``jaccard``, ``expected_jaccard``, ``density_a``, ``density_b``, ``level_a``).
    layer : str
        ``"total"`` (all layers pooled, default) or one layer.

    Returns
    -------
    pandas.DataFrame
        One row per pair of methods (``method_a`` first in the order of appearance; ``method_a == method_b`` for
        pairs of one method's seeds) and ``seeds``: ``"same seed"`` (the chains share their initial weights) or
        ``"different seeds"``, never pooled. Columns ``pairs`` (pairs of chains), ``jaccard`` (mean),
        ``jaccard_sd`` (over pairs; NaN for one), ``jaccard_min``, ``jaccard_max``, ``expected_jaccard`` (mean chance
        level), ``jaccard_ratio`` (``jaccard / expected_jaccard``), ``level`` and ``density`` (mean).
    """
    rows = pairs[pairs["layer"] == layer].copy()
    if rows.empty:
        raise ConfigError(f"method_overlap: no rows for layer {layer!r}")
    order = {m: i for i, m in enumerate(dict.fromkeys([*rows["method_a"], *rows["method_b"]]))}
    swap = [order[a] > order[b] for a, b in zip(rows["method_a"], rows["method_b"])]
    a = [b if s else x for x, b, s in zip(rows["method_a"], rows["method_b"], swap)]
    b = [x if s else y for x, y, s in zip(rows["method_a"], rows["method_b"], swap)]
    rows["method_a"], rows["method_b"] = a, b
    same = (rows["seed_a"] == rows["seed_b"]).fillna(False).astype(bool)
    rows["seeds"] = np.where(same, SAME_SEED, DIFFERENT_SEEDS)
    rows["density"] = (rows["density_a"] + rows["density_b"]) / 2
    out = (rows.groupby(["method_a", "method_b", "seeds"], sort=False)
           .agg(pairs=("jaccard", "size"), jaccard=("jaccard", "mean"), jaccard_sd=("jaccard", "std"),
                jaccard_min=("jaccard", "min"), jaccard_max=("jaccard", "max"),
                expected_jaccard=("expected_jaccard", "mean"), level=("level_a", "first"),
                density=("density", "mean"))
           .reset_index())
    out["jaccard_ratio"] = out["jaccard"] / out["expected_jaccard"]
    rank = {DIFFERENT_SEEDS: 0, SAME_SEED: 1}
    out = out.sort_values(["method_a", "method_b", "seeds"],
                          key=lambda c: c.map(order) if c.name != "seeds" else c.map(rank), kind="stable")
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------
# Fairness and structure


def study_fairness(study: Study, *, level: int | None = None, **kwargs: Any) -> FairnessResult:
    """``ticketlab fairness`` on the chain files, each method's seeds one population (never pooled).

    ``level`` defaults to the last pruned level all chains share; ``kwargs`` go to
    :func:`ticketlab.frames.fairness_of_files` (``sections``, ``alpha``, ``shift``, ``ties``, ``effect``).
    """
    return fairness_of_files(study.files, level=matched_level(study, level), groups=study.populations(), **kwargs)


#: ``measure`` values of :func:`study_structure`: the groupings of
#: :func:`ticketlab.analysis.structure.group_structure`, and ``effective`` (effective density).
STRUCTURE_MEASURES = ("output", "input", "kernel", "effective")


def study_structure(study: Study, *, levels: Sequence[int] | None = None) -> pd.DataFrame:
    """Fully pruned groups and effective density of every chain's levels (main line), pooled over layers.

    Parameters
    ----------
    study : Study
    levels : sequence of int, optional
        The levels to read (default: every level of each chain).

    Returns
    -------
    pandas.DataFrame
        One row per chain, level and ``measure``: ``chain``, ``method``, ``seed``, ``model``, ``level``,
        ``density`` (kept fraction of the masked weights), ``measure``, ``value`` and ``chance``. For the
        groupings ``output`` (units or filters), ``input`` (units or channels) and ``kernel`` (conv kernels):
        ``value`` = fully pruned groups / groups over all layers, ``chance`` = the fraction expected if each
        layer's kept weights were placed uniformly at random. For ``effective`` (plain feed-forward models only):
        ``value`` = effective density (kept weights on some input-to-output path; Vysogorets & Kempe 2021),
        ``chance`` = the density itself, which it equals when every kept weight is effective.
    """
    from ticketlab.analysis.structure import effective_density, feedforward_chain, group_structure

    rows = []
    for c in study.chains:
        with TicketFile(c.file) as t:
            tensors = t.tensors
            try:
                feedforward_chain(tensors)
                chainable = True
            except ConfigError:
                chainable = False
            for lv in (c.levels if levels is None else [lv for lv in levels if lv in c.levels]):
                masks = t.masks(lv)
                density = t.level_record(lv)["density"]
                base = {"chain": c.name, "method": c.method, "seed": c.seed, "model": c.model, "level": lv,
                        "density": density}
                g = group_structure(masks, tensors)
                for grouping, part in g.groupby("grouping", sort=False):
                    groups = part["groups"].sum()
                    rows.append({**base, "measure": grouping, "value": part["fully_pruned"].sum() / groups,
                                 "chance": (part["expected_fully_pruned_fraction"] * part["groups"]).sum() / groups})
                if chainable:
                    eff = effective_density(masks, tensors)
                    total = eff[eff["layer"] == "total"].iloc[0]
                    rows.append({**base, "measure": "effective", "value": float(total["effective_density"]),
                                 "chance": float(total["density"])})
    return pd.DataFrame(rows, columns=["chain", "method", "seed", "model", "level", "density", "measure", "value",
                                       "chance"])


__all__ = ["SAME_SEED", "DIFFERENT_SEEDS", "StudyChain", "Study", "is_study", "read_study", "study_argument",
           "matched_level", "StudyOverlap", "study_overlap", "method_overlap", "study_fairness",
           "STRUCTURE_MEASURES", "study_structure", "study_runs", "study_status"]
