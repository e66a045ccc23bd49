"""A study directory as tables: where each chain stands (:func:`study_status`) and the tidy results
(:func:`study_frame`), read from the manifest and the chains' ticket files.

    from ticketlab.study import study_frame
    df = study_frame("runs/rewinding")          # one row per chain × level × branch
    df[df.branch == "main"].groupby(["method", "level"]).accuracy.agg(["mean", "std"])

A study's *method* is a chain's axis values without its seed (:func:`method_label`): chains that differ only in
their seed form one population, the unit of every statistic over seeds (bands, Hooker et al.'s test); no such
statistic ever mixes two methods.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ticketlab.errors import ConfigError, TicketlabError
from ticketlab.study.manifest import chain_file, read_manifest

#: The ``branch`` value of a chain's own line (control branches keep their names: reinit, shuffle, random).
MAIN = "main"
#: The axis whose values are replicates: chains that differ only in it are one method's population.
SEED_AXIS = "seed"


def method_axes(axes: Sequence[str]) -> list[str]:
    """The axes that tell methods apart: every axis but the seed."""
    return [a for a in axes if a != SEED_AXIS]


def method_label(values: Mapping[str, Any], axes: Sequence[str], default: str = "all chains") -> str:
    """The method of a chain from its axis values: ``"rewind-init"`` with one method axis, ``"reset=rewind-init,
    rate=0.2"`` with several (as in chain names), ``default`` (e.g. the preset) when the grid has only seeds."""
    from ticketlab.study.spec import value_label

    named = method_axes(axes)
    if not named:
        return default
    if len(named) == 1:
        return value_label(values.get(named[0]))
    return ",".join(f"{a}={value_label(values.get(a))}" for a in named)


def chain_methods(manifest: Mapping[str, Any]) -> list[str]:
    """The method label of every chain of a manifest, in its order."""
    axes = list(manifest["identity"]["grid"])
    default = str(manifest["identity"].get("preset") or "all chains")
    return [method_label(e["axes"], axes, default) for e in manifest["chains"]]


def study_status(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """One record per chain: name, status, levels_done and levels_planned (level 0 included), train_time
    (seconds of training stored in its file), wall_time (seconds the runner spent on it), attempts and the last
    error.

    ``status`` is ``complete`` (the file says so), ``failed`` (the last attempt failed), ``partial`` (some
    levels done: running, or interrupted) or ``pending`` (nothing done yet).
    """
    from ticketlab.store import open_ticket

    manifest = read_manifest(directory)
    out = []
    for entry in manifest["chains"]:
        path = chain_file(directory, entry)
        controls = set(entry["config"].get("controls", []))
        planned = int(entry["config"]["levels"]) + 1
        done, train_time, complete, error = 0, 0.0, False, entry.get("error")
        if path.exists():
            try:
                with open_ticket(path) as t:
                    for level in t.levels:
                        branches = t.branches(level)
                        if level == 0 or set(branches) >= controls:
                            done += 1
                        for b in [None, *branches]:
                            train_time += t.level_record(level, branch=b)["wall_time"] or 0.0
                    complete = t.status == "complete" and done >= planned
            except TicketlabError as err:
                error = str(err)
        if complete:
            status = "complete"
        elif entry.get("status") == "failed" or (error and not complete):
            status = "failed"
        else:
            status = "partial" if done else "pending"
        out.append({"chain": entry["name"], "status": status, "levels_done": done, "levels_planned": planned,
                    "train_time": round(train_time, 3), "wall_time": entry.get("wall_time", 0.0),
                    "attempts": entry.get("attempts", 0), "error": None if complete else error,
                    "file": entry["file"]})
    return out


def study_frame(directory: str | os.PathLike, *, per_class: bool = True) -> Any:
    """The tidy table of a study: a pandas DataFrame with one row per chain × level × branch.

    Columns: the axes (one column each, values as in the spec), ``chain``, ``file``, ``level``, ``branch``
    (``"main"`` for the chain itself, else the control's name), ``method`` (:func:`method_label`: the axis values
    but the seed), ``seed`` (the chain's seed, also when it is not an axis), ``kept``, ``size``, ``density``,
    ``sparsity``, ``compression``, ``accuracy``, ``loss``, ``early_stop_iteration``, ``iterations``, ``wall_time``
    and, with ``per_class``, ``accuracy[<class>]`` for every class of the dataset (recall on the test set). Chains still
    running contribute the levels they have completed; chains not started contribute nothing.
    """
    import pandas as pd

    from ticketlab.store import open_ticket

    manifest = read_manifest(directory)
    axes = list(manifest["identity"]["grid"])
    rows = []
    for entry, method in zip(manifest["chains"], chain_methods(manifest)):
        path = chain_file(directory, entry)
        if not path.exists():
            continue
        with open_ticket(path) as t:
            names = list(t.dataset.class_names) if t.dataset and t.dataset.class_names else None
            for level in t.levels:
                for branch in [None, *t.branches(level)]:
                    rec = t.level_record(level, branch=branch)
                    row = {**{a: _cell(entry["axes"].get(a)) for a in axes}, "chain": entry["name"],
                           "file": entry["file"], **rec, "branch": branch or MAIN, "method": method,
                           "seed": entry["config"].get("seed")}
                    if per_class:
                        ev = t.evaluation(level, branch=branch)
                        if ev is not None:
                            labels = names or [str(i) for i in range(ev.num_classes)]
                            row.update({f"accuracy[{c}]": float(a) for c, a in zip(labels, ev.per_class_accuracy)})
                    rows.append(row)
    columns = list(dict.fromkeys([*axes, "chain", "file", "level", "branch", "method", "seed"]))
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=columns)
    return df[columns + [c for c in df.columns if c not in columns]]


def _cell(value: Any) -> Any:
    """Axis values in a frame cell: lists (e.g. controls) joined with '+', as in chain names."""
    if isinstance(value, list):
        from ticketlab.study.spec import value_label

        return value_label(value)
    return value


#: Frame file formats by suffix.
FRAME_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def write_frame(df: Any, out: str | os.PathLike) -> Path:
    """Write a frame as CSV or Parquet (chosen by the suffix), atomically."""
    from ticketlab.outputs import atomic_output

    out = Path(out)
    kind = FRAME_FORMATS.get(out.suffix.lower())
    if kind is None:
        raise ConfigError(f"{out}: unknown frame format {out.suffix or '(no suffix)'!r}; use .csv or .parquet")
    if kind == "parquet":
        import importlib.util

        if not (importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet")):
            raise ConfigError("writing Parquet needs pyarrow (pip install pyarrow); or write .csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out, tag="frame") as tmp:
        if kind == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return out
