"""Build the analysis notebooks (``analysis/*.ipynb``) from the cells written out in this file.

    python scripts/make_notebooks.py            # (re)write analysis/01_tour.ipynb ... 06_study.ipynb
    python scripts/make_notebooks.py --check    # exit 1 if a committed notebook's cells differ from what this writes

The notebooks are committed **without outputs**, and ``tests/test_notebooks.py`` executes each one top to bottom
on the shipped example tickets (``data/examples/``), so a stale output can never be committed. Edit the cells
here rather than in Jupyter, then regenerate: a change to a notebook then reads as a change to Python source,
and cell ids are fixed (``tour-03``, ...) so that regenerating an unchanged notebook changes no byte.

Every notebook starts with the same setup cell (:data:`SETUP`): ``%matplotlib inline``, the imports, and
``find_examples()``, which finds ``data/examples/`` whether the notebook runs from the repository root or from
``analysis/``.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "analysis"

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def md(*parts: str) -> tuple[str, str]:
    """A markdown cell; each part is dedented on its own (shared paragraphs are written unindented)."""
    return "markdown", "\n\n".join(textwrap.dedent(part).strip("\n") for part in parts)


def code(text: str) -> tuple[str, str]:
    return "code", textwrap.dedent(text).strip("\n")


# ----------------------------------------------------------------------------------------------------------
# Shared cells

SETUP = '''
%matplotlib inline
# ticketlab draws its figures without pyplot (it never changes matplotlib's global state), so Jupyter shows a
# returned Figure only once the inline backend has registered its PNG formatter: that is what this line does.
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import ticketlab
from ticketlab import frames, plots
{imports}
pd.set_option("display.precision", 4)
pd.set_option("display.max_columns", 30)
pd.set_option("display.width", 160)


def find_examples() -> Path:
    """data/examples/ of the ticketlab repository: searched upward from the working directory (the repository
    root or analysis/), then beside the installed package (an editable install, pip install -e .)."""
    here = Path.cwd().resolve()
    candidates = [d / "data" / "examples" for d in (here, *here.parents)]
    candidates.append(Path(ticketlab.__file__).resolve().parent.parent / "data" / "examples")
    for candidate in candidates:
        if (candidate / "lenet300_rewind-init_s0.h5").is_file():
            return candidate
    raise FileNotFoundError("data/examples/ not found: run this notebook from the ticketlab repository (its root "
                            "or analysis/), or install ticketlab from it with pip install -e .")


EXAMPLES = find_examples()
LENET300 = sorted(EXAMPLES.glob("lenet300_*.h5"))   # 3 reset modes x seeds 0 and 1
LENET5 = EXAMPLES / "lenet5_rewind-init_s0.h5"
[p.name for p in sorted(EXAMPLES.glob("*.h5"))]
'''


def setup(*imports: str) -> tuple[str, str]:
    """The setup cell, with extra import lines."""
    extra = "\n".join(imports)
    return code(SETUP.replace("{imports}", extra + ("\n" if extra else "")))


EXAMPLES_TABLE = """
| file | model | weights after each pruning step | seeds |
| --- | --- | --- | --- |
| `lenet300_rewind-init_s{0,1}.h5` | LeNet-300-100 | rewound to the initial weights; `reinit` control | 0, 1 |
| `lenet300_lr-rewind_s{0,1}.h5` | LeNet-300-100 | trained weights, learning-rate schedule replayed | 0, 1 |
| `lenet300_finetune_s{0,1}.h5` | LeNet-300-100 | trained weights, retrained at the final learning rate | 0, 1 |
| `lenet5_rewind-init_s0.h5` | LeNet-5 (2 conv + 3 linear layers) | rewound to the initial weights | 0 |

The reset modes: `rewind-init` finds lottery tickets as Frankle & Carbin (2019) did; `lr-rewind` and `finetune`
are the learning-rate rewinding and fine-tuning of Renda et al. (2020). The `reinit` control, a branch of every
level of the rewind-init files, trains the same mask from fresh random initial weights.

