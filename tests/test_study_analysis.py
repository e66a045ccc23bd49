"""Tests of a study's analysis: the study frame, ``overlap``/``fairness``/``structure``/``report`` given a study
directory, and the figures of :mod:`ticketlab.plots.study`.

Two small studies are run once per module (LeNet-300-100 on the shipped MNIST, a few iterations per level):

- ``study``: 2 reset modes x 2 seeds, 2 levels, the reinit control, validation every 2 iterations. Every number
  in its frame is recomputed from the chain files (density from the unpacked masks, accuracy and per-class recall
  from the stored predictions), and the analysis commands on the directory are compared with the same commands on
  the chain files listed by hand.
- ``lr_study``: 2 learning rates x 2 seeds. The learning rate is not part of a ticket file's *method* (a population
  of files groups runs by strategy, rates and reset mode), so the files alone would pool the two learning rates
  into one population of four; the study directory never does: each method is its own seeds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ticketlab.cli import main
from ticketlab.errors import ConfigError
from ticketlab.store import open_ticket
from cli_helpers import cli

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = str(ROOT / "data")
RUN = ["--data-dir", DATA_DIR, "--device", "cpu", "--threads", "1", "--quiet"]
SPEC = """
preset = "quickstart"
description = "analysis test: 2 reset modes x 2 seeds with the reinit control"

[grid]
reset = ["rewind-init", "lr-rewind"]
seed = [0, 1]

[set]
levels = 2
iterations = 4
eval-every = 2
val-size = 1000
controls = "reinit"
"""
LR_SPEC = """
preset = "quickstart"

[grid]
lr = [0.0012, 0.01]
seed = [0, 1]

