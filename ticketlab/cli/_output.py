"""Formatting for the command line: aligned text tables, CSV and JSON from lists of records."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

Formatter = Callable[[Any], str]


def fmt_float(digits: int) -> Formatter:
    def f(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, float) and math.isinf(v):
            return "inf"
        return f"{v:.{digits}f}"

    return f


def fmt_ratio(v: Any) -> str:
    """Compression as '12.5x'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "inf" if math.isinf(v) else f"{v:.2f}x"


def fmt_int(v: Any) -> str:
    return "-" if v is None else f"{int(v):,}"


def fmt_str(v: Any) -> str:
    return "-" if v is None else str(v)


def table(records: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, Formatter]]) -> str:
    """An aligned plain-text table. ``columns`` are (key, header, formatter); numbers are right-aligned."""
    cells = [[fmt(r.get(key)) for key, _, fmt in columns] for r in records]
    headers = [h for _, h, _ in columns]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    numeric = [all(_looks_numeric(row[i]) for row in cells) and cells for i in range(len(columns))]

    def line(values: Iterable[str]) -> str:
        out = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers)] + [line(row) for row in cells])


def _looks_numeric(text: str) -> bool:
    t = text.replace(",", "").rstrip("x%")
    if t in ("-", "inf"):
        return True
    try:
        float(t)
        return True
    except ValueError:
        return False


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        v = v.item()
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def to_json(obj: Any) -> str:
    """JSON with numpy scalars converted and NaN written as null, infinity as the string "inf"."""

    def walk(o: Any) -> Any:
        if isinstance(o, Mapping):
            return {str(k): walk(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v) for v in o]
        return _jsonable(o)

    return json.dumps(walk(obj), indent=2)


def to_csv(records: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(keys), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: _jsonable(r.get(k)) for k in keys})
    return buf.getvalue()
