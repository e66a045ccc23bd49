#!/usr/bin/env python
"""Published lottery-ticket results reproduced with ticketlab alone (docs/reproductions.md).

    python scripts/reproduce.py --list              # the reproductions, one name per line
    python scripts/reproduce.py lth                 # run the reduced study, ship its files, draw its figures
    python scripts/reproduce.py lth --full          # the paper's protocol (a GPU study; hours)
    python scripts/reproduce.py lth --check         # recompute every stated claim from data/studies/lth/

A reproduction is a study spec (``studies/repro-<study>.toml`` at the paper's protocol, ``-reduced.toml`` for a
CPU), optional extra runs (``ticketlab train --mask ...``), and claims stated as code. Running one writes the study
under ``.repro-work/<study>[-full]/``, copies its ticket files WITHOUT weights (``store.copy_ticket``) with the
manifest and the study frame into ``data/studies/<study>/``, and draws ``docs/figures/<name>*.png``. ``--check``
reads only the shipped files, prints every claim with its measured numbers and exits 1 when one does not hold.
Several reproductions may read one study (``effective`` and ``fairness`` read ``lth``'s files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
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
    runner: Callable[..., None] | None = None   # (out dir, full, threads, workers): runs instead of a spec


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


def _mean(df, col: str):
    return df.groupby("level")[col].mean()


def _branch(f, branch: str, **axes):
    out = f[f.branch == branch]
    for k, v in axes.items():
        out = out[out[k].astype(str) == str(v)]
    return out


def _in(f, lo: float, hi: float):
    return f[(f.density >= lo) & (f.density <= hi)]


# ---------------------------------------------------------------------------------------------------------------
# 1. Frankle & Carbin 2019 (lth), 6. effective sparsity and 5. who pays, all from the lth study

LTH_RANGE = (0.035, 0.22)    # the paper's winning-ticket range for LeNet-300-100: 21% down to 3.6%


def _gap(d: Data, col: str, other: str, lo: float, hi: float) -> tuple[float, Any]:
    f = _in(d.frame, lo, hi)
    t = _branch(f, "main").set_index(["seed", "level"])[col]
    o = _branch(f, other).set_index(["seed", "level"])[col]
    diff = (t - o).dropna()
    return float(diff.mean()), diff.groupby("level").mean()


def _claim_gap(col: str, other: str, lo: float, hi: float, op: str, bound: float, scale: float = 100.0,
               unit: str = "points") -> Callable[[Data], tuple[str, bool]]:
    def measure(d: Data) -> tuple[str, bool]:
        mean, per_level = _gap(d, col, other, lo, hi)
        dens = _mean(_branch(d.frame, "main"), "density")
        levels = ", ".join(f"{dens[lv]:.1%}: {v * scale:+.2f}" for lv, v in per_level.items())
        ok = mean * scale > bound if op == ">" else mean * scale < bound
        return f"mean {mean * scale:+.2f} {unit} (per density {levels})", bool(ok)
    return measure


def _level_near(f, density: float) -> int:
    m = _mean(_branch(f, "main"), "density")
    return int((m - density).abs().idxmin())


def _claim_speed(density: float) -> Callable[[Data], tuple[str, bool]]:
    def measure(d: Data) -> tuple[str, bool]:
        f = _branch(d.frame, "main")
        lv = _level_near(d.frame, density)
        es = _mean(f, "early_stop_iteration")
        dens = _mean(f, "density")[lv]
        return (f"ticket at {dens:.1%}: {es[lv]:.0f} iterations vs dense {es[0]:.0f} "
                f"({1 - es[lv] / es[0]:+.0%} earlier)", bool(es[lv] < es[0]))
    return measure


def _claim_near_dense(density: float, tolerance: float) -> Callable[[Data], tuple[str, bool]]:
    def measure(d: Data) -> tuple[str, bool]:
        f = _branch(d.frame, "main")
        lv = _level_near(d.frame, density)
        acc = _mean(f, "accuracy")
        dens = _mean(f, "density")[lv]
        diff = (acc[lv] - acc[0]) * 100
        return f"ticket at {dens:.1%}: {acc[lv]:.2%} vs dense {acc[0]:.2%} ({diff:+.2f} points)", \
            bool(diff >= -tolerance)
    return measure


def _density_axis(ax) -> None:
    """A log axis of weights remaining (%), densest on the left, with plain percentage ticks."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.xaxis.set_major_locator(FixedLocator([100, 50, 20, 10, 5, 2, 1]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:g}")
    ax.set_xlabel("weights remaining (%)")


def lth_figures(d: Data) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = d.frame
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"main": ("winning ticket (rewind to init)", "C0"), "reinit": ("reinit control", "C1"),
              "random": ("random-mask control", "C2")}
    for branch, (label, color) in styles.items():
        sub = f[(f.branch == branch) | ((f.level == 0) & (f.branch == "main"))]
        for ax, col, scale in ((axes[0], "accuracy", 100), (axes[1], "early_stop_iteration", 1)):
            g = sub.groupby("level").agg(density=("density", "mean"), mean=(col, "mean"), lo=(col, "min"),
                                         hi=(col, "max")).sort_values("density")
            ax.plot(g.density * 100, g["mean"] * scale, "o-", color=color, label=label, ms=3)
            ax.fill_between(g.density * 100, g.lo * scale, g.hi * scale, color=color, alpha=0.2)
    seeds = f.seed.nunique()
    for ax, ylabel in zip(axes, ["test accuracy at early stop (%)", "early-stop iteration"]):
        _density_axis(ax)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"LeNet-300-100 / MNIST, Frankle & Carbin protocol reduced ({seeds} seeds; bands: min-max)")
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    out = FIGURES / "lth_lenet300.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