[set]
levels = 1
iterations = 4
eval-every = 0
val-size = 1000
controls = "none"
"""
IDENTITY = ("chain_a", "chain_b", "method_a", "method_b", "seed_a", "seed_b")


pytestmark = pytest.mark.usefixtures("one_thread")


def run_study(tmp_path_factory, name: str, text: str) -> Path:
    root = tmp_path_factory.mktemp(name)
    spec = root / f"{name}.toml"
    spec.write_text(text)
    directory = root / name
    assert main(["study", "run", str(spec), "--out", str(directory), *RUN]) == 0
    return directory


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return run_study(tmp_path_factory, "resets", SPEC)


@pytest.fixture(scope="module")
def lr_study(tmp_path_factory) -> Path:
    return run_study(tmp_path_factory, "rates", LR_SPEC)


def chain_files(directory: Path) -> list[str]:
    manifest = json.loads((directory / "manifest.json").read_text())
    return [str(directory / c["file"]) for c in manifest["chains"]]




def cli_json(capsys, *argv: str):
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


# ----------------------------------------------------------------------------------------------------------
# The frame


def test_the_frame_equals_what_the_files_hold(study):
    """Every row recomputed from the files: density from the unpacked masks, accuracy and per-class recall from
    the stored predictions and the test labels; one row per chain x level x branch, nothing more."""
    from ticketlab.study import study_frame

    frame = study_frame(study)
    expected_rows = 0
    for path in chain_files(study):
        with open_ticket(path) as t:
            labels = t.dataset.test_labels
            for level in t.levels:
                for branch in [None, *t.branches(level)]:
                    expected_rows += 1
                    chain = Path(path).stem
                    row = frame[(frame.chain == chain) & (frame.level == level)
                                & (frame.branch == (branch or "main"))]
                    assert len(row) == 1, (chain, level, branch)
                    row = row.iloc[0]
                    masks = t.masks(level, branch=branch)
                    kept = sum(int(np.count_nonzero(m)) for m in masks.values())
                    size = sum(m.size for m in masks.values())
                    assert (row.kept, row["size"]) == (kept, size)
                    assert row.density == pytest.approx(kept / size, abs=0, rel=1e-15)
                    predictions = t.evaluation(level, branch=branch).predictions
                    assert row.accuracy == pytest.approx(np.mean(predictions == labels), rel=1e-12)
                    for c in range(10):
                        recall = np.mean(predictions[labels == c] == c)
                        assert row[f"accuracy[{c}]"] == pytest.approx(recall, rel=1e-12)
                    reset, seed = re.fullmatch(r"reset=(.+),seed=(\d)", chain).groups()
                    assert (row.reset, row.method, row.seed) == (reset, reset, int(seed))
    assert len(frame) == expected_rows == 4 * (1 + 2 * 2)  # level 0, then levels 1-2 with the reinit branch
    assert set(frame.branch) == {"main", "reinit"}
    assert frame["early_stop_iteration"].between(1, 4).all()


def test_frame_cli_writes_method_and_seed(study, tmp_path, capsys):
    code, _, err = cli(capsys, "study", "frame", str(study), "--out", str(tmp_path / "f.csv"))
    assert code == 0, err
    df = pd.read_csv(tmp_path / "f.csv")
    assert list(df.columns[:7]) == ["reset", "seed", "chain", "file", "level", "branch", "method"]
    assert list(dict.fromkeys(df.method)) == ["rewind-init", "lr-rewind"]


# ----------------------------------------------------------------------------------------------------------
# The commands on a study directory equal the commands on its files


def test_overlap_of_a_study_equals_overlap_of_its_files(study, capsys):
    files = chain_files(study)
    by_dir = cli_json(capsys, "overlap", str(study))
    by_files = cli_json(capsys, "overlap", *files, "--level", "2")
    assert [{k: v for k, v in r.items() if k not in IDENTITY} for r in by_dir] == by_files
    assert len(by_files) == 6 * 4  # 6 pairs x (3 layers + total)
    chains = {Path(f).stem: f for f in files}
    for r in by_dir:
        assert r["a"] == chains[r["chain_a"]] and r["b"] == chains[r["chain_b"]]
        assert r["method_a"] == r["chain_a"].split(",")[0].removeprefix("reset=")
        assert r["seed_a"] == int(r["chain_a"][-1]) and r["seed_b"] == int(r["chain_b"][-1])

    code, out, _ = cli(capsys, "overlap", str(study))
    assert code == 0
    assert "every pair of chains at level 2" in out and "per pair of methods" in out
    assert re.search(r"rewind-init\s+lr-rewind\s+same seed\s+2\s", out)
    assert re.search(r"rewind-init\s+rewind-init\s+different seeds\s+1\s", out)


def test_method_overlap_summarises_pairs_without_pooling_seeds(study):
    from ticketlab.frames import method_overlap, read_study, study_overlap

    result = study_overlap(read_study(study))
    totals = result.frame[result.frame.layer == "total"]
    summary = method_overlap(result.frame)
    assert list(zip(summary.method_a, summary.method_b, summary.seeds, summary.pairs)) == [
        ("rewind-init", "rewind-init", "different seeds", 1), ("rewind-init", "lr-rewind", "different seeds", 2),
        ("rewind-init", "lr-rewind", "same seed", 2), ("lr-rewind", "lr-rewind", "different seeds", 1)]
    same = totals[(totals.method_a != totals.method_b) & (totals.seed_a == totals.seed_b)]
    row = summary[summary.seeds == "same seed"].iloc[0]
    assert row.jaccard == pytest.approx(same.jaccard.mean())
    assert row.expected_jaccard == pytest.approx(same.expected_jaccard.mean())
    assert row.jaccard_ratio == pytest.approx(row.jaccard / row.expected_jaccard)


def test_fairness_of_a_study_equals_fairness_of_its_files(study, capsys):
    by_dir = cli_json(capsys, "fairness", str(study))
    by_files = cli_json(capsys, "fairness", *chain_files(study))
    assert by_dir == by_files
    hooker = pd.DataFrame(by_dir["hooker"])
    assert list(dict.fromkeys(hooker.population)) == ["rewind-init", "lr-rewind"]
    assert (hooker.n_dense == 2).all() and (hooker.n_pruned == 2).all()  # a method's two seeds, never four
    assert set(hooker.level) == {2}


def test_structure_of_a_study_equals_structure_of_its_files(study, capsys):
    files = chain_files(study)
    for extra in ([], ["--effective"], ["--all-levels"]):
        by_dir = cli_json(capsys, "structure", str(study), *extra)
        by_files = cli_json(capsys, "structure", *files, *extra)
        assert [{k: v for k, v in r.items() if k not in ("chain", "method", "seed")} for r in by_dir] == by_files
        assert {(r["chain"], r["method"], r["seed"]) for r in by_dir} == {
            (Path(f).stem, Path(f).stem.split(",")[0][6:], int(Path(f).stem[-1])) for f in files}
    code, out, _ = cli(capsys, "structure", str(study), "--level", "1")
    assert code == 0 and out.startswith("study ")
    assert re.search(r"^reset=lr-rewind,seed=1 +1 +fc_layers.0.weight +output", out, re.M)


def test_a_level_of_a_study(study, capsys):
    at_1 = cli_json(capsys, "overlap", f"{study}:1")
    assert {r["level_a"] for r in at_1} == {1}
    assert at_1 == cli_json(capsys, "overlap", str(study), "--level", "1")
    code, _, err = cli(capsys, "overlap", str(study), "--level", "5")
    assert code == 2 and "level 5 is not done in every chain" in err and len(err.strip().splitlines()) == 1


def test_a_study_directory_stands_alone(study, capsys):
    for command in ("overlap", "fairness", "structure"):
        code, _, err = cli(capsys, command, str(study), chain_files(study)[0])
        assert code == 2 and "is a study directory" in err and len(err.strip().splitlines()) == 1


def test_a_study_without_a_finished_level_is_refused(tmp_path, study, capsys):
    import shutil

    copy = tmp_path / "empty"
    copy.mkdir()
    shutil.copy(study / "manifest.json", copy / "manifest.json")
    code, _, err = cli(capsys, "overlap", str(copy))
    assert code == 2 and "no chain of the study has a completed level" in err


# ----------------------------------------------------------------------------------------------------------
# Methods are never pooled


def test_a_study_never_pools_its_methods(lr_study, capsys):
    """The files alone pool both learning rates into one population of four runs (the learning rate is not part
    of a file's method); the study directory keeps each learning rate's two seeds apart."""
    from ticketlab.frames import method_overlap, read_study, study_overlap
    from ticketlab.study import study_frame

    by_files = cli_json(capsys, "fairness", *chain_files(lr_study), "--what", "hooker")
    assert len({r["population"] for r in by_files["hooker"]}) == 1  # pooled: one population of four runs
    assert {r["n_dense"] for r in by_files["hooker"]} == {4}
    by_dir = cli_json(capsys, "fairness", str(lr_study), "--what", "hooker")
    hooker = pd.DataFrame(by_dir["hooker"])
    assert list(dict.fromkeys(hooker.population)) == ["0.0012", "0.01"]
    assert (hooker.n_dense == 2).all() and (hooker.n_pruned == 2).all()

    study = read_study(lr_study)
    assert [p.members for p in study.populations()] == [(0, 1), (2, 3)]
    assert set(study_frame(lr_study).method) == {"0.0012", "0.01"}
    summary = method_overlap(study_overlap(study).frame)
    assert set(zip(summary.method_a, summary.method_b)) == {("0.0012", "0.0012"), ("0.0012", "0.01"),
                                                            ("0.01", "0.01")}


def test_accuracy_figure_from_the_csv_dashes_the_controls(study, tmp_path, capsys):
    """As a notebook draws it: from the CSV that 'ticketlab study frame' writes (strings read back as pandas' own
    string type), one solid line per method and its control dashed, each with a band over the two seeds."""
    from ticketlab import plots

    code, _, err = cli(capsys, "study", "frame", str(study), "--out", str(tmp_path / "frame.csv"))
    assert code == 0, err
    fig = plots.study_accuracy(pd.read_csv(tmp_path / "frame.csv"))
    ax = fig.axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles == {"rewind-init (seeds 0, 1)": "-", "rewind-init / reinit (seeds 0, 1)": "--",
                      "lr-rewind (seeds 0, 1)": "-", "lr-rewind / reinit (seeds 0, 1)": "--"}
    assert len(ax.collections) == 4  # a band per line


def test_figures_draw_one_line_per_method(lr_study):
    from ticketlab import plots
    from ticketlab.study import study_frame

    fig = plots.study_accuracy(study_frame(lr_study))
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["0.0012 (seeds 0, 1)", "0.01 (seeds 0, 1)"]


# ----------------------------------------------------------------------------------------------------------
# The report


def _check_report():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_report", ROOT / "scripts" / "check_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_of_a_study_holds_every_figure(study, tmp_path, capsys):
    from ticketlab.report import STUDY_SECTIONS

    out = tmp_path / "study.html"
    code, _, err = cli(capsys, "report", str(study), "--out", str(out))
    assert code == 0, err
    text = out.read_text()
    ids = [a for a, _ in STUDY_SECTIONS]
    assert _check_report().static_problems(text, ids) == []
    assert re.findall(r'<h2 id="([^"]+)"', text) == ids
    captions = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]*)"', text)
    starts = ["Test accuracy against density", "Early-stopping iteration", "Mean Jaccard over the pairs",
              "Accuracy drop of each class", "Hooker et al.&#x27;s test", "One line per method"]
    assert len(captions) == len(starts)
    for caption, start in zip(captions, starts):
        assert caption.startswith(start), (caption, start)
    assert "<title>Study resets</title>" in text and "Sections left out" not in text
    assert "rewind-init / reinit" in text  # the control's rows in the accuracy table


def test_report_of_a_study_says_what_it_leaves_out(lr_study, tmp_path):
    from ticketlab.report import build_study_report

    page = build_study_report(lr_study, title="rates").render()
    assert "did not validate during training" in page  # eval-every = 0: no early-stopping figure
    assert "<title>rates</title>" in page and page.count('<img src="data:image/png') == 5


# ----------------------------------------------------------------------------------------------------------
# Figures from frames (no files)


def test_method_overlap_heatmap_and_its_input_check():
    from ticketlab import plots

    summary = pd.DataFrame({"method_a": ["a", "a", "a", "b"], "method_b": ["a", "b", "b", "b"],
                            "seeds": ["different seeds", "different seeds", "same seed", "different seeds"],
                            "pairs": [3, 6, 3, 3], "jaccard": [0.3, 0.2, 0.8, 0.35],
                            "expected_jaccard": [0.14] * 4, "level": [4] * 4, "density": [0.06] * 4})
    fig = plots.method_overlap_heatmap(summary)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "0.80\n(0.14)\nn=3" in texts and texts.count("0.20\n(0.14)\nn=6") == 2
    with pytest.raises(ConfigError, match="'expected_jaccard'"):
        plots.method_overlap_heatmap(summary.drop(columns="expected_jaccard"))
