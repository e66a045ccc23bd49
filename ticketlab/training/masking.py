"""Holding pruned weights at exactly zero during training: :class:`MaskedParameters` and :func:`unwrap_model`.

A pruned weight is exactly ``0.0`` in every forward pass and is never updated. :class:`MaskedParameters` keeps that
invariant with batched multiplications (``torch._foreach_mul_``): the gradients after ``loss.backward()``, so that
optimizer state (momentum, Adam moments) stays 0 at pruned positions, and the weights after ``optimizer.step()``.
No forward hooks are involved: the forward pass uses the stored weights directly.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ticketlab.errors import ConfigError
from ticketlab.masks import as_bool_mask

__all__ = ["MaskedParameters", "apply_masks", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose parameter names are canonical: unwraps ``DistributedDataParallel``/``DataParallel``
    (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers, however nested."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


class MaskedParameters:
    """Keeps the pruned weights of a model at exactly zero during training.

    Holds, for each masked parameter, its mask as a tensor of the parameter's dtype on the parameter's device
    (1 = kept, 0 = pruned). Construction zeroes the pruned weights. In the training step call
    :meth:`mask_gradients` after ``loss.backward()`` (so that the optimizer state — momentum, Adam moments — stays 0
    at pruned positions) and :meth:`mask_weights` after ``optimizer.step()``. Each is one ``torch._foreach_mul_``
    over the parameters that have at least one pruned weight; parameters whose mask is all ones are skipped.

    With masked gradients, SGD (with momentum, Nesterov, L2 weight decay), Adam and AdamW already leave a zero
    weight at zero, so :meth:`mask_weights` is a guard that costs one pass over the weights.

    Parameters
    ----------
    model : nn.Module
        The network, possibly wrapped in ``DistributedDataParallel``/``DataParallel``/``torch.compile``; masks are
        matched against the canonical names of :func:`unwrap_model`.
    masks : mapping of str to array-like of bool/0-1, or None
        Mask per canonical parameter name, of the parameter's shape; ``True``/1 = kept. ``None`` or ``{}``: dense.
    param_names : iterable of str, optional
        Apply only the masks of these names (all of ``masks`` by default).
    """

    def __init__(
        self, model: nn.Module, masks: Mapping[str, Any] | None, param_names: Iterable[str] | None = None
    ) -> None:
        masks = dict(masks or {})
        names = list(masks) if param_names is None else list(param_names)
        params = dict(unwrap_model(model).named_parameters())
        self.names: list[str] = []
        self.masks: dict[str, torch.Tensor] = {}
        self._params: list[torch.Tensor] = []
        self._factors: list[torch.Tensor] = []
        for name in names:
            if name not in masks:
                raise ConfigError(f"param_names names {name!r} but no mask is given for it")
            if name not in params:
                raise ConfigError(
                    f"mask names a parameter the model does not have: {name!r}; the model's parameters are: "
                    + ", ".join(params)
                )
            p = params[name]
            value = masks[name]
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            keep = as_bool_mask(name, value, tuple(p.shape))
            self.names.append(name)
            self.masks[name] = torch.as_tensor(keep, device=p.device)
            if not keep.all():
                self._params.append(p)
                self._factors.append(torch.as_tensor(keep, dtype=p.dtype, device=p.device))
        self.mask_weights()

    @property
    def pruned_parameters(self) -> list[str]:
        """Names of the masked parameters that have at least one pruned weight."""
        return [n for n in self.names if not bool(self.masks[n].all())]

    @torch.no_grad()
    def mask_weights(self) -> None:
        """Set every pruned weight to 0 (in place)."""
        if self._params:
            torch._foreach_mul_(self._params, self._factors)

    def mask_gradients(self) -> None:
        """Set the gradient of every pruned weight to 0 (in place); parameters without a gradient are skipped.

        Gradients are plain tensors, so no ``no_grad`` context is needed (entering one costs ~1 µs per call).
        """
        if not self._params:
            return
        grads = [p.grad for p in self._params]
        if any(g is None for g in grads):
            pairs = [(g, m) for g, m in zip(grads, self._factors) if g is not None]
            if not pairs:
                return
            grads, factors = [g for g, _ in pairs], [m for _, m in pairs]
        else:
            factors = self._factors
        torch._foreach_mul_(grads, factors)

    @torch.no_grad()
    def mask_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero, at pruned positions, every optimizer-state tensor shaped like its parameter (momentum buffers,
        Adam moments). Needed only when an optimizer state from elsewhere is loaded."""
        for p, m in zip(self._params, self._factors):
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.mul_(m.to(value.dtype))

    @torch.no_grad()
    def count_pruned_nonzero(self) -> int:
        """Number of pruned weights that are not exactly 0 (0 when the invariant holds)."""
        return int(sum(int(torch.count_nonzero(p * (1 - m))) for p, m in zip(self._params, self._factors)))


def apply_masks(
    model: nn.Module, masks: Mapping[str, Any] | None, param_names: Iterable[str] | None = None
) -> MaskedParameters:
    """Zero the pruned weights of ``model`` and return the :class:`MaskedParameters` that keeps them zero."""
    return MaskedParameters(model, masks, param_names)
