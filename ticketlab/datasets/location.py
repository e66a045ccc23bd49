"""Where datasets live: the data directory (``$TICKETLAB_DATA``, the repository's ``data/``, ``./data``), whether a
dataset's files are there (:func:`dataset_status`), and what to say when they are not."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import ticketlab
from ticketlab.datasets.registry import DATASETS, FORMATS, DatasetSpec, get_dataset_spec

__all__ = [
    "DATA_ENV_VAR",
    "DatasetStatus",
    "data_dir_candidates",
    "dataset_status",
    "dataset_statuses",
    "default_data_dir",
    "how_to_get",
    "locate",
    "missing_message",
]

#: Environment variable naming the data directory (takes precedence over the built-in locations).
DATA_ENV_VAR = "TICKETLAB_DATA"


def _repo_data_dir() -> Path:
    return Path(ticketlab.__file__).resolve().parent.parent / "data"


def data_dir_candidates() -> list[Path]:
    """Data directories searched when none is given, in order.

    ``$TICKETLAB_DATA`` (if set and not empty), then the repository's ``data/`` folder (next to the
    ``ticketlab`` package: ``Path(ticketlab.__file__).resolve().parent.parent / "data"``), then ``./data``
    relative to the current working directory. Duplicates are dropped.
    """
    out: list[Path] = []
    env = os.environ.get(DATA_ENV_VAR, "").strip()
    for cand in ([Path(env).expanduser()] if env else []) + [_repo_data_dir(), Path.cwd() / "data"]:
        if all(cand.resolve() != seen.resolve() for seen in out):
            out.append(cand)
    return out


def default_data_dir() -> Path:
    """Where data goes when no directory is given: ``$TICKETLAB_DATA`` if set, else the first existing
    candidate of :func:`data_dir_candidates`, else ``./data``."""
    cands = data_dir_candidates()
    if os.environ.get(DATA_ENV_VAR, "").strip():
        return cands[0]
    for cand in cands:
        if cand.is_dir():
            return cand
    return cands[-1]


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a dataset's files are in a data directory.

    Attributes
    ----------
    name : str
        Dataset name.
    data_dir : Path
        The data directory looked at.
    dataset_dir : Path
        ``data_dir / name``.
    present : bool
        True when every file needed to load the dataset is there.
    source : str
        What would be read: ``"files"`` (IDX files), ``"folder"`` (extracted CIFAR folder), ``"archive"``
        (CIFAR ``.tar.gz``), or ``""`` when not present.
    missing : tuple of str
        Paths, relative to ``dataset_dir``, of what is missing (empty when present).
    """

    name: str
    data_dir: Path
    dataset_dir: Path
    present: bool
    source: str
    missing: tuple[str, ...]


def locate(spec: DatasetSpec, dataset_dir: Path) -> tuple[str, dict[str, Path], list[str]]:
    """Find a dataset's files: ``(source, {member: path}, missing)``; ``source`` is "" when incomplete."""
    return FORMATS.get(spec.format).locate(spec, dataset_dir)


def dataset_status(name: str, data_dir: str | os.PathLike | None = None) -> DatasetStatus:
    """Report whether dataset ``name`` can be loaded from ``data_dir``.

    Parameters
    ----------
    name : str
        Registered dataset name.
    data_dir : path, optional
        Data directory. When None, the first of :func:`data_dir_candidates` that holds the complete dataset,
        else the first that has a ``<name>/`` folder, else :func:`default_data_dir`.

    Returns
    -------
    DatasetStatus
        Where the dataset is (or would go), whether it is complete, and what is missing. No file is opened
        or hashed: a present but corrupt file is only found by :func:`~ticketlab.datasets.load_dataset`.
    """
    spec = get_dataset_spec(name)
    if data_dir is not None:
        candidates = [Path(data_dir).expanduser()]
    else:
        candidates = data_dir_candidates()
    statuses = []
    for root in candidates:
        source, _, missing = locate(spec, root / spec.name)
        status = DatasetStatus(spec.name, root, root / spec.name, bool(source), source, tuple(missing))
        if status.present:
            return status
        statuses.append(status)
    for status in statuses:
        if status.dataset_dir.is_dir():
            return status
    if data_dir is None:
        root = default_data_dir()
        source, _, missing = locate(spec, root / spec.name)
        return DatasetStatus(spec.name, root, root / spec.name, False, "", tuple(missing))
    return statuses[0]


def dataset_statuses(data_dir: str | os.PathLike | None = None) -> list[DatasetStatus]:
    """:func:`dataset_status` of every registered dataset, in registration order (what ``ticketlab data list``
    shows)."""
    return [dataset_status(name, data_dir) for name in DATASETS.names()]


def how_to_get(spec: DatasetSpec, data_dir: Path) -> str:
    """The hint ending a missing-dataset error: the download command, or the files to fetch by hand."""
    where = ", ".join(f"{f.name} (md5 {f.md5}) from {f.urls[0]}" for f in spec.files)
    return f"get them with: ticketlab data download {spec.name} --data-dir {data_dir} (or fetch {where} by hand)"


def missing_message(spec: DatasetSpec, status: DatasetStatus, searched: list[Path] | None) -> str:
    """The error of :func:`~ticketlab.datasets.load_dataset` for a dataset not (completely) in ``status.data_dir``:
    what is missing, where it was looked for, and how to get it."""
    what = FORMATS.get(spec.format).describe_missing(spec, status)
    looked = ""
    if searched is not None and len(searched) > 1:
        looked = f" (looked in {', '.join(str(p) for p in searched)}; set {DATA_ENV_VAR} or pass a data dir)"
    return f"dataset {spec.name!r} not found: {what}{looked}; {how_to_get(spec, status.data_dir)}"
