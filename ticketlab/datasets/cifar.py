"""The CIFAR "python version" format (CIFAR-10, CIFAR-100): the pickled batches, read either from the extracted
folder or straight from the ``.tar.gz`` archive, through :class:`RestrictedUnpickler`, which admits only what
numpy arrays need, never arbitrary code."""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ticketlab.datasets.registry import FORMATS, DatasetSpec, RawFormat
from ticketlab.errors import ConfigError

if TYPE_CHECKING:
    from ticketlab.datasets.location import DatasetStatus

__all__ = ["RestrictedUnpickler", "restricted_loads"]


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


def _read_cifar_dataset(spec: DatasetSpec, dataset_dir: Path):
    source, found, _ = _locate_cifar(spec, dataset_dir)
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


def _locate_cifar(spec: DatasetSpec, dataset_dir: Path) -> tuple[str, dict[str, Path], list[str]]:
    """The extracted folder when it holds every batch, else the archive."""
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


def _describe_missing_cifar(spec: DatasetSpec, status: "DatasetStatus") -> str:
    ddir = status.dataset_dir
    members = ", ".join(spec.train_members + spec.test_members)
    folder = f"{ddir}/{spec.folder}/"
    archive = spec.files[0].name
    if (ddir / str(spec.folder)).is_dir():
        lacking = ", ".join(m.split("/", 1)[-1] for m in status.missing)
        return f"{folder} lacks {lacking}; complete it, or put the archive {archive} in {ddir}/"
    return f"put the archive {archive}, or its extracted folder {spec.folder}/ ({members}), in {ddir}/"


FORMATS.register("cifar", RawFormat("cifar", _locate_cifar, _read_cifar_dataset, _describe_missing_cifar))
