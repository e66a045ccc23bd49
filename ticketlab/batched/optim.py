"""Optimizers for stacked chains: SGD (momentum, Nesterov, L2 weight decay), Adam and AdamW with a learning rate
per chain, the same maths as the ``torch.optim`` optimizers the single-chain path builds
(:func:`ticketlab.training.make_optimizer`).

Each optimizer works on the ``(K, P)`` tensors of a :class:`~ticketlab.batched.stack.StackedModel` (one row per
chain) and keeps its state in ``(K, P)`` tensors of the same layout, plus the step count of each chain in a
``(K,)`` tensor on the device. The learning rate of each chain is the ``(K,)`` float64 device tensor :attr:`lr`
(float32 on MPS), written by the engine before each step. Two implementations, chosen by ``impl``:

``"tensor"``  a handful of whole-group tensor operations with the per-chain learning rate broadcast over each
              row: no host synchronisation and no Python numbers that change between steps, so a step can be
              captured in a CUDA graph and replayed. The default on CUDA.
``"fused"``   ``torch._fused_adam_`` / ``_fused_adamw_`` / ``_fused_sgd_`` (the kernels the single-chain path
              uses) once per chain, on that chain's row: the single-chain update bit for bit. Reads the learning
              rates and step counts on the host, so CPU only; the default there.

The registry :data:`STACKED_OPTIMIZERS` has one entry per entry of the training optimizer registry
(``ticketlab.training.OPTIMIZER_REGISTRY``); a test checks that none is missing. State is exported per chain in
the format of the ``torch.optim`` optimizer's ``state_dict()``, so a chain can move between the batched and the
single-chain path in either direction (:meth:`StackedOptimizer.chain_state_dict`, :meth:`load_chain_state`).
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch

from ticketlab.errors import ConfigError
from ticketlab.registry import Registry
from ticketlab.training import TrainConfig, get_optimizer

__all__ = ["STACKED_OPTIMIZERS", "StackedOptimizer", "StackedSGD", "StackedAdam", "StackedAdamW",
           "make_stacked_optimizer", "IMPLEMENTATIONS"]

IMPLEMENTATIONS = ("tensor", "fused")

#: name (as in the training optimizer registry) -> :class:`StackedOptimizer` subclass.
STACKED_OPTIMIZERS: Registry[type] = Registry("batched optimizer")

#: The hyper-parameters that must be equal in every chain of a group (the learning-rate schedule may differ).
SHARED_SETTINGS = ("optimizer", "momentum", "nesterov", "weight_decay", "betas", "eps")


class StackedOptimizer:
    """Base class: state tensors of shape ``(K, P)``, step counts ``(K,)``, learning rates ``(K,)``.

    Parameters
    ----------
    model : StackedModel
    config : TrainConfig
        The shared settings (:data:`SHARED_SETTINGS`) of the group; its learning rate is not used.
    impl : "tensor" or "fused"
    """

    name = ""
    #: names of the per-weight state tensors, as in the torch optimizer's state dict
    state_names: tuple[str, ...] = ()

    def __init__(self, model, config: TrainConfig, impl: str = "tensor") -> None:
        if impl not in IMPLEMENTATIONS:
            raise ConfigError(f"unknown optimizer implementation {impl!r}; choose one of: {', '.join(IMPLEMENTATIONS)}")
        self.model, self.config, self.impl = model, config, impl
        self.flat, self.grad = model.flat, model.grad
        K, device = model.chains, model.device
        self.lr = torch.zeros(K, dtype=scalar_dtype(device), device=device)
        self.steps = torch.zeros(K, dtype=torch.float32, device=device)
        self.state = {name: torch.zeros_like(self.flat) for name in self.state_names}
        self._template = _torch_param_groups(model, config)

    # -- the step -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self) -> None:
        """One optimizer step of every chain with learning rates :attr:`lr` (gradients already masked)."""
        self.steps.add_(1)
        if self.impl == "fused":
            for k, lr in enumerate(self.lr.tolist()):
                self._fused_step(k, lr)
        else:
            self._tensor_step()

    def _tensor_step(self) -> None:
        raise NotImplementedError

    def _fused_step(self, k: int, lr: Any) -> None:
        raise NotImplementedError

    def _row_lr(self, dtype: torch.dtype) -> torch.Tensor:
        """The learning rates as a ``(K, 1)`` column of ``dtype``, to broadcast over the rows."""
        return self.lr.to(dtype).unsqueeze(1)

    # -- state ----------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A device copy of everything a step changes (state, step counts)."""
        return {"steps": self.steps.clone(), **{n: t.clone() for n, t in self.state.items()}}

    @torch.no_grad()
    def restore(self, snap: Mapping[str, torch.Tensor]) -> None:
        """Copy a :meth:`snapshot` back in place."""
        self.steps.copy_(snap["steps"])
        for n, t in self.state.items():
            t.copy_(snap[n])

    @torch.no_grad()
    def load_chain_state(self, k: int, state_dict: Mapping[str, Any]) -> None:
        """Load chain ``k``'s state from a ``torch.optim`` ``state_dict()`` over the model's trainable parameters
        (the single-chain path's :class:`~ticketlab.training.TrainState` ``optimizer``)."""
        try:
            per_param = state_dict["state"]
            n_params = len(state_dict["param_groups"][0]["params"])
        except (KeyError, IndexError, TypeError):
            raise ConfigError(f"chain {k}: the optimizer state is not a torch.optim state dict") from None
        names = self.model.param_names
        if n_params != len(names):
            raise ConfigError(f"chain {k}: the optimizer state holds {n_params} parameters, the model "
                              f"{len(names)}")
        steps = set()
        for i, name in enumerate(names):
            entry = per_param.get(i, per_param.get(str(i), {}))
            if "step" in entry:
                steps.add(float(entry["step"]))
            a, b = self.model.offsets[name]
            for key in self.state_names:
                if entry.get(key) is not None:
                    self.state[key][k, a:b].copy_(torch.as_tensor(entry[key]).reshape(-1))
        if len(steps) > 1:
            raise ConfigError(f"chain {k}: the optimizer state has different step counts per parameter: {steps}")
        self.steps[k] = steps.pop() if steps else (1.0 if per_param else 0.0)

    @torch.no_grad()
    def chain_state_dict(self, k: int, lr: float | None) -> dict[str, Any]:
        """Chain ``k``'s state as the ``torch.optim`` optimizer's ``state_dict()`` would give it (CPU tensors);
        ``lr`` is the learning rate of its last step (``None``: no step was taken)."""
        groups = copy.deepcopy(self._template)
        if lr is not None:
            groups[0]["lr"] = lr
        taken = float(self.steps[k])
        state: dict[int, dict[str, Any]] = {}
        if taken > 0:
            for i, name in enumerate(self.model.param_names):
                a, b = self.model.offsets[name]
                shape = self.model.shapes[name]
                entry = self._chain_entry(taken)
                for key in self.state_names:
                    entry[key] = self.state[key][k, a:b].view(shape).to("cpu", copy=True)
                if entry:
                    state[i] = entry
        return {"state": state, "param_groups": groups}

    def _chain_entry(self, taken: float) -> dict[str, Any]:
        return {}


