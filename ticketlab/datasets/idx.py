"""The IDX format (MNIST, Fashion-MNIST, Kuzushiji-MNIST): :func:`read_idx`, and the ``"idx"`` raw format
(four files, gzip-compressed or not: images and labels of the training and test splits)."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ticketlab.datasets.registry import FORMATS, DatasetSpec, RawFormat
from ticketlab.errors import ConfigError

if TYPE_CHECKING:
    from ticketlab.datasets.location import DatasetStatus

__all__ = ["read_idx"]

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


def _read_idx_dataset(spec: DatasetSpec, dataset_dir: Path):
    _, found, _ = _locate_idx(spec, dataset_dir)
    train = _read_idx_split(spec, found[spec.train_members[0]], found[spec.train_members[1]])
    test = _read_idx_split(spec, found[spec.test_members[0]], found[spec.test_members[1]])
    return train + test


def _locate_idx(spec: DatasetSpec, dataset_dir: Path) -> tuple[str, dict[str, Path], list[str]]:
    """Each member file, gzip-compressed (its name) or not (its name without ``.gz``)."""
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


def _describe_missing_idx(spec: DatasetSpec, status: "DatasetStatus") -> str:
    return (
        f"missing {len(status.missing)} of {len(spec.files)} files in {status.dataset_dir}/: "
        f"{', '.join(status.missing)} (gzip-compressed, or uncompressed without the .gz suffix)"
    )


FORMATS.register("idx", RawFormat("idx", _locate_idx, _read_idx_dataset, _describe_missing_idx))
