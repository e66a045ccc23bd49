"""The report page of a study: ``ticketlab report DIR --out study.html``, the figures papers show.

A study's *methods* are its chains' axis values but the seed; the chains of one method (its seeds) are its
population. Every statistic over seeds (bands, means, Hooker et al.'s test) is computed within one method, never
across methods. The page is self-contained (:class:`ticketlab.report.ReportPage`); its figures are
:mod:`ticketlab.plots.study`'s and its data :mod:`ticketlab.frames.study`'s:

==========  ===========================================================================================
section     what
==========  ===========================================================================================
chains      every chain: status, levels done of planned, training time
accuracy    test accuracy (and early-stopping iteration) vs density, one line per method, band over seeds,
            control branches dashed; a table per method and level
overlap     the method x method mask overlap at one matched level beside chance (same-seed pairs apart)
fairness    per-class drops and Hooker et al.'s test per method, the seeds as the population
structure   fully pruned units / channels / kernels and effective density vs density, per method
==========  ===========================================================================================

Example::

    from ticketlab.report import write_study_report
    write_study_report("runs/rewinding", "rewinding.html")
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.frames.study import (Study, matched_level, method_overlap, read_study, study_fairness, study_overlap,
                                    study_runs, study_status, study_structure)
from ticketlab.plots.study import (class_drops_by_method, hooker_by_method, method_overlap_heatmap,
                                   structure_vs_density, study_accuracy, study_early_stop)
from ticketlab.report.fairness import HOOKER_TABLE, _hooker_caveat
from ticketlab.report.page import ReportPage

#: The study page's sections, in page order: (anchor id, heading).
STUDY_SECTIONS = [("chains", "Chains"), ("accuracy", "Accuracy and density"),
                  ("overlap", "Mask overlap between methods"), ("fairness", "Fairness over seeds"),
                  ("structure", "Structure and effective sparsity")]
_SEEDS_BAND = "Bands: the range (min–max) over the method's seeds."


class _StudyBuilder:
    def __init__(self, study: Study, level: int | None, title: str, generator: str) -> None:
        self.study = study
        self.level = level
        self.page = ReportPage(title)
        self.generator = generator
        self.skipped: list[str] = []

    def skip(self, section: str, reason: str) -> None:
        self.skipped.append(f"{section}: {reason}")

    def intro(self) -> None:
        s = self.study
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        what = f" ({s.description})" if s.description else ""
        self.page.paragraph(
            f"Written by {self.generator} on {now} from the study {s.summary()}{what}, preset {s.preset!r}. "
            "A method is a chain's axis values but its seed; the chains of one method (its seeds) are its "
            "population: bands span them, and every statistic over seeds is computed within one method, never "
            "across methods. Vocabulary: density = kept fraction of the masked weights, compression = total / "
            "kept, accuracy = fraction of test examples classified correctly, level = pruning steps (0 = dense).")
        self._skipped_at = self.page.mark()

    def chains(self) -> None:
        self.page.section("chains", "Chains")
        records = study_status(self.study.directory)
        method = {c.name: c.method for c in self.study.chains}
        for r in records:
            r["method"] = method.get(r["chain"], "–")
        self.page.table(records, [("chain", "chain"), ("method", "method"), ("status", "status"),
                                  ("levels_done", "levels done"), ("levels_planned", "planned"),
                                  ("train_time", "training (s)"), ("error", "last error")], digits=1)

    def accuracy(self) -> None:
        frame = study_runs(self.study.directory, per_class=False)
        if not frame["accuracy"].notna().any():
            self.skip("accuracy", "no level of any chain has a test-set evaluation")
            return
        self.page.section("accuracy", "Accuracy and density")
        self.page.figure(study_accuracy(frame),
                         "Test accuracy against density (log scale, dense on the left; compression on the top axis): "
                         "one line per method, the mean over its seeds; control branches dashed (reinit), dotted "
                         f"(shuffle) or dash-dotted (random) in their method's colour. {_SEEDS_BAND}")
        stop = frame.dropna(subset=["early_stop_iteration"])
        if stop.empty:
            self.page.paragraph("No early-stopping iteration is recorded.", note=True)
        elif not any(c.eval_every for c in self.study.chains):
            self.page.paragraph("The chains did not validate during training (eval-every = 0), so there is no "
                                "early-stopping iteration (minimum validation loss) to show.", note=True)
        else:
            self.page.figure(study_early_stop(frame),
                             "Early-stopping iteration (iteration of minimum validation loss, Frankle & Carbin 2019) "
                             f"against density, one line per method. {_SEEDS_BAND}")
        line = [m if b == "main" else f"{m} / {b}" for m, b in zip(frame["method"], frame["branch"])]
        order = {ln: i for i, ln in enumerate(dict.fromkeys(line))}
        table = (frame.assign(line=line).groupby(["line", "level"], sort=False)
                 .agg(seeds=("chain", "nunique"), density=("density", "mean"), accuracy=("accuracy", "mean"),
                      accuracy_min=("accuracy", "min"), accuracy_max=("accuracy", "max"),
                      accuracy_sd=("accuracy", "std"), early_stop=("early_stop_iteration", "mean"))
                 .reset_index())
        table = table.sort_values(["line", "level"], key=lambda c: c.map(order) if c.name == "line" else c)
        table["early_stop"] = [None if pd.isna(v) else int(round(v)) for v in table["early_stop"]]
        self.page.table(table, [("line", "method / control"), ("level", "level"), ("seeds", "seeds"),
                                ("density", "density"), ("accuracy", "accuracy (mean)"), ("accuracy_sd", "sd"),
                                ("accuracy_min", "min"), ("accuracy_max", "max"),
                                ("early_stop", "early-stop iteration (mean)")],
                        caption="Per method (and control) and level, over the method's seeds.")

    def overlap(self) -> None:
        s = self.study
        try:
            result = study_overlap(s, level=self.level)
        except (ConfigError, TicketFileError) as err:
            self.skip("overlap", str(err))
            return
        summary = method_overlap(result.frame)
        self.page.section("overlap", "Mask overlap between methods")
        self.page.paragraph(
            f"Every pair of chains compared at level {result.level}, the last pruned level all chains have done (a "
            "matched level: chains pruned at one rate keep equal counts in every layer). Jaccard = |A∩B| / |A∪B| "
            "of the kept weights, all layers pooled; chance: the Jaccard expected if each mask kept its per-layer "
            "counts uniformly at random. Pairs of chains with the same seed start from the same initial weights "
            "and are shown apart from pairs with different seeds; the diagonal compares a method's seeds.")
        self.page.figure(method_overlap_heatmap(summary),
                         "Mean Jaccard over the pairs of chains of two methods (colour and first number), the mean "
                         "chance level (in parentheses) and the number of pairs.")
        self.page.table(summary, [("method_a", "method A"), ("method_b", "method B"), ("seeds", "seeds"),
                                  ("pairs", "pairs"), ("density", "density"), ("jaccard", "Jaccard (mean)"),
                                  ("jaccard_sd", "sd"), ("jaccard_min", "min"), ("jaccard_max", "max"),
                                  ("expected_jaccard", "chance Jaccard"), ("jaccard_ratio", "Jaccard / chance")],
                        caption=f"Level {result.level}, all layers pooled. Every pair and layer: 'ticketlab "
                                f"overlap {s.directory} --csv'.")

    def fairness(self) -> None:
        s = self.study
        try:
            result = study_fairness(s, level=self.level, sections=("drops", "fit", "hooker"))
        except (ConfigError, TicketFileError) as err:
            self.skip("fairness", str(err))
            return
        self.page.section("fairness", "Fairness over seeds")
        level = result.level
        self.page.paragraph(
            f"Which classes pruning hurts more than the overall accuracy shows, level {level} against the dense "
            "network (level 0), each method's seeds as its population (Paganini 2020; Hooker et al. 2019). Class "
            "accuracy is the recall of the class; Hooker et al.'s test is a per-class Welch t-test of (class recall "
            "− mean accuracy) between the dense and the pruned models of one method. Per method, every table and "
            f"PIEs: 'ticketlab fairness {s.directory} --report fairness.html'.")
        for warning in result.warnings:
            self.page.paragraph(warning, note=True)
        drops = result.sections["drops"]
        self.page.figure(class_drops_by_method(drops, level),
                         f"Accuracy drop of each class from level 0 to level {level}, per method: the mean over its "
                         "seeds (bars; whiskers: min–max) and the method's overall accuracy drop (dashed).")
        hooker = result.sections.get("hooker")
        if hooker is None or hooker.empty:
            self.page.paragraph("Hooker et al.'s test needs two seeds or more of a method.", note=True)
            return
        self.page.figure(hooker_by_method(hooker),
                         "Hooker et al.'s test: the change in mean (recall − accuracy) from the dense to the pruned "
                         "models, per class and method; outlined and starred: impacted (p ≤ 0.05).")
        for name, h in hooker.groupby("population", sort=False):
            self.page.paragraph(f"{name}: {int(h['impacted'].sum())} of {len(h)} classes impacted."
                                + _hooker_caveat(h.reset_index(drop=True)))
        self.page.table(hooker, [("population", "method")] + HOOKER_TABLE, flag="impacted",
                        caption=f"Hooker et al.'s test per method and class, level {level}.")

    def structure(self) -> None:
        frame = study_structure(self.study)
        if frame.empty:
            self.skip("structure", "the masks have no layer with output and input units")
            return
        self.page.section("structure", "Structure and effective sparsity")
        self.page.paragraph(
            "Unstructured pruning can remove whole units, filters, input channels or kernels. Fully pruned fraction: "
            "groups that keep no weight, over all layers, beside the fraction expected if each layer's kept weights "
            "were placed uniformly at random. Effective density (Vysogorets & Kempe 2021; feed-forward models "
            "only): kept weights on some input-to-output path; effective sparsity = 1 − effective density.")
        self.page.figure(structure_vs_density(frame),
                         "One line per method, the mean over its seeds (bands: min–max); dashed grey: the random "
                         "placement expectation, or for effective density the density itself.")
        try:
            level = matched_level(self.study, self.level)
        except TicketFileError:
            return
        at = frame[frame["level"] == level]
        table = (at.groupby(["method", "measure"], sort=False)
                 .agg(seeds=("chain", "nunique"), density=("density", "mean"), value=("value", "mean"),
                      chance=("chance", "mean")).reset_index())
        self.page.table(table, [("method", "method"), ("measure", "measure"), ("seeds", "seeds"),
                                ("density", "density"), ("value", "value (mean)"),
                                ("chance", "random placement / density")],
                        caption=f"Level {level}; measure: fully pruned fraction of output units, input units or "
                                "kernels, or effective density.")

    def finish(self) -> ReportPage:
        if self.study.not_started:
            self.page.insert_note(self._skipped_at, f"Not started yet (left out): "
                                  f"{', '.join(self.study.not_started)}.")
        if self.skipped:
            self.page.insert_note(self._skipped_at, "Sections left out — " + "; ".join(self.skipped) + ".")
        return self.page


def build_study_report(directory: str | os.PathLike | Study, *, level: int | None = None, title: str | None = None,
                       generator: str | None = None) -> ReportPage:
    """Build the report page of a study directory.

    Parameters
    ----------
    directory : path-like or Study
        A study directory (``ticketlab study run SPEC --out DIR``), or it read (:func:`ticketlab.frames.read_study`);
        chains still running contribute the levels they have completed.
    level : int, optional
        The matched level of the overlap, fairness and structure tables (default: the last pruned level every
        chain has done).
    title : str, optional
        The page's title (default: ``"Study <directory name>"``).
    generator : str, optional
        Who wrote the page (default ``"ticketlab <version>"``).
    """
    from ticketlab._version import __version__

    study = directory if isinstance(directory, Study) else read_study(directory)
    b = _StudyBuilder(study, level, title or f"Study {Path(study.directory).resolve().name}",
                      generator or f"ticketlab {__version__}")
    b.intro()
    b.chains()
    b.accuracy()
    b.overlap()
    b.fairness()
    b.structure()
    return b.finish()


def write_study_report(directory: str | os.PathLike | Study, out: str | os.PathLike, **kwargs: Any) -> Path:
    """Build the study's page (:func:`build_study_report`) and write it to ``out`` (``.html``); returns the path."""
    out = Path(out)
    if not out.parent.exists():
        raise ConfigError(f"{out}: directory {out.parent} does not exist")
    return build_study_report(directory, **kwargs).write(out)


__all__ = ["STUDY_SECTIONS", "build_study_report", "write_study_report"]
