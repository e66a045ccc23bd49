"""CUDA graph capture of a group's whole training step (forward, backward, gradient masking, optimizer step,
loss sums, iteration counters), so that a step costs one graph launch instead of hundreds of kernel launches.

What makes the step capturable (see :mod:`ticketlab.batched.engine`): every tensor it reads or writes has a fixed
address (the stacked parameters, gradients, masks and optimizer state are ``(K, P)`` tensors allocated once; the
gradients are accumulated into them rather than re-allocated); the batch indices and the learning rates are
computed on the device from the ``(K,)`` iteration counters; the optimizer's step counts and bias corrections are
device tensors; nothing reads a value on the host. A step with augmentation reads its batch from static buffers
that the host fills before each replay.

Capturing needs a few eager warm-up steps on a side stream (cuBLAS/cuDNN handles, autograd's buffers); they change
the weights and optimizer state, so everything a step changes is snapshotted before and restored after, and the
first replayed step is the group's first step.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["capture_step", "save_group", "restore_group", "WARMUP_STEPS"]

#: Eager steps run (and undone) before capture.
WARMUP_STEPS = 3


def save_group(group) -> tuple:
    """Device copies of everything a step changes: weights, buffers, optimizer state and step counts, the
    training-loss sums and the iteration counters."""
    return (group.model.snapshot(), group.opt.snapshot(), group.window_sum.clone(), group.data.iteration.clone())


@torch.no_grad()
def restore_group(group, saved: tuple) -> None:
    """Copy :func:`save_group`'s copies back in place (the addresses a graph captured stay valid)."""
    model_state, opt_state, window_sum, iteration = saved
    group.model.restore(model_state)
    group.opt.restore(opt_state)
    group.window_sum.copy_(window_sum)
    group.data.iteration.copy_(iteration)
    group.model.zero_grad()


def capture_step(group) -> Callable[[], None]:
    """Capture ``group.step`` in a CUDA graph; return the function that replays it."""
    saved = save_group(group)
    try:
        stream = torch.cuda.Stream(device=group.device)
        stream.wait_stream(torch.cuda.current_stream(group.device))
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):
                group.step()
        torch.cuda.current_stream(group.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            group.step()
    finally:  # also after a failed capture: the caller falls back to eager steps from the same state
        restore_group(group, saved)
    return graph.replay
