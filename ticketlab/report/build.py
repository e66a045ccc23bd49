"""The report page of a set of ticket files: ``ticketlab report FILES... --out report.html``.

The page is self-contained (figures are inline PNG ``data:`` URIs, styles inline, no script, font or link), so it
opens offline and can be mailed or archived as one file. It is built with :class:`ticketlab.report.ReportPage`
from the frames of :mod:`ticketlab.frames` and the figures of :mod:`ticketlab.plots`, section by section; a
section appears only when it applies, and the page says which were left out and why:

==============  =====================================================================================
section         shown when
==============  =====================================================================================
runs            always: one row per file (model, method, seed, levels, densities, accuracies)
accuracy        a level has a test-set evaluation: accuracy (and early-stopping iteration) vs density
sparsity        always: layer-wise density per level (heatmap, lines, table)
overlap         two or more files of one model, or one file with two or more levels
structure       the model has conv layers, or is a feed-forward stack (effective density)
fairness        level 0 (the dense network) and a pruned level are evaluated; per method
==============  =====================================================================================

With several models, every section has one part per model. Example::

    from ticketlab.report import write_report
    write_report(["rewind_s0.h5", "rewind_s1.h5", "finetune_s0.h5"], "report.html")
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ticketlab.errors import ConfigError, TicketFileError
from ticketlab.frames import (default_kernel_layer, effective_density_frame, fairness_frames, has_fairness_data,
                              last_common_level, layers_frame, level_overlap_frame, overlap_frame, run_infos,
                              run_table, runs_frame, structure_frame)
from ticketlab.plots import (accuracy_vs_density, early_stop_vs_density, fully_pruned_plot, jaccard_heatmap,
                             jaccard_vs_level, kernel_heatmap, layer_density_heatmap, layer_density_lines)
from ticketlab.report.fairness import fairness_section
from ticketlab.report.page import ReportPage
from ticketlab.store import TicketFile

#: The report's sections, in page order: (anchor id, heading).
SECTIONS = [("runs", "Runs"), ("accuracy", "Accuracy and density"), ("sparsity", "Layer-wise density"),
            ("overlap", "Mask overlap"), ("structure", "Structure"), ("fairness", "Fairness")]


def _levels_text(levels: Sequence[int]) -> str:
    if not levels:
        return "none"
    return (f"{levels[0]}–{levels[-1]}" if list(levels) == list(range(levels[0], levels[-1] + 1)) and len(levels) > 2
            else ", ".join(map(str, levels)))


def _is_chainable(tensors: Sequence[Any]) -> bool:
    from ticketlab.analysis.structure import feedforward_chain

    try:
        feedforward_chain(tensors)
    except ConfigError:
        return False
    return True


def _has_conv(tensors: Sequence[Any]) -> bool:
    return any(t.kind == "conv" and len(t.shape) >= 3 for t in tensors)


class _Builder:
    """Assembles the page section by section; ``skipped`` collects "section: reason" for sections that did not
    apply, stated after the introduction."""

    def __init__(self, tickets: list[TicketFile], level: int | None, title: str, generator: str) -> None:
        self.tickets = tickets
        self.level = level
        self.infos = run_infos(tickets)
        self.page = ReportPage(title)
        self.generator = generator
        self.skipped: list[str] = []
        models: dict[str, list[int]] = {}
        for i, t in enumerate(tickets):
            models.setdefault(t.model, []).append(i)
        self.models = models

    # -- small helpers ---------------------------------------------------------------------------------------

    def group(self, model: str) -> tuple[list[TicketFile], list[Any]]:
        """The files of one model and their identities among themselves (run labels without the model)."""
        tickets = [self.tickets[i] for i in self.models[model]]
        return tickets, run_infos(tickets)

    def model_heading(self, model: str) -> None:
        if len(self.models) > 1:
            self.page.heading(f"Model {model}", level=3)

    def skip(self, section: str, reason: str) -> None:
        self.skipped.append(f"{section}: {reason}")

    # -- sections ----------------------------------------------------------------------------------------------

    def intro(self) -> None:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        n, m = len(self.tickets), len(self.models)
        self.page.paragraph(
            f"Written by {self.generator} on {now} from {n} ticket file{'s' if n != 1 else ''} "
            f"({m} model{'s' if m != 1 else ''}: {', '.join(self.models)}). Vocabulary: density = kept fraction of "
            "the masked weights (kept / total), compression = total / kept, accuracy = fraction of test examples "
            "classified correctly, level = pruning steps (0 = the dense network). Runs are named by method and "
            "seed; a control branch (reinit, shuffle, random) is named 'method / control'.")
        self._skipped_at = self.page.mark()

    def runs(self) -> None:
        self.page.section("runs", "Runs")
        rows = run_table(self.tickets)
        rows["file"] = [Path(f).name for f in rows["file"]]
        rows["model"] = [m + (f" / {d}" if d else "") for m, d in zip(rows["model"], rows["dataset"])]
        rows["levels"] = [_levels_text(lv) for lv in rows["levels"]]
        rows["controls"] = [", ".join(c) or "–" for c in rows["controls"]]
        self.page.table(rows, [("run", "run"), ("file", "file"), ("model", "model / dataset"),
                               ("method_description", "method (as recorded)"), ("seed", "seed"),
                               ("status", "status"), ("levels", "levels"), ("controls", "control branches"),
                               ("density", "density at last level"), ("compression", "compression at last level"),
                               ("dense_accuracy", "accuracy at level 0"), ("accuracy", "accuracy at last level")])

    def accuracy(self) -> None:
        frames = {m: runs_frame(self.group(m)[0]) for m in self.models}
        if not any(f["accuracy"].notna().any() for f in frames.values()):
            self.skip("accuracy", "no level of any file has a test-set evaluation")
            return
        self.page.section("accuracy", "Accuracy and density")
        for model, f in frames.items():
            self.model_heading(model)
            if not f["accuracy"].notna().any():
                self.page.paragraph(f"No level of the {model} files has a test-set evaluation.", note=True)
                continue
            seeds = f.groupby("line")["run"].nunique().max()
            band = " Bands: the range (min–max) over seeds." if seeds > 1 else ""
            self.page.figure(accuracy_vs_density(f),
                             "Test accuracy against density (log scale, dense on the left; compression on the top "
                             "axis), mean over seeds, one line per method; control branches dashed or dotted in "
                             f"their method's colour.{band}")
            if f["early_stop_iteration"].notna().any():
                self.page.figure(early_stop_vs_density(f),
                                 "Early-stopping iteration (iteration of minimum validation loss, Frankle & Carbin "
                                 f"2019) against density, mean over seeds.{band}")
            order = {ln: i for i, ln in enumerate(dict.fromkeys(f["line"]))}
            table = (f.groupby(["line", "level"], sort=False)
                     .agg(runs=("run", "nunique"), density=("density", "mean"), compression=("compression", "mean"),
                          accuracy=("accuracy", "mean"), accuracy_min=("accuracy", "min"),
                          accuracy_max=("accuracy", "max"), early_stop=("early_stop_iteration", "mean"))
                     .reset_index())
            table = table.sort_values(["line", "level"], key=lambda c: c.map(order) if c.name == "line" else c)
            # iterations are whole numbers: the mean over seeds rounded to one
            table["early_stop"] = [None if pd.isna(v) else int(round(v)) for v in table["early_stop"]]
            self.page.table(table, [("line", "method / control"), ("level", "level"), ("runs", "runs"),
                                    ("density", "density"), ("compression", "compression"),
                                    ("accuracy", "accuracy (mean)"), ("accuracy_min", "min"),
                                    ("accuracy_max", "max"), ("early_stop", "early-stop iteration (mean)")],
                            digits=4, caption="Per method (and control) and level, over seeds.")

    def sparsity(self) -> None:
        self.page.section("sparsity", "Layer-wise density")
        for model in self.models:
            self.model_heading(model)
            tickets, infos = self.group(model)
            layers = layers_frame(tickets)
            first = infos[0].run
            one = layers[layers["run"] == first]
            same = [i.run for i in infos[1:]
                    if layers[layers["run"] == i.run][["level", "layer", "kept"]].reset_index(drop=True)
                    .equals(one[["level", "layer", "kept"]].reset_index(drop=True))]
            differ = [i.run for i in infos[1:] if i.run not in same]
            shown = f"Shown: {first}."
            if same:
                shown += f" Identical kept counts in every layer and level: {', '.join(same)}."
            if differ:
                shown += f" Different layer-wise densities (see 'ticketlab sparsity'): {', '.join(differ)}."
            self.page.paragraph(shown)
            self.page.figure(layer_density_heatmap(layers, run=first),
                             "Density of every masked tensor (rows, in model order) at every level (columns), log "
                             "colour scale; grey: fully pruned (nothing kept).")
            self.page.figure(layer_density_lines(layers, run=first),
                             "Density of every masked tensor against level; dashed: all masked tensors pooled "
                             "(total kept / total size, the density of the other sections).")
            wide = one.pivot_table(index="layer", columns="level", values="density", sort=False)
            meta = one.drop_duplicates("layer").set_index("layer")[["shape", "size", "pruned"]]
            wide = meta.join(wide).reset_index()
            cols = [("layer", "layer"), ("shape", "shape"), ("size", "weights"), ("pruned", "pruned")]
            cols += [(lv, f"level {lv}") for lv in wide.columns if isinstance(lv, (int, np.integer))]
            self.page.table(wide, cols, digits=4, caption=f"Density per layer and level ({first}).")

    def overlap(self) -> None:
        applicable = [m for m in self.models
                      if len(self.models[m]) >= 2 or len(self.tickets[self.models[m][0]].levels) >= 2]
        if not applicable:
            self.skip("overlap", "needs two or more files of one model, or a file with two or more levels")
            return
        self.page.section("overlap", "Mask overlap")
        self.page.paragraph("Jaccard = |A∩B| / |A∪B| of the kept weights of two masks, pooled over all layers. "
                            "Chance level: the Jaccard expected if each mask kept the same number of weights in "
                            "every layer, placed uniformly at random; p: one-sided P(intersection ≥ observed) under "
                            "that chance model.")
        for model in self.models:
            if model not in applicable:
                continue
            self.model_heading(model)
            tickets, infos = self.group(model)
            if len(tickets) >= 2:
                lv = last_common_level(tickets, self.level)
                if lv is None:
                    self.page.paragraph("The files share no level" + (f" {self.level}" if self.level is not None
                                                                       else "") + "; nothing to compare.", note=True)
                    continue
                try:
                    by_level = level_overlap_frame(tickets)
                except TicketFileError:
                    by_level = None
                if by_level is not None:
                    self.page.figure(jaccard_vs_level(by_level),
                                     "Jaccard of every pair of runs at each pruned level they share (solid) and its "
                                     "chance level (dashed, same colour).")
                pairs = overlap_frame([(t, lv) for t in tickets])
                caption = f"level {lv}"
            else:
                t = tickets[0]
                pairs = overlap_frame([(t, x) for x in t.levels])
                caption = f"levels of {infos[0].run}"
            self.page.figure(jaccard_heatmap(pairs, title=f"Jaccard of masks, {caption} (chance in parentheses)"),
                             f"Pairwise Jaccard of the masks ({caption}), all layers pooled; in parentheses the "
                             "chance level.")
            total = pairs[pairs["layer"] == "total"]
            self.page.table(total, [("a", "A"), ("b", "B"), ("level_a", "level A"), ("level_b", "level B"),
                                    ("density_a", "density A"), ("density_b", "density B"),
                                    ("intersection", "both keep"), ("union", "either keeps"),
                                    ("jaccard", "Jaccard"), ("expected_jaccard", "chance Jaccard"),
                                    ("ratio", "intersection / chance"), ("p_value", "p")],
                            caption=f"All layers pooled, {caption}.")

    def structure(self) -> None:
        applicable = [m for m in self.models
                      if _has_conv(self.tickets[self.models[m][0]].tensors)
                      or _is_chainable(self.tickets[self.models[m][0]].tensors)]
        if not applicable:
            self.skip("structure", "the models have no conv layer and are not plain feed-forward stacks")
            return
        self.page.section("structure", "Structure")
        self.page.paragraph("Unstructured pruning can remove whole units, filters, input channels or kernels. "
                            "Fully pruned fraction: groups (output units or filters, input units or channels, conv "
                            "kernels) that keep no weight, beside the fraction expected if the layer's kept weights "
                            "were placed uniformly at random. Effective density (Vysogorets & Kempe 2021): kept "
                            "weights that lie on some input-to-output path.")
        for model in applicable:
            self.model_heading(model)
            tickets, infos = self.group(model)
            t, info = tickets[0], infos[0]
            lv = self.level if self.level is not None and self.level in t.levels else t.levels[-1]
            frame = structure_frame([t], level=lv)
            self.page.figure(fully_pruned_plot(frame),
                             f"{info.run}, level {lv}: fraction of fully pruned groups per layer (bars) and the "
                             "random-placement mean ± 2 sd (diamonds).")
            if _has_conv(t.tensors):
                name = default_kernel_layer(t.tensors)
                self.page.figure(kernel_heatmap(t.mask(lv, name), layer=f"{name}, level {lv}"),
                                 f"{info.run}: kept fraction of each (filter, input channel) kernel of {name}; "
                                 "vermillion: fully pruned kernels; outlined: fully pruned filters and channels.")
            self.page.table(frame, [("layer", "layer"), ("shape", "shape"), ("grouping", "grouping"),
                                    ("groups", "groups"), ("group_size", "weights / group"), ("density", "density"),
                                    ("fully_pruned", "fully pruned"), ("fully_pruned_fraction", "fraction"),
                                    ("expected_fully_pruned_fraction", "random mean"),
                                    ("expected_fully_pruned_sd", "random sd"), ("dispersion", "dispersion"),
                                    ("p_value", "p (χ²)")],
                            caption=f"{info.run}, level {lv}. Dispersion: χ² index of per-group kept counts "
                                    "(about 1 if random, > 1 clustered).")
            if _is_chainable(t.tensors):
                eff = effective_density_frame(tickets, level=self.level)
                rows = eff[eff["layer"] == "total"]
                self.page.table(rows, [("run", "run"), ("level", "level"), ("density", "density"),
                                       ("effective_density", "effective density"), ("compression", "compression"),
                                       ("effective_compression", "effective compression")],
                                caption="Direct and effective density of the whole model.")

    def fairness(self) -> None:
        groups = []
        reasons = []
        for model in self.models:
            tickets, infos = self.group(model)
            methods: dict[str, list[tuple[TicketFile, Any]]] = {}
            for t, inf in zip(tickets, infos):
                methods.setdefault(inf.method, []).append((t, inf))
            for members in methods.values():
                ok = [(t, i) for t, i in members if has_fairness_data(t)]
                if len(ok) < len(members):
                    reasons.append(f"{', '.join(i.run for t, i in members if (t, i) not in ok)}: no evaluated dense "
                                   "level 0 and pruned level")
                if ok:
                    groups.append((model, ok))
        if not groups:
            self.skip("fairness", "needs level 0 (the dense network) and a pruned level, each with a test-set "
                      "evaluation")
            return
        self.page.section("fairness", "Fairness")
        self.page.paragraph("Which classes pruning hurts more than the overall accuracy shows (Paganini 2020; Hooker "
                            "et al. 2019). Class accuracy is the recall of the class; drop = dense (level 0) minus "
                            "pruned accuracy. The seeds of one method form a population; PIEs (pruning-identified "
                            "exemplars: test examples whose modal prediction over the pruned models differs from "
                            "that over the dense models) need two seeds or more. Details: 'ticketlab fairness "
                            "--report'.")
        if reasons:
            self.page.paragraph("Left out: " + "; ".join(reasons) + ".", note=True)
        for model, members in groups:
            tickets = [t for t, _ in members]
            name = members[0][1].method + (f" ({model})" if len(self.models) > 1 else "")
            self.page.heading(f"{name}: {len(tickets)} run{'s' if len(tickets) != 1 else ''}", level=3)
            lv = last_common_level(tickets, self.level)
            if lv == 0 or lv is None:
                self.page.paragraph("The runs share no pruned level" + (f" {self.level}" if self.level is not None
                                                                         else "") + ".", note=True)
                continue
            try:
                sections, lv = fairness_frames(tickets, level=lv)
            except (ConfigError, TicketFileError) as err:
                self.page.paragraph(f"Not computed: {err}", note=True)
                continue
            fairness_section(self.page, sections, lv)

    def finish(self) -> ReportPage:
        if self.skipped:
            self.page.insert_note(self._skipped_at, "Sections left out — " + "; ".join(self.skipped) + ".")
        return self.page


def build_report(paths: Sequence[str | os.PathLike], *, level: int | None = None,
                 title: str = "ticketlab report", generator: str | None = None) -> ReportPage:
    """Build the report page of a set of ticket files.

    Parameters
    ----------
    paths : sequence of path-like
        Ticket files (any mix of models, methods and seeds).
    level : int, optional
        The level used by the overlap matrix, the structure section and the fairness comparisons (default: the
        last level common to the files of a model or method, and each file's last level for structure).
    title : str
        The page's title.
    generator : str, optional
        Who wrote the page, stated in its first line (default ``"ticketlab <version>"``).

    Returns
    -------
    ReportPage
        Call :meth:`~ReportPage.render` for the HTML text or :meth:`~ReportPage.write` to save it.
    """
    from ticketlab._version import __version__

    if not paths:
        raise ConfigError("no ticket files given; pass one or more .h5 files")
    resolved = [Path(p).resolve() for p in paths]
    twice = [str(p) for p, r in zip(paths, resolved) if resolved.count(r) > 1]
    if twice:
        raise ConfigError(f"{twice[0]} is given more than once; name each ticket file once")
    tickets = []
    try:
        for p in paths:
            t = TicketFile(p)
            tickets.append(t)
            if not t.levels:
                raise TicketFileError(f"{t.path}: has no levels yet; nothing to report")
        b = _Builder(tickets, level, title, generator or f"ticketlab {__version__}")
        b.intro()
        b.runs()
        b.accuracy()
        b.sparsity()
        b.overlap()
        b.structure()
        b.fairness()
        return b.finish()
    finally:
        for t in tickets:
            t.close()


def write_report(paths: Sequence[str | os.PathLike], out: str | os.PathLike, **kwargs: Any) -> Path:
    """Build the report (:func:`build_report`) and write it to ``out`` (an ``.html`` file); returns the path."""
    out = Path(out)
    if not out.parent.exists():
        raise ConfigError(f"{out}: directory {out.parent} does not exist")
    page = build_report(paths, **kwargs)
    return page.write(out)


__all__ = ["SECTIONS", "build_report", "write_report"]
