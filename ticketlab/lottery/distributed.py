"""Where a run computes: the device (:func:`resolve_device`) and, under torchrun, the process group
(:class:`Distributed`)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ticketlab.errors import ConfigError, TicketlabError


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA if available, then MPS, else CPU; other values are checked for availability."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; choose auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but this torch build sees no CUDA GPU; use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps was asked for, but MPS is not available here; use --device cpu")
    return dev


class Distributed:
    """The process group a run belongs to; a single process is a group of one.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), the group is initialised with the gloo
    backend on CPU and NCCL on CUDA (one GPU per process, ``LOCAL_RANK``). Rank 0 is the *primary*: it creates
    the ticket file, prunes and writes; :meth:`on_primary` runs a function there and hands its result (or its
    error) to every rank, so all ranks train with the same mask.
    """

    def __init__(self, rank: int = 0, world: int = 1, device: torch.device | None = None, owned: bool = False
                 ) -> None:
        self.rank, self.world, self.device = rank, world, device
        self._owned = owned  # whether we initialised the process group (and so must destroy it)

    def close(self) -> None:
        """Destroy the process group if this object created it (gloo aborts at exit otherwise)."""
        if self._owned:
            import gc

            import torch.distributed as dist

            if dist.is_initialized():
                gc.collect()  # DDP reducers still referring to the group must go first
                dist.barrier()  # no rank tears down while another still talks to it
                dist.destroy_process_group()
            self._owned = False

    @classmethod
    def from_environment(cls, device: str = "auto") -> "Distributed":
        import os

        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = resolve_device(device)
        if dev.type == "cuda":
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        owned = not dist.is_initialized()
        if owned:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), dev, owned)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def on_primary(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 only and return its result on every rank (re-raising its error everywhere)."""
        if not self.active:
            return fn()
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.primary:
            try:
                box[0] = ("ok", fn())
            except TicketlabError as err:  # bad input: every rank reports it and exits 2
                box[0] = ("error", str(err))
        dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            raise ConfigError(value)
        return value
