"""What the objects of a ticket file must satisfy, checked whenever they are read.

:class:`~ticketlab.store.TicketFile` reads every object through these functions (built on the primitives of
:mod:`ticketlab.store.checks`), so that nothing inconsistent is used or allocated:

- the tensor table (``/model``): names unique, kinds known, every dimension an integer in [0, 2**32) and at most
  2**40 weights per tensor, multiplied with Python integers before any array of that size exists;
- ``/dataset``: a number of classes ≥ 1, one name per class, test labels in [0, C);
- levels: named by their number, ``kept`` one count per tensor in [0, size], the group's ``kept`` / ``size`` /
  ``density`` equal to what the counts and the tensor table give, every packed mask of ``ceil(size / 8)`` bytes
  and its popcount equal to its stored kept count ("kept says N but the mask has M");
- weights: dense ones of the tensor's shape, kept values exactly as many as the mask keeps;
- evaluations: accuracy in [0, 1], loss ≥ 0, iterations ≥ 0, and the confusion matrix, per-class accuracy and
  accuracy equal to what the predictions and the test labels give.

``docs/reliability.md`` lists these checks per reader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ticketlab.errors import TicketFileError
from ticketlab.evaluation import Evaluation
from ticketlab.masks import TENSOR_KINDS, TensorInfo, popcount
from ticketlab.store.checks import (_describe, _detail, attr, child, fail, int_array_attr, keys, plain, read,
                                    read_strings)
from ticketlab.store.schema import STATUSES, DatasetInfo

#: Bounds of the tensor table: dimensions below 2**32, at most 2**40 weights per tensor, 32 dimensions.
MAX_DIM = 1 << 32
MAX_TENSOR_SIZE = 1 << 40
MAX_NDIM = 32
#: Levels are named 0, 1, 2, ... (decimal, no leading zeros), below 2**31.
MAX_LEVEL = (1 << 31) - 1
_LEVEL_NAME = re.compile(r"0|[1-9][0-9]{0,9}")

# ----------------------------------------------------------------------------------------------------------
# The tensor table


def tensor_table(path: Path, f: h5py.File) -> list[TensorInfo]:
    """``/model``: names, kinds, shapes and pruned flags, all checked before any shape is used."""
    g = child(path, f, "model", h5py.Group)
    names_d = child(path, g, "names", h5py.Dataset)
    if names_d.shape is None or len(names_d.shape) != 1 or names_d.shape[0] > 1 << 20:
        raise fail(path, names_d, f"has shape {names_d.shape}; expected one name per tensor")
    n = int(names_d.shape[0])
    names = read_strings(path, names_d, n)
    kinds = read_strings(path, child(path, g, "kinds", h5py.Dataset), n)
    shapes_d = child(path, g, "shapes", h5py.Dataset)
    base = h5py.check_vlen_dtype(shapes_d.dtype)
    if base is None or np.dtype(base).kind not in "iu":
        raise fail(path, shapes_d, f"has dtype {shapes_d.dtype}; expected variable-length integer shapes")
    shapes = read(path, shapes_d, shape=(n,), kinds="O")
    pruned = read(path, child(path, g, "pruned", h5py.Dataset), shape=(n,), kinds="biu")
    tensors, seen = [], set()
    for i, (name, kind, shape, flag) in enumerate(zip(names, kinds, shapes, pruned)):
        label = f"tensor {i} ({name!r})"
        if not name or "/" in name or name in seen:
            raise fail(path, names_d, f"{label}: names must be unique, non-empty and without '/'")
        seen.add(name)
        if kind not in TENSOR_KINDS:
            raise fail(path, g["kinds"], f"{label} has kind {kind!r}; expected one of {', '.join(TENSOR_KINDS)}")
        shape = np.asarray(shape)
        if shape.ndim != 1 or shape.dtype.kind not in "iu" or shape.size > MAX_NDIM:
            raise fail(path, shapes_d, f"{label} has shape {_describe(shape)}; expected at most {MAX_NDIM} integers")
        dims = [int(s) for s in shape]
        size = 1
        for s in dims:
            if not 0 <= s < MAX_DIM:
                raise fail(path, shapes_d, f"{label} has dimension {s}; dimensions lie in [0, 2**32)")
            size *= s
        if size > MAX_TENSOR_SIZE:
            raise fail(path, shapes_d, f"{label} has shape {dims}: {size:,} weights, more than 2**40")
        if int(flag) not in (0, 1):
            raise fail(path, g["pruned"], f"{label} has flag {int(flag)}; expected 0 or 1")
        tensors.append(TensorInfo(name, tuple(dims), kind, bool(flag)))
    return tensors


def dataset_info(path: Path, f: h5py.File) -> DatasetInfo | None:
    """``/dataset``: name, number of classes, class names and test labels (each label in [0, C))."""
    g = child(path, f, "dataset", h5py.Group, required=False)
    if g is None:
        return None
    name = attr(path, g, "name", "str")
    c = int(attr(path, g, "num_classes", "int", lo=1, hi=(1 << 31) - 1))
    d = child(path, g, "class_names", h5py.Dataset, required=False)
    names = () if d is None else tuple(read_strings(path, d, c))
    labels = None
    d = child(path, g, "test_labels", h5py.Dataset, required=False)
    if d is not None:
        labels = read(path, d, ndim=1, kinds="iu").astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= c):
            raise fail(path, d, f"holds labels outside [0, {c})")
    return DatasetInfo(name, c, names, labels)


# ----------------------------------------------------------------------------------------------------------
# Attributes of the root and of level and branch groups

#: Root attributes with a defined type (docs/format.md); any other root attribute is shown as found.
_ROOT_STR = ("format", "status", "created", "updated", "model", "method")
_ROOT_INT = ("schema_version", "seed")
#: Attributes of level and branch groups with a defined type (integers: their lower bound).
_GROUP_INT = {"level": 0, "kept": 0, "size": 0, "seed": -1}
_GROUP_STR = ("created", "kind", "description", "source")


def root_attrs(path: Path, f: h5py.File) -> dict[str, Any]:
    """Every root attribute, those of the format checked for type (and ``status`` for its values)."""
    out = {}
    for k in keys_of_attrs(path, f):
        if k in _ROOT_STR or (k.endswith("_version") and k != "schema_version"):
            out[k] = attr(path, f, k, "str")
        elif k in _ROOT_INT:
            out[k] = attr(path, f, k, "int")
        else:
            out[k] = plain(f.attrs[k])
    if "status" in out:
        status(path, out["status"])
    return out


def status(path: Path, value: str) -> str:
    if value not in STATUSES:
        raise TicketFileError(f"{path}: root attribute 'status' is {value[:40]!r}; expected one of "
                              f"{', '.join(STATUSES)}")
    return value


def group_attrs(path: Path, g: h5py.Group) -> dict[str, Any]:
    """A level's or branch's attributes, those of the format checked for type and range."""
    out = {}
    for k in keys_of_attrs(path, g):
        if k in _GROUP_INT:
            out[k] = attr(path, g, k, "int", lo=_GROUP_INT[k])
        elif k == "density":
            out[k] = attr(path, g, k, "float", lo=0.0, hi=1.0, nan=True)
        elif k in _GROUP_STR:
            out[k] = attr(path, g, k, "str")
        else:
            out[k] = plain(g.attrs[k])
    return out


def keys_of_attrs(path: Path, obj: Any) -> list[str]:
    try:
        return list(obj.attrs.keys())
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as err:
        raise fail(path, obj, f"cannot list its attributes; the file is truncated or corrupted ({_detail(err)})"
                   ) from None


# ----------------------------------------------------------------------------------------------------------
# Checksums

#: Objects whose data carries a fletcher32 checksum in files written since checksums were introduced.
_CHECKSUMMED = re.compile(r"levels/.*|weights/.*|dataset/test_labels")


def checksum_census(path: Path, f: h5py.File) -> tuple[int, int, str | None]:
    """(datasets that should carry a checksum, how many do not, the first of those) — masks, kept counts,
    weights, evaluations and test labels; scalar and empty datasets cannot carry one and are not counted."""
    found: list[tuple[str, bool]] = []

    def visit(raw_name: bytes, info: Any) -> None:
        name = raw_name.decode("utf-8", errors="replace")
        if info.type != h5py.h5o.TYPE_DATASET or not _CHECKSUMMED.fullmatch(name):
            return None
        ds = h5py.h5d.open(f.id, raw_name)
        space = ds.get_space()
        if space.get_simple_extent_ndims() and space.get_simple_extent_npoints():
            dcpl = ds.get_create_plist()
            filters = {dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())}
            found.append((name, h5py.h5z.FILTER_FLETCHER32 in filters))
        return None

    try:  # the low-level walk: a third of the time of visititems, which builds a Python object per member
        h5py.h5o.visit(f.id, visit, info=True)
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as err:
        raise fail(path, f, f"cannot list its objects; the file is truncated or corrupted ({_detail(err)})") from None
    missing = [name for name, ok in found if not ok]
    return len(found), len(missing), (missing[0] if missing else None)


# ----------------------------------------------------------------------------------------------------------
# Levels: names, kept counts, masks


def level_numbers(path: Path, levels: Any) -> list[int]:
    """The level numbers of ``/levels``, in increasing order; every member must be named by an integer."""
    out = []
    for key in keys(path, levels):
        if not _LEVEL_NAME.fullmatch(key) or int(key) > MAX_LEVEL:
            raise fail(path, levels, f"holds {key[:40]!r}, which is not a level number (levels are 0, 1, 2, ...)")
        out.append(int(key))
    return sorted(out)


def check_level_group(path: Path, g: Any, level: int) -> None:
    """A level group's own ``level`` attribute, where present, agrees with its name."""
    value = attr(path, g, "level", "int", None)
    if value is not None and value != level:
        raise fail(path, g, f"attribute 'level' is {value} but the group is level {level}")


