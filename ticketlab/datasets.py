"""Image-classification datasets: registry, raw-format readers, validation hold-out, augmentation, download.

Every dataset is read from its *published* raw files, without torchvision:

- MNIST, Fashion-MNIST and Kuzushiji-MNIST from IDX files (gzip-compressed or not; see :func:`read_idx`);
- CIFAR-10 and CIFAR-100 from the "python version" pickles, either extracted or straight from the
  ``.tar.gz`` archive, through a restricted unpickler that admits only what numpy arrays need
  (see :class:`RestrictedUnpickler`).

Files live in ``<data_dir>/<dataset name>/``; see :func:`data_dir_candidates` for how ``data_dir`` is
found when it is not given. :func:`load_dataset` returns in-memory tensors: images ``float32`` of shape
``(N, C, H, W)``, pixels scaled from 0..255 to [0, 1] and then standardised per channel with the dataset's
``mean``/``std`` (so a value is in units of that channel's standard deviation); labels ``int64`` class indices.

Registered datasets (see :func:`list_datasets`): ``mnist``, ``fashion_mnist``, ``kmnist``, ``cifar10``,
``cifar100``.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import http.client
import io
import math
import os
import pickle
import secrets
import struct
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

import ticketlab
from ticketlab._version import __version__
from ticketlab.errors import ConfigError

__all__ = [
    "DATA_ENV_VAR",
    "Dataset",
    "DatasetSpec",
    "DatasetStatus",
    "LTH_VALIDATION_SIZE",
    "RemoteFile",
    "RestrictedUnpickler",
    "augment_cifar",
    "data_dir_candidates",
    "dataset_status",
    "default_data_dir",
    "download",
    "file_md5",
    "get_dataset_spec",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "register_dataset",
    "restricted_loads",
    "validation_split",
]

#: Environment variable naming the data directory (takes precedence over the built-in locations).
DATA_ENV_VAR = "TICKETLAB_DATA"

#: Number of training images the lottery-ticket paper (Frankle & Carbin, 2019) holds out for validation.
LTH_VALIDATION_SIZE = 5000

_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------------------
# Specs and registry
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file a dataset is distributed as.

    Attributes
    ----------
    name : str
        File name as stored in ``<data_dir>/<dataset>/``, e.g. ``"train-images-idx3-ubyte.gz"``.
    md5 : str
        Published MD5 hex digest of the file (of the compressed file for ``.gz``/``.tar.gz``).
    urls : tuple of str
        Full download URLs, tried in order (official location first, then mirrors).
    """

    name: str
    md5: str
    urls: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of a dataset: shapes, classes, files and normalisation.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"cifar10"``; also the sub-folder of the data directory.
    title : str
        Human-readable name.
    input_shape : tuple of int
        ``(C, H, W)`` of one image: channels, height and width in pixels.
    num_classes : int
        Number of classes; labels are ``0 .. num_classes - 1``.
    class_names : tuple of str
        Name of each class, indexed by label.
    files : tuple of RemoteFile
        What :func:`download` fetches into ``<data_dir>/<name>/``.
    mean, std : tuple of float
        Per-channel mean and standard deviation of the training images after scaling pixels to [0, 1]
        (i.e. dividing the 0..255 values by 255). :func:`load_dataset` computes ``(x / 255 - mean) / std``.
    format : str
        Raw format and thus reader: ``"idx"`` or ``"cifar"``.
    train_members, test_members : tuple of str
        For ``"idx"``: ``(images file, labels file)`` of each split, names as in ``files``. For
        ``"cifar"``: the pickle files of each split inside ``folder``.
    train_size, test_size : int
        Number of images in the official training and test splits.
    folder : str or None
        For ``"cifar"``: the folder the archive extracts to (``"cifar-10-batches-py"``).
    label_key : str
        For ``"cifar"``: the dict key holding the labels (``"labels"``, or ``"fine_labels"`` for CIFAR-100).
    homepage, citation, licence : str
        Where the dataset is published, what to cite, and what is known about its licence.
    """

    name: str
    title: str
    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    format: str
    train_members: tuple[str, ...]
    test_members: tuple[str, ...]
    train_size: int
    test_size: int
    folder: str | None = None
    label_key: str = "labels"
    homepage: str = ""
    citation: str = ""
    licence: str = ""

    def __post_init__(self) -> None:
        channels = self.input_shape[0]
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ConfigError(f"dataset {self.name!r}: input_shape must be (C, H, W); got {self.input_shape}")
        if len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"dataset {self.name!r}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ConfigError(f"dataset {self.name!r}: mean and std need one value per channel ({channels}), std > 0")
        if self.format not in _READERS:
            raise ConfigError(
                f"dataset {self.name!r}: unknown format {self.format!r}; choose one of: {', '.join(_READERS)}"
            )

    @property
    def black(self) -> tuple[float, ...]:
        """Per-channel value of a black (0) pixel after normalisation, ``-mean / std``; a ``fill`` for
        :func:`augment_cifar` that reproduces padding with black before normalising."""
        return tuple(-m / s for m, s in zip(self.mean, self.std))


_REGISTRY: dict[str, DatasetSpec] = {}

#: Readers by format: ``reader(spec, dataset_dir) -> (train_images, train_labels, test_images, test_labels)``
#: with images uint8 ``(N, C, H, W)`` and labels int64 ``(N,)``.
_READERS: dict[str, Callable[[DatasetSpec, Path], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}


def register_dataset(factory: Callable[[], DatasetSpec]) -> Callable[[], DatasetSpec]:
    """Decorator: register the :class:`DatasetSpec` that ``factory()`` returns under its ``name``.

    Raises
    ------
    ConfigError
        If the name is already registered.
    """
    spec = factory()
    if spec.name in _REGISTRY:
        raise ConfigError(f"dataset {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return factory


def list_datasets() -> list[str]:
    """Names of the registered datasets, in registration order."""
    return list(_REGISTRY)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered as ``name`` (case-insensitive; ``-`` is read as ``_``).

    Raises
    ------
    ConfigError
        For an unknown name; the message lists the valid names.
    """
    key = str(name).strip().lower().replace("-", "_")
    try:
        return _REGISTRY[key]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(list_datasets())}") from None


