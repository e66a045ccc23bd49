"""Frankle & Carbin 2019 (``lth``), Vysogorets & Kempe's effective sparsity (``effective``) and Hooker et al. /
Paganini's who pays (``fairness``): three reproductions, all read from the lth study."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .core import Claim, Data, Item, _branch, _density_axis, _in, _level_near, _mean, _register, figure, save


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


def lth_figures(d: Data) -> list[Path]:
    f = d.frame
    fig, axes = figure(1, 2, size=(11, 4))
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
    return [save(fig, "lth_lenet300.png")]


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
    imp, rand = _effective(d)
    fig, ax = figure(1, 1, size=(5.5, 4))
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
    return [save(fig, "effective_sparsity.png")]


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


def _intensification(d: Data):
    """Per level: the intensification slope of each seed (OLS across classes of the ticket's class accuracy on
    the dense network's), computed here with numpy from the frame, beside what ``ticketlab fairness`` reports
    for the same fits: its slope, its noise-only ``null_slope`` and the two p-values.

    A run's dense class accuracies are noisy (seed to seed), so the OLS slope is attenuated towards 0 even when
    pruning shifts every class alike; ``null_slope`` is the slope such a uniform shift gives, estimated from the
    population's runs (docs/design.md, Statistics).
    """
    import pandas as pd

    from ticketlab.frames import fairness_of_files

    def compute(d: Data):
        f = _branch(d.frame, "main")
        cols = [c for c in f.columns if c.startswith("accuracy[")]
        dense = f[f.level == 0].set_index("seed")[cols]
        tool = fairness_of_files([str(p) for p in d.chains()], sections=("fit",)).sections["fit"]
        rows, diffs = [], []
        for lv in sorted(set(f.level) - {0}):
            pruned = f[f.level == lv].set_index("seed")[cols]
            slopes = [np.polyfit(dense.loc[s].to_numpy(float), pruned.loc[s].to_numpy(float), 1)[0]
                      for s in dense.index]
            t = tool[tool.level == lv]
            rows.append({"level": lv, "density": float(f[f.level == lv].density.mean()), "slope": np.mean(slopes),
                         "se": np.std(slopes, ddof=1) / np.sqrt(len(slopes)), "seeds": len(slopes),
                         "tool_slope": float(t.slope.mean()), "null_slope": float(t.null_slope.mean()),
                         "reliability": float(t.reliability.mean()), "rejects_1": int((t.p_slope_1 < 0.05).sum()),
                         "rejects_null": int((t.p_slope_null < 0.05).sum())})
            diffs.append(np.asarray(slopes) - float(t.null_slope.mean()))
        return pd.DataFrame(rows), np.mean(diffs, axis=0)     # per seed: mean over levels of slope - null
    return d.cached("intensification", compute)


def _claim_fairness_fit(d: Data) -> tuple[str, bool]:
    from scipy import stats

    fit, per_seed = _intensification(d)
    same = np.allclose(fit.slope, fit.tool_slope, atol=1e-9)      # numpy's fits are the tool's
    rejects_1 = int(fit.rejects_1.sum()) / int(fit.seeds.sum())
    # pooled over levels: per seed, the mean of (slope - null slope); one-sample t test over seeds
    n = len(per_seed)
    t_res = stats.ttest_1samp(per_seed, 0.0)
    mde = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * per_seed.std(ddof=1) / np.sqrt(n)
    text = ", ".join(f"{r.density:.1%}: {r.slope:.2f} vs {r.null_slope:.2f}" for r in fit.itertuples())
    return (f"reliability {fit.reliability.iloc[0]:.2f}; mean slope vs null slope per density: {text}; "
            f"p(slope=1) < 0.05 in {int(fit.rejects_1.sum())} of {int(fit.seeds.sum())} fits, p(slope=null) in "
            f"{int(fit.rejects_null.sum())}; pooled over levels, slope - null per seed "
            f"{', '.join(f'{v:+.2f}' for v in per_seed)}: mean {per_seed.mean():+.2f}, t test p = {t_res.pvalue:.2f} "
            f"({n} seeds detect only a mean departure of about {mde:.2f} with 80% power); numpy's slopes equal "
            f"the tool's: {same}", bool(same and rejects_1 > 0.5 and t_res.pvalue > 0.05))


def fairness_figures(d: Data) -> list[Path]:
    fr = _fairness(d)
    fr.to_csv(d.dir / "fairness.csv", index=False)   # what the notebook shows; --check recomputes it
    fig, ax = figure(1, 1, size=(5.5, 4))
    ax.plot(fr.density * 100, fr.flagged, "o-", label="classes flagged (Welch p < 0.05)")
    ax2 = ax.twinx()
    ax2.plot(fr.density * 100, fr.pies, "s--", color="C3", label="PIEs (test examples)")
    _density_axis(ax)
    ax.set_ylabel("classes flagged (of 10)")
    ax.set_ylim(-0.3, max(3, int(fr.flagged.max()) + 1))
    ax.set_yticks(range(0, max(3, int(fr.flagged.max()) + 1) + 1))
    ax2.set_ylabel("PIEs")
    ax.set_title(f"Who pays: {int(fr.runs.max())} seeds per population")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    return [save(fig, "who_pays.png")]


# ---------------------------------------------------------------------------------------------------------------
# registered in ITEMS

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
        Claim("the intensification fit finds no departure from a uniform shift once noise is accounted for: "
              "p(slope=1) rejects most fits, but the slopes' mean departure from ticketlab fairness's null_slope "
              "(pooled over levels, t test over seeds) is not significant", _claim_fairness_fit),
    ],
    figures=fairness_figures))
