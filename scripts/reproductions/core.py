"""What a reproduction is (:class:`Claim`, :class:`Item`, :class:`Data`), the helpers every reproduction shares
(frames, plotting, running ``ticketlab study run`` and ``ticketlab train``), and the registry :data:`ITEMS`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".repro-work"
SHIPPED = ROOT / "data" / "studies"
FIGURES = ROOT / "docs" / "figures"


# ---------------------------------------------------------------------------------------------------------------
# what a reproduction is

@dataclass
class Claim:
    """One stated result: ``measure(data)`` returns (the measured numbers as text, whether the claim holds)."""

    text: str
    measure: Callable[["Data"], tuple[str, bool]]


@dataclass
class Item:
    name: str
    title: str
    study: str                      # the study whose shipped files it reads (data/studies/<study>/)
    claims: list[Claim]
    figures: Callable[["Data"], list[Path]] | None = None
    #: runs instead of a spec: (out dir, full, threads, workers)
    runner: Callable[[Path, bool, int, int], None] | None = None


class Data:
    """The shipped files of one study: its frame (read from the ticket files) and its chain files.

    A study run by ``ticketlab study run`` alone is indexed by its ``manifest.json``; a reproduction with a
    runner (:attr:`Item.runner`: studies plus plain ``ticketlab train`` runs) writes a ``runs.json`` naming every
    file and its axes, which then indexes everything (a study manifest beside it is kept for provenance).
    """

    def __init__(self, study: str, root: Path = SHIPPED):
        self.dir = Path(root) / study
        self.runs = self.dir / "runs.json"
        self.manifest = self.dir / "manifest.json"
        self.is_study = not self.runs.exists()   # indexed by the study manifest
        if not (self.manifest.exists() or self.runs.exists()):
            raise SystemExit(f"{self.dir}: no shipped study (run: python scripts/reproduce.py {study})")
        self._frame = None
        self.cache: dict[str, Any] = {}

    def cached(self, key: str, compute: Callable[["Data"], Any]) -> Any:
        """``compute(self)``, computed once per Data (several claims and a figure share one analysis)."""
        if key not in self.cache:
            self.cache[key] = compute(self)
        return self.cache[key]

    @property
    def frame(self):
        if self._frame is None:
            if self.is_study:
                from ticketlab.study import study_frame
                self._frame = study_frame(self.dir)
            else:
                self._frame = _runs_frame(self.dir, self.entries())
        return self._frame

    def entries(self) -> list[dict[str, Any]]:
        if self.is_study:
            return json.loads(self.manifest.read_text())["chains"]
        return json.loads(self.runs.read_text())["runs"]

    def chains(self) -> list[Path]:
        files = [self.dir / e["file"] for e in self.entries() if e["file"].startswith("chains/")]
        return [f for f in files if f.exists()]


def _runs_frame(directory: Path, entries: list[dict[str, Any]]):
    """One row per file x level x branch, as ``study_frame`` gives, for files listed in ``runs.json``."""
    import pandas as pd

    from ticketlab.store import open_ticket

    rows = []
    for e in entries:
        with open_ticket(directory / e["file"]) as t:
            names = list(t.dataset.class_names) if t.dataset and t.dataset.class_names else None
            for level in t.levels:
                for branch in [None, *t.branches(level)]:
                    row = {**e["axes"], "file": e["file"], **t.level_record(level, branch=branch),
                           "branch": branch or "main"}
                    ev = t.evaluation(level, branch=branch)
                    if ev is not None:
                        labels = names or [str(i) for i in range(ev.num_classes)]
                        row.update({f"accuracy[{c}]": float(a) for c, a in zip(labels, ev.per_class_accuracy)})
                    rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# frames and figures: what several reproductions share

def _mean(df, col: str):
    return df.groupby("level")[col].mean()


def _branch(f, branch: str, **axes):
    out = f[f.branch == branch]
    for k, v in axes.items():
        out = out[out[k].astype(str) == str(v)]
    return out


def _in(f, lo: float, hi: float):
    return f[(f.density >= lo) & (f.density <= hi)]


def _level_near(f, density: float) -> int:
    m = _mean(_branch(f, "main"), "density")
    return int((m - density).abs().idxmin())


def figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] = (6, 4)):
    """``(figure, axes)``: a figure of ticketlab's plots (Agg canvas, constrained layout, no pyplot state)."""
    from ticketlab.plots import new_figure

    fig = new_figure(*size)
    return fig, fig.subplots(nrows, ncols)


def save(fig, name: str) -> Path:
    """Write ``fig`` to ``docs/figures/<name>`` (``ticketlab.plots.save_figure``: atomic, no dates in the file, so
    a redrawn figure of unchanged data is the same bytes)."""
    from ticketlab.plots import save_figure

    FIGURES.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, FIGURES / name, dpi=110)


def _density_axis(ax) -> None:
    """A log axis of weights remaining (%), densest on the left, with plain percentage ticks."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.xaxis.set_major_locator(FixedLocator([100, 50, 20, 10, 5, 2, 1]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:g}")
    ax.set_xlabel("weights remaining (%)")


# ---------------------------------------------------------------------------------------------------------------
# running studies and plain runs

def spec_path(study: str, full: bool) -> Path:
    return ROOT / "studies" / (f"repro-{study}.toml" if full else f"repro-{study}-reduced.toml")


def _train(args: list[str], out: Path, threads: int) -> None:
    """``ticketlab train ARGS --out OUT`` from the repository root (paths in ARGS relative to it, so that the
    files record repository-relative sources), unless OUT exists."""
    if out.exists():
        return
    cmd = [sys.executable, "-m", "ticketlab", "train", *args, "--out", str(out.relative_to(ROOT)), "--quiet",
           "--data-dir", "data"]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def _study(name: str, out: Path, full: bool, threads: int, workers: int) -> list[dict[str, Any]]:
    """``ticketlab study run studies/repro-<name>[-reduced].toml --out OUT --extend``; the manifest's chains."""
    cmd = [sys.executable, "-m", "ticketlab", "study", "run", str(spec_path(name, full).relative_to(ROOT)),
           "--out", str(out.relative_to(ROOT)), "--threads", str(threads), "--workers", str(workers),
           "--data-dir", "data", "--extend", "-v"]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return [{"file": c["file"], "axes": c["axes"]} for c in json.loads((out / "manifest.json").read_text())["chains"]]


def _chain_file(entries: list[dict[str, Any]], **axes: Any) -> str:
    """The file of the chain whose axes are ``axes`` (compared as text)."""
    found = [e["file"] for e in entries if all(str(e["axes"].get(k)) == str(v) for k, v in axes.items())]
    if len(found) != 1:
        raise SystemExit(f"no single chain with {axes} (found {found})")
    return found[0]


def load_spec_config(spec: Path):
    """The training config of a spec's first chain (every chain of the transfer study trains alike)."""
    from ticketlab.study import load_spec

    return load_spec(spec).chains()[0].config.train


# ---------------------------------------------------------------------------------------------------------------
# the registry of reproductions

ITEMS: dict[str, Item] = {}


def _register(item: Item) -> None:
    ITEMS[item.name] = item