def scalar_dtype(device: torch.device) -> torch.dtype:
    """Learning rates, bias corrections and loss sums: float64, or float32 where the device has no float64 (MPS)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _torch_param_groups(model, config: TrainConfig) -> list[dict[str, Any]]:
    """The ``param_groups`` of the state dict of the torch optimizer the single-chain path builds (CPU, fused)."""
    params = [torch.zeros(model.shapes[n], requires_grad=True) for n in model.param_names]
    return get_optimizer(config.optimizer)(params, config, True).state_dict()["param_groups"]


# --------------------------------------------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------------------------------------------


@STACKED_OPTIMIZERS.register("sgd")
class StackedSGD(StackedOptimizer):
    """``torch.optim.SGD``: ``g = grad + wd * w``; with momentum ``buf = momentum * buf + g`` (``buf = g`` at
    a chain's first step) and ``g = buf`` (Nesterov: ``g + momentum * buf``); ``w -= lr * g``."""

    name = "sgd"

    def __init__(self, model, config: TrainConfig, impl: str = "tensor") -> None:
        self.state_names = ("momentum_buffer",) if config.momentum else ()
        super().__init__(model, config, impl)

    def _tensor_step(self) -> None:
        c, w, g = self.config, self.flat, self.grad
        if c.weight_decay:
            g = g.add(w, alpha=c.weight_decay)
        if c.momentum:
            buf = self.state["momentum_buffer"]
            # a fresh chain's buffer is 0, so its first step gives momentum * 0 + g = g exactly, as torch's does
            buf.mul_(c.momentum).add_(g)
            g = g.add(buf, alpha=c.momentum) if c.nesterov else buf
        w.sub_(g * self._row_lr(w.dtype))

    def _fused_step(self, k: int, lr: Any) -> None:
        c = self.config
        buffers = [self.state["momentum_buffer"][k]] if c.momentum else []
        first = bool(c.momentum) and float(self.steps[k]) == 1.0
        torch._fused_sgd_([self.flat[k]], [self.grad[k]], buffers, weight_decay=c.weight_decay,
                          momentum=c.momentum, lr=lr, dampening=0.0, nesterov=c.nesterov, maximize=False,
                          is_first_step=first)


# --------------------------------------------------------------------------------------------------------------
# Adam and AdamW
# --------------------------------------------------------------------------------------------------------------


@STACKED_OPTIMIZERS.register("adam")
class StackedAdam(StackedOptimizer):
    """``torch.optim.Adam`` (L2 weight decay added to the gradient): ``m = lerp(m, g, 1 - b1)``,
    ``v = b2 v + (1 - b2) g²``, ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``; the scalar
    factors are computed in float64 per chain and rounded once, as torch's fused kernel does."""

    name = "adam"
    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def _tensor_step(self) -> None:
        c, w, g = self.config, self.flat, self.grad
        beta1, beta2 = c.betas
        t = self.steps.to(self.lr.dtype)
        lr = self.lr
        if c.weight_decay:
            if self.decoupled:
                w.mul_((1.0 - lr * c.weight_decay).to(w.dtype).unsqueeze(1))
            else:
                g = g.add(w, alpha=c.weight_decay)
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        m.lerp_(g, 1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        step_size = (lr / (1.0 - torch.pow(beta1, t))).to(w.dtype).unsqueeze(1)
        bias2_sqrt = torch.sqrt(1.0 - torch.pow(beta2, t)).to(w.dtype).unsqueeze(1)
        denom = v.sqrt().div_(bias2_sqrt).add_(c.eps)
        w.sub_(step_size * m / denom)

    def _fused_step(self, k: int, lr: Any) -> None:
        c = self.config
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        kernel([self.flat[k]], [self.grad[k]], [self.state["exp_avg"][k]], [self.state["exp_avg_sq"][k]], [],
               [self.steps[k]], lr=lr, beta1=c.betas[0], beta2=c.betas[1], weight_decay=c.weight_decay,
               eps=c.eps, amsgrad=False, maximize=False)

    def _chain_entry(self, taken: float) -> dict[str, Any]:
        return {"step": torch.tensor(taken, dtype=torch.float32)}


@STACKED_OPTIMIZERS.register("adamw")
class StackedAdamW(StackedAdam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay ``w *= 1 - lr * wd`` before the update."""

    name = "adamw"
    decoupled = True


def check_shared_settings(configs: Sequence[TrainConfig]) -> TrainConfig:
    """The first config, after checking that every chain shares its :data:`SHARED_SETTINGS` and batch size."""
    first = configs[0]
    for k, c in enumerate(configs[1:], start=1):
        for key in (*SHARED_SETTINGS, "batch_size"):
            if getattr(c, key) != getattr(first, key):
                raise ConfigError(
                    f"chains of one group must share {key}: chain 0 has {getattr(first, key)!r}, chain {k} "
                    f"{getattr(c, key)!r}; train them in separate groups"
                )
    return first


def make_stacked_optimizer(model, configs: Sequence[TrainConfig], impl: str | None = None) -> StackedOptimizer:
    """The stacked optimizer of a group (``impl`` default: ``"tensor"`` on CUDA, ``"fused"`` elsewhere)."""
    config = check_shared_settings(configs)
    cls = STACKED_OPTIMIZERS.get(config.optimizer)
    if impl is None:
        impl = "fused" if model.device.type == "cpu" else "tensor"
    if impl == "fused" and model.device.type != "cpu":
        raise ConfigError(f"the fused optimizer implementation runs on CPU only; use impl='tensor' on "
                          f"{model.device.type}")
    return cls(model, config, impl)