def read_kept(path: Path, g: Any, tensors: list[TensorInfo]) -> np.ndarray:
    """The ``kept`` dataset of a level or branch: one count per tensor, each in [0, size]."""
    d = child(path, g, "kept", h5py.Dataset)
    raw = read(path, d, shape=(len(tensors),), kinds="iu")
    counts = [int(k) for k in raw]
    for t, k in zip(tensors, counts):
        if not 0 <= k <= t.size:
            raise fail(path, d, f"tensor {t.name!r}: kept {k} is outside [0, {t.size}]")
    return np.asarray(counts, dtype=np.int64)


def check_level_attrs(path: Path, g: Any, kept: np.ndarray, tensors: list[TensorInfo]) -> tuple[int, int]:
    """The group's ``kept``, ``size`` and ``density`` attributes against its counts and the tensor table."""
    size = sum(t.size for t in tensors)
    total = int(kept.sum())
    a_size = attr(path, g, "size", "int")
    if a_size != size:
        raise fail(path, g, f"attribute 'size' is {a_size} but the tensors hold {size} weights")
    a_kept = attr(path, g, "kept", "int")
    if a_kept != total:
        raise fail(path, g, f"attribute 'kept' is {a_kept} but the per-tensor counts add up to {total}")
    dens = attr(path, g, "density", "float", None, lo=0.0, hi=1.0, nan=True)
    want = total / size if size else float("nan")
    if dens is not None and not (np.isnan(dens) and np.isnan(want)) and not abs(dens - want) <= 1e-9:
        raise fail(path, g, f"attribute 'density' is {dens} but kept/size is {want}")
    return total, size


