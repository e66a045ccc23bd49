"""What a dataset is, and how it is found by name: :class:`DatasetSpec` (with its :class:`RemoteFile` s), the
dataset registry :data:`DATASETS`, and the registry of raw formats :data:`FORMATS`.

A raw format (:class:`RawFormat`) carries the behaviour that depends on how a dataset is published: how its
files are found in ``<data_dir>/<name>/``, how they are read, and what to say when some are missing. The IDX
format is registered in :mod:`ticketlab.datasets.idx`, the CIFAR pickles in :mod:`ticketlab.datasets.cifar`; the
datasets themselves in :mod:`ticketlab.datasets.catalogue`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ticketlab.errors import ConfigError
from ticketlab.registry import Registry

if TYPE_CHECKING:
    from ticketlab.datasets.location import DatasetStatus

__all__ = [
    "DATASETS",
    "FORMATS",
    "DatasetSpec",
    "RawFormat",
    "RemoteFile",
    "get_dataset_spec",
    "list_datasets",
    "register_dataset",
]


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
        What :func:`~ticketlab.datasets.download` fetches into ``<data_dir>/<name>/``.
    mean, std : tuple of float
        Per-channel mean and standard deviation of the training images after scaling pixels to [0, 1]
        (i.e. dividing the 0..255 values by 255). :func:`~ticketlab.datasets.load_dataset` computes
        ``(x / 255 - mean) / std``.
    format : str
        Name of the raw format (:data:`FORMATS`), hence how the files are found and read.
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
    train_class_sizes : tuple of int
        Training images of each class, for a dataset whose classes are not all the same size (MNIST); empty for
        a balanced one (``train_size / num_classes`` each). :meth:`train_size_of` uses it to count the epochs of
        a class subset.
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
    train_class_sizes: tuple[int, ...] = ()

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
        if self.format not in FORMATS:
            raise ConfigError(f"dataset {self.name!r}: {FORMATS.unknown_message(self.format)}")
        if self.train_class_sizes and (len(self.train_class_sizes) != self.num_classes
                                       or sum(self.train_class_sizes) != self.train_size):
            raise ConfigError(f"dataset {self.name!r}: train_class_sizes must give one size per class, summing to "
                              f"train_size ({self.train_size})")

    def train_size_of(self, classes: tuple[int, ...] | list[int] = ()) -> int:
        """Training images of the classes ``classes`` (all of them when empty)."""
        if not classes:
            return self.train_size
        if self.train_class_sizes:
            return sum(self.train_class_sizes[c] for c in classes)
        return round(self.train_size * len(classes) / self.num_classes)

    @property
    def black(self) -> tuple[float, ...]:
        """Per-channel value of a black (0) pixel after normalisation, ``-mean / std``; a ``fill`` for
        :func:`~ticketlab.datasets.augment_cifar` that reproduces padding with black before normalising."""
        return tuple(-m / s for m, s in zip(self.mean, self.std))


#: What a reader returns: ``(train_images, train_labels, test_images, test_labels)``, images uint8
#: ``(N, C, H, W)`` and labels int64 ``(N,)``.
RawArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class RawFormat:
    """How datasets published in one raw format are found, read and reported missing.

    Attributes
    ----------
    name : str
        Registry name, the value of :attr:`DatasetSpec.format` (``"idx"``, ``"cifar"``).
    locate : callable
        ``locate(spec, dataset_dir) -> (source, {member: path}, missing)``: where the files are. ``source`` says
        what would be read (see :class:`~ticketlab.datasets.DatasetStatus`), ``""`` when incomplete; ``missing``
        lists paths relative to ``dataset_dir``. Opens no file.
    read : callable
        ``read(spec, dataset_dir) -> (train_images, train_labels, test_images, test_labels)`` (``RawArrays``).
    describe_missing : callable
        ``describe_missing(spec, status) -> str``: what is missing and where it goes, for the error of
        :func:`~ticketlab.datasets.load_dataset`.
    """

    name: str
    locate: Callable[[DatasetSpec, Path], tuple[str, dict[str, Path], list[str]]]
    read: Callable[[DatasetSpec, Path], RawArrays]
    describe_missing: Callable[[DatasetSpec, "DatasetStatus"], str]


#: The raw formats, by name.
FORMATS: Registry[RawFormat] = Registry("format")


def _dataset_key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


#: The registered datasets, by name (case-insensitive; ``-`` is read as ``_``), in registration order.
DATASETS: Registry[DatasetSpec] = Registry("dataset", normalise=_dataset_key)


def register_dataset(factory: Callable[[], DatasetSpec]) -> Callable[[], DatasetSpec]:
    """Decorator: register the :class:`DatasetSpec` that ``factory()`` returns under its ``name``.

    Raises
    ------
    ConfigError
        If the name is already registered.
    """
    spec = factory()
    if spec.name in DATASETS:
        raise ConfigError(f"dataset {spec.name!r} is already registered")
    DATASETS.register(spec.name, spec)
    return factory


def list_datasets() -> list[str]:
    """Names of the registered datasets, in registration order."""
    return DATASETS.names()


def get_dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` registered as ``name`` (case-insensitive; ``-`` is read as ``_``).

    Raises
    ------
    ConfigError
        For an unknown name; the one-line message lists the valid names.
    """
    return DATASETS.get(name)
