"""The stacked model: K networks of one architecture held as one set of tensors with a leading chain dimension.

Layout. The trainable parameters of all K chains live in one ``(K, P)`` tensor :attr:`StackedModel.flat` (row
``k`` = chain ``k``'s parameters, flattened and concatenated in ``named_parameters()`` order); each parameter is a
``(K, *shape)`` view into it, and each parameter's ``.grad`` a view into a second ``(K, P)`` tensor
:attr:`StackedModel.grad`. The masks are a third ``(K, P)`` tensor (1 = kept). So masking the gradients, masking
the weights and every optimizer operation is one tensor operation for the whole group, whatever the number of
layers; and every tensor's address stays fixed, which is what a CUDA graph needs. Buffers (batch-norm statistics)
are stacked per name as ``(K, *shape)`` tensors.

Forward. ``torch.func.vmap`` over ``torch.func.functional_call`` of a copy of the architecture on the ``meta``
device: linear layers become batched matrix products, convolutions grouped convolutions, batch-norm statistics
are updated per chain. Any ``nn.Module`` works, with one caveat: a model with its own randomness (dropout) draws
different numbers from the single-chain path (``randomness="different"``), so it is not equal to it.

Gradients accumulate in place into :attr:`grad` (autograd adds into an existing ``.grad`` when grad mode is off
during the backward's accumulation), which :meth:`StackedModel.zero_grad` clears; :meth:`check_grad_views`
verifies once that autograd did not replace a ``.grad`` by a tensor of its own.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from ticketlab.errors import ConfigError
from ticketlab.masks import as_bool_mask
from ticketlab.training import unwrap_model

__all__ = ["StackedModel"]


class StackedModel:
    """K chains of one architecture, stacked.

    Parameters
    ----------
    template : nn.Module
        The architecture; its own parameter values are not used (only its non-persistent buffers, which no state
        dict holds). Wrappers (DDP, ``torch.compile``) are unwrapped.
    weights : sequence of K state dicts
        Each chain's starting weights: every key of ``template.state_dict()`` (parameters and buffers).
    masks : sequence of K mappings (parameter name -> bool array) or None
        Each chain's masks (``True`` = kept); ``None`` or ``{}`` for a dense chain. Pruned weights are zeroed.
    device : torch.device
    dtype : torch.dtype
        Of the parameters (buffers keep the template's dtypes).
    """

    def __init__(self, template: nn.Module, weights: Sequence[Mapping[str, Any]],
                 masks: Sequence[Mapping[str, Any] | None], device: torch.device,
                 dtype: torch.dtype = torch.float32) -> None:
        module = unwrap_model(template)
        if len(weights) != len(masks) or not weights:
            raise ConfigError(f"need one mask mapping per chain; got {len(weights)} weights and {len(masks)} masks")
        self.chains = len(weights)
        self.device, self.dtype = torch.device(device), dtype
        named = dict(module.named_parameters())
        self.param_names = [n for n, p in named.items() if p.requires_grad]
        self.fixed_names = [n for n, p in named.items() if not p.requires_grad]
        if not self.param_names:
            raise ConfigError("the model has no trainable parameters")
        self.shapes = {n: tuple(p.shape) for n, p in named.items()}
        self.state_keys = list(module.state_dict().keys())
        buffers = dict(module.named_buffers())
        self.buffer_names = list(buffers)
        self._buffer_dtypes = {n: b.dtype for n, b in buffers.items()}
        self._non_persistent = {n: b.detach().cpu().clone() for n, b in buffers.items() if n not in self.state_keys}
        self.module = copy.deepcopy(module).to("meta")

        self.offsets: dict[str, tuple[int, int]] = {}
        total = 0
        for n in self.param_names:
            size = int(np.prod(self.shapes[n], dtype=np.int64))
            self.offsets[n] = (total, total + size)
            total += size
        self.numel = total
        K = self.chains
        weights = [self._check_weights(k, w) for k, w in enumerate(weights)]
        rows = [torch.cat([w[n].reshape(-1).to(dtype) for n in self.param_names]) for w in weights]
        self.flat = torch.stack(rows).to(self.device).contiguous()
        self.grad = torch.zeros_like(self.flat)
        self.params: dict[str, torch.Tensor] = {}
        for n in self.param_names:
            a, b = self.offsets[n]
            p = self.flat[:, a:b].view(K, *self.shapes[n]).detach().requires_grad_(True)
            p.grad = self.grad[:, a:b].view(K, *self.shapes[n])
            self.params[n] = p
        # not trained: frozen parameters and buffers, stacked per name
        self.fixed = {n: torch.stack([w[n].to(dtype) for w in weights]).to(self.device) for n in self.fixed_names}
        self.buffers = {
            n: torch.stack([self._buffer(w, n) for w in weights]).to(self.device) for n in self.buffer_names
        }
        self.mask = self._build_masks(masks)
        self.mask_weights()

    # -- construction ---------------------------------------------------------------------------------------

    def _check_weights(self, k: int, weights: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if not isinstance(weights, Mapping):
            raise ConfigError(f"chain {k}: weights must be a state dict; got {type(weights).__name__}")
        out = {}
        for key in self.state_keys:
            if key not in weights:
                raise ConfigError(f"chain {k}: the weights lack {key!r}, which the model has")
            value = torch.as_tensor(np.asarray(weights[key]) if not isinstance(weights[key], torch.Tensor)
                                    else weights[key]).detach().cpu()
            shape = self.shapes.get(key)
            if shape is not None and tuple(value.shape) != shape:
                raise ConfigError(f"chain {k}: weight {key!r} has shape {tuple(value.shape)}, the model's has "
                                  f"{shape}")
            out[key] = value
        return out

    def _buffer(self, weights: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
        value = weights[name] if name in weights else self._non_persistent[name]
        return value.to(self._buffer_dtypes[name])

    def _build_masks(self, masks: Sequence[Mapping[str, Any] | None]) -> torch.Tensor | None:
        rows = np.ones((self.chains, self.numel), dtype=bool)
        pruned = False
        for k, chain_masks in enumerate(masks):
            for name, value in dict(chain_masks or {}).items():
                if name not in self.shapes:
                    raise ConfigError(f"chain {k}: a mask names a parameter the model does not have: {name!r}; "
                                      f"the model's parameters are: {', '.join(self.shapes)}")
                if isinstance(value, torch.Tensor):
                    value = value.detach().cpu().numpy()
                keep = as_bool_mask(name, value, self.shapes[name])
                if keep.all():
                    continue
                pruned = True
                if name in self.fixed:  # a frozen parameter: zeroed once, never trained
                    self.fixed[name][k].mul_(torch.as_tensor(keep, dtype=self.dtype, device=self.device))
                    continue
                a, b = self.offsets[name]
                rows[k, a:b] = keep.reshape(-1)
        if not pruned:
            return None
        return torch.as_tensor(rows, device=self.device).to(self.dtype)

    # -- masks ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def mask_weights(self) -> None:
        """Set every pruned weight of every chain to 0 (in place)."""
        if self.mask is not None:
            self.flat.mul_(self.mask)

    def mask_gradients(self) -> None:
        """Set the gradient of every pruned weight to 0 (in place)."""
        if self.mask is not None:
            self.grad.mul_(self.mask)

    def zero_grad(self) -> None:
        """Clear the accumulated gradients (in place, the views stay)."""
        self.grad.zero_()

    def check_grad_views(self) -> None:
        """Raise if autograd replaced a parameter's ``.grad`` instead of accumulating into the stacked tensor."""
        for n, p in self.params.items():
            a, _ = self.offsets[n]
            if p.grad is None or p.grad.data_ptr() != self.grad[:, a:].data_ptr():
                raise RuntimeError(f"the gradient of {n!r} no longer lives in the stacked gradient tensor")

    @torch.no_grad()
    def count_pruned_nonzero(self) -> int:
        """Number of pruned weights (all chains) that are not exactly 0 (0 when the invariant holds)."""
        if self.mask is None:
            return 0
        return int(torch.count_nonzero(self.flat * (1 - self.mask)))

    # -- forward --------------------------------------------------------------------------------------------

    def _call(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, (params, buffers), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training-mode logits ``(K, B, C)`` of each chain on its own batch ``x`` of shape ``(K, B, ...)``;
        batch-norm statistics are updated in place."""
        self.module.train()
        params = {**self.params, **self.fixed}
        return vmap(self._call, randomness="different")(params, self.buffers, x)

    def select(self, chains: Sequence[int] | None = None) -> tuple[dict, dict]:
        """Parameters and buffers of ``chains`` (default: all; a subset is copied), for :meth:`forward_shared`."""
        params = {**self.params, **self.fixed}
        buffers = self.buffers
        if chains is not None and list(chains) != list(range(self.chains)):
            index = torch.as_tensor(list(chains), device=self.device)
            params = {n: p.detach().index_select(0, index) for n, p in params.items()}
            buffers = {n: b.index_select(0, index) for n, b in buffers.items()}
        return params, buffers

    def forward_shared(self, x: torch.Tensor, params: dict | None = None, buffers: dict | None = None
                       ) -> torch.Tensor:
        """Eval-mode logits ``(k, B, C)`` of the chains of :meth:`select` (default: all) on one batch ``x``."""
        if params is None:
            params, buffers = self.select()
        self.module.eval()
        try:
            return vmap(self._call, in_dims=(0, 0, None), randomness="different")(params, buffers, x)
        finally:
            self.module.train()

    # -- export ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def state_dict(self, k: int) -> dict[str, torch.Tensor]:
        """Chain ``k``'s weights as a CPU state dict (the template's keys and order)."""
        out = {}
        for key in self.state_keys:
            if key in self.params:
                value = self.params[key][k]
            elif key in self.fixed:
                value = self.fixed[key][k]
            else:
                value = self.buffers[key][k]
            out[key] = value.detach().to("cpu", copy=True)
        return out

    def split(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """A ``(P,)`` row laid out like one chain's parameters, as per-parameter views keyed by name."""
        return {n: row[a:b].view(self.shapes[n]) for n, (a, b) in self.offsets.items()}

    @torch.no_grad()
    def snapshot(self) -> dict[str, torch.Tensor]:
        """A device copy of everything a step changes in the model (parameters and buffers)."""
        return {"flat": self.flat.clone(), **{f"buffer:{n}": b.clone() for n, b in self.buffers.items()}}

    @torch.no_grad()
    def restore(self, snap: Mapping[str, torch.Tensor]) -> None:
        """Copy a :meth:`snapshot` back in place (addresses unchanged)."""
        self.flat.copy_(snap["flat"])
        for n, b in self.buffers.items():
            b.copy_(snap[f"buffer:{n}"])
