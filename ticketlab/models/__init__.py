"""Model registry: the networks of the lottery-ticket papers, and which of their tensors can be pruned.

Usage::

    import torch
    from ticketlab.models import create_model, list_models, output_layer, prunable_tensors

    [spec.name for spec in list_models()]   # ['conv2', 'conv4', 'conv6', 'lenet300', 'lenet5', 'resnet20', ...]
    torch.manual_seed(0)                      # creation is deterministic under the global torch seed
    model = create_model("conv4", num_classes=10)                   # designed for 3x32x32 (CIFAR-10)
    mnist_conv = create_model("conv2", input_shape=(1, 28, 28))     # the same architecture on MNIST
    tensors = prunable_tensors(model, exclude=[output_layer(model)])  # list[TensorInfo]; fc.weight pruned=False

New architectures are added with :func:`register_model` (it fills :data:`MODELS`, a
:class:`~ticketlab.registry.Registry`); every registered model is exercised by
``tests/test_models.py``. Parameter names follow OpenLTH where OpenLTH has the model (``fc_layers.0.weight``,
``blocks.3.shortcut.0.weight``, ``layers.0.conv.weight``); the output layer is always ``fc``.

Layout: :mod:`~ticketlab.models.registry` (the registry), :mod:`~ticketlab.models.tensors` (prunable tensors)
and :mod:`~ticketlab.models.architectures` (the networks, registered on import).
"""

from ticketlab.models.registry import MODELS, ModelSpec, create_model, get_model_spec, list_models, register_model
from ticketlab.models.tensors import canonical_name, output_layer, prunable_tensors
from ticketlab.models.architectures import CifarResNet, CifarVGG, ConvNet, LeNetFC  # registers the models

__all__ = [
    "MODELS", "ModelSpec", "register_model", "list_models", "get_model_spec", "create_model",
    "prunable_tensors", "output_layer", "canonical_name",
    "LeNetFC", "ConvNet", "CifarVGG", "CifarResNet",
]
