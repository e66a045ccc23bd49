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
    runner: Callable[[Path, bool, int], None] | None = None   # (out dir, full, threads): runs instead of a spec


class Data:
    """The shipped files of one study: its frame (read from the ticket files) and its chain files.

    A study run by ``ticketlab study run`` has a ``manifest.json``; one run by plain ``ticketlab train`` commands
    (an :attr:`Item.runner`) has a ``runs.json`` naming each file and its axes.
    """

    def __init__(self, study: str, root: Path = SHIPPED):
        self.dir = Path(root) / study
        self.manifest = self.dir / "manifest.json"
        self.runs = self.dir / "runs.json"
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
            if self.manifest.exists():
                from ticketlab.study import study_frame
                self._frame = study_frame(self.dir)
            else:
                self._frame = _runs_frame(self.dir, json.loads(self.runs.read_text())["runs"])
        return self._frame

    def entries(self) -> list[dict[str, Any]]:
        if self.manifest.exists():
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
#: The ticket searches of the transfer item: Frankle & Carbin's LeNet-300-100 protocol on each digit subset, with
#: the random-mask control (``classes`` is not a study flag yet, so these are plain ``ticketlab train`` runs).
TRANSFER_RUNS = {
    False: {"seeds": [0, 1], "args": ["--levels", "8", "--iterations", "1500", "--eval-every", "300"]},
    True: {"seeds": [0, 1, 2, 3, 4], "args": ["--levels", "8", "--iterations", "50000", "--eval-every", "100"]},
}


def _train(args: list[str], out: Path, threads: int) -> None:
    if out.exists():
        return
    cmd = [sys.executable, "-m", "ticketlab", "train", *args, "--out", str(out), "--quiet",
           "--data-dir", str(ROOT / "data")]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def run_transfer(out: Path, full: bool, threads: int) -> None:
    """The bespoke ticket searches on each digit subset, then each seed's round-8 ticket retrained on the other
    subset (its mask and its initial weights, ``--levels 0``); writes ``runs.json`` naming the files."""
    plan = TRANSFER_RUNS[full]
    entries = []
    (out / "chains").mkdir(parents=True, exist_ok=True)
    (out / "extra").mkdir(parents=True, exist_ok=True)
    for seed in plan["seeds"]:
        for classes in TRANSFER_PAIRS:
            f = f"chains/classes={classes}_seed={seed}.h5"
            _train(["--preset", "lth-lenet300", "--classes", classes, "--seed", str(seed), "--controls", "random",
                    *plan["args"]], out / f, threads)
            entries.append({"file": f, "axes": {"classes": classes, "seed": seed}})
    for seed in plan["seeds"]:
        for src, dst in TRANSFER_PAIRS.items():
            f = f"extra/transfer_{src}_to_{dst}_seed{seed}.h5"
            it = plan["args"][plan["args"].index("--iterations") + 1]
            ev = plan["args"][plan["args"].index("--eval-every") + 1]
            _train(["--mask", f"{out}/chains/classes={src}_seed={seed}.h5:{TRANSFER_LEVEL}", "--classes", dst,
                    "--levels", "0", "--controls", "none", "--seed", str(seed), "--iterations", it,
                    "--eval-every", ev], out / f, threads)
            entries.append({"file": f, "axes": {"classes": dst, "seed": seed, "source": src}})
    (out / "runs.json").write_text(json.dumps({"runs": entries, "full": full}, indent=1))


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
    fig, ax = plt.subplots(figsize=(6, 4))
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


# ---------------------------------------------------------------------------------------------------------------
# running, shipping, checking

def spec_path(study: str, full: bool) -> Path:
    return ROOT / "studies" / (f"repro-{study}.toml" if full else f"repro-{study}-reduced.toml")


def run_study(item: Item, full: bool, threads: int, workers: int) -> Path:
    out = WORK / (item.study + ("-full" if full else ""))
    if item.runner is not None:
        item.runner(out, full, threads)
        return out
    spec = spec_path(item.study, full)
    cmd = [sys.executable, "-m", "ticketlab", "study", "run", str(spec), "--out", str(out), "--threads", str(threads),
           "--workers", str(workers), "--data-dir", str(ROOT / "data"), "--extend", "-v"]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    return out


def ship(item: Item, study_dir: Path) -> Path:
    """Copy the study's ticket files without weights (``store.copy_ticket``), its manifest (or runs.json) and its
    frame into data/studies/<study>/."""
    from ticketlab.store import copy_ticket

    dst = SHIPPED / item.study
    index = "manifest.json" if (study_dir / "manifest.json").exists() else "runs.json"
    entries = json.loads((study_dir / index).read_text())
    entries = entries["chains"] if index == "manifest.json" else entries["runs"]
    for e in entries:
        (dst / e["file"]).parent.mkdir(parents=True, exist_ok=True)
        copy_ticket(study_dir / e["file"], dst / e["file"], level_weights=False, checkpoints=[], overwrite=True)
    shutil.copyfile(study_dir / index, dst / index)
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