def _reader(fmt: str):
    def decorate(fn):
        _READERS[fmt] = fn
        return fn

    return decorate


# --------------------------------------------------------------------------------------------------------
# Data directory
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Locating files
# --------------------------------------------------------------------------------------------------------


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


def _locate(spec: DatasetSpec, dataset_dir: Path) -> tuple[str, dict[str, Path], list[str]]:
    """Find a dataset's files: ``(source, {member: path}, missing)``; ``source`` is "" when incomplete."""
    if spec.format == "idx":
        found: dict[str, Path] = {}
        missing: list[str] = []
        for member in spec.train_members + spec.test_members:
            names = [member, member[: -len(".gz")]] if member.endswith(".gz") else [member]
            path = next((dataset_dir / n for n in names if (dataset_dir / n).is_file()), None)
            if path is None:
                missing.append(member)
            else:
                found[member] = path
        return ("files" if not missing else ""), found, missing
    # cifar: the extracted folder, else the archive
    folder = dataset_dir / str(spec.folder)
    members = spec.train_members + spec.test_members
    in_folder = {m: folder / m for m in members if (folder / m).is_file()}
    if len(in_folder) == len(members):
        return "folder", in_folder, []
    archive = dataset_dir / spec.files[0].name
    if archive.is_file():
        return "archive", {spec.files[0].name: archive}, []
    if folder.is_dir():
        return "", in_folder, [f"{spec.folder}/{m}" for m in members if m not in in_folder]
    return "", {}, [spec.files[0].name]


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
        or hashed: a present but corrupt file is only found by :func:`load_dataset`.
    """
    spec = get_dataset_spec(name)
    if data_dir is not None:
        candidates = [Path(data_dir).expanduser()]
    else:
        candidates = data_dir_candidates()
    statuses = []
    for root in candidates:
        source, _, missing = _locate(spec, root / spec.name)
        status = DatasetStatus(spec.name, root, root / spec.name, bool(source), source, tuple(missing))
        if status.present:
            return status
        statuses.append(status)
    for status in statuses:
        if status.dataset_dir.is_dir():
            return status
    if data_dir is None:
        root = default_data_dir()
        source, _, missing = _locate(spec, root / spec.name)
        return DatasetStatus(spec.name, root, root / spec.name, False, "", tuple(missing))
    return statuses[0]


def _how_to_get(spec: DatasetSpec, data_dir: Path) -> str:
    where = ", ".join(f"{f.name} (md5 {f.md5}) from {f.urls[0]}" for f in spec.files)
    return f"get them with: ticketlab data download {spec.name} --data-dir {data_dir} (or fetch {where} by hand)"


def _missing_message(spec: DatasetSpec, status: DatasetStatus, searched: list[Path] | None) -> str:
    ddir = status.dataset_dir
    if spec.format == "idx":
        what = (
            f"missing {len(status.missing)} of {len(spec.files)} files in {ddir}/: {', '.join(status.missing)} "
            f"(gzip-compressed, or uncompressed without the .gz suffix)"
        )
    else:
        members = ", ".join(spec.train_members + spec.test_members)
        folder = f"{ddir}/{spec.folder}/"
        archive = spec.files[0].name
        if (ddir / str(spec.folder)).is_dir():
            lacking = ", ".join(m.split("/", 1)[-1] for m in status.missing)
            what = f"{folder} lacks {lacking}; complete it, or put the archive {archive} in {ddir}/"
        else:
            what = f"put the archive {archive}, or its extracted folder {spec.folder}/ ({members}), in {ddir}/"
    looked = ""
    if searched is not None and len(searched) > 1:
        looked = f" (looked in {', '.join(str(p) for p in searched)}; set {DATA_ENV_VAR} or pass a data dir)"
    return f"dataset {spec.name!r} not found: {what}{looked}; {_how_to_get(spec, status.data_dir)}"


# --------------------------------------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if it starts with the gzip magic ``1f 8b``."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ConfigError(
                f"{path}: corrupt or truncated gzip data ({err}); delete the file and download it again"
            ) from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    An IDX file is big-endian: a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type: ``0x08``
    uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64; ``DD`` the
    number of dimensions), then one unsigned 32-bit size per dimension, then the elements in C order.
    MNIST image files have magic 2051 (``0x00000803``) and sizes ``(N, 28, 28)``; label files 2049
    (``0x00000801``) and size ``(N,)``.

    Parameters
    ----------
    path : path
        The file; gzip compression is detected from its first two bytes, not its name.

    Returns
    -------
    numpy.ndarray
        Writable array of the header's shape, in native byte order (uint8 for MNIST).

    Raises
    ------
    ConfigError
        Naming the file, for a bad magic number, a truncated header, or a data size that does not match the
        header (truncated file or trailing bytes).
    """
    path = Path(path)
    raw = _read_bytes(path)
    hint = "delete the file and download it again"
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        magic = raw[:4].hex() if len(raw) >= 4 else f"only {len(raw)} bytes"
        raise ConfigError(
            f"{path}: not an IDX file (magic number {magic}; expected 00 00 TT DD with element type TT in "
            f"08,09,0b,0c,0d,0e and DD >= 1 dimensions, e.g. 00000803 for images); {hint}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header}); {hint}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[raw[2]]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        problem = "truncated" if got < expected else "has trailing bytes"
        raise ConfigError(
            f"{path}: IDX data {problem}: header says shape {tuple(dims)} = {expected} bytes of data, "
            f"file has {got}; {hint}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _read_idx_split(spec: DatasetSpec, images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    _, h, w = spec.input_shape
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (h, w):
        raise ConfigError(
            f"{images_path}: expected an IDX image file of uint8 with shape (N, {h}, {w}); found "
            f"{images.dtype} with shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ConfigError(
            f"{labels_path}: expected an IDX label file of uint8 with shape (N,); found {labels.dtype} with "
            f"shape {labels.shape}"
        )
    if len(labels) != len(images):
        raise ConfigError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; the counts "
            f"must match — replace the files with a matching pair"
        )
    if len(labels) and int(labels.max()) >= spec.num_classes:
        raise ConfigError(
            f"{labels_path}: label {int(labels.max())} is out of range for {spec.num_classes} classes"
        )
    return images[:, None, :, :], labels.astype(np.int64)


@_reader("idx")
def _read_idx_dataset(spec: DatasetSpec, dataset_dir: Path):
    _, found, _ = _locate(spec, dataset_dir)
    train = _read_idx_split(spec, found[spec.train_members[0]], found[spec.train_members[1]])
    test = _read_idx_split(spec, found[spec.test_members[0]], found[spec.test_members[1]])
    return train + test


# --------------------------------------------------------------------------------------------------------
# CIFAR pickles
# --------------------------------------------------------------------------------------------------------


class _RefusedCall(pickle.UnpicklingError):
    """An admitted global called with arguments it is not admitted for."""


def _latin1_encode(obj, encoding: str = "utf-8"):
    """Stand-in for ``_codecs.encode`` in pickles: protocol-2 pickles written by Python 3 store ``bytes``
    as ``_codecs.encode(text, "latin1")``. Only that use is admitted."""
    if not isinstance(obj, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise _RefusedCall(f"_codecs.encode with encoding {encoding!r} (only latin-1 text is admitted)")
    return codecs.encode(obj, "latin-1")


def _numpy_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for pkg in ("numpy.core", "numpy._core"):
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{pkg}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild dicts, lists, strings, bytes, numbers and numpy arrays — nothing else.

    A pickle can name any importable callable and have it called while loading (``os.system`` via
    ``__reduce__``, for instance), so :meth:`find_class` admits only the numpy array machinery
    (``numpy.ndarray``, ``numpy.dtype``, ``numpy.core.multiarray._reconstruct`` / ``scalar``,
    ``numpy.core.numeric._frombuffer``, each also under its numpy 2 name ``numpy._core.…``) and a
    latin-1-only ``_codecs.encode``; the objects are returned directly, without importing anything. Every
    other global raises :class:`ConfigError` before anything is called.

    Parameters
    ----------
    file : binary file
        The pickle stream.
    source : str
        What the stream is (a file name), used in error messages.
    encoding : str
        How to decode Python 2 ``str`` objects; ``"latin1"`` (the default) is what numpy arrays pickled by
        Python 2 need.
    """

    def __init__(self, file, *, source: str = "<pickle>", encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise ConfigError(
                f"{self.source}: refusing to unpickle '{module}.{name}': a dataset file may only contain plain "
                f"data and numpy arrays, so this file is not a genuine dataset file (possibly malicious); "
                f"delete it and download it again"
            ) from None

    def persistent_load(self, pid):
        raise ConfigError(f"{self.source}: refusing a pickle with persistent ids; not a genuine dataset file")


def restricted_loads(data: bytes, source: str = "<pickle>"):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Raises
    ------
    ConfigError
        Naming ``source``, for a refused global or a corrupt/truncated pickle.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except ConfigError:
        raise
    except _RefusedCall as err:
        raise ConfigError(
            f"{source}: refusing to unpickle {err}: not a genuine dataset file; delete it and download it again"
        ) from None
    except Exception as err:  # corrupt pickles raise all sorts: UnpicklingError, EOFError, ValueError, ...
        raise ConfigError(
            f"{source}: corrupt or truncated pickle ({type(err).__name__}: {err}); delete it and download again"
        ) from None


def _get_key(obj: dict, key: str, source: str):
    for k in (key, key.encode("ascii")):
        if k in obj:
            return obj[k]
    raise ConfigError(f"{source}: not a CIFAR batch: no {key!r} entry (found keys {sorted(map(str, obj))[:8]})")


def _parse_cifar_batch(spec: DatasetSpec, blob: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    obj = restricted_loads(blob, source)
    if not isinstance(obj, dict):
        raise ConfigError(f"{source}: not a CIFAR batch: expected a dict, found {type(obj).__name__}")
    c, h, w = spec.input_shape
    data = _get_key(obj, "data", source)
    labels = _get_key(obj, spec.label_key, source)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != c * h * w:
        shape = getattr(data, "shape", None)
        raise ConfigError(
            f"{source}: 'data' must be a uint8 array of shape (N, {c * h * w}); found "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {shape}"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{source}: {spec.label_key!r} must be a list of integers") from None
    if labels.ndim != 1 or len(labels) != len(data):
        raise ConfigError(
            f"{source}: {len(data)} images but {labels.size} labels in {spec.label_key!r}; the counts must match"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise ConfigError(
            f"{source}: labels must be in 0..{spec.num_classes - 1}; found {labels.min()}..{labels.max()}"
        )
    return np.ascontiguousarray(data.reshape(-1, c, h, w)), labels


def _read_cifar_archive(spec: DatasetSpec, archive: Path) -> dict[str, bytes]:
    wanted = {f"{spec.folder}/{m}": m for m in spec.train_members + spec.test_members}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:
                name = info.name[2:] if info.name.startswith("./") else info.name
                if name in wanted and info.isfile():
                    fh = tar.extractfile(info)
                    blobs[wanted[name]] = fh.read() if fh is not None else b""
                    if len(blobs) == len(wanted):
                        break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ConfigError(f"{archive}: corrupt or truncated archive ({err}); delete it and download it again") from None
    lacking = [n for n, m in wanted.items() if m not in blobs]
    if lacking:
        raise ConfigError(f"{archive}: archive lacks {', '.join(lacking)}; delete it and download it again")
    return blobs


@_reader("cifar")
def _read_cifar_dataset(spec: DatasetSpec, dataset_dir: Path):
    source, found, _ = _locate(spec, dataset_dir)
    if source == "archive":
        archive = found[spec.files[0].name]
        blobs = _read_cifar_archive(spec, archive)
        where = {m: f"{archive}:{spec.folder}/{m}" for m in blobs}
    else:
        blobs = {}
        for member, path in found.items():
            try:
                blobs[member] = path.read_bytes()
            except OSError as err:
                raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
        where = {m: str(p) for m, p in found.items()}
    out = []
    for members in (spec.train_members, spec.test_members):
        parts = [_parse_cifar_batch(spec, blobs[m], where[m]) for m in members]
        out += [np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])]
    return tuple(out)


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class Dataset:
    """A dataset held in memory as tensors.

    Attributes
    ----------
    name : str
        Registry name.
    train_x, test_x : torch.Tensor
        float32 images ``(N, C, H, W)``. Pixels are scaled from 0..255 to [0, 1] and, when ``normalized``,
        standardised per channel: ``(x / 255 - spec.mean[c]) / spec.std[c]``.
    train_y, test_y : torch.Tensor
        int64 labels ``(N,)`` in ``0 .. num_classes - 1``.
    num_classes : int
        Number of classes.
    class_names : tuple of str
        Name of each class, indexed by label.
    spec : DatasetSpec
        The registry entry (shapes, files, normalisation constants).
    data_dir : Path
        The data directory the files were read from.
    normalized : bool
        Whether the per-channel standardisation was applied.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]
    spec: DatasetSpec
    data_dir: Path
    normalized: bool = True

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return self.spec.input_shape

    def holdout(
        self, n_val: int = LTH_VALIDATION_SIZE, seed: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split the training set into ``(train_x, train_y, val_x, val_y)`` with :func:`validation_split`."""
        train_idx, val_idx = validation_split(len(self.train_y), n_val, seed)
        tr, va = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
        return self.train_x[tr], self.train_y[tr], self.train_x[va], self.train_y[va]

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return (
            f"Dataset(name={self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
            f"input={shape}, classes={self.num_classes}, normalized={self.normalized})"
        )


def _to_float(images: np.ndarray, mean: Sequence[float], std: Sequence[float], normalize: bool) -> torch.Tensor:
    if not images.flags.writeable or not images.flags.c_contiguous:
        images = np.array(images, order="C")
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    if normalize:
        c = x.shape[1]
        x.sub_(torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        x.div_(torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))
    return x


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, normalize: bool = True) -> Dataset:
    """Load a registered dataset from its raw files into memory.

    Parameters
    ----------
    name : str
        Registered name (:func:`list_datasets`).
    data_dir : path, optional
        Directory holding ``<name>/``. When None, the candidates of :func:`data_dir_candidates`
        (``$TICKETLAB_DATA``, the repository's ``data/``, ``./data``) are searched in order for one holding
        the complete dataset.
    normalize : bool
        Standardise each channel with the spec's ``mean``/``std`` (default). When False, pixels are only
        scaled to [0, 1].

    Returns
    -------
    Dataset
        Tensors ``train_x``/``test_x`` float32 ``(N, C, H, W)`` and ``train_y``/``test_y`` int64 ``(N,)``.

    Raises
    ------
    ConfigError
        For an unknown name; for missing files (saying which files go where and how to get them:
        ``ticketlab data download NAME --data-dir DIR``); for a corrupt file (naming it).
    """
    spec = get_dataset_spec(name)
    status = dataset_status(spec.name, data_dir)
    if not status.present:
        searched = None if data_dir is not None else data_dir_candidates()
        raise ConfigError(_missing_message(spec, status, searched))
    train_img, train_lab, test_img, test_lab = _READERS[spec.format](spec, status.dataset_dir)
    return Dataset(
        name=spec.name,
        train_x=_to_float(train_img, spec.mean, spec.std, normalize),
        train_y=torch.from_numpy(np.ascontiguousarray(train_lab, dtype=np.int64)),
        test_x=_to_float(test_img, spec.mean, spec.std, normalize),
        test_y=torch.from_numpy(np.ascontiguousarray(test_lab, dtype=np.int64)),
        num_classes=spec.num_classes,
        class_names=spec.class_names,
        spec=spec,
        data_dir=status.data_dir,
        normalized=normalize,
    )


# --------------------------------------------------------------------------------------------------------
# Validation hold-out and augmentation
# --------------------------------------------------------------------------------------------------------


def _as_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{what} must be an integer; got {value!r}")
    return int(value)


def validation_split(n: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve a fixed random validation hold-out from a training set of ``n`` examples.

    The indices are a permutation drawn by ``numpy.random.default_rng(seed).permutation(n)`` (PCG64, the
    same on every platform): its first ``n_val`` entries are the validation set, the rest the training set.
    The lottery-ticket paper (Frankle & Carbin, 2019) holds out 5,000 training images
    (:data:`LTH_VALIDATION_SIZE`).

    Parameters
    ----------
    n : int
        Size of the full training set, ≥ 1.
    n_val : int
        Size of the hold-out, ``0 <= n_val < n``.
    seed : int
        Non-negative seed; the same seed always gives the same split.

    Returns
    -------
    train_idx, val_idx : numpy.ndarray
        Disjoint int64 index arrays, each sorted ascending, together covering ``0 .. n - 1``.

    Raises
    ------
    ConfigError
        For a non-integer or out-of-range argument.
    """
    n = _as_int(n, "n")
    n_val = _as_int(n_val, "n_val")
    seed = _as_int(seed, "seed")
    if n < 1:
        raise ConfigError(f"n must be at least 1; got {n}")
    if not 0 <= n_val < n:
        raise ConfigError(f"validation size n_val must be in 0..{n - 1} (the training set has {n}); got {n_val}")
    if seed < 0:
        raise ConfigError(f"seed must be non-negative; got {seed}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def augment_cifar(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    padding: int = 4,
    flip: bool = True,
    fill: float | Sequence[float] = 0.0,
) -> torch.Tensor:
    """Standard CIFAR augmentation of a batch: random crop after padding, and random horizontal flip.

    Each image is padded by ``padding`` pixels on every side with ``fill``, a window of the original size is
    cut at a uniformly random offset (``0 .. 2 * padding`` in each direction), and with probability 1/2 the
    window is mirrored left-right. Everything is done with one gather over the batch, no per-image loop.

    Parameters
    ----------
    x : torch.Tensor
        Batch ``(N, C, H, W)`` of any float dtype and device; not modified.
    generator : torch.Generator, optional
        Source of randomness; the same generator state gives the same output. The draws are, in order,
        ``N`` vertical offsets, ``N`` horizontal offsets and ``N`` flip decisions, made on the generator's
        device. None uses torch's default CPU generator.
    padding : int
        Pixels of padding per side (4 for the usual CIFAR recipe); 0 disables cropping.
    flip : bool
        Whether to apply random horizontal flips.
    fill : float or sequence of float
        Padding value, scalar or one per channel, in the units of ``x``. For normalised data, 0 pads with the
        mean colour; ``DatasetSpec.black`` pads with black, as torchvision's crop before normalising does.

    Returns
    -------
    torch.Tensor
        New tensor of the same shape, dtype and device as ``x``.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ConfigError(f"augment_cifar expects a tensor of shape (N, C, H, W); got {getattr(x, 'shape', type(x))}")
    p = _as_int(padding, "padding")
    if p < 0:
        raise ConfigError(f"padding must be non-negative; got {p}")
    n, c, h, w = x.shape
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).flatten()
    if fill_t.numel() not in (1, c):
        raise ConfigError(f"fill must be a scalar or one value per channel ({c}); got {fill_t.numel()} values")
    gdev = generator.device if generator is not None else torch.device("cpu")
    oy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=gdev).to(x.device)
    ox = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=gdev).to(x.device)
    mirror = (torch.rand(n, generator=generator, device=gdev) < 0.5).to(x.device)
    padded = x.new_empty((n, c, h + 2 * p, w + 2 * p))
    padded[:] = fill_t.view(1, -1, 1, 1)
    padded[:, :, p : p + h, p : p + w] = x
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (N, H) rows of the padded image
    cols = ox[:, None] + torch.arange(w, device=x.device)  # (N, W) columns of the padded image
    if flip:
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # advanced indices first: (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------------------


def file_md5(path: str | os.PathLike) -> str:
    """MD5 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _FetchError(Exception):
    pass


def _fetch(url: str, dest: Path, md5: str, progress: bool) -> None:
    """Download ``url`` to a temporary file beside ``dest``, check its md5, then rename it to ``dest``."""
    # a fresh name, created exclusively, with the permissions the umask gives (mkstemp would make it 0600)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        out = open(tmp, "xb")
    except OSError as err:
        raise ConfigError(f"cannot write {tmp}: {err.strerror or err}; choose another --data-dir") from None
    try:
        digest = hashlib.md5(usedforsecurity=False)
        done = 0
        tty = progress and sys.stderr.isatty()
        with out:
            request = urllib.request.Request(url, headers={"User-Agent": f"ticketlab/{__version__}"})
            try:
                with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
                    total = int(resp.headers.get("Content-Length") or 0)
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if tty:
                            of = f" / {total / 1e6:.1f}" if total else ""
                            print(f"\r  {dest.name}: {done / 1e6:.1f}{of} MB", end="", file=sys.stderr, flush=True)
            except urllib.error.HTTPError as err:
                raise _FetchError(f"HTTP error {err.code} {err.reason}") from None
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
                reason = getattr(err, "reason", None) or err
                raise _FetchError(f"{type(err).__name__}: {reason}") from None
            finally:
                if tty:
                    print(file=sys.stderr)
        got = digest.hexdigest()
        if got != md5:
            raise _FetchError(f"checksum mismatch: md5 {got}, expected {md5} ({done} bytes received)")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download(
    name: str,
    data_dir: str | os.PathLike | None = None,
    base_url: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Download a dataset's files into ``<data_dir>/<name>/``, verifying each file's md5.

    Each file is streamed with ``urllib`` to a temporary name in the target folder (``<file>.tmp-…``),
    its md5 is compared with the published one, and only then is it renamed into place, so an interrupted
    or corrupted download never leaves a file under the final name. Files already present with the right
    md5 are skipped; a present file with a wrong md5 is replaced. CIFAR archives are kept as ``.tar.gz``
    (:func:`load_dataset` reads them directly).

    Parameters
    ----------
    name : str
        Registered dataset name.
    data_dir : path, optional
        Data directory; default :func:`default_data_dir`. Created if needed.
    base_url : str, optional
        Fetch ``<base_url>/<file name>`` instead of the official URLs (a mirror, or a local server in
        tests); ``http``, ``https`` or ``file`` URLs.
    progress : bool
        Print what is fetched, and a byte counter when stderr is a terminal, to stderr.

    Returns
    -------
    list of Path
        The dataset's files, in the order of ``spec.files``.

    Raises
    ------
    ConfigError
        When a file cannot be fetched from any of its URLs or none of the downloads has the right md5 (the
        temporary file is deleted), or the target folder cannot be created.
    """
    spec = get_dataset_spec(name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if base_url is not None:
        scheme = urllib.parse.urlparse(str(base_url)).scheme
        if scheme not in ("http", "https", "file"):
            raise ConfigError(f"base URL must be an http, https or file URL; got {base_url!r}")
    target = root / spec.name
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {target}: {err.strerror or err}; choose another --data-dir") from None
    paths = []
    for remote in spec.files:
        dest = target / remote.name
        if dest.is_file():
            if file_md5(dest) == remote.md5:
                if progress:
                    print(f"{spec.name}/{remote.name}: already present, md5 ok", file=sys.stderr)
                paths.append(dest)
                continue
            if progress:
                print(f"{spec.name}/{remote.name}: present but md5 differs; downloading again", file=sys.stderr)
        urls = [str(base_url).rstrip("/") + "/" + remote.name] if base_url is not None else list(remote.urls)
        failures = []
        for url in urls:
            if progress:
                print(f"{spec.name}/{remote.name}: downloading {url}", file=sys.stderr)
            try:
                _fetch(url, dest, remote.md5, progress)
            except _FetchError as err:
                failures.append(f"{url}: {err}")
                if progress:
                    print(f"  failed: {err}", file=sys.stderr)
                continue
            break
        else:
            raise ConfigError(
                f"could not download {remote.name} for {spec.name} ({'; '.join(failures)}); nothing was saved "
                f"under {target}. Try again later or pass --base-url of a mirror that serves {remote.name}"
            )
        paths.append(dest)
    return paths


# --------------------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------------------

_IDX_TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
_IDX_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx_files(bases: Sequence[str], md5s: Sequence[str]) -> tuple[RemoteFile, ...]:
    names = _IDX_TRAIN + _IDX_TEST
    return tuple(RemoteFile(n, m, tuple(b + n for b in bases)) for n, m in zip(names, md5s))


@register_dataset
def _mnist() -> DatasetSpec:
    """MNIST handwritten digits (LeCun, Cortes & Burges); ships with the repository."""
    return DatasetSpec(
        name="mnist",
        title="MNIST handwritten digits",
        input_shape=(1, 28, 28),
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        files=_idx_files(
            ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
            (
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
        ),
        mean=(0.1307,),
        std=(0.3081,),
        format="idx",
        train_members=_IDX_TRAIN,
        test_members=_IDX_TEST,
        train_size=60000,
        test_size=10000,
        homepage="http://yann.lecun.com/exdb/mnist/",
        citation="Y. LeCun, L. Bottou, Y. Bengio, P. Haffner: Gradient-based learning applied to document "
        "recognition. Proc. IEEE 86(11), 1998.",
        licence="no licence stated by the publishers; some redistributors label it CC BY-SA 3.0",
    )


@register_dataset
def _fashion_mnist() -> DatasetSpec:
    """Fashion-MNIST (Zalando Research): 28x28 grey-scale clothing images, a drop-in for MNIST."""
    return DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        input_shape=(1, 28, 28),
        num_classes=10,
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),  # fmt: skip
        files=_idx_files(
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        ),
        mean=(0.2860,),
        std=(0.3530,),
        format="idx",
        train_members=_IDX_TRAIN,
        test_members=_IDX_TEST,
        train_size=60000,
        test_size=10000,
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        citation="H. Xiao, K. Rasul, R. Vollgraf: Fashion-MNIST: a novel image dataset for benchmarking machine "
        "learning algorithms. arXiv:1708.07747, 2017.",
        licence="MIT",
    )


@register_dataset
def _kmnist() -> DatasetSpec:
    """Kuzushiji-MNIST (ROIS-DS CODH): 28x28 images of ten cursive Japanese (hiragana) characters."""
    return DatasetSpec(
        name="kmnist",
        title="Kuzushiji-MNIST",
        input_shape=(1, 28, 28),
        num_classes=10,
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        files=_idx_files(
            ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            (
                "bdb82020997e1d708af4cf47b453dcf7",
                "e144d726b3acfaa3e44228e80efcd344",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                "7320c461ea6c1c855c0b718fb2a4b134",
            ),
        ),
        mean=(0.1918,),
        std=(0.3483,),
        format="idx",
        train_members=_IDX_TRAIN,
        test_members=_IDX_TEST,
        train_size=60000,
        test_size=10000,
        homepage="https://github.com/rois-codh/kmnist",
        citation="T. Clanuwat, M. Bober-Irizar, A. Kitamoto, A. Lamb, K. Yamamoto, D. Ha: Deep learning for "
        "classical Japanese literature. arXiv:1812.01718, 2018.",
        licence="CC BY-SA 4.0",
    )


_CIFAR_BASE = "https://www.cs.toronto.edu/~kriz/"
_CIFAR_CITATION = (
    "A. Krizhevsky: Learning multiple layers of features from tiny images. Technical report, University of "
    "Toronto, 2009."
)


@register_dataset
def _cifar10() -> DatasetSpec:
    """CIFAR-10 (Krizhevsky, Nair & Hinton): 32x32 colour images in 10 classes, python version."""
    return DatasetSpec(
        name="cifar10",
        title="CIFAR-10",
        input_shape=(3, 32, 32),
        num_classes=10,
        class_names=(
            "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
        ),  # fmt: skip
        files=(
            RemoteFile(
                "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", (_CIFAR_BASE + "cifar-10-python.tar.gz",)
            ),
        ),
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        format="cifar",
        train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_members=("test_batch",),
        train_size=50000,
        test_size=10000,
        folder="cifar-10-batches-py",
        label_key="labels",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        citation=_CIFAR_CITATION,
        licence="no licence stated by the publishers; cite the technical report",
    )


_CIFAR100_CLASSES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
    man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
    pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
    tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
)


@register_dataset
def _cifar100() -> DatasetSpec:
    """CIFAR-100 (Krizhevsky, Nair & Hinton): 32x32 colour images in 100 fine classes, python version."""
    return DatasetSpec(
        name="cifar100",
        title="CIFAR-100",
        input_shape=(3, 32, 32),
        num_classes=100,
        class_names=_CIFAR100_CLASSES,
        files=(
            RemoteFile(
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
                (_CIFAR_BASE + "cifar-100-python.tar.gz",),
            ),
        ),
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        format="cifar",
        train_members=("train",),
        test_members=("test",),
        train_size=50000,
        test_size=10000,
        folder="cifar-100-python",
        label_key="fine_labels",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        citation=_CIFAR_CITATION,
        licence="no licence stated by the publishers; cite the technical report",
    )
