"""Paganini & Forde 2020 on LeNet-5 (``masks``): what global vs layer-wise, unstructured vs L1-structured,
rewinding vs fine-tuning find."""

from __future__ import annotations

import json
from pathlib import Path

from .core import Claim, Data, Item, _branch, _density_axis, _register, _study, figure, save


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
    main = _branch(d.frame, "main")
    levels = sorted(set.intersection(*(set(g.level) for _, g in main.groupby("file"))))  # every chain has them
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
    """The Jaccard index falls with the level (as the paper plots it), which shrinking density alone implies; the
    claim also requires the overlap *relative to chance* to rise, i.e. that the masks drift apart more slowly than
    density forces and share more of what they keep, beyond chance, the further pruning goes."""
    ov = _masks_overlap(d).assign(ratio=lambda x: x.jaccard / x.expected)
    first, last = ov.level.min(), ov.level.max()
    g = ov.groupby(["a", "b", "level"])[["jaccard", "ratio"]].mean().unstack("level")
    falls = g["jaccard"][last] < g["jaccard"][first]
    rises = g["ratio"][last] > g["ratio"][first]
    per = "; ".join(f"{a} vs {b}: {r[('jaccard', first)]:.2f} -> {r[('jaccard', last)]:.2f} "
                    f"({r[('ratio', first)]:.2f}x -> {r[('ratio', last)]:.2f}x chance)" for (a, b), r in g.iterrows())
    return (f"Jaccard falls for {int(falls.sum())} of {len(g)} pairs, its ratio to chance rises for "
            f"{int(rises.sum())}, from level {first} to {last} ({per})", bool(falls.all() and rises.all()))


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


def _claim_masks_connectivity(d: Data, reset: str = "rewind-init") -> tuple[str, bool]:
    g, _ = _masks_structure(d)
    last = g.level.max()
    sel = g[(g.level == last) & (g.reset == reset) & g.strategy.isin(["global_magnitude", "layer_magnitude"])
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
    return f"{reset} + unstructured, level {last} (mean over seeds and strategies): {per}", bool(ok)


def _claim_masks_global_layers(d: Data) -> tuple[str, bool]:
    g, _ = _masks_structure(d)
    last = g.level.max()
    sel = g[(g.level == last) & (g.strategy == "global_magnitude") & (g.grouping == "output")]
    dens = sel.groupby("layer").density.mean()
    sizes = sel.groupby("layer")["size"].first()
    overall = float((dens * sizes).sum() / sizes.sum())
    largest, smallest = sizes.idxmax(), sizes.idxmin()
    text = ", ".join(f"{layer} ({sizes[layer]:,} weights) {dens[layer]:.1%}" for layer in sizes.index)
    return (f"global magnitude at level {last}: {text}; overall {overall:.1%}",
            bool(dens[largest] < overall < dens[smallest]))


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
    ov = _masks_overlap(d)
    ov.to_csv(d.dir / "overlap.csv", index=False)  # what the notebook shows; --check recomputes it
    g, eff = _masks_structure(d)
    g.to_csv(d.dir / "structure.csv", index=False)
    eff.to_csv(d.dir / "effective.csv", index=False)
    acc = _masks_accuracy(d)
    colours = {k: f"C{i}" for i, k in enumerate(MASK_METHODS)}
    fig, axes = figure(2, 2, size=(11, 8))
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
    return [save(fig, "paganini_methods_lenet5.png")]


# ---------------------------------------------------------------------------------------------------------------
# registered in ITEMS

_register(Item(
    "masks", "Paganini & Forde 2020 on LeNet-5: global vs layer-wise, unstructured vs L1-structured, rewinding vs "
    "fine-tuning", "masks",
    claims=[
        Claim("masks of any two of the six methods from one initialisation overlap above chance (p < 0.01, every "
              "pair, seed and level)", _claim_masks_above_chance),
        Claim("the Jaccard index between two methods' masks falls as pruning proceeds (every pair), as density "
              "implies, while its ratio to chance rises", _claim_masks_drift),
        Claim("fine-tuning and rewinding find more different masks with structured than with unstructured pruning "
              "(Jaccard distance)", _claim_masks_ft_structured),
        Claim("rewinding + unstructured pruning leaves more fully pruned conv2 kernels than random placement, "
              "kept weights over-dispersed over kernels (structured-like connectivity, p < 0.01)",
              _claim_masks_connectivity),
        Claim("... and so does fine-tuning + unstructured pruning (the structure is not rewinding's alone here)",
              lambda d: _claim_masks_connectivity(d, "finetune")),
        Claim("global magnitude pruning prunes the largest layer harder than the overall rate and the smallest "
              "layer less", _claim_masks_global_layers),
        Claim("L1-structured masks keep weights that are disconnected (effective < direct density) more than "
              "unstructured ones", _claim_masks_effective),
        Claim("at the last level, L1-structured pruning is less accurate than every unstructured method",
              _claim_masks_structured_worse),
    ],
    figures=masks_figures, runner=run_masks))
