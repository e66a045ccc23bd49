"""Self-contained HTML reports: headings, text, tables and matplotlib figures inlined as base64 PNG.

The page needs nothing but a browser: styles are inline, figures are ``data:image/png;base64,`` URIs, and there
is no script, external style sheet, font or link, so it can be mailed or archived as one file. Figures are
drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, without pyplot, so writing a report
never changes matplotlib's global backend or opens a window.

:func:`fairness_report` assembles the page of ``ticketlab fairness --report``.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 70em;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: .8em 0; font-size: .88em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.flag td { background: #fde8e8; }
figure { margin: 1em 0; }
figcaption { font-size: .88em; color: #555; max-width: 60em; }
img { max-width: 100%; height: auto; }
dt { font-weight: bold; margin-top: .4em; }
.note { color: #666; font-size: .9em; }
"""


def _cell(value: Any, digits: int) -> tuple[str, bool]:
    """Text of one table cell and whether it is numeric."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–", True
    if isinstance(value, (bool, np.bool_)):
        return ("yes" if value else "no"), False
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}", True
    if isinstance(value, (float, np.floating)):
        return ("inf" if value > 0 else "-inf", True) if math.isinf(value) else (f"{value:.{digits}f}", True)
    return str(value), False


class HtmlReport:
    """An HTML page built section by section; :meth:`render` returns it, :meth:`write` saves it.

    Examples
    --------
    >>> page = HtmlReport("Run summary")
    >>> page.heading("Accuracy")
    >>> page.table([{"level": 0, "accuracy": 0.98}], [("level", "level"), ("accuracy", "accuracy")])
    >>> page.render().startswith("<!DOCTYPE html>")
    True
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, *, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self._parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def definitions(self, items: Sequence[tuple[str, str]]) -> None:
        """A definition list of (term, explanation) pairs."""
        body = "".join(f"<dt>{html.escape(t)}</dt><dd>{html.escape(d)}</dd>" for t, d in items)
        self._parts.append(f"<dl>{body}</dl>")

    def table(self, records: pd.DataFrame | Sequence[Mapping[str, Any]],
              columns: Sequence[tuple[str, str]] | None = None, *, digits: int = 4, caption: str | None = None,
              flag: str | None = None) -> None:
        """A table of records (or a DataFrame's rows); ``columns`` are (key, header) pairs, default all keys.

        Floats are shown with ``digits`` decimals, NaN and None as "–", booleans as yes/no. Rows whose ``flag``
        key is true are highlighted.
        """
        rows = records.to_dict("records") if isinstance(records, pd.DataFrame) else list(records)
        if columns is None:
            keys = list(records.columns) if isinstance(records, pd.DataFrame) else list(rows[0] if rows else [])
            columns = [(k, k) for k in keys]
        head = "".join(f"<th>{html.escape(h)}</th>" for _, h in columns)
        body = []
        for r in rows:
            cells = []
            for key, _ in columns:
                text, numeric = _cell(r.get(key), digits)
                cells.append(f'<td class="num">{html.escape(text)}</td>' if numeric
                             else f"<td>{html.escape(text)}</td>")
            cls = ' class="flag"' if flag and bool(r.get(flag)) else ""
            body.append(f"<tr{cls}>{''.join(cells)}</tr>")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self._parts.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")

    def figure(self, fig: Any, caption: str | None = None, *, dpi: int = 110) -> None:
        """Inline a matplotlib figure as a base64 PNG (without the PNG's 'Software' text, which holds a URL)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        alt = html.escape(caption or "figure", quote=True)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">{cap}</figure>')

    def render(self) -> str:
        title = html.escape(self.title)
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
                + "\n".join(self._parts) + "\n</body>\n</html>\n")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.render(), encoding="utf-8")
        return path


# -- the fairness report --------------------------------------------------------------------------------------


def _figure(width: float = 7.5, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _class_axis(ax: Any, names: Sequence[str]) -> None:
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90 if len(names) > 12 or max(map(len, names), default=0) > 6 else 0,
                       fontsize=8 if len(names) > 20 else 9)
    ax.set_xlabel("class")


def _curves_figure(drops: pd.DataFrame) -> Any:
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    mean = drops.groupby(["class", "class_name", "level"], sort=True)["class_accuracy"].mean().reset_index()
    classes = mean[["class", "class_name"]].drop_duplicates().to_numpy()
    cmap = matplotlib.colormaps["tab20" if len(classes) > 10 else "tab10"]
    for i, (c, name) in enumerate(classes):
        m = mean[mean["class"] == c]
        ax.plot(m["level"], m["class_accuracy"], marker=".", lw=1, color=cmap(i % cmap.N), label=str(name))
    overall = drops.groupby(["run", "level"])["accuracy"].first().groupby("level").mean()
    ax.plot(overall.index, overall.to_numpy(), color="black", lw=2.5, ls="--", label="overall")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("level (0 = dense)")
    ax.set_ylabel("class accuracy (recall, fraction)")
    ax.grid(alpha=.3)
    if len(classes) <= 20:
        ax.legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, .5))
    return fig


def _excess_figure(at_level: pd.DataFrame) -> Any:
    fig = _figure()
    ax = fig.add_subplot()
    g = at_level.groupby(["class", "class_name"], sort=True)["excess_drop"]
    mean, sd = g.mean(), g.std(ddof=1)
    names = [n for _, n in mean.index]
    colors = ["#c0392b" if v > 0 else "#2980b9" for v in mean.to_numpy()]
    ax.bar(range(len(mean)), mean.to_numpy(), yerr=None if sd.isna().all() else sd.to_numpy(), color=colors,
           capsize=2)
    ax.axhline(0, color="black", lw=.8)
    _class_axis(ax, names)
    ax.set_ylabel("drop − overall drop (fraction)")
    return fig


def _fit_figure(at_level: pd.DataFrame, fit: pd.DataFrame, level: int) -> Any:
    from matplotlib.ticker import MaxNLocator

    fig = _figure(11, 4.2)
    ax, bx = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    m = at_level.groupby("class")[["dense_class_accuracy", "class_accuracy"]].mean()
    ax.scatter(at_level["dense_class_accuracy"], at_level["class_accuracy"], s=10, alpha=.35, color="#888",
               label="class, one run")
    ax.scatter(m["dense_class_accuracy"], m["class_accuracy"], s=25, color="#c0392b", label="class, mean of runs")
    here = fit[fit["level"] == level]
    lo, hi = np.nanmin(at_level["dense_class_accuracy"]), np.nanmax(at_level["dense_class_accuracy"])
    xs = np.linspace(lo, hi, 2)
    if len(here) and np.isfinite(here["slope"]).any():
        s, b = here["slope"].mean(), here["intercept"].mean()
        ax.plot(xs, b + s * xs, color="#c0392b", label=f"OLS, mean of the runs' lines (slope {s:.2f})")
    overall = at_level.groupby("run")["overall_drop"].first().mean()
    ax.plot(xs, xs - overall, color="black", ls="--", lw=1, label="uniform shift (slope 1)")
    ax.set_xlabel("dense class accuracy (level 0)")
    ax.set_ylabel(f"class accuracy at level {level}")
    ax.legend(fontsize=7)
    ax.grid(alpha=.3)
    runs = list(dict.fromkeys(fit["run"]))
    for i, run in enumerate(runs):
        f = fit[fit["run"] == run]
        x = f["level"].to_numpy() + (i - (len(runs) - 1) / 2) * 0.08
        err = np.vstack([f["slope"] - f["slope_ci_low"], f["slope_ci_high"] - f["slope"]])
        bx.errorbar(x, f["slope"], yerr=None if np.isnan(err).all() else err, fmt="o", ms=3, capsize=2, lw=.8,
                    label=str(run) if len(runs) <= 10 else None)
    bx.axhline(1, color="black", ls="--", lw=.8)
    bx.xaxis.set_major_locator(MaxNLocator(integer=True))
    bx.set_xlabel("level")
    bx.set_ylabel("slope (95% CI)")
    bx.grid(alpha=.3)
    if len(runs) <= 10:
        bx.legend(fontsize=7)
    return fig


def _hooker_figure(hooker: pd.DataFrame) -> Any:
    fig = _figure()
    ax = fig.add_subplot()
    colors = ["#c0392b" if f else "#95a5a6" for f in hooker["impacted"]]
    ax.bar(range(len(hooker)), hooker["change"].to_numpy(), color=colors)
    ax.axhline(0, color="black", lw=.8)
    _class_axis(ax, [str(n) for n in hooker["class_name"]])
    ax.set_ylabel("change in (recall − accuracy)")
    return fig


def _pies_figure(pies: pd.DataFrame) -> Any:
    fig = _figure()
    ax = fig.add_subplot()
    ax.bar(range(len(pies)), pies["pie_fraction"].to_numpy(), color="#8e44ad")
    _class_axis(ax, [str(n) for n in pies["class_name"]])
    ax.set_ylabel("PIEs / test examples of the class")
    return fig


RUN_TABLE = [("run", "run"), ("seed", "seed"), ("method", "method"), ("levels", "levels"), ("level", "level"),
             ("density", "density (kept fraction)"), ("dense_accuracy", "accuracy at level 0"),
             ("accuracy", "accuracy at level")]
DROP_TABLE = [("class", "class"), ("class_name", "name"), ("dense_class_accuracy", "dense accuracy"),
              ("class_accuracy", "accuracy"), ("drop", "drop"), ("relative_drop", "relative drop"),
              ("overall_drop", "overall drop"), ("excess_drop", "drop − overall drop")]
FIT_TABLE = [("run", "run"), ("level", "level"), ("density", "density"), ("n_classes", "classes"),
             ("slope", "slope"), ("slope_ci_low", "slope 95% low"), ("slope_ci_high", "slope 95% high"),
             ("intercept", "intercept"), ("intercept_ci_low", "intercept 95% low"),
             ("intercept_ci_high", "intercept 95% high"), ("r", "r"), ("p_slope_1", "p (slope = 1)")]
HOOKER_TABLE = [("class", "class"), ("class_name", "name"), ("n_dense", "dense models"),
                ("n_pruned", "pruned models"), ("dense_recall", "dense recall"), ("pruned_recall", "pruned recall"),
                ("dense_gap", "dense recall − acc"), ("pruned_gap", "pruned recall − acc"), ("change", "change"),
                ("t", "t"), ("dof", "dof"), ("p_value", "p"), ("impacted", "impacted")]
PIE_TABLE = [("class", "class"), ("class_name", "name"), ("examples", "examples"), ("pies", "PIEs"),
             ("pie_fraction", "PIE fraction"), ("pies_pruned_correct", "PIEs pruned-correct"),
             ("pies_dense_correct", "PIEs dense-correct")]


def fairness_report(sections: Mapping[str, pd.DataFrame], *, runs: Sequence[Mapping[str, Any]], level: int,
                    alpha: float = 0.05, shift: str = "population", ties: str = "largest",
                    title: str = "ticketlab fairness report", generator: str = "ticketlab") -> HtmlReport:
    """The page of ``ticketlab fairness --report``: definitions, then one section per analysis.

    Parameters
    ----------
    sections : mapping of str to DataFrame
        What :func:`ticketlab.analysis.fairness.fairness_analysis` returned (``drops`` and ``fit`` at least).
    runs : sequence of mapping
        One record per run with the keys of :data:`RUN_TABLE`.
    level : int
        The pruned level compared with level 0.
    alpha, shift, ties
        The options used, stated on the page.
    """
    page = HtmlReport(title)
    drops, fit = sections["drops"], sections["fit"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page.paragraph(f"Written by {generator} on {now}. {len(runs)} run(s); the pruned level compared with the "
                   f"dense network (level 0) is level {level}. Accuracies are fractions in [0, 1].")
    page.table(runs, RUN_TABLE)
    page.heading("Definitions")
    page.definitions([
        ("class accuracy", "Recall of the class: correct predictions of the class / test examples of the class."),
        ("drop", "Dense class accuracy (level 0) minus class accuracy at the level; positive = accuracy lost. "
                 "Relative drop = drop / dense class accuracy."),
        ("drop − overall drop", "How much more (> 0) or less (< 0) the class lost than the overall accuracy."),
        ("intensification fit", "Per level and run, ordinary least squares of class accuracy on dense class "
         "accuracy across classes; 95% intervals from Student's t with C − 2 degrees of freedom. Slope 1 is a "
         "uniform shift; slope > 1 means classes that were weak before pruning lose more. This fit is ticketlab's "
         "own summary, related to the intensification hypothesis of Good et al. (2022); it is not a definition "
         "taken from Paganini (2020), whose per-class metrics we could not verify."),
        ("Hooker et al. test", "Per class, Welch's unequal-variance t-test between the dense models (level 0 of "
         f"each run) and the pruned models (level {level} of each run) of class recall minus "
         + ("the population's mean accuracy (as in Hooker et al.'s code)" if shift == "population"
            else "the model's own accuracy")
         + f"; a class is impacted when p ≤ {alpha:g} (Hooker et al. 2019, arXiv:1911.05248)."),
        ("PIE", "Pruning-identified exemplar: a test example whose modal prediction over the pruned models "
         "differs from its modal prediction over the dense models (Hooker et al. 2019). Ties between equally "
         f"frequent labels go to the {ties} label"
         + (" (as Hooker et al.'s code, mode().max())." if ties == "largest" else ".")),
    ])

    page.heading("Per-class accuracy drops")
    page.figure(_curves_figure(drops), "Class accuracy per level (mean over runs); dashed: overall accuracy.")
    at_level = drops[drops["level"] == level]
    mean = at_level.groupby(["class", "class_name"], sort=True)[
        ["dense_class_accuracy", "class_accuracy", "drop", "relative_drop", "overall_drop", "excess_drop"]
    ].mean().reset_index()
    page.figure(_excess_figure(at_level), f"Drop minus overall drop per class at level {level} (mean over runs"
                + ("; bars: standard deviation over runs)." if len(runs) > 1 else ")."))
    page.table(mean, DROP_TABLE, caption=f"Level {level}, mean over {len(runs)} run(s)")
    page.paragraph("Every level and run is in the JSON and CSV output of 'ticketlab fairness'.", note=True)

    page.heading("Intensification fit")
    page.figure(_fit_figure(at_level, fit, level),
                f"Left: class accuracy at level {level} against dense class accuracy, with the OLS line and the "
                "uniform-shift line. Right: slope per level and run with 95% confidence intervals.")
    page.table(fit, FIT_TABLE)

    page.heading("Hooker et al. per-class test")
    if "hooker" in sections:
        hooker = sections["hooker"]
        n = int(hooker["impacted"].sum())
        page.paragraph(f"{n} of {len(hooker)} classes impacted at p ≤ {alpha:g} (level {level}).")
        page.figure(_hooker_figure(hooker), "Change in mean (recall − accuracy) from the dense to the pruned "
                    "population; red: impacted.")
        page.table(hooker, HOOKER_TABLE, flag="impacted")
    else:
        page.paragraph("Needs at least two runs (e.g. seeds) of one method.", note=True)

    page.heading("Pruning-identified exemplars")
    if "pies" in sections:
        pies = sections["pies"]
        total, n = int(pies["pies"].sum()), int(pies["examples"].sum())
        page.paragraph(f"{total:,} of {n:,} test examples are PIEs at level {level}.")
        page.figure(_pies_figure(pies), "Fraction of each class's test examples that are PIEs.")
        page.table(pies, PIE_TABLE)
    else:
        page.paragraph("Needs at least two runs (e.g. seeds) of one method and the test predictions.", note=True)
    return page


__all__ = ["HtmlReport", "fairness_report"]
