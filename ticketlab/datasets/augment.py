"""Batch augmentation: the standard CIFAR random crop after padding and random horizontal flip."""

from __future__ import annotations

from typing import Sequence

import torch

from ticketlab.datasets.splits import as_int
from ticketlab.errors import ConfigError

__all__ = ["augment_cifar"]


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
    p = as_int(padding, "padding")
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