def _random_masks(tensors, density: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Layer-wise uniform random masks at ``density`` of each prunable tensor (Vysogorets & Kempe's random)."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in tensors:
        if not t.pruned:
            continue
        n = int(np.prod(t.shape))
        keep = max(1, round(density * n))
        flat = np.zeros(n, dtype=bool)
        flat[rng.choice(n, keep, replace=False)] = True
        out[t.name] = flat.reshape(t.shape)
    return out


def _effective(d: Data) -> tuple[Any, Any]:
    """(effective density of every IMP level of every chain, of random 1% masks over 5 draws)."""
    return d.cached("effective", _compute_effective)


def _compute_effective(d: Data) -> tuple[Any, Any]:
    import pandas as pd

    from ticketlab.analysis import effective_density
    from ticketlab.store import open_ticket

    rows = []
    chains = d.chains()
    for path in chains:
        with open_ticket(path) as t:
            for lv in t.levels:
                tot = effective_density(t.masks(lv), t.tensors).set_index("layer").loc["total"]
                rows.append({"file": path.name, "level": lv, "direct": float(tot["density"]),
                             "effective": float(tot["effective_density"])})
    with open_ticket(chains[0]) as t:
        tensors = list(t.tensors)
    rand = []
    for s in range(5):
        tot = effective_density(_random_masks(tensors, 0.01, s), tensors).set_index("layer").loc["total"]
        rand.append({"draw": s, "direct": float(tot["density"]), "effective": float(tot["effective_density"])})
    return pd.DataFrame(rows), pd.DataFrame(rand)


def _claim_imp_effective(d: Data) -> tuple[str, bool]:
    imp, _ = _effective(d)
    ratio = imp.effective / imp.direct
    worst = imp.loc[ratio.idxmin()]
    return (f"min effective/direct over {len(imp)} masks: {ratio.min():.4f} (at direct {worst.direct:.2%}: "
            f"effective {worst.effective:.2%})", bool(ratio.min() >= 0.95))


def _claim_random_effective(d: Data) -> tuple[str, bool]:
    _, rand = _effective(d)
    return (f"random layer-wise masks at {rand.direct.mean():.2%} direct: effective {rand.effective.mean():.3%} "
            f"(5 draws, {rand.effective.min():.3%}-{rand.effective.max():.3%})", bool(rand.effective.mean() < 0.005))


def effective_figures(d: Data) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imp, rand = _effective(d)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(imp.direct * 100, imp.effective * 100, "o", ms=3, label="IMP tickets (all seeds, levels)")
    ax.plot(rand.direct * 100, rand.effective * 100, "x", color="C3", label="random masks (layer-wise uniform)")
    lim = [0.05, 100]
    ax.plot(lim, lim, "k:", lw=1, label="effective = direct")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("direct density (%)")
    ax.set_ylabel("effective density (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("LeNet-300-100: effective vs direct density")
    fig.tight_layout()
    out = FIGURES / "effective_sparsity.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


def _fairness(d: Data):
    return d.cached("fairness", _compute_fairness)


def _compute_fairness(d: Data):
    """Per pruned level: Hooker et al.'s per-class Welch test (dense = level 0 of every seed, pruned = the level of
    every seed) and PIE counts, from the stored per-class recalls and predictions."""
    import pandas as pd

    from ticketlab.frames import fairness_of_files

    chains = [str(p) for p in d.chains()]
    f = _branch(d.frame, "main")
    rows = []
    for lv in sorted(f.level.unique()):
        if lv == 0:
            continue
        res = fairness_of_files([f"{c}:{lv}" for c in chains], sections=("hooker", "pies"))
        hook = res.sections["hooker"]
        pies = res.sections["pies"]
        rows.append({"level": lv, "density": float(f[f.level == lv].density.mean()),
                     "flagged": int(hook.impacted.sum()), "min_p": float(hook.p_value.min()),
                     "median_mde": float(hook.mde.median()), "runs": int(hook.n_pruned.max()),
                     "pies": int(pies["pies"].sum()) if "pies" in pies else np.nan})
    return pd.DataFrame(rows)


def _claim_fairness_power(d: Data) -> tuple[str, bool]:
    fr = _fairness(d)
    return (f"{fr.runs.max()} runs per side; median detectable change (80% power) {fr.median_mde.median():.4f} "
            f"(recall - accuracy), i.e. {fr.median_mde.median() * 100:.1f} points", bool(fr.median_mde.median() > 0.01))


def _claim_fairness_trend(d: Data) -> tuple[str, bool]:
    fr = _fairness(d)
    sparse = fr[fr.density <= 0.1]
    dense = fr[fr.density >= 0.3]
    text = ", ".join(f"{r.density:.1%}: {r.flagged} flagged / {r.pies} PIEs" for r in fr.itertuples())
    ok = sparse.flagged.mean() >= dense.flagged.mean() and sparse.pies.mean() > dense.pies.mean()
    return (f"flagged classes, PIEs per density: {text}; mean flagged at <= 10%: {sparse.flagged.mean():.1f} vs "
            f">= 30%: {dense.flagged.mean():.1f}", bool(ok))


def fairness_figures(d: Data) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fr = _fairness(d)
    fr.to_csv(d.dir / "fairness.csv", index=False)   # what the notebook shows; --check recomputes it
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(fr.density * 100, fr.flagged, "o-", label="classes flagged (Welch p < 0.05)")
    ax2 = ax.twinx()
    ax2.plot(fr.density * 100, fr.pies, "s--", color="C3", label="PIEs (test examples)")
    _density_axis(ax)
    ax.set_ylabel("classes flagged")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax2.set_ylabel("PIEs")
    ax.set_title(f"Who pays: {int(fr.runs.max())} seeds per population")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    fig.tight_layout()
    out = FIGURES / "who_pays.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


# ---------------------------------------------------------------------------------------------------------------
# 2. Renda et al. 2020: fine-tuning vs weight rewinding vs learning-rate rewinding at equal retraining budgets

RENDA = {"finetune": "FT", "rewind:200": "WR", "lr-rewind": "LRR"}


def _renda_table(d: Data):
    f = _branch(d.frame, "main")
    g = f.groupby(["reset", "level"]).agg(density=("density", "mean"), acc=("accuracy", "mean"),
                                          sd=("accuracy", "std"), n=("accuracy", "size")).reset_index()
    return g


def _claim_renda(a: str, b: str, min_compression: float, margin: float) -> Callable[[Data], tuple[str, bool]]:
    def measure(d: Data) -> tuple[str, bool]:
        f = _branch(d.frame, "main")
        f = f[1 / f.density >= min_compression]
        x = f[f.reset == a].set_index(["seed", "level"]).accuracy
        y = f[f.reset == b].set_index(["seed", "level"]).accuracy
        diff = (x - y).dropna()
        per = diff.groupby("level").mean()
        dens = _mean(f, "density")
        text = ", ".join(f"{1 / dens[lv]:.0f}x: {v * 100:+.2f}" for lv, v in per.items())
        return (f"{RENDA.get(a, a)} - {RENDA.get(b, b)} at >= {min_compression:g}x: mean {diff.mean() * 100:+.2f} "
                f"points over {diff.size} (seed, level) pairs ({text})", bool(diff.mean() * 100 > margin))
    return measure


def renda_figures(d: Data) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = _branch(d.frame, "main")
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (reset, label) in enumerate(RENDA.items()):
        sub = f[f.reset == reset]
        g = sub.groupby("level").agg(c=("compression", "mean"), m=("accuracy", "mean"), lo=("accuracy", "min"),
                                     hi=("accuracy", "max"))
        ax.plot(g.c, g.m * 100, "o-", color=f"C{i}", label=f"{label} ({reset})", ms=3)
        ax.fill_between(g.c, g.lo * 100, g.hi * 100, color=f"C{i}", alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("compression (total / kept)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"LeNet-300-100, SGD + step schedule, equal budgets ({f.seed.nunique()} seeds)")
    fig.tight_layout()
    out = FIGURES / "renda_rewinding.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


# ---------------------------------------------------------------------------------------------------------------
# 4. ticket transfer between digit subsets

TRANSFER_LEVEL = 8          # the level (density ~17%) whose masks are transferred
TRANSFER_PAIRS = {"0-4": "5-9", "5-9": "0-4"}


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


def run_transfer(out: Path, full: bool, threads: int, workers: int = 1) -> None:
    """The bespoke ticket searches on each digit subset (the study ``studies/repro-transfer[-reduced].toml``), then
    each seed's round-8 ticket retrained on the other subset (its mask and its initial weights, ``--levels 0``)
    and the consensus of the two subsets' tickets of one seed; writes ``runs.json`` naming every file."""
    chains = _study("transfer", out, full, threads, workers)
    train = load_spec_config(spec_path("transfer", full))
    it, ev = str(train.iterations), str(train.eval_every)
    entries = list(chains)
    seeds = sorted({int(e["axes"]["seed"]) for e in chains})
    (out / "extra").mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for src, dst in TRANSFER_PAIRS.items():
            f = f"extra/transfer_{src}_to_{dst}_seed{seed}.h5"
            ticket = out / _chain_file(chains, classes=src, seed=seed)
            _train(["--mask", f"{ticket.relative_to(ROOT)}:{TRANSFER_LEVEL}", "--classes", dst, "--levels", "0",
                    "--controls", "none", "--seed", str(seed), "--iterations", it, "--eval-every", ev], out / f,
                   threads)
            entries.append({"file": f, "axes": {"classes": dst, "seed": seed, "source": src}})
    for seed in seeds:
        for level in TASK_CONSENSUS_LEVELS:
            entries += _task_consensus(out, chains, seed, level, it, ev, threads)
    (out / "runs.json").write_text(json.dumps({"runs": entries, "full": full}, indent=1))


def load_spec_config(spec: Path):
    """The training config of a spec's first chain (every chain of the transfer study trains alike)."""
    from ticketlab.study import load_spec

    return load_spec(spec).chains()[0].config.train


#: The levels of the two digit-subset tickets of one seed intersected into a consensus (Paganini & Forde's Alg. 1
#: intersects after 2 pruning iterations; 4 gives a sparser consensus).
TASK_CONSENSUS_LEVELS = (2, 4)


def _task_consensus(out: Path, chains: list[dict[str, Any]], seed: int, level: int, it: str, ev: str,
                    threads: int) -> list[dict[str, Any]]:
    """Paganini & Forde's consensus ticket within one initialisation: the intersection of the two tasks' tickets
    of ``seed`` at ``level`` (``ticketlab intersect``), retrained from that initialisation on each task."""
    tickets = [out / _chain_file(chains, classes=classes, seed=seed) for classes in TRANSFER_PAIRS]
    consensus = out / "extra" / f"consensus_L{level}_seed{seed}.h5"
    if not consensus.exists():
        cmd = [sys.executable, "-m", "ticketlab", "intersect", *[f"{t.relative_to(ROOT)}:{level}" for t in tickets],
               "--out", str(consensus.relative_to(ROOT))]
        print(" ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    entries = []
    for classes in TRANSFER_PAIRS:
        f = f"extra/consensus_L{level}_on_{classes}_seed{seed}.h5"
        _train(["--mask", str(consensus.relative_to(ROOT)), "--classes", classes, "--levels", "0", "--controls",
                "none", "--seed", str(seed), "--iterations", it, "--eval-every", ev], out / f, threads)
        entries.append({"file": f, "axes": {"classes": classes, "seed": seed, "consensus_level": level}})
    return entries


def _task_consensus_table(d: Data):
    """Per retrained consensus: its accuracy beside the same task's bespoke ticket and random mask at the level of
    nearest density, and the dense network."""
    import pandas as pd

    f = d.frame
    chains = f[f.file.str.startswith("chains/")]
    rows = []
    for e in d.entries():
        if "consensus_level" not in e["axes"]:
            continue
        classes, seed = str(e["axes"]["classes"]), int(e["axes"]["seed"])
        rec = f[(f.file == e["file"]) & (f.branch == "main")].iloc[0]
        mine = chains[(chains.classes.astype(str) == classes) & (chains.seed == seed)]
        main = mine[mine.branch == "main"]
        lv = int(main.loc[(main.density - rec.density).abs().idxmin(), "level"])
        at = mine[mine.level == lv].set_index("branch")
        rows.append({"classes": classes, "seed": seed, "source_level": int(e["axes"]["consensus_level"]),
                     "density": float(rec.density), "consensus": float(rec.accuracy), "bespoke_level": lv,
                     "bespoke_density": float(at.loc["main", "density"]), "bespoke": float(at.loc["main", "accuracy"]),
                     "random": float(at.loc["random", "accuracy"]),
                     "dense": float(main[main.level == 0].accuracy.iloc[0])})
    return pd.DataFrame(rows)


def _claim_task_consensus(a: str, b: str, op: str, margin: float) -> Callable[[Data], tuple[str, bool]]:
    def measure(d: Data) -> tuple[str, bool]:
        t = _task_consensus_table(d)
        diff = (t[a] - t[b]) * 100
        per = "; ".join(f"L{lv} ({g.density.mean():.1%} vs bespoke {g.bespoke_density.mean():.1%}): "
                        f"{((g[a] - g[b]) * 100).mean():+.2f}" for lv, g in t.groupby("source_level"))
        ok = {">": diff.mean() > margin, "<": diff.mean() < margin, "|<|": abs(diff.mean()) < margin}[op]
        return (f"{a} - {b}: mean {diff.mean():+.2f} points over {len(t)} runs, {int((diff > 0).sum())} positive "
                f"({per})", bool(ok))
    return measure


def _transfer_table(d: Data):
    import pandas as pd

    from ticketlab.store import open_ticket

    f = d.frame
    rows = []
    for path in sorted((d.dir / "extra").glob("transfer_*.h5")):
        _, src, _, dst, seed = path.stem.split("_")
        seed = int(seed.removeprefix("seed"))
        with open_ticket(path) as t:
            rec = t.level_record(t.levels[-1])
        target = f[f.file.str.startswith("chains/") & (f.classes.astype(str) == dst) & (f.seed == seed)]
        b = target[target.level == TRANSFER_LEVEL].set_index("branch")
        rows.append({"source": src, "target": dst, "seed": seed, "density": rec["density"],
                     "transfer": rec["accuracy"], "bespoke": float(b.loc["main", "accuracy"]),
                     "random": float(b.loc["random", "accuracy"]),
                     "dense_target": float(target[(target.level == 0) & (target.branch == "main")].accuracy.iloc[0])})
    return pd.DataFrame(rows)


def _claim_transfer(a: str, b: str, margin: float, op: str = ">") -> Callable[[Data], tuple[str, bool]]:
    def measure(d: Data) -> tuple[str, bool]:
        t = _transfer_table(d)
        diff = (t[a] - t[b]) * 100
        per = ", ".join(f"{r.source}->{r.target} s{r.seed}: {(getattr(r, a) - getattr(r, b)) * 100:+.2f}"
                        for r in t.itertuples())
        ok = diff.mean() > margin if op == ">" else diff.mean() < margin
        return f"{a} - {b}: mean {diff.mean():+.2f} points over {len(t)} runs ({per})", bool(ok)
    return measure


def transfer_figures(d: Data) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = _transfer_table(d)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    cols = ["dense_target", "bespoke", "transfer", "random"]
    labels = ["dense (target)", "bespoke ticket", "transferred ticket", "random mask"]
    for i, (src, g) in enumerate(t.groupby("source")):
        x = np.arange(len(cols)) + (i - 0.5) * 0.38
        m = [g[c].mean() * 100 for c in cols]
        ax.bar(x, m, width=0.36, label=f"{src} -> {TRANSFER_PAIRS[src]}", color=f"C{i}")
        for j, c in enumerate(cols):
            ax.plot([x[j]] * len(g), g[c] * 100, "k.", ms=4)
    ax.set_xticks(np.arange(len(cols)), labels)
    lo = t[cols].min().min() * 100
    ax.set_ylim(lo - 1, 100)
    ax.set_ylabel("test accuracy on the target digits (%)")
    ax.set_title(f"Ticket transfer at {t.density.mean():.1%} density ({t.seed.nunique()} seeds)")
    ax.legend(fontsize=8)
    c = _task_consensus_table(d)
    cols = ["bespoke", "consensus", "random"]
    labels = ["bespoke ticket", "consensus (0-4 ∩ 5-9)", "random mask"]
    for i, (lv, g) in enumerate(c.groupby("source_level")):
        x = np.arange(len(cols)) + (i - 0.5) * 0.38
        diffs = {col: (g[col] - g["dense"]) * 100 for col in cols}
        ax2.bar(x, [diffs[col].mean() for col in cols], width=0.36, color=f"C{i + 2}",
                label=f"round-{lv} tickets: consensus {g.density.mean():.0%}, bespoke/random "
                      f"{g.bespoke_density.mean():.0%}")
        for j, col in enumerate(cols):
            ax2.plot([x[j]] * len(g), diffs[col], "k.", ms=4)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xticks(np.arange(len(cols)), labels)
    ax2.set_ylabel("test accuracy − dense network's (points)")
    ax2.set_title(f"Consensus of one initialisation's tickets, on each subset ({c.seed.nunique()} seeds)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    out = FIGURES / "ticket_transfer.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


# ---------------------------------------------------------------------------------------------------------------
# 3. Paganini & Forde 2020: what different seeds and methods find; the consensus ticket

CONSENSUS_LEVEL = 3        # the lth level whose masks are intersected (51% each)


def run_paganini(out: Path, full: bool, threads: int) -> None:
    """Intersect the lth study's level-3 masks of seeds 0-2 (``ticketlab intersect``), retrain the consensus from
    each seed's initialisation (``train --mask consensus --levels 0``); writes ``runs.json``. Needs the lth study
    run first (``reproduce.py lth``)."""
    lth = WORK / ("lth-full" if full else "lth")
    manifest = json.loads((lth / "manifest.json").read_text())
    chains = {c["axes"]["seed"]: lth / c["file"] for c in manifest["chains"]}
    seeds = sorted(chains)[:3]
    train = manifest["chains"][0]["config"]["train"]
    (out / "extra").mkdir(parents=True, exist_ok=True)
    entries = []
    for seed in seeds:
        consensus = out / "extra" / f"consensus_init{seed}.h5"
        if not consensus.exists():
            cmd = [sys.executable, "-m", "ticketlab", "intersect", *[f"{chains[s]}:{CONSENSUS_LEVEL}" for s in seeds],
                   "--init", str(chains[seed]), "--out", str(consensus)]
            print(" ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        f = f"extra/consensus_retrained_seed{seed}.h5"
        _train(["--mask", str(consensus), "--levels", "0", "--controls", "none", "--seed", str(seed),
                "--iterations", str(train["iterations"]), "--eval-every", str(train["eval_every"])], out / f, threads)
        entries.append({"file": f, "axes": {"seed": seed, "sources": [int(s) for s in seeds]}})
    (out / "runs.json").write_text(json.dumps({"runs": entries, "full": full, "level": CONSENSUS_LEVEL}, indent=1))


def _seed_overlap(d: Data):
    """Total Jaccard of every pair of seeds at every level, beside its chance level and p-value."""
    import itertools

    import pandas as pd

    from ticketlab.frames import overlap_frame

    def compute(lth: Data):
        chains = lth.chains()
        n = _branch(lth.frame, "main").groupby("level").seed.nunique()
        levels = sorted(n[n == len(chains)].index)       # the levels every chain has
        rows = []
        for lv in levels[1:]:
            for a, b in itertools.combinations(chains, 2):
                tot = overlap_frame([(a, lv), (b, lv)]).query("layer == 'total'").iloc[0]
                rows.append({"level": lv, "pair": f"{a.stem}/{b.stem}", "density": float(tot.density_a),
                             "jaccard": float(tot.jaccard), "expected": float(tot.expected_jaccard),
                             "p_value": float(tot.p_value)})
        return pd.DataFrame(rows)
    return d.cached("seed_overlap", lambda d: compute(Data("lth", d.dir.parent)))


def _method_overlap(d: Data):
    """Total Jaccard between the masks of FT, WR and LRR of one seed at each level (the renda study)."""
    return d.cached("method_overlap", _compute_method_overlap)


def _compute_method_overlap(d: Data):
    import itertools

    import pandas as pd

    from ticketlab.frames import overlap_frame

    renda = Data("renda", d.dir.parent)
    f = _branch(renda.frame, "main")
    rows = []
    for (seed, lv), g in f[f.level > 0].groupby(["seed", "level"]):
        files = dict(zip(g.reset, g.file))
        for a, b in itertools.combinations(RENDA, 2):
            tot = overlap_frame([(renda.dir / files[a], lv), (renda.dir / files[b], lv)]).query(
                "layer == 'total'").iloc[0]
            rows.append({"seed": seed, "level": lv, "pair": f"{RENDA[a]}/{RENDA[b]}", "density": float(tot.density_a),
                         "jaccard": float(tot.jaccard), "expected": float(tot.expected_jaccard),
                         "p_value": float(tot.p_value)})
    return pd.DataFrame(rows)


def _claim_seed_overlap(d: Data) -> tuple[str, bool]:
    ov = _seed_overlap(d)
    ov = ov.assign(ratio=ov.jaccard / ov.expected)
    g = ov.groupby("level").agg(density=("density", "mean"), ratio=("ratio", "mean"), p=("p_value", "max"))
    text = ", ".join(f"{r.density:.0%}: {r.ratio:.3f}x (max p {r.p:.2g})" for r in g.itertuples())
    ok = bool(g.ratio.max() < 1.25 and g.ratio.iloc[-1] > g.ratio.iloc[0])
    return f"Jaccard / chance per density (mean of {ov.pair.nunique()} pairs): {text}", ok


def _claim_jaccard_falls(d: Data) -> tuple[str, bool]:
    g = _seed_overlap(d).groupby("level").jaccard.mean()
    return (f"mean Jaccard between seeds from {g.iloc[0]:.3f} (level {g.index[0]}) to {g.iloc[-1]:.3f} "
            f"(level {g.index[-1]}); non-increasing at {int((g.diff().dropna() <= 0).sum())} of {len(g) - 1} steps",
            bool(g.iloc[-1] < g.iloc[0]))


def _claim_method_overlap(d: Data) -> tuple[str, bool]:
    ov = _method_overlap(d)
    g = ov.groupby("pair").agg(j=("jaccard", "mean"), e=("expected", "mean"), p=("p_value", "max"))
    text = ", ".join(f"{pair}: {r.j:.3f} vs chance {r.e:.3f}" for pair, r in g.iterrows())
    return f"mean over seeds and levels: {text}; max p {ov.p_value.max():.2g}", \
        bool((ov.jaccard > ov.expected).all() and (ov.p_value < 0.01).all())


def _consensus_table(d: Data):
    import pandas as pd

    from ticketlab.store import open_ticket

    lth = Data("lth", d.dir.parent).frame
    rows = []
    for e in d.entries():
        with open_ticket(d.dir / e["file"]) as t:
            rec = t.level_record(t.levels[-1])
        seed = e["axes"]["seed"]
        mine = lth[(lth.seed == seed)]
        main = mine[mine.branch == "main"]
        lv = int(main.loc[(main.density - rec["density"]).abs().idxmin(), "level"])
        at = mine[mine.level == lv].set_index("branch")
        rows.append({"seed": seed, "density": rec["density"], "consensus": rec["accuracy"],
                     "bespoke_level": lv, "bespoke_density": float(at.loc["main", "density"]),
                     "bespoke": float(at.loc["main", "accuracy"]), "random": float(at.loc["random", "accuracy"])})
    return pd.DataFrame(rows)


def _claim_consensus(a: str, b: str, margin: float) -> Callable[[Data], tuple[str, bool]]:
    def measure(d: Data) -> tuple[str, bool]:
        t = _consensus_table(d)
        diff = (t[a] - t[b]) * 100
        per = ", ".join(f"seed {r.seed} ({r.density:.1%} vs {r.bespoke_density:.1%}): "
                        f"{(getattr(r, a) - getattr(r, b)) * 100:+.2f}" for r in t.itertuples())
        return f"{a} - {b}: mean {diff.mean():+.2f} points ({per})", bool(diff.mean() > margin)
    return measure


def _claim_structure(d: Data) -> tuple[str, bool]:
    from ticketlab.analysis import group_structure
    from ticketlab.store import open_ticket

    lth = Data("lth", d.dir.parent)
    rows = []
    for path in lth.chains():
        with open_ticket(path) as t:
            lv = t.levels[-1]
            g = group_structure(t.masks(lv), t.tensors, simulations=0)
        g = g[g.layer.isin(["fc_layers.0.weight", "fc_layers.1.weight"])]
        rows.extend(g.itertuples())
    disp = [r.dispersion for r in rows]
    ps = [r.p_value for r in rows]
    return (f"last level, hidden layers, units as groups (in and out): dispersion of kept counts per unit "
            f"{min(disp):.2f}-{max(disp):.2f} (1 = random placement), max p {max(ps):.2g}",
            bool(min(disp) > 1 and max(ps) < 0.01))


def paganini_figures(d: Data) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ov = _seed_overlap(d)
    ov.to_csv(d.dir / "seed_overlap.csv", index=False)                 # what the notebook shows;
    _method_overlap(d).to_csv(d.dir / "method_overlap.csv", index=False)  # --check recomputes them
    ov = ov.assign(ratio=ov.jaccard / ov.expected)
    g = ov.groupby("level").agg(density=("density", "mean"), r=("ratio", "mean"), lo=("ratio", "min"),
                                hi=("ratio", "max"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.plot(g.density * 100, g.r, "o-", ms=3, label="different seeds, layer-wise IMP (lth; min-max over pairs)")
    ax.fill_between(g.density * 100, g.lo, g.hi, alpha=0.2)
    mo = _method_overlap(d).assign(ratio=lambda x: x.jaccard / x.expected)
    for i, (pair, m) in enumerate(mo.groupby("pair")):
        m = m.groupby("level").agg(density=("density", "mean"), r=("ratio", "mean"))
        ax.plot(m.density * 100, m.r, "s--", ms=3, color=f"C{i + 1}", label=f"same seed, {pair} (renda)")
    ax.axhline(1, color="k", ls=":", lw=1, label="chance (random placement)")
    _density_axis(ax)
    ax.set_ylabel("Jaccard / chance Jaccard")
    ax.set_title("Overlap of kept weights, LeNet-300-100")
    ax.legend(fontsize=7)
    ax = axes[1]
    t = _consensus_table(d)
    cols, labels = ["consensus", "bespoke", "random"], ["consensus of 3 seeds", "bespoke ticket", "random mask"]
    ax.bar(range(3), [t[c].mean() * 100 for c in cols], color=["C0", "C1", "C2"])
    for j, c in enumerate(cols):
        ax.plot([j] * len(t), t[c] * 100, "k.")
    ax.set_xticks(range(3), labels)
    ax.set_ylim(min(t[cols].min()) * 100 - 0.5, max(t[cols].max()) * 100 + 0.3)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"consensus at {t.density.mean():.1%} vs bespoke at {t.bespoke_density.mean():.1%}")
    fig.tight_layout()
    out = FIGURES / "paganini_overlap_consensus.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


# ---------------------------------------------------------------------------------------------------------------
# 3b. Paganini & Forde 2020 on LeNet-5: what global vs layer-wise, unstructured vs structured, rewinding vs
# fine-tuning find (the masks study: two specs, because ln_structured takes a norm the others refuse)

MASK_SPECS = ("masks", "masks-structured")


def run_masks(out: Path, full: bool, threads: int, workers: int = 1) -> None:
    """Run both study specs into ``out/<spec>/`` and write ``out/runs.json`` naming every chain with its axes."""
    entries = []
    for name in MASK_SPECS:
        for e in _study(name, out / name, full, threads, workers):
            entries.append({"file": f"{name}/{e['file']}", "axes": e["axes"]})
    (out / "runs.json").write_text(json.dumps({"runs": entries, "full": full, "specs": list(MASK_SPECS)}, indent=1))


#: The six methods of the masks study, as (strategy, reset) → a short label.
MASK_METHODS = {
    ("global_magnitude", "rewind-init"): "global, rewind", ("global_magnitude", "finetune"): "global, finetune",
    ("layer_magnitude", "rewind-init"): "layer-wise, rewind", ("layer_magnitude", "finetune"): "layer-wise, finetune",
    ("ln_structured", "rewind-init"): "L1-structured, rewind", ("ln_structured", "finetune"): "L1-structured, finetune",
}


def _mask_files(d: Data) -> dict[tuple[str, str, int], Path]:
    """(strategy, reset, seed) → the chain file of the masks study."""
    return {(e["axes"]["strategy"], e["axes"]["reset"], int(e["axes"]["seed"])): d.dir / e["file"]
            for e in d.entries()}


def _masks_overlap(d: Data):
    """Total Jaccard of every pair of the six methods' masks, same seed and level, beside chance and p-value."""
    return d.cached("masks_overlap", _compute_masks_overlap)


def _compute_masks_overlap(d: Data):
    import itertools

    import pandas as pd

    from ticketlab.frames import overlap_frame

    files = _mask_files(d)
    seeds = sorted({k[2] for k in files})
    levels = sorted(set(d.frame.level))
    rows = []
    for seed in seeds:
        for (ma, la), (mb, lb) in itertools.combinations(MASK_METHODS.items(), 2):
            fa, fb = files[(*ma, seed)], files[(*mb, seed)]
            for lv in levels[1:]:
                tot = overlap_frame([(fa, lv), (fb, lv)]).query("layer == 'total'").iloc[0]
                rows.append({"seed": seed, "level": lv, "a": la, "b": lb, "density_a": float(tot.density_a),
                             "density_b": float(tot.density_b), "jaccard": float(tot.jaccard),
                             "expected": float(tot.expected_jaccard), "p_value": float(tot.p_value)})
    return pd.DataFrame(rows)


def _masks_structure(d: Data):
    """Fully pruned groups at every level of every chain, against random placement (``group_structure``), and the
    effective density (``effective_density``)."""
    return d.cached("masks_structure", _compute_masks_structure)


def _compute_masks_structure(d: Data):
    import pandas as pd

    from ticketlab.analysis import effective_density, group_structure
    from ticketlab.store import open_ticket

    rows, eff = [], []
    for (strategy, reset, seed), path in _mask_files(d).items():
        with open_ticket(path) as t:
            for lv in t.levels[1:]:
                masks = t.masks(lv)
                g = group_structure(masks, t.tensors, simulations=0)
                g = g.assign(strategy=strategy, reset=reset, seed=seed, level=lv)
                rows.append(g)
                e = effective_density(masks, t.tensors).query("layer == 'total'").iloc[0]
                eff.append({"strategy": strategy, "reset": reset, "seed": seed, "level": lv,
                            "density": float(e.density), "effective_density": float(e.effective_density)})
    return pd.concat(rows, ignore_index=True), pd.DataFrame(eff)


def _pair(ov, a: str, b: str):
    return ov[((ov.a == a) & (ov.b == b)) | ((ov.a == b) & (ov.b == a))]


def _claim_masks_above_chance(d: Data) -> tuple[str, bool]:
    ov = _masks_overlap(d)
    ratio = ov.jaccard / ov.expected
    worst = ov.loc[ov.p_value.idxmax()]
    return (f"{len(ov)} comparisons (15 method pairs x {ov.seed.nunique()} seeds x {ov.level.nunique()} levels): "
            f"Jaccard / chance {ratio.min():.2f}-{ratio.max():.2f}; largest p {worst.p_value:.2g} "
            f"({worst.a} vs {worst.b}, level {worst.level})", bool(ov.p_value.max() < 0.01))


def _claim_masks_drift(d: Data) -> tuple[str, bool]:
    ov = _masks_overlap(d)
    first, last = ov.level.min(), ov.level.max()
    g = ov.groupby(["a", "b", "level"]).jaccard.mean().unstack("level")
    falls = g[last] < g[first]
    per = "; ".join(f"{a} vs {b}: {r[first]:.2f} -> {r[last]:.2f}" for (a, b), r in g.iterrows())
    return f"{int(falls.sum())} of {len(g)} pairs fall from level {first} to {last} ({per})", bool(falls.all())


def _rewind_vs_finetune(d: Data):
    ov = _masks_overlap(d)
    out = {}
    for strategy in ("global", "layer-wise", "L1-structured"):
        out[strategy] = 1 - _pair(ov, f"{strategy}, rewind", f"{strategy}, finetune").jaccard.mean()
    return out


def _claim_masks_ft_structured(d: Data) -> tuple[str, bool]:
    dist = _rewind_vs_finetune(d)
    text = ", ".join(f"{k} {v:.3f}" for k, v in dist.items())
    return (f"Jaccard distance rewind vs finetune, mean over seeds and levels: {text}",
            bool(dist["L1-structured"] > max(dist["global"], dist["layer-wise"])))


def _claim_masks_connectivity(d: Data) -> tuple[str, bool]:
    g, _ = _masks_structure(d)
    last = g.level.max()
    sel = g[(g.level == last) & (g.reset == "rewind-init") & g.strategy.isin(["global_magnitude", "layer_magnitude"])
            & g.pruned & (g.grouping.isin(["kernel", "input", "output"]))]
    sel = sel[sel.fully_pruned_fraction.notna()]
    excess = sel.fully_pruned_fraction - sel.expected_fully_pruned_fraction
    by = sel.assign(excess=excess).groupby(["layer", "grouping"]).agg(
        observed=("fully_pruned_fraction", "mean"), expected=("expected_fully_pruned_fraction", "mean"),
        p=("p_value", "max"))
    by = by[by.expected.notna()]
    per = "; ".join(f"{layer} {grouping}s: {r.observed:.1%} fully pruned vs {r.expected:.1%} at random"
                    for (layer, grouping), r in by.iterrows() if r.observed > 0 or r.expected > 0.001)
    conv2 = by.loc[("convs.1.weight", "kernel")] if ("convs.1.weight", "kernel") in by.index else None
    ok = conv2 is not None and conv2.observed > conv2.expected and conv2.p < 0.01
    return f"rewind + unstructured, level {last}: {per}", bool(ok)


def _claim_masks_effective(d: Data) -> tuple[str, bool]:
    _, eff = _masks_structure(d)
    last = eff.level.max()
    r = eff[eff.level == last].assign(ratio=lambda x: x.effective_density / x.density)
    by = r.groupby("strategy").ratio.agg(["min", "max"])
    text = ", ".join(f"{s} {v['min']:.3f}-{v['max']:.3f}" for s, v in by.iterrows())
    structured = by.loc["ln_structured", "max"]
    unstructured = min(by.loc["global_magnitude", "min"], by.loc["layer_magnitude", "min"])
    return (f"effective / direct density at level {last}: {text}", bool(structured < unstructured))


def _masks_accuracy(d: Data):
    f = _branch(d.frame, "main")
    return f.groupby(["strategy", "reset", "level"]).agg(density=("density", "mean"), accuracy=("accuracy", "mean"),
                                                           lo=("accuracy", "min"), hi=("accuracy", "max"))


def _claim_masks_structured_worse(d: Data) -> tuple[str, bool]:
    a = _masks_accuracy(d)
    last = a.index.get_level_values("level").max()
    at = a.xs(last, level="level")
    text = ", ".join(f"{MASK_METHODS[k]} {r.accuracy:.2%} at {r.density:.1%}" for k, r in at.iterrows())
    worst_unstructured = min(at.loc[k].accuracy for k in at.index if k[0] != "ln_structured")
    best_structured = max(at.loc[k].accuracy for k in at.index if k[0] == "ln_structured")
    return f"level {last}: {text}", bool(best_structured < worst_unstructured)


def masks_figures(d: Data) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ov = _masks_overlap(d)
    ov.to_csv(d.dir / "overlap.csv", index=False)  # what the notebook shows; --check recomputes it
    g, eff = _masks_structure(d)
    g.to_csv(d.dir / "structure.csv", index=False)
    eff.to_csv(d.dir / "effective.csv", index=False)
    acc = _masks_accuracy(d)
    colours = {k: f"C{i}" for i, k in enumerate(MASK_METHODS)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    for key, label in MASK_METHODS.items():
        a = acc.loc[key]
        ls = "-" if key[1] == "rewind-init" else "--"
        ax.plot(a.density * 100, a.accuracy * 100, ls, marker="o", ms=3, color=colours[key], label=label)
        ax.fill_between(a.density * 100, a.lo * 100, a.hi * 100, color=colours[key], alpha=0.15)
    _density_axis(ax)
    ax.set_ylabel("test accuracy at early stop (%)")
    ax.set_title("LeNet-5 / MNIST (min-max over seeds)")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    pairs = [("global, rewind", "layer-wise, rewind"), ("layer-wise, rewind", "layer-wise, finetune"),
             ("global, rewind", "global, finetune"), ("L1-structured, rewind", "L1-structured, finetune"),
             ("layer-wise, rewind", "L1-structured, rewind")]
    for i, (a, b) in enumerate(pairs):
        m = _pair(ov, a, b).groupby("level").agg(density=("density_a", "mean"), j=("jaccard", "mean"),
                                                 e=("expected", "mean"))
        ax.plot(m.density * 100, 1 - m.j, "o-", ms=3, color=f"C{i}", label=f"{a} vs {b}")
        ax.plot(m.density * 100, 1 - m.e, ":", color=f"C{i}", lw=1)
    _density_axis(ax)
    ax.set_xlabel("weights remaining (%) (of the first method)")
    ax.set_ylabel("Jaccard distance (dotted: chance)")
    ax.set_title("Masks of two methods, same seed (mean over seeds)")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    conv2 = g[(g.layer == "convs.1.weight") & (g.grouping == "kernel")]
    for key, label in MASK_METHODS.items():
        if key[0] == "ln_structured":
            continue
        c = conv2[(conv2.strategy == key[0]) & (conv2.reset == key[1])].groupby("level").agg(
            density=("density", "mean"), o=("fully_pruned_fraction", "mean"),
            e=("expected_fully_pruned_fraction", "mean"))
        ls = "-" if key[1] == "rewind-init" else "--"
        ax.plot(c.density * 100, c.o * 100, ls, marker="o", ms=3, color=colours[key], label=label)
        ax.plot(c.density * 100, c.e * 100, ":", color=colours[key], lw=1)
    _density_axis(ax)
    ax.set_xlabel("weights remaining in conv2 (%)")
    ax.set_ylabel("fully pruned 5x5 kernels of conv2 (%)")
    ax.set_title("Structured-like connectivity (dotted: random placement)")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    for key, label in MASK_METHODS.items():
        e = eff[(eff.strategy == key[0]) & (eff.reset == key[1])].groupby("level").agg(
            density=("density", "mean"), r=("effective_density", "mean"))
        ls = "-" if key[1] == "rewind-init" else "--"
        ax.plot(e.density * 100, e.r / e.density, ls, marker="o", ms=3, color=colours[key], label=label)
    _density_axis(ax)
    ax.set_ylabel("effective / direct density")
    ax.set_title("Weights kept but disconnected (Vysogorets & Kempe)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = FIGURES / "paganini_methods_lenet5.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


# ---------------------------------------------------------------------------------------------------------------
# the registry of reproductions

ITEMS: dict[str, Item] = {}


def _register(item: Item) -> None:
    ITEMS[item.name] = item


_register(Item(
    "lth", "Frankle & Carbin 2019: winning tickets of LeNet-300-100", "lth",
    claims=[
        Claim(f"ticket accuracy > reinit-control accuracy, averaged over seeds and the levels with density in "
              f"[{LTH_RANGE[0]:.1%}, {LTH_RANGE[1]:.0%}]", _claim_gap("accuracy", "reinit", *LTH_RANGE, ">", 0.0)),
        Claim("ticket accuracy > random-mask accuracy over the same range",
              _claim_gap("accuracy", "random", *LTH_RANGE, ">", 0.0)),
        Claim("ticket early-stop iteration < reinit-control early-stop iteration over the same range",
              _claim_gap("early_stop_iteration", "reinit", *LTH_RANGE, "<", 0.0, scale=1.0, unit="iterations")),
        Claim("ticket at ~21% density stops earlier than the dense network", _claim_speed(0.211)),
        Claim("ticket at ~21% density is no worse than the dense network (within 0.1 point)",
              _claim_near_dense(0.211, 0.1)),
    ],
    figures=lth_figures))

_register(Item(
    "effective", "Vysogorets & Kempe: effective vs direct sparsity", "lth",
    claims=[
        Claim("IMP (layer-wise magnitude) tickets: effective density >= 95% of direct density at every level",
              _claim_imp_effective),
        Claim("random layer-wise masks at 1% direct density: effective density < 0.5%", _claim_random_effective),
    ],
    figures=effective_figures))

_register(Item(
    "fairness", "Hooker et al. 2019 / Paganini 2020: who pays for sparsity", "lth",
    claims=[
        Claim("with the shipped seeds the per-class Welch test cannot detect a 1-point change with 80% power "
              "(median detectable change > 0.01)", _claim_fairness_power),
        Claim("classes flagged and PIEs: at least as many at <= 10% density as at >= 30% (more PIEs)",
              _claim_fairness_trend),
    ],
    figures=fairness_figures))

_register(Item(
    "renda", "Renda et al. 2020: rewinding vs fine-tuning at equal retraining budgets", "renda",
    claims=[
        Claim("weight rewinding beats fine-tuning at >= 10x compression (mean over seeds and levels)",
              _claim_renda("rewind:200", "finetune", 10, 0.0)),
        Claim("learning-rate rewinding beats fine-tuning at >= 10x compression",
              _claim_renda("lr-rewind", "finetune", 10, 0.0)),
        Claim("learning-rate rewinding beats weight rewinding at >= 10x compression (LRR >= WR > FT)",
              _claim_renda("lr-rewind", "rewind:200", 10, 0.0)),
    ],
    figures=renda_figures))

_register(Item(
    "transfer", "Ticket transfer between MNIST digit subsets (0-4 <-> 5-9)", "transfer",
    claims=[
        Claim("a transferred ticket beats a random mask of the same density on the target digits",
              _claim_transfer("transfer", "random", 0.0)),
        Claim("the bespoke ticket of the target digits beats the transferred ticket",
              _claim_transfer("bespoke", "transfer", 0.0)),
        Claim("a transferred ticket is within 0.5 point of the bespoke ticket of the target digits",
              _claim_transfer("bespoke", "transfer", 0.5, "<")),
        Claim("the consensus (intersection) of the two subsets' tickets of one initialisation, retrained on either "
              "subset, beats a random mask of similar density", _claim_task_consensus("consensus", "random", ">", 0.0)),
        Claim("... and is comparable to the bespoke ticket of similar density (mean difference within 0.3 point): "
              "the intersection of tickets is a ticket", _claim_task_consensus("bespoke", "consensus", "|<|", 0.3)),
    ],
    figures=transfer_figures, runner=run_transfer))

_register(Item(
    "paganini", "Paganini & Forde 2020: overlap of tickets, the consensus ticket, structured-like connectivity",
    "paganini",
    claims=[
        Claim("tickets of different seeds (different initialisations) overlap close to chance: Jaccard / chance "
              "< 1.25 at every level, the excess growing as density falls", _claim_seed_overlap),
        Claim("the Jaccard index between seeds' tickets falls with the level", _claim_jaccard_falls),
        Claim("masks of FT, WR and LRR (same seed and level) overlap above chance (p < 0.01)", _claim_method_overlap),
        Claim("the consensus of 3 seeds' tickets, retrained, beats a random mask of similar density",
              _claim_consensus("consensus", "random", 0.0)),
        Claim("... but not the bespoke ticket of similar density: across seeds the consensus is not a winning ticket",
              _claim_consensus("bespoke", "consensus", 0.0)),
        Claim("kept weights cluster by unit (structured-like connectivity): dispersion > 1, p < 0.01",
              _claim_structure),
    ],
    figures=paganini_figures, runner=run_paganini))

_register(Item(
    "masks", "Paganini & Forde 2020 on LeNet-5: global vs layer-wise, unstructured vs L1-structured, rewinding vs "
    "fine-tuning", "masks",
    claims=[
        Claim("masks of any two of the six methods from one initialisation overlap above chance (p < 0.01, every "
              "pair, seed and level)", _claim_masks_above_chance),
        Claim("the overlap between two methods' masks falls as pruning proceeds (Jaccard at the last level < at "
              "level 1, every pair)", _claim_masks_drift),
        Claim("fine-tuning and rewinding find more different masks with structured than with unstructured pruning "
              "(Jaccard distance)", _claim_masks_ft_structured),
        Claim("rewinding + unstructured pruning leaves more fully pruned conv2 kernels than random placement "
              "(structured-like connectivity, p < 0.01)", _claim_masks_connectivity),
        Claim("L1-structured masks keep weights that are disconnected (effective < direct density) more than "
              "unstructured ones", _claim_masks_effective),
        Claim("at the last level, L1-structured pruning is less accurate than every unstructured method",
              _claim_masks_structured_worse),
    ],
    figures=masks_figures, runner=run_masks))


# ---------------------------------------------------------------------------------------------------------------
# running, shipping, checking

def spec_path(study: str, full: bool) -> Path:
    return ROOT / "studies" / (f"repro-{study}.toml" if full else f"repro-{study}-reduced.toml")


def run_study(item: Item, full: bool, threads: int, workers: int) -> Path:
    out = WORK / (item.study + ("-full" if full else ""))
    if item.runner is not None:
        if "workers" in item.runner.__code__.co_varnames:
            item.runner(out, full, threads, workers)
        else:
            item.runner(out, full, threads)
        return out
    spec = spec_path(item.study, full)
    cmd = [sys.executable, "-m", "ticketlab", "study", "run", str(spec), "--out", str(out), "--threads", str(threads),
           "--workers", str(workers), "--data-dir", str(ROOT / "data"), "--extend", "-v"]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    return out


def ship(item: Item, study_dir: Path) -> Path:
    """Copy the study's ticket files without weights (``store.copy_ticket``), its index (``runs.json``, else the
    study manifest; both when both exist) and its frame into data/studies/<study>/."""
    from ticketlab.store import copy_ticket

    dst = SHIPPED / item.study
    runs = (study_dir / "runs.json").exists()
    index = json.loads((study_dir / ("runs.json" if runs else "manifest.json")).read_text())
    for e in index["runs"] if runs else index["chains"]:
        (dst / e["file"]).parent.mkdir(parents=True, exist_ok=True)
        copy_ticket(study_dir / e["file"], dst / e["file"], level_weights=False, checkpoints=[], overwrite=True)
    for name in ("runs.json", "manifest.json"):
        if (study_dir / name).exists():
            shutil.copyfile(study_dir / name, dst / name)
    for sub in study_dir.glob("*/manifest.json"):   # the studies a runner ran in subdirectories (masks)
        (dst / sub.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sub, dst / sub.parent.name / "manifest.json")
    Data(item.study).frame.to_csv(dst / "frame.csv", index=False)
    return dst


def check(item: Item, root: Path = SHIPPED, data: Data | None = None) -> bool:
    """Print every claim of ``item`` with its measured numbers, recomputed from the shipped files (``data``: the
    :class:`Data` of ``item.study`` to reuse, with its cached analyses); True when all hold."""
    d = data if data is not None else Data(item.study, root)
    ok_all = True
    print(f"{item.name}: {item.title} (from {d.dir.relative_to(ROOT) if d.dir.is_relative_to(ROOT) else d.dir})")
    for claim in item.claims:
        measured, ok = claim.measure(d)
        ok_all &= ok
        print(f"  [{'holds' if ok else 'FAILS'}] {claim.text}\n          measured: {measured}")
    return ok_all


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME", help="reproductions to run or check (see --list)")
    p.add_argument("--list", action="store_true", help="print the names, one per line")
    p.add_argument("--check", action="store_true", help="recompute the claims from data/studies/ only")
    p.add_argument("--full", action="store_true", help="the paper's protocol (studies/repro-<study>.toml)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per chain (default 1)")
    p.add_argument("--workers", type=int, default=1, help="chains run at once (default 1)")
    p.add_argument("--figures-only", action="store_true", help="redraw the figures from the shipped files")
    p.add_argument("--data-root", type=Path, default=SHIPPED, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(ITEMS))
        return 0
    if not args.names:
        p.error("give a NAME (see --list), or --list")
    unknown = [n for n in args.names if n not in ITEMS]
    if unknown:
        p.error(f"unknown reproduction {unknown[0]!r}; choose from: {', '.join(ITEMS)}")
    ok = True
    for name in args.names:
        item = ITEMS[name]
        if args.check:
            ok &= check(item, args.data_root)
            continue
        if not args.figures_only:
            study_dir = run_study(item, args.full, args.threads, args.workers)
            ship(item, study_dir)
        if item.figures is not None:
            for out in item.figures(Data(item.study)):
                print(f"wrote {out.relative_to(ROOT)}")
        ok &= check(item)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
