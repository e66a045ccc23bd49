"""The data of a run held in memory (:class:`RunData`), and :func:`load_data` for a registry dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ticketlab.errors import ConfigError

if TYPE_CHECKING:
    from ticketlab.lottery.config import RunConfig


@dataclass
class RunData:
    """The data of a run, held in memory: bring your own by building one of these.

    Attributes
    ----------
    train, val, test : (Tensor (N, ...), Tensor (N,) int64)
        Training set (without the validation examples), validation set (or ``None``: no early-stopping
        iteration is then recorded) and test set. Inputs as the model takes them; labels are class indices.
    num_classes : int
    class_names : tuple of str
    input_shape : tuple of int
        Shape of one input, e.g. ``(1, 28, 28)``.
    """

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]


def load_data(config: RunConfig) -> RunData:
    """Load the dataset (only the classes of ``config.classes``, when given) and carve the validation split (fixed
    seed ``split_seed``) from its training set."""
    from ticketlab.datasets import load_dataset, validation_split

    ds = load_dataset(config.dataset, config.data_dir, classes=config.classes)
    if config.val_size >= len(ds.train_y):
        raise ConfigError(f"val_size ({config.val_size}) must be smaller than the training set ({len(ds.train_y)})")
    train_idx, val_idx = validation_split(len(ds.train_y), config.val_size, config.split_seed)
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    val = (ds.train_x[val_idx], ds.train_y[val_idx]) if config.val_size else None
    return RunData((ds.train_x[train_idx], ds.train_y[train_idx]), val, (ds.test_x, ds.test_y), ds.num_classes,
                 tuple(ds.class_names), tuple(ds.train_x.shape[1:]))
