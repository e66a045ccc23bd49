"""Renda et al. 2020 (``renda``): fine-tuning vs weight rewinding vs learning-rate rewinding at equal budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .core import Claim, Data, Item, _branch, _mean, _register, figure, save


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
    f = _branch(d.frame, "main")
    fig, ax = figure(1, 1, size=(6, 4))
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
    return [save(fig, "renda_rewinding.png")]


# ---------------------------------------------------------------------------------------------------------------
# registered in ITEMS

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