def read_packed(path: Path, masks: Any, t: TensorInfo) -> tuple[Any, np.ndarray]:
    """One tensor's packed mask (``ceil(size / 8)`` uint8), checked against the tensor table."""
    d = child(path, masks, t.name, h5py.Dataset)
    nbytes = -(-t.size // 8)
    if d.dtype != np.uint8:
        raise fail(path, d, f"has dtype {d.dtype}; a packed mask is uint8")
    return d, read(path, d, shape=(nbytes,), kinds="u")


def check_bits(path: Path, d: Any, packed: np.ndarray, t: TensorInfo, kept: int) -> None:
    """The stored kept count of a tensor equals the set bits of its mask."""
    bits = popcount(packed, t.size)
    if bits != kept:
        raise fail(path, d, f"kept says {kept} but the mask has {bits}")


# ----------------------------------------------------------------------------------------------------------
# Weights


def read_weight(path: Path, d: Any, tensor: TensorInfo | None, mask: np.ndarray | None) -> np.ndarray:
    """One weight dataset, expanded to its full shape when stored as kept values (``mask``: the tensor's
    boolean mask, needed for that layout)."""
    layout = attr(path, d, "layout", "str", None)
    if layout is None:
        if tensor is not None and d.shape != tensor.shape:
            raise fail(path, d, f"has shape {d.shape} but model/shapes says {list(tensor.shape)}")
        return read(path, d)
    if layout != "kept_values":
        raise fail(path, d, f"attribute 'layout' is {layout!r}; expected 'kept_values' or none")
    shape = int_array_attr(path, d, "shape")
    if tensor is None or mask is None:
        raise fail(path, d, "is stored as kept values but no mask of that name is stored beside it")
    if shape != tensor.shape:
        raise fail(path, d, f"attribute 'shape' is {list(shape)} but model/shapes says {list(tensor.shape)}")
    values = read(path, d, shape=(int(np.count_nonzero(mask)),))
    full = np.zeros(shape, dtype=values.dtype)
    full[mask] = values
    return full


# ----------------------------------------------------------------------------------------------------------
# Evaluations


def eval_numbers(path: Path, e: Any) -> dict[str, Any]:
    """The headline attributes of an ``eval`` group, each checked against its definition."""
    es = int(attr(path, e, "early_stop_iteration", "int", lo=-1))
    return {
        "accuracy": attr(path, e, "accuracy", "float", lo=0.0, hi=1.0, nan=True),
        "loss": attr(path, e, "loss", "float", lo=0.0, nan=True, inf=True),
        "early_stop_iteration": None if es < 0 else es,
        "iterations": int(attr(path, e, "iterations", "int", lo=0)),
        "wall_time": attr(path, e, "wall_time", "float", lo=0.0, nan=True),
    }


def has_predictions(path: Path, e: Any) -> bool:
    """Whether an ``eval`` group is a full evaluation (predictions, confusion, per-class accuracy) rather than
    logged metrics; a group with some of the three but not predictions is damaged."""
    present = [n for n in ("predictions", "confusion", "per_class_accuracy")
               if child(path, e, n, h5py.Dataset, required=False) is not None]
    if present and "predictions" not in present:
        raise fail(path, e, f"has {present[0]} but no predictions")
    return bool(present)


def read_curve(path: Path, e: Any) -> dict[str, np.ndarray]:
    g = child(path, e, "curve", h5py.Group, required=False)
    if g is None:
        return {}
    out: dict[str, np.ndarray] = {}
    for name in keys(path, g):
        d = child(path, g, name, h5py.Dataset)
        out[name] = read(path, d, ndim=1)
    lengths = {v.size for v in out.values()}
    if len(lengths) > 1:
        raise fail(path, g, f"columns have different lengths {sorted(lengths)}")
    return out


def read_evaluation(path: Path, e: Any, numbers: dict[str, Any], dataset: DatasetInfo | None) -> Evaluation:
    """A full evaluation: predictions, confusion and per-class accuracy, checked against each other, the test
    labels and the stored accuracy, so that no derived number can disagree with the predictions."""
    pd_ = child(path, e, "predictions", h5py.Dataset)
    preds = read(path, pd_, ndim=1, kinds="iu").astype(np.int64)
    cd = child(path, e, "confusion", h5py.Dataset)
    conf = read(path, cd, ndim=2, kinds="iu")
    c = conf.shape[0]
    if conf.shape != (c, c) or c == 0:
        raise fail(path, cd, f"has shape {conf.shape}; expected a square matrix")
    if dataset is not None and c != dataset.num_classes:
        raise fail(path, cd, f"has {c} classes but dataset says {dataset.num_classes}")
    if preds.size and (preds.min() < 0 or preds.max() >= c):
        raise fail(path, pd_, f"holds predicted classes outside [0, {c})")
    labels = None if dataset is None else dataset.test_labels
    if labels is not None:
        if labels.size != preds.size:
            raise fail(path, pd_, f"has {preds.size} predictions but dataset/test_labels has {labels.size}")
        want = np.bincount(labels * c + preds, minlength=c * c).reshape(c, c)
        if not np.array_equal(conf, want):
            raise fail(path, cd, "does not match the predictions and dataset/test_labels")
    elif conf.min() < 0 or not np.array_equal(conf.sum(axis=0), np.bincount(preds, minlength=c)):
        raise fail(path, cd, "does not match the predictions")
    ev = Evaluation(loss=numbers["loss"], predictions=preds, confusion=conf.astype(np.int64),
                    curve=read_curve(path, e), early_stop_iteration=numbers["early_stop_iteration"],
                    iterations=numbers["iterations"], wall_time=numbers["wall_time"])
    pca_d = child(path, e, "per_class_accuracy", h5py.Dataset, required=False)
    if pca_d is not None:
        pca = read(path, pca_d, shape=(c,), kinds="f")
        if not np.allclose(pca, ev.per_class_accuracy, rtol=0, atol=1e-9, equal_nan=True):
            raise fail(path, pca_d, "does not match the confusion matrix")
    acc, want_acc = numbers["accuracy"], ev.accuracy
    if not (np.isnan(acc) and np.isnan(want_acc)) and not abs(acc - want_acc) <= 1e-9:
        raise fail(path, e, f"attribute 'accuracy' is {acc} but the predictions give {want_acc}")
    return ev
