"""Evaluation of a model on a held-out set (eval mode, ``torch.inference_mode``): mean cross-entropy and
predicted classes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.training.checks import check_int

__all__ = ["evaluate", "evaluate_set", "model_device"]


def evaluate_set(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[float, np.ndarray, int]:
    """:func:`evaluate`, also returning the number of classes (width of the logits)."""
    n = len(x)
    if n == 0:
        raise ConfigError("cannot evaluate on an empty set")
    if len(y) != n:
        raise ConfigError(f"inputs and labels differ in length: {n} and {len(y)}")
    batch_size = check_int("batch_size", batch_size, 1)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    predictions = []
    num_classes = 0
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                xb = x[start : start + batch_size].to(device, non_blocking=True)
                yb = y[start : start + batch_size].to(device, non_blocking=True)
                logits = model(xb)
                num_classes = int(logits.shape[-1])
                total += F.cross_entropy(logits, yb, reduction="sum").double()
                predictions.append(logits.argmax(dim=-1))
    finally:
        model.train(was_training)
    preds = torch.cat(predictions).to("cpu", torch.int64).numpy()
    return float(total) / n, preds, num_classes


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000, device: Any = None
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and predicted classes of ``model`` on ``(x, y)``.

    Runs in eval mode (dropout off, batch-norm running statistics) under ``torch.inference_mode()`` and restores
    the model's previous mode.

    Parameters
    ----------
    model : nn.Module
        Maps a batch ``(B, ...)`` to logits ``(B, C)``.
    x : Tensor of shape (N, ...)
    y : Tensor of shape (N,), int64
        True classes in ``[0, C)``.
    batch_size : int
        Examples per forward pass.
    device : torch.device or str, optional
        Where to run; default: the device of the model's first parameter.

    Returns
    -------
    loss : float
        Mean cross-entropy over the N examples, in nats.
    predictions : ndarray of shape (N,), int64
        Arg-max class of each example.
    """
    device = model_device(model) if device is None else torch.device(device)
    loss, preds, _ = evaluate_set(model, x, y, batch_size, device)
    return loss, preds


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
