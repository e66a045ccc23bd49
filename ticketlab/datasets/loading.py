"""Loading a registered dataset into memory: :func:`load_dataset` and the :class:`Dataset` it returns."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ticketlab.datasets.location import data_dir_candidates, dataset_status, missing_message
from ticketlab.datasets.registry import FORMATS, DatasetSpec, get_dataset_spec
from ticketlab.datasets.splits import LTH_VALIDATION_SIZE, validation_split
from ticketlab.datasets.subsets import check_classes, parse_classes, select_classes, task_name
from ticketlab.errors import ConfigError

__all__ = ["Dataset", "load_dataset"]


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
        Number of classes (of the subset, for a class-subset task).
    class_names : tuple of str
        Name of each class, indexed by label.
    spec : DatasetSpec
        The registry entry (shapes, files, normalisation constants).
    data_dir : Path
        The data directory the files were read from.
    normalized : bool
        Whether the per-channel standardisation was applied.
    classes : tuple of int
        For a class-subset task (:mod:`ticketlab.datasets.subsets`), the original ids of the classes kept, whose
        labels are renumbered ``0 .. k - 1`` in this order; empty for the whole dataset.
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
    classes: tuple[int, ...] = ()

    @property
    def task(self) -> str:
        """``"mnist"``, or ``"mnist[0-4]"`` for a class subset."""
        return task_name(self.name, self.classes)

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
            f"Dataset(name={self.task!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
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


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, normalize: bool = True,
                 classes: Sequence[int] | str | None = None) -> Dataset:
    """Load a registered dataset from its raw files into memory.

    Parameters
    ----------
    name : str
        Registered name (:data:`~ticketlab.datasets.DATASETS`).
    data_dir : path, optional
        Directory holding ``<name>/``. When None, the candidates of :func:`data_dir_candidates`
        (``$TICKETLAB_DATA``, the repository's ``data/``, ``./data``) are searched in order for one holding
        the complete dataset.
    normalize : bool
        Standardise each channel with the spec's ``mean``/``std`` (default). When False, pixels are only
        scaled to [0, 1].
    classes : sequence of int or str, optional
        Keep only these classes (``[0, 1, 2, 3, 4]`` or ``"0-4"``) in the training and test sets, with labels
        renumbered ``0 .. k - 1`` in ascending order of the ids (:mod:`ticketlab.datasets.subsets`); the
        normalisation stays the whole dataset's. Default: every class.

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
    subset = parse_classes(classes)
    check_classes(subset, spec.num_classes, spec.name)
    status = dataset_status(spec.name, data_dir)
    if not status.present:
        searched = None if data_dir is not None else data_dir_candidates()
        raise ConfigError(missing_message(spec, status, searched))
    train_img, train_lab, test_img, test_lab = FORMATS.get(spec.format).read(spec, status.dataset_dir)
    train_x, test_x = (_to_float(i, spec.mean, spec.std, normalize) for i in (train_img, test_img))
    train_y, test_y = (torch.from_numpy(np.ascontiguousarray(lab, dtype=np.int64)) for lab in (train_lab, test_lab))
    names = tuple(spec.class_names)
    if subset:
        train_x, train_y = select_classes(train_x, train_y, subset)
        test_x, test_y = select_classes(test_x, test_y, subset)
        names = tuple(names[c] for c in subset)
    return Dataset(
        name=spec.name,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=len(names),
        class_names=names,
        spec=spec,
        data_dir=status.data_dir,
        normalized=normalize,
        classes=subset,
    )
