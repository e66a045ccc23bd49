"""Figures (ticketlab.plots) and ``ticketlab plot``: the artists, labels and scales each figure promises.

Synthetic ticket files are written through the store API: two methods (rewind-init with a reinit control, and
lr-rewind) with two seeds each, on the toy model of conftest (a conv layer and two linear layers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from conftest import TOY_TENSORS, nested_masks, toy_evaluation
from ticketlab import frames, plots, store
from ticketlab.analysis.fairness import fairness_analysis, FairnessRun
from ticketlab.analysis.overlap import pairwise_overlap
from ticketlab.analysis.structure import group_structure
from ticketlab.cli import main
from ticketlab.errors import ConfigError
from ticketlab.masks import TensorInfo
from ticketlab.plots.accuracy import BANDS
from ticketlab.plots._style import ACCURACY_LABEL, COMPRESSION_LABEL, DENSITY_LABEL, EARLY_STOP_LABEL

REWIND = "IMP layer_magnitude 30%/level, reset rewind-init, controls reinit"
LR = "IMP layer_magnitude 30%/level, reset lr-rewind"
LEVELS = 3


def write_run(path: Path, method: str, seed: int, *, branches: tuple[str, ...] = (), levels: int = LEVELS,
              evaluate: bool = True, model: str = "toy") -> Path:
    """A ticket file of nested random masks with evaluations (and control branches) at every level."""
    rng = np.random.default_rng(seed)
    labels = np.random.default_rng(99).integers(0, 10, 200)  # one test set for every run
    store.create(path, tensors=TOY_TENSORS, model=model, method=method, config={"seed": seed}, seed=seed,
                 dataset=store.DatasetInfo("toyset", 10, tuple(f"c{i}" for i in range(10)), labels))
    w = store.TicketWriter(path)
    for level, masks in enumerate(nested_masks(rng, levels)):
        w.write_level(level, masks, evaluation=toy_evaluation(rng, labels, level) if evaluate else None)
        for b in branches:
            if level:
                w.write_branch(level, b, masks, kind=b, evaluation=toy_evaluation(rng, labels, level + 1))
    w.set_status("complete")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, list[Path]]:
    d = tmp_path_factory.mktemp("plots")
    rewind = [write_run(d / f"rewind_s{s}.h5", REWIND, s, branches=("reinit",)) for s in (0, 1)]
    lr = [write_run(d / f"lr_s{s}.h5", LR, s) for s in (0, 1)]
    return {"rewind": rewind, "lr": lr, "all": rewind + lr}


def line_labels(ax) -> list[str]:
    return [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def legend_texts(ax_or_fig) -> list[str]:
    legend = ax_or_fig.get_legend() if hasattr(ax_or_fig, "get_legend") else None
    return [t.get_text() for t in legend.get_texts()] if legend else []


# -- loaders ------------------------------------------------------------------------------------------------


def test_method_labels_drop_shared_parts_and_controls():
    got = frames.method_labels([REWIND, LR])
    assert got == {REWIND: "rewind-init", LR: "lr-rewind"}
    assert frames.method_labels([REWIND]) == {REWIND: "rewind-init"}           # one method: its reset mode
    assert frames.method_labels(["imported from OpenLTH"]) == {"imported from OpenLTH": "imported from OpenLTH"}
    two = frames.method_labels(["IMP global_magnitude 20%/level, reset rewind-init",
                               "IMP layer_magnitude 20%/level, reset rewind-init"])
    assert set(two.values()) == {"IMP global_magnitude 20%/level", "IMP layer_magnitude 20%/level"}


def test_run_identity_is_read_from_the_stored_config(tmp_path):
    """Runs made by ticketlab are named from their run configuration, not from the method description."""
    paths = []
    for reset, controls in (("rewind-init", ["reinit"]), ("lr-rewind", [])):
        path = tmp_path / f"{reset}.h5"
        config = {"strategy": "layer_magnitude", "rate": 0.3, "reset": reset, "controls": controls, "seed": 4}
        store.create(path, tensors=TOY_TENSORS, model="toy", method="a run", config=config, seed=4)
        paths.append(path)
    with store.open_ticket(paths[0]) as t:
        ident = frames.run_identity(t)
    assert (ident.reset, ident.strategy, ident.controls, ident.seed) == ("rewind-init", "layer_magnitude",
                                                                          ("reinit",), 4)
    assert ident.parts == ("layer_magnitude", "30%/level", "reset rewind-init")
    with store.open_ticket(paths[0]) as a, store.open_ticket(paths[1]) as b:
        assert [r.run for r in frames.run_infos([a, b])] == ["rewind-init, seed 4", "lr-rewind, seed 4"]


def test_runs_frame_is_tidy_with_identity_columns(runs):
    f = frames.runs_frame(runs["all"])
    assert list(f.columns) == frames.RUN_COLUMNS
    # 4 files x 4 levels, plus a reinit branch at levels 1-3 of the two rewind files
    assert len(f) == 4 * (LEVELS + 1) + 2 * LEVELS
    assert set(f["line"]) == {"rewind-init", "rewind-init / reinit", "lr-rewind"}
    assert set(f["run"]) == {"rewind-init, seed 0", "rewind-init, seed 1", "lr-rewind, seed 0", "lr-rewind, seed 1"}
    assert f["branch"].isna().sum() == 4 * (LEVELS + 1)
    main_line = f[f["branch"].isna()]
    np.testing.assert_allclose(main_line["compression"], 1 / main_line["density"])
    assert f["accuracy"].between(0, 1).all()


def test_runs_frame_names_models_when_several(runs, tmp_path):
    other = write_run(tmp_path / "other.h5", REWIND, 0, model="toy2")
    f = frames.runs_frame([runs["rewind"][0], other])
    assert set(f["run"]) == {"toy: rewind-init, seed 0", "toy2: rewind-init, seed 0"}
    assert {"toy: rewind-init", "toy: rewind-init / reinit", "toy2: rewind-init"} == set(f["line"])


def test_layers_frame(runs):
    f = frames.layers_frame(runs["rewind"])
    assert len(f) == 2 * (LEVELS + 1) * len(TOY_TENSORS)
    assert list(dict.fromkeys(f["layer"])) == [t.name for t in TOY_TENSORS]
    assert {"run", "method", "seed", "density"} <= set(f.columns)


# -- accuracy vs density ------------------------------------------------------------------------------------


def test_accuracy_vs_density_lines_bands_axes_and_legend(runs):
    fig = plots.accuracy_vs_density(frames.runs_frame(runs["all"]))
    ax = fig.axes[0]
    assert isinstance(fig, matplotlib.figure.Figure)
    assert ax.get_xscale() == "log"
    lo, hi = ax.get_xlim()
    assert lo > hi, "dense on the left: the density axis decreases"
    assert ax.get_xlabel() == DENSITY_LABEL and ax.get_ylabel() == ACCURACY_LABEL
    top = [c for c in ax.child_axes if c.get_xlabel() == COMPRESSION_LABEL]
    assert len(top) == 1, "compression on a second axis"
    assert line_labels(ax) == ["rewind-init (seeds 0, 1)", "rewind-init / reinit (seeds 0, 1)",
                               "lr-rewind (seeds 0, 1)"]
    assert len(ax.collections) == 3, "one band over seeds per line"
    styles = {ln.get_label().split(" (")[0]: ln.get_linestyle() for ln in ax.get_lines()}
    assert styles["rewind-init"] == "-" and styles["rewind-init / reinit"] == "--"
    colours = {ln.get_label().split(" (")[0]: ln.get_color() for ln in ax.get_lines()}
    assert colours["rewind-init"] == colours["rewind-init / reinit"] != colours["lr-rewind"]
    assert colours["rewind-init"] == plots.COLORBLIND[0]
    assert legend_texts(ax) == line_labels(ax)
    assert ax.get_legend().get_title().get_text() == "bands: min–max over seeds"


def test_accuracy_per_run_and_no_band(runs):
    fig = plots.accuracy_vs_density(frames.runs_frame(runs["all"]), per_run=True)
    labels = line_labels(fig.axes[0])
    assert len(labels) == 6 and "lr-rewind, seed 1" in labels and "rewind-init / reinit, seed 0" in labels
    assert not fig.axes[0].collections
    fig = plots.accuracy_vs_density(frames.runs_frame(runs["all"]), band="none")
    assert not fig.axes[0].collections
    with pytest.raises(ConfigError, match="unknown band"):
        plots.accuracy_vs_density(frames.runs_frame(runs["all"]), band="iqr")


@pytest.mark.parametrize("band", BANDS.names())
def test_every_band_draws(runs, band):
    ax = plots.accuracy_vs_density(frames.runs_frame(runs["lr"]), band=band).axes[0]
    assert len(ax.collections) == (0 if BANDS.get(band).bounds is None else 1)


def test_accuracy_means_over_seeds(runs):
    f = frames.runs_frame(runs["lr"])
    ax = plots.accuracy_vs_density(f).axes[0]
    (line,) = ax.get_lines()
    expected = f.groupby("level")["accuracy"].mean().to_numpy()
    np.testing.assert_allclose(line.get_ydata(), expected)
    np.testing.assert_allclose(line.get_xdata(), f.groupby("level")["density"].mean().to_numpy())


def test_early_stop_vs_density(runs):
    ax = plots.early_stop_vs_density(frames.runs_frame(runs["rewind"])).axes[0]
    assert ax.get_ylabel() == EARLY_STOP_LABEL and ax.get_xscale() == "log"
    assert len(line_labels(ax)) == 2


def test_metric_vs_density_takes_plain_summary_frames():
    """A frame with just method/branch (no 'line') works, e.g. TicketFile.summary() plus a method column."""
    f = pd.DataFrame({"run": ["a"] * 3 + ["a"] * 2, "method": "m", "seed": 0, "level": [0, 1, 2, 1, 2],
                      "branch": [None, None, None, "shuffle", "shuffle"], "density": [1, .5, .25, .5, .25],
                      "accuracy": [.9, .9, .8, .7, .6]})
    ax = plots.accuracy_vs_density(f).axes[0]
    assert line_labels(ax) == ["m (seed 0)", "m / shuffle (seed 0)"]
    assert ax.get_lines()[1].get_linestyle() == ":"
    with pytest.raises(ConfigError, match="column"):
        plots.accuracy_vs_density(f.drop(columns="density"))


# -- layers ---------------------------------------------------------------------------------------------------


def test_layer_density_heatmap(runs):
    layers = frames.layers_frame(runs["rewind"])
    fig = plots.layer_density_heatmap(layers)
    ax, cbar = fig.axes
    assert "density" in cbar.get_ylabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == [t.name for t in TOY_TENSORS]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(i) for i in range(LEVELS + 1)]
    assert ax.get_title() == "rewind-init, seed 0"
    assert len(ax.texts) == (LEVELS + 1) * len(TOY_TENSORS)  # annotated cells
    assert plots.layer_density_heatmap(layers, run="rewind-init, seed 1").axes[0].get_title() == "rewind-init, seed 1"
    with pytest.raises(ConfigError, match="no run"):
        plots.layer_density_heatmap(layers, run="nope")


def test_layer_heatmap_shows_fully_pruned_layers():
    f = pd.DataFrame({"level": [0, 0, 1, 1], "layer": ["a.weight", "b.weight"] * 2, "density": [1, 1, 0.0, 0.2]})
    ax = plots.layer_density_heatmap(f).axes[0]
    assert "0" in [t.get_text() for t in ax.texts]


def test_layer_density_lines(runs):
    ax = plots.layer_density_lines(frames.layers_frame(runs["rewind"][:1])).axes[0]
    assert line_labels(ax) == [t.name for t in TOY_TENSORS] + ["all layers (pooled)"]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == DENSITY_LABEL
    total = ax.get_lines()[-1].get_ydata()
    assert total[0] == 1.0 and np.all(np.diff(total) < 0)


# -- overlap --------------------------------------------------------------------------------------------------


def test_jaccard_heatmap_annotates_values_and_chance():
    rng = np.random.default_rng(0)
    masks = {f"m{i}": {"w": rng.random((20, 30)) < 0.3} for i in range(3)}
    frame = pairwise_overlap(masks)
    fig = plots.jaccard_heatmap(frame)
    ax, cbar = fig.axes
    assert "Jaccard" in cbar.get_ylabel()
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9 and texts[0] == "1.00"
    j = frame[(frame["layer"] == "total") & (frame["a"] == "m0") & (frame["b"] == "m1")].iloc[0]
    assert texts[1] == f"{j['jaccard']:.2f}\n({j['expected_jaccard']:.2f})"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["m0", "m1", "m2"]
    assert all(t == "" or "(" not in t for t in [t.get_text() for t in
                                                 plots.jaccard_heatmap(frame, chance=False).axes[0].texts])


def test_overlap_frame_and_level_overlap_frame(runs):
    pairs = frames.overlap_frame([(p, 2) for p in runs["all"]])
    assert len(pairs[pairs["layer"] == "total"]) == 6
    assert set(pairs["a"]) | set(pairs["b"]) == {"rewind-init, seed 0", "rewind-init, seed 1", "lr-rewind, seed 0",
                                                 "lr-rewind, seed 1"}
    one = frames.overlap_frame([(runs["lr"][0], lv) for lv in (1, 2, 3)])
    assert set(one["a"]) == {"lr-rewind, seed 0:1", "lr-rewind, seed 0:2"}
    by_level = frames.level_overlap_frame(runs["lr"])
    total = by_level[by_level["layer"] == "total"]
    assert list(total["level"]) == [1, 2, 3]
    assert (total["jaccard"] <= 1).all() and (total["expected_jaccard"] > 0).all()
    with pytest.raises(ConfigError, match="at least two"):
        frames.overlap_frame([(runs["lr"][0], 1)])


def test_jaccard_vs_level(runs):
    frame = frames.level_overlap_frame(runs["all"][:3])
    ax = plots.jaccard_vs_level(frame).axes[0]
    assert len(ax.get_lines()) == 2 * 3, "observed and chance per pair"
    assert [ln.get_linestyle() for ln in ax.get_lines()[:2]] == ["-", "--"]
    texts = legend_texts(ax)
    assert "rewind-init, seed 0 vs rewind-init, seed 1" in texts and any("chance" in t for t in texts)
    assert "Jaccard" in ax.get_ylabel() and "level" in ax.get_xlabel()
    one_layer = plots.jaccard_vs_level(frame, layer="fc1.weight").axes[0]
    assert "fc1.weight" in one_layer.get_title()


def test_jaccard_vs_level_grouped_by_methods(runs):
    frame = frames.level_overlap_frame(runs["all"])
    assert {"method_a", "method_b", "seed_a", "seed_b"} <= set(frame.columns)
    fig = plots.jaccard_vs_level(frame, group="methods")
    same, different = fig.axes
    assert same.get_title() == "same seed (same initialisation)" and different.get_title() == "different seeds"
    # same seed: rewind-init s0 vs lr-rewind s0 and s1 vs s1, one line (mean) with a band, and chance
    assert line_labels(same) == ["rewind-init vs lr-rewind (2 pairs)"] and len(same.collections) == 1
    assert line_labels(different) == ["rewind-init seeds (1 pair)", "rewind-init vs lr-rewind (2 pairs)",
                                      "lr-rewind seeds (1 pair)"]
    assert [ln.get_linestyle() for ln in different.get_lines()][-1] == "--"
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[-1].startswith("chance level") and len(texts) == 4
    assert len(plots.jaccard_vs_level(frame).axes) == 1, "six pairs: one line per pair"
    with pytest.raises(ConfigError, match="unknown group"):
        plots.jaccard_vs_level(frame, group="x")


# -- structure ------------------------------------------------------------------------------------------------


def test_kernel_heatmap_marks_fully_pruned_rows_and_columns():
    from matplotlib.patches import Rectangle

    rng = np.random.default_rng(1)
    mask = rng.random((6, 4, 3, 3)) < 0.4
    mask[2] = False          # a fully pruned filter
    mask[:, 3] = False       # a fully pruned input channel
    np.testing.assert_allclose(plots.kernel_fractions(mask), mask.mean(axis=(2, 3)))
    fig = plots.kernel_heatmap(mask, layer="conv1.weight")
    ax, cbar = fig.axes
    assert "kept fraction" in cbar.get_ylabel()
    assert ax.get_ylabel() == "output channel (filter)" and ax.get_xlabel() == "input channel"
    assert "1 of 6 filters and 1 of 4 input channels fully pruned" in ax.get_title()
    outlines = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(outlines) == 2
    shown = ax.get_images()[0].get_array()
    assert shown.shape == (6, 4) and shown.mask[2].all() and shown.mask[:, 3].all()


def test_kernel_heatmap_of_a_linear_layer():
    mask = np.ones((5, 7), bool)
    mask[:, 0] = False
    fig = plots.kernel_heatmap(mask)
    assert len(fig.axes) == 1, "kept/pruned in black and white: no colour bar"
    ax = fig.axes[0]
    assert ax.get_xlabel() == "input unit" and "1 of 7 input units" in ax.get_title()
    with pytest.raises(ConfigError):
        plots.kernel_heatmap(np.ones(5, bool))


def test_fully_pruned_plot(runs):
    from matplotlib.container import BarContainer, ErrorbarContainer

    frame = frames.structure_frame(runs["lr"][:1])
    ax = plots.fully_pruned_plot(frame).axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3  # output, input, kernel groupings
    assert sum(len(b) for b in bars) == len(TOY_TENSORS) * 3
    assert any(isinstance(c, ErrorbarContainer) for c in ax.containers)
    assert legend_texts(ax) == ["output units / filters", "input units / channels", "conv kernels",
                                "random placement (mean ± 2 sd)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [t.name for t in TOY_TENSORS]
    # also straight from the analysis function
    masks = nested_masks(np.random.default_rng(0), 2)[-1]
    assert plots.fully_pruned_plot(group_structure(masks, TOY_TENSORS)).axes


# -- fairness -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fairness(runs):
    return frames.fairness_frames(runs["rewind"])


def test_fairness_frames(fairness, runs):
    sections, level = fairness
    assert level == LEVELS
    assert {"drops", "fit", "hooker", "pies"} <= set(sections)
    assert set(sections["drops"]["run"]) == {"rewind-init, seed 0", "rewind-init, seed 1"}
    single, _ = frames.fairness_frames(runs["rewind"][:1], level=2)
    assert set(single) == {"drops", "fit"}


def test_class_drop_plot(fairness):
    sections, _ = fairness
    ax = plots.class_drop_plot(sections["drops"]).axes[0]
    assert len(line_labels(ax)) == 10 + 1  # one line per class and the diagonal
    assert line_labels(ax)[-1].startswith("uniform drop")
    assert "overall accuracy drop" in ax.get_xlabel() and "class accuracy drop" in ax.get_ylabel()
    first = ax.get_lines()[0]
    assert len(first.get_xdata()) == LEVELS + 1 and first.get_xdata()[0] == 0 and first.get_ydata()[0] == 0


def test_intensification_plot(fairness):
    sections, level = fairness
    fig = plots.intensification_plot(sections["drops"], sections["fit"], level)
    left, right = fig.axes
    assert left.get_xlabel() == "dense class accuracy (level 0)"
    assert left.get_ylabel() == f"class accuracy at level {level}"
    assert any(t.startswith("OLS") for t in legend_texts(left))
    assert right.get_ylabel() == "slope (95% CI)"
    # the null slope (what a uniform shift gives through the runs' noise) is drawn per level, at its values
    fit = sections["fit"]
    assert np.isfinite(fit["null_slope"]).all()            # two runs of one method: estimated
    null = [line for line in right.get_lines() if line.get_label().startswith("uniform shift through")]
    assert len(null) == 1
    expected = fit.groupby("level")["null_slope"].mean()
    np.testing.assert_allclose(null[0].get_xdata(), expected.index)
    np.testing.assert_allclose(null[0].get_ydata(), expected.to_numpy())
    # without it (a single run) only the line at 1 is drawn
    single = plots.intensification_plot(sections["drops"], fit.assign(null_slope=np.nan), level).axes[1]
    assert not [line for line in single.get_lines() if line.get_label().startswith("uniform shift through")]


def test_pie_plot(fairness):
    sections, level = fairness
    pies = sections["pies"]
    ax = plots.pie_plot(pies).axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == list(pies["pies"])
    assert ax.get_ylabel() == "PIEs (test examples)"
    assert f"at level {level}" in ax.get_title()


def test_fairness_figures_name_their_population_and_its_ties(fairness):
    sections, _ = fairness
    drops_title = plots.class_drop_plot(sections["drops"]).axes[0].get_title()
    assert "mean over 2 runs of rewind-init" in drops_title
    pies = sections["pies"]
    title = plots.pie_plot(pies).axes[0].get_title()
    assert "of rewind-init" in title
    if pies["pies_tied"].sum():  # two models per population: every disagreement is a tie
        assert f"{int(pies['pies_tied'].sum()):,} of them rest on a tie" in title and "2 dense and 2 pruned" in title


@pytest.mark.parametrize("kind", ["class-drops", "intensification", "pies"])
def test_population_figures_refuse_files_of_several_methods(kind, runs):
    with pytest.raises(ConfigError, match=rf"plot '{kind}' shows one population .* 2 methods: rewind-init \(2 "
                                          r"runs: rewind_s0.h5, rewind_s1.h5\); lr-rewind \(2 runs"):
        frames.plot_files(kind, [str(p) for p in runs["all"]])


def test_fairness_plots_from_the_analysis_functions():
    """The pure functions take what fairness_analysis returns for in-memory runs."""
    rng = np.random.default_rng(3)
    runs = [FairnessRun(f"r{i}", [0, 1, 2], rng.uniform(.5, 1, (3, 4)), rng.uniform(.6, .9, 3),
                        predictions={0: rng.integers(0, 4, 50), 2: rng.integers(0, 4, 50)}) for i in range(2)]
    s = fairness_analysis(runs, 2, labels=rng.integers(0, 4, 50))
    assert plots.class_drop_plot(s["drops"]).axes
    assert plots.intensification_plot(s["drops"], s["fit"]).axes
    assert plots.pie_plot(s["pies"]).axes


# -- saving, the registry, the command line -------------------------------------------------------------------


@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_save_figure_formats(runs, tmp_path, fmt, magic):
    fig = plots.accuracy_vs_density(frames.runs_frame(runs["lr"]))
    path = plots.save_figure(fig, tmp_path / f"fig.{fmt}")
    head = path.read_bytes()[:200]
    assert head.startswith(magic)
    if fmt == "svg":
        assert b"<svg" in path.read_bytes()[:2000]


def test_save_figure_refuses_unknown_formats_and_directories(runs, tmp_path):
    fig = plots.layer_density_lines(frames.layers_frame(runs["lr"][:1]))
    with pytest.raises(ConfigError, match=r"\.png, \.pdf, \.svg"):
        plots.save_figure(fig, tmp_path / "fig.jpg")
    with pytest.raises(ConfigError, match="does not exist"):
        plots.save_figure(fig, tmp_path / "missing" / "fig.png")


def test_plotting_leaves_matplotlib_global_state_alone(runs):
    backend = matplotlib.get_backend()
    plots.accuracy_vs_density(frames.runs_frame(runs["lr"]))
    plots.layer_density_heatmap(frames.layers_frame(runs["lr"][:1]))
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:  # seaborn imports pyplot; no figure may be left in its registry
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def _specs(kind: str, runs: dict[str, list[Path]]) -> list[str]:
    k = plots.get_plot(kind)
    files = runs["rewind"] if kind in ("class-drops", "intensification", "pies") else runs["all"]
    if k.max_files == 1:
        files = files[:1]
    return [str(p) for p in files]


@pytest.mark.parametrize("kind", plots.list_plots())
def test_every_plot_kind_draws_from_files(kind, runs):
    fig = frames.plot_files(kind, _specs(kind, runs))
    assert isinstance(fig, matplotlib.figure.Figure) and fig.axes


def test_every_plot_input_has_a_loader():
    from ticketlab.plots.kinds import INPUTS

    assert set(frames.LOADERS.names()) == set(INPUTS)
    assert {plots.get_plot(k).input for k in plots.list_plots()} <= set(INPUTS)


def test_plot_registry_errors(runs):
    with pytest.raises(ConfigError, match="unknown plot kind 'nope'; choose one of: accuracy"):
        frames.plot_files("nope", [str(runs["lr"][0])])
    with pytest.raises(ConfigError, match="at least 2"):
        frames.plot_files("pies", [str(runs["lr"][0])])
    with pytest.raises(ConfigError, match="draws one file"):
        frames.plot_files("kernels", [str(p) for p in runs["lr"]])
    with pytest.raises(ConfigError, match="drop ':LEVEL'"):
        frames.plot_files("accuracy", [f"{runs['lr'][0]}:1"])
    with pytest.raises(ConfigError, match="already registered"):
        plots.register_plot("accuracy", description="x")(lambda specs, o: None)


def test_plot_files_options(runs):
    f = str(runs["lr"][0])
    ax = frames.plot_files("kernels", [f"{f}:1"], layer="fc1.weight").axes[0]
    assert ax.get_title().startswith("fc1.weight (level 1)")
    ax = frames.plot_files("overlap", [f]).axes[0]     # one file: the Jaccard of its levels
    assert len(ax.get_xticklabels()) == LEVELS + 1
    ax = frames.plot_files("accuracy", [f], title="My title").axes[0]
    assert ax.get_title() == "My title"


@pytest.mark.parametrize("suffix", ["png", "pdf", "svg"])
def test_cli_plot_writes_each_format(runs, tmp_path, suffix, capsys):
    out = tmp_path / f"acc.{suffix}"
    assert main(["plot", "accuracy", *map(str, runs["all"]), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert f"wrote {out}" in capsys.readouterr().err


def test_cli_plot_kinds_with_levels_and_layers(runs, tmp_path):
    out = tmp_path / "k.png"
    assert main(["plot", "kernels", f"{runs['lr'][0]}:2", "--layer", "conv1.weight", "--out", str(out)]) == 0
    assert main(["plot", "overlap", *[f"{p}:2" for p in runs["all"]], "--out", str(out), "--overwrite"]) == 0
    assert main(["plot", "pies", *map(str, runs["rewind"]), "--level", "2", "--out", str(out), "--dpi", "50",
                 "--overwrite"]) == 0


def test_cli_plot_errors_exit_2(runs, tmp_path, capsys):
    f = str(runs["lr"][0])
    assert main(["plot", "nope", f, "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown plot kind" in capsys.readouterr().err
    assert main(["plot", "accuracy", f, "--out", str(tmp_path / "x.jpg")]) == 2
    assert "figure format" in capsys.readouterr().err
    assert main(["plot", "kernels", f, "--layer", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "no layer 'nope'" in capsys.readouterr().err
    assert main(["plot", "accuracy", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "x.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_runs_frame_of_files_without_evaluations(tmp_path):
    path = write_run(tmp_path / "masks.h5", "imported masks", 0, evaluate=False)
    f = frames.runs_frame([path])
    assert f["accuracy"].isna().all()
    with pytest.raises(ConfigError, match="no level has a value"):
        plots.accuracy_vs_density(f)
    assert plots.layer_density_heatmap(frames.layers_frame([path])).axes


def test_tensor_table_mismatch_is_refused(runs, tmp_path):
    path = tmp_path / "other_model.h5"
    store.create(path, tensors=[TensorInfo("w", (4, 4), "linear")], model="tiny", method="m", config={})
    store.TicketWriter(path).write_level(0, {"w": np.ones((4, 4), bool)})
    store.TicketWriter(path).write_level(1, {"w": np.eye(4, dtype=bool)})
    from ticketlab.errors import TicketFileError

    with pytest.raises(TicketFileError, match="different models"):
        frames.level_overlap_frame([runs["lr"][0], path])
