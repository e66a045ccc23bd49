"""The one HTML page builder of ticketlab: headings, text, tables and matplotlib figures inlined as base64 PNG.

The page needs nothing but a browser: styles are inline, figures are ``data:image/png;base64,`` URIs, and there
is no script, external style sheet, font or link, so it can be mailed or archived as one file. Figures are
drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, without pyplot, so writing a page never
changes matplotlib's global backend or opens a window. Sections with anchors get a table of contents; tables
scroll sideways inside their own box instead of widening the page.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ticketlab.outputs import atomic_output

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
.table-wrap { overflow-x: auto; max-width: 100%; margin: .8em 0; }
.table-wrap table { margin: 0; }
td { overflow-wrap: break-word; }
td.num { white-space: nowrap; }
caption { text-align: left; font-size: .92em; color: #444; padding-bottom: .3em; }
nav.toc { background: #f6f6f6; border: 1px solid #ddd; padding: .4em 1em; display: inline-block; }
nav.toc ol { margin: .2em 0; padding-left: 1.4em; }
h3 { font-size: 1.1em; margin-top: 1.5em; }
p, figcaption, li { overflow-wrap: anywhere; }
"""

# Text cells of tables (numeric cells have class="num"), and where long names may break.
_TEXT_CELL = re.compile(r"<td>([^<]*)</td>")
_BREAK_AFTER = re.compile(r"([._/])(?=[^\s])")  # browsers already break after hyphens
_LONG_WORD = re.compile(r"[^\s]{16,}")  # only names this long get break hints: 'run_s0.h5' stays whole


def _cell(value: Any, digits: int) -> tuple[str, bool]:
    """Text of one table cell and whether it is numeric."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–", True
    if isinstance(value, (bool, np.bool_)):
        return ("yes" if value else "no"), False
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}", True
    if isinstance(value, (float, np.floating)):
        return ("inf" if value > 0 else "-inf", True) if math.isinf(value) else (f"{value:.{digits}f}", True)
    return str(value), False


class ReportPage:
    """An HTML page built section by section; :meth:`render` returns it, :meth:`write` saves it.

    Every table is wrapped in ``<div class="table-wrap">`` (CSS ``overflow-x: auto``), so a wide table scrolls
    inside its box and never makes the page wider than the window; sections made with :meth:`section` have an
    anchor and are listed in a table of contents.

    Examples
    --------
    >>> page = ReportPage("Run summary")
    >>> page.section("accuracy", "Accuracy")
    >>> page.table([{"level": 0, "accuracy": 0.98}], [("level", "level"), ("accuracy", "accuracy")])
    >>> page.render().startswith("<!DOCTYPE html>")
    True
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []
        self.toc: list[tuple[str, str]] = []

    def section(self, anchor: str, text: str) -> None:
        """A level-2 heading with ``id=anchor``, listed in the table of contents."""
        self.toc.append((anchor, text))
        self._parts.append(f'<h2 id="{html.escape(anchor, quote=True)}">{html.escape(text)}</h2>')

    def heading(self, text: str, level: int = 2) -> None:
        """A heading without an anchor (not in the table of contents)."""
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, *, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self._parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def definitions(self, items: Sequence[tuple[str, str]]) -> None:
        """A definition list of (term, explanation) pairs."""
        body = "".join(f"<dt>{html.escape(t)}</dt><dd>{html.escape(d)}</dd>" for t, d in items)
        self._parts.append(f"<dl>{body}</dl>")

    def table(self, records: pd.DataFrame | Sequence[Mapping[str, Any]],
              columns: Sequence[tuple[Any, str]] | None = None, *, digits: int = 4, caption: str | None = None,
              flag: str | None = None) -> None:
        """A table of records (or a DataFrame's rows); ``columns`` are (key, header) pairs, default all keys.

        Floats are shown with ``digits`` decimals, NaN and None as "–", booleans as yes/no. Rows whose ``flag``
        key is true are highlighted. Long names in text cells may break after ``.``, ``_`` and ``/`` (``<wbr>``)
        when 16 characters or longer, so that ``layer1.0.conv1.weight`` wraps at its dots while a short file name
        stays whole.
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
        text = f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        text = _TEXT_CELL.sub(lambda m: "<td>" + _LONG_WORD.sub(
            lambda w: _BREAK_AFTER.sub(r"\1<wbr>", w.group(0)), m.group(1)) + "</td>", text)
        self._parts.append(f'<div class="table-wrap">{text}</div>')

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

    def mark(self) -> int:
        """The current position on the page, for :meth:`insert_note`."""
        return len(self._parts)

    def insert_note(self, position: int, text: str) -> None:
        """A note paragraph inserted at a position returned by :meth:`mark` (e.g. after the introduction)."""
        self._parts.insert(position, f'<p class="note">{html.escape(text)}</p>')

    def render(self) -> str:
        """The page as HTML text."""
        title = html.escape(self.title)
        toc = ""
        if self.toc:
            links = "".join(f'<li><a href="#{html.escape(a, quote=True)}">{html.escape(t)}</a></li>'
                            for a, t in self.toc)
            toc = f'<nav class="toc"><strong>Contents</strong><ol>{links}</ol></nav>\n'
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
                + toc + "\n".join(self._parts) + "\n</body>\n</html>\n")

    def write(self, path: str | Path) -> Path:
        """Write the page to ``path`` atomically (a reader never sees half a page); returns the path."""
        path = Path(path)
        with atomic_output(path, tag="report") as tmp:
            tmp.write_text(self.render(), encoding="utf-8")
        return path


__all__ = ["ReportPage"]
