"""Ticket transfer between MNIST digit subsets (``transfer``), and the consensus of one initialisation's tickets
found on the two subsets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .core import (ROOT, Claim, Data, Item, _chain_file, _register, _study, _train, figure, load_spec_config, save,
                   spec_path)


# ---------------------------------------------------------------------------------------------------------------
# 4. ticket transfer between digit subsets

TRANSFER_LEVEL = 8          # the level (density ~17%) whose masks are transferred
TRANSFER_PAIRS = {"0-4": "5-9", "5-9": "0-4"}


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
    """Per retrained consensus: its accuracy beside the same task's bespoke ticket and random mask at the
    consensus's density (interpolated linearly in log-density between the two rounds that bracket it; the nearest
    round when it lies outside them), and the dense network."""
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
        main = mine[mine.branch == "main"].sort_values("density")
        at = {b: mine[mine.branch == b].set_index("level").accuracy for b in ("main", "random")}
        levels = main.level.to_numpy()
        logd = np.log(main.density.to_numpy())
        target = np.log(float(rec.density))

        def interpolate(branch: str) -> float:
            acc = np.array([at[branch].get(lv, np.nan) for lv in levels])
            ok = np.isfinite(acc)
            return float(np.interp(target, logd[ok], acc[ok]))   # clamps outside the range: the nearest round

        lv = int(main.loc[(main.density - rec.density).abs().idxmin(), "level"])
        rows.append({"classes": classes, "seed": seed, "source_level": int(e["axes"]["consensus_level"]),
                     "density": float(rec.density), "consensus": float(rec.accuracy), "bespoke_level": lv,
                     "bespoke_density": float(rec.density), "bespoke": interpolate("main"),
                     "random": interpolate("random"), "dense": float(main[main.level == 0].accuracy.iloc[0])})
    return pd.DataFrame(rows)


def _claim_task_consensus(a: str, b: str, op: str, margin: float) -> Callable[[Data], tuple[str, bool]]:
    def measure(d: Data) -> tuple[str, bool]:
        t = _task_consensus_table(d)
        diff = (t[a] - t[b]) * 100
        per = "; ".join(f"round-{lv} tickets' consensus at {g.density.mean():.1%}: "
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
    t = _transfer_table(d)
    fig, (ax, ax2) = figure(1, 2, size=(12, 4))
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
                label=f"round-{lv} tickets: consensus at {g.density.mean():.0%} (bespoke and random "
                      "interpolated to it)")
        for j, col in enumerate(cols):
            ax2.plot([x[j]] * len(g), diffs[col], "k.", ms=4)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xticks(np.arange(len(cols)), labels)
    ax2.set_ylabel("test accuracy − dense network's (points)")
    ax2.set_title(f"Consensus of one initialisation's tickets, on each subset ({c.seed.nunique()} seeds)")
    ax2.legend(fontsize=8)
    return [save(fig, "ticket_transfer.png")]


# ---------------------------------------------------------------------------------------------------------------
# registered in ITEMS

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