All were made on the shipped MNIST by `python scripts/make_examples.py` (see `data/README.md`): layer-wise magnitude
pruning of 50% of the remaining weights per level (25% in the output layer), Adam at 1.2e-3 with batch 60. For
LeNet-300-100: 5 levels of 5,000 iterations (about 5.5 epochs), the learning rate decayed ×0.1 once, at iteration
3,750, and the validation loss evaluated every 100 iterations, long enough to see where each network stops
improving. For LeNet-5: 4 levels of a short schedule, 1,000 iterations decayed ×0.1 at 50% and 75%. The files are
compact copies: masks, evaluations and provenance, no per-level weights.
"""

VOCABULARY = """
**Vocabulary** (used by every ticketlab table and figure): *density* = the kept fraction of the weights,
*sparsity* = 1 − density, *compression* = total / kept weights, *rate* = the fraction of the *remaining* weights
pruned per level. *Level* L is the network after L pruning steps; level 0 is the dense network. Accuracies are
fractions of the test set (10,000 MNIST digits), never percentages.
"""


# ----------------------------------------------------------------------------------------------------------
# 01 — a tour of a ticket file

TOUR = [
    md("""
    # A tour of a ticket file

    A **ticket file** (`.h5`) holds one pruning run: for every level its masks, its test-set evaluation (overall
    and per class, with the predictions and the training curve) and, where kept, weights, plus the run's
    provenance and configuration. This notebook opens one of the shipped example tickets, looks at what it holds,
    and ends with the figure of every lottery-ticket paper: accuracy against density, for all the examples.

    The examples (in `data/examples/`):
    """, EXAMPLES_TABLE, VOCABULARY),
    setup(),
    md("""
    ## Open a ticket file

    `ticketlab.open_ticket(path)` opens the file read-only; nothing is loaded until asked for. Use it in a `with`
    block in scripts; in a notebook we keep it open and close it at the end. The identity of the run comes first:
    model, a one-line description of the method, seed, and the dataset the levels were evaluated on.
    """),
    code("""
    t = ticketlab.open_ticket(EXAMPLES / "lenet300_rewind-init_s0.h5")
    ds = t.dataset
    print("model   ", t.model)
    print("method  ", t.method)
    print("seed    ", t.seed, "| status", t.status, "| schema version", t.schema_version)
    print("dataset ", ds.name, f"({ds.num_classes} classes, {ds.test_labels.size:,} test examples)")
    print("weights ", t.checkpoints(), "(run-wide checkpoints; 'init' = the initial weights)")
    """),
    md("""
    **Provenance** is every root attribute of the file: when it was created and last updated, and the versions of
    ticketlab, torch, numpy, h5py and Python that wrote it. The **configuration** is the complete run
    configuration (the `RunConfig`): with the same versions it reproduces the run (`seeds` are the derived seeds of
    the initialisation, the data order and the validation split).
    """),
    code("""
    pd.Series(t.provenance, name="value").to_frame()
    """),
    code("""
    pd.json_normalize(t.config).T.rename(columns={0: "value"}).astype(str)
    """),
    md("""
    ## Tensors, levels and branches

    The masked tensors are named by their PyTorch parameter names, in model order. LeNet-300-100 has three weight
    matrices (784 → 300 → 100 → 10); biases are never masked. The levels present are 0 (dense) to 5; each pruned
    level of this file also has a `reinit` **branch**: the same mask trained from fresh random initial values, the
    control that tells whether a ticket's *initialisation* matters or only its mask.
    """),
    code("""
    pd.DataFrame([{"tensor": x.name, "kind": x.kind, "shape": " x ".join(map(str, x.shape)), "weights": x.size,
                   "pruned": x.pruned} for x in t.tensors])
    """),
    code("""
    print("levels:  ", t.levels)
    print("branches:", {level: t.branches(level) for level in t.levels})
    print("reinit:  ", t.branch_info(5, "reinit")["description"])
    """),
    md("""
    ## One row per level: `summary()`

    `t.summary()` is a pandas DataFrame with one row per level and per control branch: `kept` and `size` count the
    masked weights, then `density`, `sparsity` and `compression`; `accuracy` is the test accuracy, `loss` the test
    cross-entropy (nats), `early_stop_iteration` the iteration of minimum validation loss (evaluated every 100
    of the 5,000 iterations; the early-stopping iteration of Frankle & Carbin 2019), `wall_time` the seconds the
    level's training took. `branch` is empty (NaN) on the main line. This table is what `ticketlab info FILE`
    prints.
    """),
    code("""
    t.summary()
    """),
    md("""
    Each level halves the hidden layers and keeps 75% of the output layer, so the density over all masked weights
    falls slightly slower than 0.5^L. The `--layers` table of `ticketlab info FILE --layers` is
    `layer_summary()` (one tidy row per level and tensor, read from stored counts without unpacking a mask),
    pivoted to one row per tensor:
    """),
    code("""
    layers = t.layer_summary()
    layers.pivot(index="layer", columns="level", values="density").reindex([x.name for x in t.tensors])
    """),
    md("""
    ## The mask of one layer

    `t.mask(level, name)` reads one tensor's mask as a boolean array of the tensor's shape (`True` = kept);
    `t.masks(level)` reads all of them as `{name: array}`. The first layer's mask is 300 hidden units × 784 input
    pixels, so each column is one pixel of the 28 × 28 image. Left: how many of the 300 hidden units keep a weight
    from each pixel at level 5. Right: how many input weights each hidden unit keeps, beside what uniformly random
    placement of the same number of kept weights would give (a hypergeometric distribution).
    """),
    code("""
    from scipy import stats

    m = t.mask(5, "fc_layers.0.weight")
    print(m.shape, m.dtype, f"kept {m.sum():,} of {m.size:,}: density {m.mean():.4f}")
    per_pixel = m.sum(axis=0).reshape(28, 28)   # hidden units keeping a weight from each input pixel
    per_unit = m.sum(axis=1)                    # kept input weights of each hidden unit

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    img = left.imshow(per_pixel, cmap="viridis")
    fig.colorbar(img, ax=left, label="hidden units keeping the pixel")
    left.set_title("level 5: kept weights per input pixel", fontsize=10)
    left.set_xticks([])
    left.set_yticks([])
    counts = np.arange(per_unit.max() + 2)
    right.hist(per_unit, bins=counts - 0.5, color="#0173b2", label="observed (300 units)")
    null = stats.hypergeom(m.size, int(m.sum()), m.shape[1])   # kept weights of one unit if placed at random
    right.plot(counts, m.shape[0] * null.pmf(counts), color="black", ls="--", label="random placement")
    right.set_xlabel("kept input weights of a hidden unit")
    right.set_ylabel("hidden units")
    right.legend(fontsize=8, frameon=False)
    right.set_title("level 5: kept weights per hidden unit", fontsize=10)
    plt.show()
    """),
    md("""
    Magnitude pruning is far from random here: the pixels in the middle of the image, where the digits are, keep
    about three times as many weights as the border pixels (16 hidden units on average in the central 14 × 14
    pixels, 5 in the outer 4-pixel frame), and the hidden units
    are much more unequal than random placement would make them (the observed histogram is far wider than the
    dashed one). Notebook `03_sparsity_and_structure` quantifies this per layer.

    ## The evaluation of a level

    `t.evaluation(level)` (or `t.evaluation(level, branch="reinit")`) returns an `Evaluation`: `accuracy`,
    `per_class_accuracy` (the recall of each class: correct / examples of that class), the `confusion` matrix
    (rows: true class, columns: predicted class), the test-set `predictions` and the training `curve`. Below, the
    per-class accuracy of the dense network, of the level-5 ticket (3.2% of the weights) and of its reinit control.
    """),
    code("""
    ev0, ev5, ev5r = t.evaluation(0), t.evaluation(5), t.evaluation(5, branch="reinit")
    per_class = pd.DataFrame({"dense (level 0)": ev0.per_class_accuracy, "level 5": ev5.per_class_accuracy,
                              "level 5, reinit": ev5r.per_class_accuracy},
                             index=pd.Index(ds.class_names, name="class"))
    per_class.insert(0, "test examples", np.bincount(ds.test_labels, minlength=ds.num_classes))
    per_class.loc["overall"] = [ds.test_labels.size, ev0.accuracy, ev5.accuracy, ev5r.accuracy]
    per_class
    """),
    md("""
    ## The training curve

    `ev.curve` holds the columns logged during training, one row per evaluation (every 100 iterations here):
    `iteration`, `train_loss`, `val_loss`, `val_accuracy` (5,000 examples held out of the training set),
    `test_loss`, `test_accuracy` and `lr`. The learning rate drops ×0.1 at iteration 3,750 (dotted). Below, the
    dense network, the level-3 ticket (12.6% of the weights) and its reinit control; a star marks each one's
    minimum validation loss, its early-stopping iteration `ev.early_stop_iteration`.
    """),
    code("""
    ev3, ev3r = t.evaluation(3), t.evaluation(3, branch="reinit")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for label, ev in [("dense (level 0)", ev0), ("level 3", ev3), ("level 3, reinit", ev3r)]:
        c = ev.curve
        line, = left.plot(c["iteration"], c["val_loss"], marker="o", ms=2, lw=1, label=label)
        stop = list(c["iteration"]).index(ev.early_stop_iteration)
        left.plot(ev.early_stop_iteration, c["val_loss"][stop], marker="*", ms=12, color=line.get_color(),
                  markeredgecolor="black")
        right.plot(c["iteration"], c["test_accuracy"], marker="o", ms=2, lw=1, label=label)
    left.set_yscale("log")
    left.set_ylim(0.055, 0.3)
    left.set_ylabel("validation loss (nats, log scale)")
    right.set_ylim(0.9, 0.99)
    right.set_ylabel("test accuracy (fraction)")
    for ax in (left, right):
        ax.set_xlabel("training iteration")
        for milestone in t.config["train"]["milestones"]:
            ax.axvline(milestone, color="grey", lw=0.8, ls=":")
        ax.grid(True, alpha=0.3)
    right.legend(fontsize=8, frameon=False, loc="lower right")
    plt.show()
    """),
    md("""
    The level-3 ticket, rewound to its original initial values, **learns faster**: its validation loss bottoms out
    at iteration 1,600 (0.065), before the learning rate drops, and then rises as it overfits, while the dense
    network (0.070 at iteration 4,900) and the same mask from fresh initial values (0.082 at 4,900) reach their
    minimum only after the drop, and the reinit control's is the highest. This is Frankle & Carbin's
    learning-speed result; the next section shows it at every level. Even before any training (iteration 0, off
    both axes) the ticket's masked initial weights classify 65% of the test set correctly (against 0.09
    for the dense initialisation and 0.09 for the reinit control): the mask itself carries information about the
    task, as Zhou et al. (2019) observed with their "supermasks".
    """),
    md("""
    ## Accuracy against density, across all the examples

    `frames.runs_frame(files)` reads the `summary()` of several files into one tidy frame (one row per run, level
    and branch) with the run's identity: `method` (a short name that tells the files apart, here the reset mode),
    `seed`, `run`, and `line` (what one plotted line stands for: the method, with `/ reinit` for the control).
    `plots.accuracy_vs_density` draws one line per method, the mean over seeds with a band from the lowest to the
    highest seed; the control is dashed in its method's colour. The density axis is logarithmic and runs from
    dense (left) to sparse (right); the top axis shows the compression.
    """),
    code("""
    runs = frames.runs_frame(LENET300)
    runs[["run", "line", "level", "density", "compression", "accuracy"]].head(8)
    """),
    code("""
    plots.accuracy_vs_density(runs, title="LeNet-300-100 on MNIST: 3 reset modes x 2 seeds")
    """),
    code("""
    acc = runs.pivot_table(index="level", columns="line", values="accuracy", aggfunc="mean")
    acc.insert(0, "density", runs.groupby("level")["density"].mean())
    acc   # mean over the two seeds
    """),
    md("""
    How to read it, and what these examples show (the table above has the numbers):

    - Every run of a seed starts from the same dense network (level 0: accuracy 0.983 averaged over both seeds),
      and all three reset modes prune it identically at level 1; they differ from level 1's retraining on.
    - **Rewinding to initialisation finds a ticket**: it stays within 0.002 of the dense accuracy down to 3.2%
      density (0.981 at level 5) and above its `reinit` control at every pruned level, by 0.002 at level 1 growing to
      0.015 at level 5. The mask alone (with new initial values) is not enough; the initialisation matters
      (Frankle & Carbin 2019).
    - **Learning-rate rewinding** and **fine-tuning** keep training the weights they were pruned from, so by
      level 5 they have trained for 30,000 iterations against rewind-init's 5,000. Here both end below
      rewind-init (0.978 and 0.971 at level 5), and fine-tuning, which retrains at the final learning rate
      (1.2e-4, a tenth of the initial one), falls off most at levels 4 and 5; Renda et al. (2020) found
      learning-rate rewinding at least as good as rewinding, on larger networks and their full training schedules.

    Two seeds are two samples: the bands show their spread, not a confidence interval.

    ## Early stopping: tickets learn faster

    Frankle & Carbin measure how fast a network learns by its **early-stopping iteration**, the iteration of its
    minimum validation loss. `plots.early_stop_vs_density(runs)` draws it against density like the accuracy (the
    mean over seeds, with a min–max band); the table gives every seed.
    """),
    code("""
    plots.early_stop_vs_density(runs, title="LeNet-300-100 on MNIST: iteration of minimum validation loss")
    """),
    code("""
    runs.pivot_table(index="level", columns=["line", "seed"], values="early_stop_iteration").astype("Int64")
    """),
    md("""
    - **Tickets learn faster than the dense network and than their reinit control.** At levels 2–4 (25% to 6.3%
      of the weights) the rewind-init tickets of both seeds reach their minimum validation loss at iterations
      1,600–2,300, before the learning rate drops at 3,750, and then overfit; the dense networks (4,900 and
      5,000) and the reinit controls at the same levels (4,300–5,000) reach theirs only after the drop, near the
      end. At level 1 (50%) and at level 5 (3.2%) the ticket stops as late as the dense network: Frankle & Carbin
      saw the speed-up grow as pruning proceeds and fade again at the sparsest levels.
    - For **learning-rate rewinding and fine-tuning** the early stop measures something else: they continue from
      trained weights, so their minimum comes when retraining starts to overfit. Learning-rate rewinding at level
      1 is at its best before any retraining (iteration 0); replaying the full learning rate only raises its
      validation loss.
    - Where the minimum falls after the learning-rate drop (iterations 3,800–5,000), the validation loss changes
      little there and moves by a few thousandths of a nat from one evaluation to the next, so the exact iteration
      means little.

    ## Retrain a ticket

    Any level of a ticket file can be retrained from its mask and its initial weights with `ticketlab train
    --mask FILE:LEVEL`; `--levels 0` trains only that network (no further pruning). The training settings come
    from the preset and the flags, not from the file, so give the example's schedule to reproduce its level (and
    one torch thread, as `scripts/make_examples.py` uses: the thread count changes how matrix products sum):

    ```console
    $ OMP_NUM_THREADS=1 ticketlab train --mask data/examples/lenet300_rewind-init_s0.h5:3 --levels 0 \\
          --controls none --schedule step --milestones 3750 --gamma 0.1 --iterations 5000 --eval-every 100 \\
          --out runs/level3_retrained.h5
    ```

    This takes about ten seconds on one CPU core and (on CPU, with the same versions) reproduces level 3's stored
    accuracy, loss and early-stopping iteration.
    `--fresh-init` retrains the mask from new random initial values instead (a reinit control by hand). Of the
    examples only this file and the LeNet-5 file keep their initial weights (`t.checkpoints()` lists `init`).
    """),
    code("""
    t.close()
    """),
]


# ----------------------------------------------------------------------------------------------------------
# 02 — overlap of masks

OVERLAP = [
    md("""
    # How much do tickets overlap?

    Do different runs find the same ticket? This notebook compares the masks of the six LeNet-300-100 examples
    (three reset modes × seeds 0 and 1) layer by layer, always beside the **chance level**, and builds a consensus
    ticket from their intersection.

    **Definitions.** For two masks A and B of one tensor of N weights: the intersection |A∩B| (weights both keep),
    the union |A∪B|, and the **Jaccard index** |A∩B| / |A∪B| (1 = identical masks, 0 = disjoint). The model
    total pools the counts of all layers (Σ|A∩B| / Σ|A∪B|), never averages per-layer ratios.

    **Chance level.** The overlap expected if each mask kept, in every layer, its observed number of weights at
    positions chosen uniformly at random and independently of the other mask. Then E|A∩B| = kept_A · kept_B / N
    per layer (summed over layers for the model), and the chance Jaccard is E|A∩B| / (kept_A + kept_B − E|A∩B|).
    Sparse masks overlap little even at random (two masks of density d: about d / (2 − d)), so a Jaccard means
    something only next to its chance level. `ratio` = observed / expected intersection; `p_value` = the
    one-sided probability of an intersection at least as large under chance (exact hypergeometric per layer).
    """),
    setup("from ticketlab.analysis import chance_density, combine_masks, combine_report, expected_jaccard, "
          "jaccard_matrix, mask_overlap"),
    md("""
    ## Two masks, layer by layer

    `mask_overlap(masks_a, masks_b)` is a pure function of two masks held in memory (`{layer: bool array}`, as
    `TicketFile.masks(level)` returns them); it gives one row per layer and a `total` row. Here the last level
    (5, density 3.2%) of rewind-init seed 0 against seed 1, and against lr-rewind with the same seed 0.
    """),
    code("""
    LAST = 5


    def masks_of(name: str, level: int = LAST) -> dict:
        with ticketlab.open_ticket(EXAMPLES / name) as t:
            return t.masks(level)


    a, b, c = (masks_of(f"lenet300_{name}.h5") for name in ("rewind-init_s0", "rewind-init_s1", "lr-rewind_s0"))
    columns = ["a", "b", "layer", "size", "kept_a", "kept_b", "intersection", "union", "jaccard",
               "expected_jaccard", "ratio", "p_value"]
    pd.concat([mask_overlap(a, b, labels=("rewind-init, seed 0", "rewind-init, seed 1")),
               mask_overlap(a, c, labels=("rewind-init, seed 0", "lr-rewind, seed 0"))])[columns]
    """),
    md("""
    Two seeds share only a little more weights than chance: in total 423 where 315 are expected (ratio 1.34), all
    of the excess in the first layer (ratio 1.46, p = 6e-12), while the second and output layers are at chance
    (p = 0.33 and 0.61). Two reset modes of the same seed share 8× as many weights as chance would.

    Why the chance level is computed layer by layer: the output layer is pruned more gently (density 0.24) than
    the rest (0.03), and dense layers overlap more at random. Using the pooled density would understate the chance
    level of the total:
    """),
    code("""
    kept = [int(m.sum()) for m in a.values()]
    sizes = [m.size for m in a.values()]
    d = sum(kept) / sum(sizes)
    print(f"per-layer chance level (ticketlab):  {expected_jaccard(kept, kept, sizes):.4f}")
    print(f"from the pooled density d / (2 - d): {d / (2 - d):.4f}")
    """),
    md("""
    ## Every pair of runs: the Jaccard matrix

    `frames.overlap_frame([(file, level), ...])` compares every pair of (file, level) masks straight from the files
    (bit-packed, one layer at a time, as `ticketlab overlap` does); `jaccard_matrix` turns its `total` rows into a
    square matrix and `plots.jaccard_heatmap` draws it, with the chance level of each pair in parentheses.
    """),
    code("""
    pairs = frames.overlap_frame([(f, LAST) for f in LENET300])
    jaccard_matrix(pairs).round(3)
    """),
    code("""
    plots.jaccard_heatmap(pairs, title=f"Jaccard of the level-{LAST} masks (density 3.2%); in parentheses: chance")
    """),
    md("""
    The matrix has a block structure by **seed**, not by method: runs that share a seed (and so their initial
    weights, their data order and their dense network) overlap far above chance whatever their reset mode, while
    runs of different seeds overlap near chance even with the same method.

    ## Overlap against level

    `frames.level_overlap_frame(files)` compares every pair of runs at every pruned level they share, and adds the
    runs' methods and seeds. `plots.jaccard_vs_level(..., group="methods")` puts pairs with the same seed and
    pairs with different seeds in two panels: one line per pair of methods (the mean over its pairs of runs, with
    a min–max band), and the chance level dashed in black.
    """),
    code("""
    levels = frames.level_overlap_frame(LENET300)
    plots.jaccard_vs_level(levels, group="methods")
    """),
    code("""
    total = levels[levels["layer"] == "total"].copy()
    total["pairs"] = np.where(total["seed_a"] == total["seed_b"], "same seed, other reset", "different seeds")
    total["over_chance"] = total["jaccard"] / total["expected_jaccard"]
    total.groupby(["level", "pairs"]).agg(
        n=("jaccard", "size"), density=("density", "mean"), jaccard_min=("jaccard", "min"),
        jaccard_max=("jaccard", "max"), chance=("expected_jaccard", "mean"),
        over_chance_min=("over_chance", "min"), over_chance_max=("over_chance", "max"))   # Jaccard / chance
    """),
    md("""
    What the shipped examples show (numbers in the table above):

    - **Same seed, other reset mode**: at level 1 the masks are identical (Jaccard 1): all three modes prune the
      same trained dense network. They drift apart as the modes retrain differently, but at level 5 their
      Jaccard is still 9–19× its chance level (0.17–0.35 against 0.019); learning-rate rewinding and fine-tuning,
      which both keep training the same weights, are the closest pair.
    - **Different seeds**: at every level the Jaccard is at or only slightly above chance (1.4–1.6× at level 5,
      Jaccard 0.025–0.029 against 0.019). Independent runs of one method find different tickets; what they share
      beyond chance is small, though with thousands of weights it is detectable (at level 5 the total p-values of
      the nine different-seed pairs range from 3e-10 to 6e-22).

    ## A consensus ticket: the intersection of masks

    Paganini & Forde (2020) combine tickets by intersecting their masks: a weight is kept where every mask keeps
    it. `combine_masks(masks, mode)` combines masks layer by layer (`"intersection"`, `"union"` or `"vote"`), and
    `combine_report` puts the result's density beside its **chance level**: the density expected if each input
    kept its per-layer counts at random, independently of the others; for an intersection, the product of the
    inputs' densities in each layer (`chance_density`), and for the total the size-weighted mean over layers.
    """),
    code("""
    def consensus(names: list[str], mode: str = "intersection", level: int = LAST) -> pd.DataFrame:
        masks, kept = [], []
        for name in names:
            with ticketlab.open_ticket(EXAMPLES / name) as t:
                masks.append(t.masks(level))
                kept.append(t.kept(level))
                sizes = {x.name: x.size for x in t.tensors}
        combined = combine_masks(masks, mode)
        return combine_report(sizes, kept, {name: int(m.sum()) for name, m in combined.items()}, mode)


    seeds = consensus(["lenet300_rewind-init_s0.h5", "lenet300_rewind-init_s1.h5"])
    resets = consensus(["lenet300_rewind-init_s0.h5", "lenet300_lr-rewind_s0.h5", "lenet300_finetune_s0.h5"])
    print("chance level of one layer:", chance_density([0.03125, 0.03125]), "= 0.03125 ** 2")
    pd.concat({"rewind-init, seeds 0 and 1": seeds, "3 reset modes, seed 0": resets}, names=["consensus of", None]
              )[["layer", "size", "kept", "density", "expected_density", "ratio", "min_input_density"]]
    """),
    code("""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained", sharey=True)
    for ax, (title, report) in zip(axes, [("rewind-init, seeds 0 and 1", seeds), ("3 reset modes, seed 0", resets)]):
        x = np.arange(len(report))
        ax.bar(x - 0.2, report["density"], 0.4, color="#0173b2", label="intersection (observed)")
        ax.bar(x + 0.2, report["expected_density"], 0.4, color="#949494", label="chance level")
        ax.set_xticks(x, report["layer"], rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"consensus of {title}", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("density (log scale)")
    axes[0].legend(fontsize=8, frameon=False)
    plt.show()
    """),
    md("""
    The intersection of the two seeds keeps 423 weights (density 0.16%), only a third more than independent random
    masks would share (ratio 1.34). The intersection of the three reset modes of one seed keeps 1,931 weights
    (0.73%), 90× its chance level: a sparse core that all three ways of retraining agree on.

    From the command line, the same consensus is written as a ticket file of its own (its level 0, with the initial
    weights of the first input) and retrained like any ticket:

    ```console
    $ ticketlab overlap data/examples/lenet300_rewind-init_s0.h5 data/examples/lenet300_rewind-init_s1.h5
    $ ticketlab intersect data/examples/lenet300_rewind-init_s0.h5 data/examples/lenet300_lr-rewind_s0.h5 \\
          data/examples/lenet300_finetune_s0.h5 --out runs/consensus.h5
    $ ticketlab train --mask runs/consensus.h5 --levels 0 --out runs/consensus_trained.h5
    ```
    """),
]


# ----------------------------------------------------------------------------------------------------------
# 03 — layer-wise sparsity and structure

STRUCTURE = [
    md("""
    # Layer-wise sparsity and structure

    Where does pruning remove weights, and does unstructured magnitude pruning remove whole units, channels or
    kernels? This notebook looks at the density of every layer at every level, then at the LeNet-5 example
    (two conv layers, `convs.0` with 6 filters of 1 × 5 × 5 and `convs.1` with 16 filters of 6 × 5 × 5, then three
    linear layers): fully pruned groups against what random placement would give, a kernel heatmap of a conv
    layer, and *effective* density, which discounts kept weights that no longer connect input to output.
    """, VOCABULARY),
    setup("from ticketlab.analysis import effective_density, group_structure, sparsity_table"),
    md("""
    ## Density of each layer at each level

    The examples prune layer-wise: 50% of the remaining weights of every layer per level, 25% in the output layer,
    so every hidden layer has density 0.5^L and the output layer 0.75^L (up to rounding in tiny layers such as
    `convs.0`, 150 weights). `sparsity_table` builds the tidy per-level, per-layer table from the stored kept
    counts, with a pooled `total` row per level (kept and size summed over layers: a total density is *not* the
    mean of the layers' densities) and flags for layers that are fully pruned or untouched.
    """),
    code("""
    with ticketlab.open_ticket(LENET5) as t:
        table = sparsity_table({level: t.kept(level) for level in t.levels}, t.tensors)
    table.pivot(index="layer", columns="level", values="density").reindex(list(dict.fromkeys(table["layer"])))
    """),
    md("""
    `frames.layers_frame(files)` gives the same per-layer rows for several files, and two figures draw them: a
    heatmap of layers (rows, in model order) × levels (columns) on a logarithmic colour scale (a fully pruned
    layer would be grey), and one line per layer against level with the pooled density of the whole model dashed.
    """),
    code("""
    layers = frames.layers_frame([LENET5, EXAMPLES / "lenet300_rewind-init_s0.h5"])
    plots.layer_density_heatmap(layers, run=layers["run"].iloc[0])
    """),
    code("""
    plots.layer_density_lines(layers, run=layers["run"].iloc[-1])
    """),
    md("""
    In LeNet-300-100 the first layer holds 88% of the weights, so the pooled density follows it closely, while
    the output layer, pruned more gently, keeps 24% at level 5.

    ## Fully pruned units, channels and kernels against random placement

    `group_structure(masks, tensors)` partitions each layer three ways: **output** groups (a linear layer's rows =
    its units; a conv layer's filters), **input** groups (columns = input units; input channels) and, for conv
    layers, **kernels** (one 5 × 5 kernel per filter and input channel). For each it counts the groups with no
    kept weight and compares that fraction with its expectation if the layer's kept weights had been placed
    uniformly at random (exact: C(N − g, k) / C(N, k) for a group of g of the layer's N weights, k kept), with its
    standard deviation. It also reports the *dispersion* of the kept counts per group: about 1 for random
    placement, above 1 when some groups keep many more weights than others (`p_value` from a χ² test).
    `frames.structure_frame` runs it on files (default: each file's last level) and `plots.fully_pruned_plot`
    draws it: bars observed, diamonds the random-placement mean ± 2 sd.
    """),
    code("""
    structure = frames.structure_frame([LENET5])
    print("level", structure["level"].iloc[0])
    structure[["layer", "grouping", "groups", "kept", "fully_pruned", "fully_pruned_fraction",
               "expected_fully_pruned_fraction", "expected_fully_pruned_sd", "dispersion", "p_value"]].round(4)
    """),
    code("""
    plots.fully_pruned_plot(structure)
    """),
    md("""
    The same comparison at every pruned level for the conv layers' filters and kernels, as *fully pruned groups
    (expected ± sd under random placement)*:
    """),
    code("""
    with ticketlab.open_ticket(LENET5) as t:
        by_level = pd.concat([group_structure(t.masks(level), t.tensors).assign(level=level)
                              for level in t.levels[1:]])
    conv = by_level[(by_level["kind"] == "conv") & (by_level["grouping"] != "input")].copy()
    conv["fully pruned"] = [f"{r.fully_pruned} of {r.groups} ({r.groups * r.expected_fully_pruned_fraction:.1f} "
                            f"± {r.groups * r.expected_fully_pruned_sd:.1f})" for r in conv.itertuples()]
    conv.pivot(index=["layer", "grouping"], columns="level", values="fully pruned")
    """),
    md("""
    What the LeNet-5 example shows:

    - **Kernels of `convs.1` empty out faster than chance.** At level 3 (12.5% of the layer kept) 8 of its 96
      kernels are fully pruned where random placement expects 3.5% ± 1.7% (about 3 of 96); at level 4 (6.25%),
      25 of 96 (26%) against 20% ± 3%: 2.8 and 2.0 standard deviations above chance.
    - **Two of the six `convs.0` filters are fully pruned at level 4** (only 9 of its 150 weights are left);
      random placement would empty 18% ± 13% of them, so with six filters this is not distinguishable from chance.
    - The **dispersion** is well above 1 in several layers (e.g. `convs.1`'s input channels and the first linear
      layer's units, p < 0.001): magnitude pruning keeps weights unevenly across channels and units even where no
      group is fully pruned.

    ## A conv layer kernel by kernel

    `frames.layer_mask(file, level=..., layer=...)` reads one layer's mask (default: the last level and the conv
    layer with the most kernels) and `plots.kernel_heatmap` draws it: one cell per (filter, input channel) kernel,
    coloured by the kept fraction of its 25 weights, fully pruned kernels in vermillion, and fully pruned filters
    or input channels outlined in black.
    """),
    code("""
    mask, layer, level = frames.layer_mask(LENET5, layer="convs.1.weight")
    first, _, _ = frames.layer_mask(LENET5, layer="convs.0.weight", level=level)
    dead = np.flatnonzero(~first.any(axis=(1, 2, 3)))   # convs.0 filters with no kept weight
    print(f"{layer} at level {level}: shape {mask.shape}, {mask.sum()} of {mask.size} weights kept")
    print(f"fully pruned filters of convs.0 (= input channels of {layer} that carry no signal): {dead.tolist()}")
    print(f"kept weights of {layer} reading them: {int(mask[:, dead].sum())}")
    plots.kernel_heatmap(mask, layer=f"{layer}, level {level}")
    """),
    md("""
    No filter or input channel of `convs.1` is fully pruned by its own mask. But two of its six input channels
    (the columns printed above) are the outputs of the two `convs.0` filters that were fully pruned: the weights
    `convs.1` keeps in those columns read a channel that carries no signal from the image. That is what effective
    sparsity counts.

    ## Effective against direct density

    A kept weight is **effective** if it lies on some path from the network's input to its output (Vysogorets &
    Kempe 2021): weights fed by a unit (channel) that lost all its incoming weights, or feeding a unit that lost all
    its outgoing weights, are inactive. `effective_density(masks, tensors)` compares, per layer and in total, the
    direct density (kept / size) with the effective density (effective kept / size). It handles plain feed-forward
    stacks of linear and conv layers (conv layers at channel level, biases ignored) and refuses residual networks.
    """),
    code("""
    with ticketlab.open_ticket(LENET5) as t:
        last = effective_density(t.masks(t.levels[-1]), t.tensors)
        per_level = pd.concat([effective_density(t.masks(level), t.tensors).assign(level=level)
                               for level in t.levels])
    last[["layer", "size", "kept", "effective_kept", "density", "effective_density", "inactive_in_units",
          "inactive_out_units"]]
    """),
    code("""
    fig, ax = plt.subplots(figsize=(7.2, 3.6), layout="constrained")
    x = np.arange(len(last))
    ax.bar(x - 0.2, last["density"], 0.4, color="#0173b2", label="direct density (kept / size)")
    ax.bar(x + 0.2, last["effective_density"], 0.4, color="#de8f05", label="effective density")
    ax.set_xticks(x, last["layer"], rotation=20, fontsize=8)
    ax.set_ylabel("density (fraction of weights)")
    ax.set_title(f"LeNet-5 at level {per_level['level'].max()}: direct and effective density", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    plt.show()
    totals = per_level[per_level["layer"] == "total"].set_index("level")
    totals[["kept", "effective_kept", "density", "effective_density"]]   # the whole model, level by level
    """),
    md("""
    Up to level 3 every kept weight of LeNet-5 is effective. At level 4, 36 of 4,055 kept weights (0.9%) are not:
    they are the 36 of `convs.1`'s 150 kept weights that read the two dead channels (its effective density is 4.75%
    against a direct 6.25%); every kept weight of the linear layers still lies on a path from input to output. The
    model's effective density (6.54%) is barely below the direct one (6.60%) at these moderate sparsities;
    Vysogorets & Kempe show the gap growing large at extreme sparsities, where whole units and layers
    disconnect.
    """),
]


# ----------------------------------------------------------------------------------------------------------
# 04 — per-class fairness

FAIRNESS = [
    md("""
    # Per-class effects of pruning

    Overall accuracy can hide classes that pruning hurts much more than others (Hooker et al. 2019, *What Do
    Compressed Deep Neural Networks Forget?*; Paganini 2020, *Prune Responsibly*). This notebook measures it on
    the LeNet-300-100 examples, per reset mode, with its two seeds as the population of models.

    **Definitions** (accuracies are fractions): *class accuracy* = recall of the class (correct / test examples of
    the class); *drop* = dense class accuracy (level 0) − class accuracy at the level (positive = the class lost
    accuracy); *overall drop* = dense accuracy − accuracy; *excess drop* = drop − overall drop (how much more the
    class lost than the model did).

    The two seeds give two dense networks (level 0), shared by the three reset modes, and two pruned networks per
    mode and level. Two models per population is very few: the population statistics below (Hooker et al.'s test,
    PIEs) are shown to demonstrate the analysis, and their results here are weak evidence either way; Hooker et
    al. used 30 models per population.
    """),
    setup("from ticketlab.analysis.fairness import FairnessRun, fairness_analysis, intensification_fit"),
    md("""
    ## From ticket files to the analysis

    The analysis functions take arrays, not files. A `FairnessRun` holds what they need of one run: per level the
    per-class accuracies, the accuracy and the density, and the test-set predictions of the levels compared.
    `fairness_analysis(runs, level, labels=...)` returns every section as a tidy DataFrame: `drops` (every level
    and class of every run), `fit` (the intensification fit per level and run) and, for two runs or more,
    `hooker`, `pies` and `pie_examples` at the chosen `level`. (`frames.fairness_frames(files)` does the same from
    file names, as `ticketlab fairness` does.)
    """),
    code("""
    LEVEL = 5   # density 3.2%
    METHODS = ["rewind-init", "lr-rewind", "finetune"]


    def read_run(path: Path) -> FairnessRun:
        with ticketlab.open_ticket(path) as t:
            levels = t.levels
            evals = [t.evaluation(level) for level in levels]
            return FairnessRun(
                name=f"{path.stem.split('_')[1]}, seed {t.seed}", seed=t.seed, levels=levels,
                class_accuracy=np.stack([ev.per_class_accuracy for ev in evals]),
                accuracy=np.array([ev.accuracy for ev in evals]),
                density=np.array([t.level_record(level)["density"] for level in levels]),
                predictions={0: evals[0].predictions, LEVEL: evals[levels.index(LEVEL)].predictions})


    with ticketlab.open_ticket(LENET300[0]) as t:
        LABELS, CLASSES = t.dataset.test_labels, t.dataset.class_names

    sections = {}
    for method in METHODS:
        runs = [read_run(EXAMPLES / f"lenet300_{method}_s{seed}.h5") for seed in (0, 1)]
        sections[method] = fairness_analysis(runs, LEVEL, labels=LABELS, class_names=CLASSES)
    list(sections["finetune"])
    """),
    md("""
    ## Per-class drops against the overall drop

    `plots.class_drop_plot(drops)` draws, for each class, its accuracy drop against the model's overall drop, one
    line per class through the levels (level 0 at the origin), averaged over the runs. The dashed diagonal is a
    uniform drop: a class above it lost more than the model did, below it less. Fine-tuning, whose accuracy falls
    most, shows the effect most clearly:
    """),
    code("""
    plots.class_drop_plot(sections["finetune"]["drops"],
                          title="fine-tuning: per-class vs overall accuracy drop (mean over seeds 0 and 1)")
    """),
    code("""
    drops = pd.concat({m: s["drops"] for m, s in sections.items()}, names=["method"]).reset_index(level=0)
    at_level = drops[drops["level"] == LEVEL]
    table = at_level.pivot_table(index="class_name", columns=["method", "seed"], values="drop")[METHODS]
    table.loc["overall"] = at_level.groupby(["method", "seed"])["overall_drop"].first()
    table   # drop at level 5 per class, method and seed
    """),
    md("""
    The drops are small in these examples. At level 5 fine-tuning loses 0.012 of accuracy on average, but 0.022 on
    the digits 2 and 5 and only 0.002 on the digit 0. **Which** classes suffer most is only partly stable across
    seeds: digit 2 is among the three most hit in both, but seed 0 loses most on 5 (0.027), seed 1 on 9 (0.027).
    With rewind-init and lr-rewind every class stays within 0.02 of its dense accuracy at every level and seed.

    ## The intensification fit

    Per level, `intensification_fit` regresses (ordinary least squares, across classes) each class's accuracy after
    pruning on its dense accuracy. A slope of 1 is a uniform shift; a slope above 1 means classes that were already
    weak lose more (the "intensification" hypothesis). `plots.intensification_plot(drops, fit, level)` shows the
    scatter at one level with the fit (left) and the slope with its 95% confidence interval at every level (right).
    """),
    code("""
    plots.intensification_plot(sections["rewind-init"]["drops"], sections["rewind-init"]["fit"], level=LEVEL)
    """),
    code("""
    fits = pd.concat({m: s["fit"] for m, s in sections.items()}, names=["method"]).reset_index(level=0)
    fits.pivot_table(index="level", columns=["method", "seed"], values="slope")[METHODS]
    """),
    md("""
    Read slopes against a baseline. The dense class accuracies are themselves noisy estimates: a class can be
    weak in one network partly by chance, and a retrained network regresses towards the mean, which pulls the
    slope *below* 1 even if pruning changed nothing. Two dense networks that differ only in their seed show how
    large that effect is:
    """),
    code("""
    dense = [read_run(EXAMPLES / f"lenet300_rewind-init_s{seed}.h5").class_accuracy[0] for seed in (0, 1)]
    pd.concat([intensification_fit(dense[0], dense[1], levels=[0]).assign(fit="dense seed 1 on dense seed 0"),
               intensification_fit(dense[1], dense[0], levels=[0]).assign(fit="dense seed 0 on dense seed 1")]
              )[["fit", "slope", "slope_ci_low", "slope_ci_high", "p_slope_1"]]
    """),
    md("""
    Between two dense networks the slope is 0.76 or 1.22 depending on which one is the reference, with confidence
    intervals of about ±0.2–0.3; the first is even "significantly" below 1 (p = 0.014). The pruned networks' slopes
    lie in or near that range: rewind-init's 0.57–0.97 and learning-rate rewinding's 0.42–1.22. For both, seed 0's
    slopes differ significantly from 1 (p < 0.05) at three levels and seed 1's at none, so the two seeds disagree;
    the classes that were weak in a dense network gain a little more than the strong ones, but that is what
    regression to the mean alone does, and two seeds cannot separate the two. Fine-tuning's slopes rise to 1.03
    and 1.71 at level 5, with intervals so wide (0.14–1.92 and 0.83–2.59; the dense class accuracies span only
    0.972–0.996) that none of its slopes differs significantly from 1.

    ## Hooker et al.'s test

    For each class, Hooker et al. compare a population of dense models with a population of pruned models: the
    samples are each model's class recall minus the population's mean accuracy, and Welch's t-test asks whether
    the class moved differently from the overall accuracy; p ≤ 0.05 flags it as *impacted*. `change` is the
    difference of the mean gaps (negative: the class lost more than the model).
    """),
    code("""
    hooker = pd.concat({m: s["hooker"] for m, s in sections.items()}, names=["method"]).reset_index(level=0)
    hooker[hooker["impacted"]][["method", "class_name", "dense_recall", "pruned_recall", "change", "t", "dof",
                                "p_value"]]
    """),
    code("""
    hooker.pivot_table(index="class_name", columns="method", values="p_value")[METHODS]
    """),
    md("""
    With two models per population the test has one or two degrees of freedom; it has almost no power, and with
    ten classes 0.5 false flags per method are expected at p ≤ 0.05 even when nothing changes. Here it flags one
    class of thirty: digit 0 for fine-tuning, which lost *less* than the model (a drop of 0.002 against 0.012;
    `change` > 0), while it leaves digit 5, which fine-tuning costs the most on average (0.022), unflagged
    (p = 0.29) because the two seeds differ on it (drops of 0.027 and 0.018). Where both populations' values are
    identical the test is undefined (NaN). Take these flags as a demonstration, not a finding; with more seeds
    (`ticketlab train --seed N`) the same code gives a usable test.

    ## Pruning-identified exemplars (PIEs)

    A PIE is a test example whose most frequent (modal) prediction over the pruned models differs from its modal
    prediction over the dense models; ties are broken by the largest label, as in Hooker et al.'s code.
    `plots.pie_plot(pies)` counts them per true class, with each class's PIE fraction written above its bar.
    """),
    code("""
    plots.pie_plot(sections["finetune"]["pies"], title=f"fine-tuning: PIEs per class at level {LEVEL}")
    """),
    code("""
    def pie_summary(examples: pd.DataFrame) -> dict:
        agreed = (examples["dense_votes"] == 1) & (examples["pruned_votes"] == 1)
        return {"PIEs": int(examples["pie"].sum()),
                "PIEs where each population agrees": int((examples["pie"] & agreed).sum()),
                "dense models disagree": int((examples["dense_votes"] < 1).sum()),
                "pruned models disagree": int((examples["pruned_votes"] < 1).sum())}


    pd.DataFrame({m: pie_summary(s["pie_examples"]) for m, s in sections.items()})
    """),
    md("""
    With two models the modal label is a tie wherever the two disagree, so many PIEs only reflect a disagreement
    inside one population: of rewind-init's 137 PIEs, 25 are examples on which both dense models agree and both
    pruned models agree on another label. Fine-tuning has the most, 247 (2.5% of the test set; 57 unambiguous),
    most of them in the digits 2 and 5 (38 each, about 4% of the class), the classes it damages most.

    Hooker et al. found PIEs to be atypical, hard examples. The unambiguous PIEs of rewind-init, with the dense and
    the pruned modal labels (this reads the shipped MNIST test images):
    """),
    code("""
    from ticketlab.datasets import read_idx

    images = read_idx(EXAMPLES.parent / "mnist" / "t10k-images-idx3-ubyte.gz")   # (10000, 28, 28) uint8
    examples = sections["rewind-init"]["pie_examples"]
    shown = examples[examples["pie"] & (examples["dense_votes"] == 1) & (examples["pruned_votes"] == 1)].head(16)
    fig, axes = plt.subplots(2, 8, figsize=(10, 3.2), layout="constrained")
    for ax, row in zip(axes.flat, shown.itertuples()):
        ax.imshow(images[row.example], cmap="gray_r")
        ax.set_title(f"{row.label}: {row.dense_modal} → {row.pruned_modal}", fontsize=8)
        ax.axis("off")
    fig.suptitle("rewind-init, level 5: PIEs as 'true label: dense → pruned prediction'", fontsize=10)
    plt.show()
    """),
]


# ----------------------------------------------------------------------------------------------------------
# 06 — a study: methods over seeds

STUDY = [
    md("""
    # A study: three reset modes over three seeds

    A **study** is a grid of IMP chains run as one resumable job (`ticketlab study run SPEC --out DIR`; the
    README's "Run a study"). Its results come out as one tidy table, the **study frame**: one row per chain ×
    level × branch, written by `ticketlab study frame DIR --out FILE.csv` (or `.parquet`) or returned by
    `ticketlab.study.study_frame(DIR)`. This notebook reads such a frame and draws the figure of every
    lottery-ticket paper, accuracy against density, one line per method with a band over its seeds.

    The frame shipped in `data/examples/study_lenet300.csv` was made by the spec `studies/examples.toml`: LeNet-300-100
    on the shipped MNIST, the reset modes `rewind-init` (Frankle & Carbin 2019), `lr-rewind` and `finetune` (Renda
    et al. 2020) × seeds 0, 1 and 2, layer-wise magnitude pruning of 50% per level (output layer 25%), 4 levels of
    1,000 iterations (Adam, 1.2e-3 decayed ×0.1 at 50% and 75%; a shorter schedule than the example ticket files',
    so its early-stopping iterations are nearly all the last iteration), and the `reinit` control at every level:

    ```console
    $ ticketlab study run studies/examples.toml --out runs/examples --data-dir data --device cpu --threads 1
    $ ticketlab study frame runs/examples --out data/examples/study_lenet300.csv
    ```
    """, VOCABULARY),
    setup(),
    code("""
    frame = pd.read_csv(EXAMPLES / "study_lenet300.csv")
    print(frame.shape)
    frame.head()
    """),
    md("""
    The columns: the study's axes (`reset`, `seed`), the `chain` (named by its axis values) and its `file` in the
    study directory, the `level`, the `branch` (`main` for the chain itself, else the control: `reinit`), the
    `method` (the axis values but the seed; here the reset mode) and the chain's `seed`; then the level's numbers
    (`kept`, `size`, `density`, `sparsity`, `compression`, test `accuracy` and `loss`, `early_stop_iteration`,
    `iterations`, `wall_time` in seconds) and the recall of every class, `accuracy[0]` … `accuracy[9]`.

    A method's chains, one per seed, are its **population**: every statistic over seeds (a band, a mean, Hooker et
    al.'s test) is computed within one method, never across methods.
    """),
    code("""
    frame[["chain", "level", "branch", "method", "seed", "density", "accuracy", "accuracy[3]"]].head(6)
    """),
    md("""
    ## Accuracy against density

    `plots.study_accuracy(frame)` takes the frame as it is: one line per method (the mean over its seeds), a band
    from the lowest to the highest seed, and each method's `reinit` control dashed in its colour. Density is on a
    log scale, dense on the left; the top axis gives the compression.
    """),
    code("""
    plots.study_accuracy(frame)
    """),
    md("""
    The three methods start from the same dense networks: a chain's seed fixes its initial weights and data order,
    so level 0 of `reset=rewind-init,seed=1` is the network of `reset=lr-rewind,seed=1`. From there they part.
    Learning-rate rewinding keeps 0.975 at 6.3% density, rewinding to the initial weights 0.962, and fine-tuning
    falls to 0.900. The bands are narrow (standard deviation over seeds at most 0.004), so three seeds separate
    these methods well. The same numbers as a table:
    """),
    code("""
    main = frame[frame["branch"] == "main"]
    main.pivot_table(index="level", columns="method", values="accuracy", aggfunc=["mean", "std"]).round(4)
    """),
    md("""
    ## Ticket minus control, paired by seed

    A control shares its chain's seed and mask, so the difference between a chain and its control is paired: the
    seed-to-seed variation of the dense network cancels. For `rewind-init` and `lr-rewind` the `reinit` control
    trains the same mask from fresh random weights with the same schedule; the ticket's advantage grows from under
    one point at half density to 3.6 (rewind-init) and 4.3 (lr-rewind) points at 6.3%, and the three seeds'
    differences lie within 0.6 points of each other. A control retrains like its chain, so for `finetune` it is
    fine-tuning too: fresh weights trained only at the final learning rate (1.2e-5), which never learns much; its
    gap of 15–51 points measures the schedule, not the initialisation.
    """),
    code("""
    # the figure again without fine-tuning's control, at a scale where the other lines part
    plots.study_accuracy(frame[~((frame["method"] == "finetune") & (frame["branch"] == "reinit"))])
    """),
    code("""
    wide = frame.pivot_table(index=["method", "seed", "level"], columns="branch", values="accuracy").dropna()
    wide["ticket - reinit"] = wide["main"] - wide["reinit"]
    wide.groupby(["method", "level"], sort=False)["ticket - reinit"].agg(["mean", "min", "max"]).round(4)
    """),
    md("""
    Methods can be paired by seed as well, since all three share each seed's dense network: below, each method
    minus `rewind-init` at the same seed and level. Every seed agrees on the sign at every pruned level.
    """),
    code("""
    acc = main.pivot_table(index=["seed", "level"], columns="method", values="accuracy")
    versus = acc.sub(acc["rewind-init"], axis=0).drop(columns="rewind-init")
    versus.groupby("level").agg(["mean", "min", "max"]).round(4)
    """),
    md("""
    ## Which classes pay

    The per-class columns give each class's drop in recall from the dense network (level 0) to the last level,
    per method (mean over seeds; a negative drop is a gain). Fine-tuning's overall drop of 0.066 falls mostly on
    digits 9, 8 and 3 (drops of 0.13–0.14) and hardly on 1; learning-rate rewinding gains in every class, least
    in 0 and 1 (under 0.002).
    """),
    code("""
    classes = [c for c in frame.columns if c.startswith("accuracy[")]
    per_class = main.set_index(["method", "seed", "level"])[classes]
    drop = per_class.xs(0, level="level") - per_class.xs(4, level="level")
    drop.groupby("method").mean().T.round(4)
    """),
    md("""
    Whether such a difference is more than seed-to-seed noise is Hooker et al.'s test, which needs the test-set
    predictions stored in the chain files rather than the frame. With the study directory at hand, the analysis
    commands take it in place of files, each method's seeds as the population (three seeds are still few: see
    `04_fairness.ipynb` on the test's power):

    ```console
    $ ticketlab fairness runs/examples --what hooker      # per method: Hooker et al.'s test over its seeds
    $ ticketlab overlap runs/examples                     # every pair of chains; method x method vs chance
    $ ticketlab structure runs/examples --effective       # every chain, named by method and seed
    $ ticketlab report runs/examples --out examples.html  # all of it as figures on one page
    ```

    and from Python, `frames.read_study(DIR)`, `frames.study_overlap`, `frames.study_fairness` and
    `frames.study_structure` return the tables the page draws with `plots.method_overlap_heatmap`,
    `plots.class_drops_by_method`, `plots.hooker_by_method` and `plots.structure_vs_density`.
    """),
]


NOTEBOOKS = {
    "01_tour": ("tour", TOUR),
    "02_overlap": ("overlap", OVERLAP),
    "03_sparsity_and_structure": ("structure", STRUCTURE),
    "04_fairness": ("fairness", FAIRNESS),
    "06_study": ("study", STUDY),
}


def build(prefix: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook without outputs; cell ids are ``<prefix>-<nn>`` so that rebuilding changes nothing."""
    nb = nbformat.v4.new_notebook()
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for i, (kind, source) in enumerate(cells, 1):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(source)
        cell.id = f"{prefix}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    prefix, cells = NOTEBOOKS[name]
    return nbformat.writes(build(prefix, cells)) + "\n"


def cell_contents(nb: nbformat.NotebookNode) -> list[tuple]:
    """What ``--check`` compares: each cell's type and source, and any outputs or execution count of code cells.

    Notebook metadata that Jupyter adds on saving, and the serialisation details of the nbformat version, are left
    out, so that the check fails only when the cells themselves differ.
    """
    return [(c.cell_type, c.source, c.get("outputs", []), c.get("execution_count")) for c in nb.cells]


def up_to_date(path: Path, name: str) -> bool:
    """Whether the notebook at ``path`` has the cells this script writes for ``name``."""
    if not path.is_file():
        return False
    prefix, cells = NOTEBOOKS[name]
    return cell_contents(nbformat.read(path, as_version=4)) == cell_contents(build(prefix, cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the cells of a notebook in analysis/ differ from what this "
                        "script makes")
    parser.add_argument("--out", type=Path, default=OUT, help="directory of the notebooks (default: analysis/)")
    args = parser.parse_args(argv)
    stale = []
    for name in NOTEBOOKS:
        path = args.out / f"{name}.ipynb"
        if args.check:
            if not up_to_date(path, name):
                stale.append(path)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(render(name), encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print("out of date (run python scripts/make_notebooks.py): " + ", ".join(str(p) for p in stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
