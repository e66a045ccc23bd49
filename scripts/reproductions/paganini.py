"""Paganini & Forde 2020 on LeNet-300-100 (``paganini``): the overlap of tickets of different seeds and methods,
the consensus ticket of three seeds, structured-like connectivity. Reads the lth and renda studies too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

from .core import ROOT, WORK, Claim, Data, Item, _branch, _density_axis, _register, _train, figure, save
from .renda import RENDA


# ---------------------------------------------------------------------------------------------------------------
# 3. Paganini & Forde 2020: what different seeds and methods find; the consensus ticket

CONSENSUS_LEVEL = 3        # the lth level whose masks are intersected (51% each)


def run_paganini(out: Path, full: bool, threads: int, workers: int = 1) -> None:
    """Intersect the lth study's level-3 masks of seeds 0-2 (``ticketlab intersect``), retrain the consensus from
    each seed's initialisation (``train --mask consensus --levels 0``); writes ``runs.json``. Needs the lth study
    run first (``reproduce.py lth``)."""
    lth = WORK / ("lth-full" if full else "lth")
    if not (lth / "manifest.json").exists():
        raise SystemExit(f"{lth.relative_to(ROOT)}: no lth study; run python scripts/reproduce.py lth"
                         f"{' --full' if full else ''} first")
    manifest = json.loads((lth / "manifest.json").read_text())
    chains = {c["axes"]["seed"]: lth / c["file"] for c in manifest["chains"]}
    seeds = sorted(chains)[:3]
    train = manifest["chains"][0]["config"]["train"]
    (out / "extra").mkdir(parents=True, exist_ok=True)
    entries = []
    for seed in seeds:
        consensus = out / "extra" / f"consensus_init{seed}.h5"
        if not consensus.exists():
            cmd = [sys.executable, "-m", "ticketlab", "intersect",
                   *[f"{chains[s].relative_to(ROOT)}:{CONSENSUS_LEVEL}" for s in seeds],
                   "--init", str(chains[seed].relative_to(ROOT)), "--out", str(consensus.relative_to(ROOT))]
            print(" ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        f = f"extra/consensus_retrained_seed{seed}.h5"
        _train(["--mask", str(consensus.relative_to(ROOT)), "--levels", "0", "--controls", "none", "--seed", str(seed),
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
    ov = _seed_overlap(d)
    ov.to_csv(d.dir / "seed_overlap.csv", index=False)                 # what the notebook shows;
    _method_overlap(d).to_csv(d.dir / "method_overlap.csv", index=False)  # --check recomputes them
    ov = ov.assign(ratio=ov.jaccard / ov.expected)
    g = ov.groupby("level").agg(density=("density", "mean"), r=("ratio", "mean"), lo=("ratio", "min"),
                                hi=("ratio", "max"))
    fig, axes = figure(1, 2, size=(11, 4))
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
    return [save(fig, "paganini_overlap_consensus.png")]


# ---------------------------------------------------------------------------------------------------------------
# registered in ITEMS

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
