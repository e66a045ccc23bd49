"""Build analysis/05_reproductions.ipynb (the published results reproduced; docs/reproductions.md).

    python scripts/make_repro_notebook.py            # (re)write analysis/05_reproductions.ipynb
    python scripts/make_repro_notebook.py --check    # exit 1 if the committed notebook's cells differ

Like the notebooks of scripts/make_notebooks.py it is committed without outputs and run by tests/test_notebooks.py;
it reads only the shipped study files in data/studies/ (frames and ticket files without weights) and the claims
of scripts/reproduce.py, so it runs in seconds.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "analysis" / "05_reproductions.ipynb"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def md(text: str) -> tuple[str, str]:
    return "markdown", textwrap.dedent(text).strip("\n")


def code(text: str) -> tuple[str, str]:
    return "code", textwrap.dedent(text).strip("\n")


CELLS = [
    md("""
    # 05 · Published results, reproduced

    The studies behind [docs/reproductions.md](../docs/reproductions.md), read from the files shipped in
    `data/studies/` (ticket files without weights, with the study manifest and frame). Each was made by
    `python scripts/reproduce.py NAME` at a reduced protocol (`--full` runs the paper's); every claim below is
    recomputed from those files by the same code as `python scripts/reproduce.py NAME --check`.
    """),
    code("""
    %matplotlib inline
    import importlib.util
    import sys
    from pathlib import Path

    import matplotlib.pyplot as plt
    import pandas as pd

    ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "scripts" / "reproduce.py").exists())
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "scripts" / "reproduce.py")
    reproduce = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = reproduce
    spec.loader.exec_module(reproduce)
    STUDIES = ROOT / "data" / "studies"
    data = {name: reproduce.Data(name) for name in ["lth", "renda", "transfer", "paganini", "masks"]}  # cached
    print(sorted(p.name for p in STUDIES.iterdir() if p.is_dir()))
    """),
    md("""
    ## 1 · Frankle & Carbin 2019: winning tickets of LeNet-300-100

    One row per chain × level × branch: `main` is the ticket (rewound to its initialisation), `reinit` and
    `random` the controls trained at the same density.
    """),
    code("""
    lth = pd.read_csv(STUDIES / "lth" / "frame.csv")
    table = (lth.groupby(["level", "branch"])[["density", "accuracy", "early_stop_iteration"]].mean()
                .unstack("branch"))
    table.round(4)
    """),
    code("""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for branch, color in [("main", "C0"), ("reinit", "C1"), ("random", "C2")]:
        sub = lth[(lth.branch == branch) | ((lth.level == 0) & (lth.branch == "main"))]
        g = sub.groupby("level").agg(d=("density", "mean"), a=("accuracy", "mean"), e=("early_stop_iteration", "mean"))
        axes[0].plot(g.d * 100, g.a * 100, "o-", color=color, label=branch)
        axes[1].plot(g.d * 100, g.e, "o-", color=color, label=branch)
    for ax, label in zip(axes, ["test accuracy (%)", "early-stop iteration"]):
        ax.set_xscale("log"); ax.invert_xaxis(); ax.set_xlabel("weights remaining (%)"); ax.set_ylabel(label)
    axes[0].legend();
    """),
    code("""
    reproduce.check(reproduce.ITEMS["lth"], data=data["lth"])
    """),
    md("""
    ## 6 · Effective sparsity (Vysogorets & Kempe), from the same files

    IMP tickets disconnect almost nothing; a random mask at 1% direct density leaves about a tenth of its kept
    weights on an input-to-output path.
    """),
    code("""
    reproduce.check(reproduce.ITEMS["effective"], data=data["lth"])
    """),
    md("""
    ## 5 · Who pays (Hooker et al. 2019): per-class Welch tests and PIEs vs density

    Read the power line first: with a handful of seeds per population the test detects only changes of a few
    points of class recall.
    """),
    code("""
    # per level: classes flagged by Welch's test, the smallest change detected with 80% power (median over
    # classes), PIEs; written by `reproduce.py fairness`, recomputed by `reproduce.py fairness --check` (~20 s)
    fairness = pd.read_csv(STUDIES / "lth" / "fairness.csv")
    ax = fairness.plot(x="density", y=["flagged"], logx=True, marker="o", figsize=(5, 3))
    ax.invert_xaxis()
    fairness.round(4)
    """),
    md("""
    ## 2 · Renda et al. 2020: fine-tuning vs weight rewinding vs learning-rate rewinding
    """),
    code("""
    renda = pd.read_csv(STUDIES / "renda" / "frame.csv")
    (renda[renda.branch == "main"].groupby(["level", "reset"]).accuracy.mean().unstack("reset") * 100).round(2)
    """),
    code("""
    reproduce.check(reproduce.ITEMS["renda"], data=data["renda"])
    """),
    md("""
    ## 4 · Ticket transfer between digit subsets
    """),
    code("""
    transfer = reproduce._transfer_table(data["transfer"])
    transfer.round(4)
    """),
    md("""
    The consensus ticket in Paganini & Forde's own setting: one initialisation (one seed), the tickets found on
    the two digit subsets intersected (`ticketlab intersect`), retrained on each subset, beside that subset's
    bespoke ticket and random mask at the nearest density.
    """),
    code("""
    reproduce._task_consensus_table(data["transfer"]).round(4)
    """),
    code("""
    reproduce.check(reproduce.ITEMS["transfer"], data=data["transfer"])
    """),
    md("""
    ## 3 · Paganini & Forde 2020: overlap between seeds and methods, the consensus ticket

    Overlap of the `lth` seeds' masks level by level beside its chance level (random placement with the same
    per-layer counts), and the consensus (intersection) of three seeds' tickets retrained.
    """),
    code("""
    # written by `reproduce.py paganini`; `reproduce.py paganini --check` recomputes them from the masks (~10 s)
    overlap = pd.read_csv(STUDIES / "paganini" / "seed_overlap.csv")
    overlap.groupby("level")[["density", "jaccard", "expected", "p_value"]].agg(["mean", "max"]).round(4)
    """),
    code("""
    methods = pd.read_csv(STUDIES / "paganini" / "method_overlap.csv")
    methods.groupby(["level", "pair"]).jaccard.mean().unstack("pair").round(3)
    """),
    code("""
    reproduce._consensus_table(data["paganini"]).round(4)
    """),
    md("""
    ### What different methods find on LeNet-5 (`masks`)

    Global vs layer-wise magnitude, unstructured vs L1-structured, rewinding to initialisation vs fine-tuning,
    3 seeds: accuracy per method, the overlap of two methods' masks from one initialisation, fully pruned groups
    against random placement and the effective density.
    """),
    code("""
    acc = reproduce._masks_accuracy(data["masks"])
    acc.accuracy.unstack(["strategy", "reset"]).round(4)
    """),
    code("""
    # written by `reproduce.py masks`; `reproduce.py masks --check` recomputes them from the masks (~1 min)
    overlap = pd.read_csv(STUDIES / "masks" / "overlap.csv")
    overlap.groupby(["a", "b", "level"]).jaccard.mean().unstack("level").round(3)
    """),
    code("""
    structure = pd.read_csv(STUDIES / "masks" / "structure.csv")
    last = structure[structure.level == structure.level.max()]
    (last.groupby(["strategy", "reset", "layer", "grouping"])
         [["density", "fully_pruned_fraction", "expected_fully_pruned_fraction", "dispersion"]].mean().round(3))
    """),
    code("""
    effective = pd.read_csv(STUDIES / "masks" / "effective.csv")
    effective.assign(ratio=effective.effective_density / effective.density).groupby(
        ["strategy", "reset", "level"]).ratio.mean().unstack("level").round(3)
    """),
]


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source) in enumerate(CELLS):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell["id"] = f"repro-{i:02d}"
        nb.cells.append(cell)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the notebook differs")
    args = parser.parse_args(argv)
    nb = build()
    if args.check:
        if not OUT.exists():
            print(f"{OUT} missing")
            return 1
        old = nbformat.read(OUT, as_version=4)
        same = [(c.cell_type, c.source) for c in old.cells] == [(c.cell_type, c.source) for c in nb.cells]
        print("up to date" if same else f"{OUT.name} differs; run python scripts/make_repro_notebook.py")
        return 0 if same else 1
    nbformat.write(nb, OUT)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
