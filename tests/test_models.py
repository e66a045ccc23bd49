"""Tests of the model registry, the architectures and prunable-tensor naming."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from ticketlab.errors import ConfigError
from ticketlab.masks import TensorInfo
from ticketlab.models import (
    ModelSpec,
    canonical_name,
    create_model,
    get_model_spec,
    list_models,
    output_layer,
    prunable_tensors,
    register_model,
)
from ticketlab.models import registry

NAMES = [spec.name for spec in list_models()]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_weights(model: nn.Module, kind: str | None = None) -> int:
    return sum(t.size for t in prunable_tensors(model) if kind is None or t.kind == kind)


def build(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, **kwargs)


@functools.lru_cache(maxsize=None)
def shared(name: str) -> nn.Module:
    """A model built once with seed 0, for tests that only read it (never run it in training mode)."""
    return build(name)


# ------------------------------------------------------------------------------------- every registered model
def test_registry_has_the_canonical_models():
    expected = {"lenet300", "lenet5", "conv2", "conv4", "conv6", "vgg11", "vgg16", "vgg19", "resnet20", "resnet56"}
    assert expected <= set(NAMES)
    assert NAMES == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_spec_fields(name):
    spec = get_model_spec(name)
    assert isinstance(spec, ModelSpec) and spec.name == name
    assert len(spec.input_shape) == 3 and all(isinstance(s, int) and s > 0 for s in spec.input_shape)
    assert spec.description and spec.reference
    with pytest.raises(Exception):
        spec.name = "other"  # frozen


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_classes", [10, 100])
def test_output_shape_on_designed_input(name, num_classes):
    model = build(name, num_classes=num_classes)
    assert model.training
    with torch.no_grad():
        out = model(torch.randn(2, *get_model_spec(name).input_shape))
    assert out.shape == (2, num_classes) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_creation_is_deterministic_under_manual_seed(name):
    a, b, c = build(name, seed=3).state_dict(), build(name, seed=3).state_dict(), build(name, seed=4).state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_prunable_tensors_are_the_linear_and_conv_weights_in_parameter_order(name):
    model = shared(name)
    tensors = prunable_tensors(model)
    assert tensors and all(isinstance(t, TensorInfo) and t.pruned for t in tensors)
    params = dict(model.named_parameters())
    expected = []
    for pname, param in model.named_parameters():
        module = model.get_submodule(pname.rpartition(".")[0])
        if pname.endswith(".weight") and isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            expected.append((pname, tuple(param.shape), "linear" if isinstance(module, nn.Linear) else "conv"))
    assert [(t.name, t.shape, t.kind) for t in tensors] == expected
    assert all(t.size == params[t.name].numel() for t in tensors)
    # every name is a state-dict key, so masks line up with saved weights
    assert {t.name for t in tensors} <= set(model.state_dict())
    assert output_layer(model) == tensors[-1].name == "fc.weight"


@pytest.mark.parametrize("name", NAMES)
def test_mnist_shaped_input_builds_or_raises_config_error(name):
    try:
        model = build(name, input_shape=(1, 28, 28))
    except ConfigError:
        return
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


# ------------------------------------------------------------------------------------------- parameter counts
def conv(c_in, c_out, k=3, bias=True):
    return c_in * c_out * k * k + (c_out if bias else 0)


def fc(n_in, n_out):
    return n_in * n_out + n_out


def conv_net_total(channels, pools, side=32, c_in=3):
    convs = sum(conv(a, b) for a, b in zip([c_in] + channels[:-1], channels))
    flat = channels[-1] * (side // 2**pools) ** 2
    return convs + fc(flat, 256) + fc(256, 256) + fc(256, 10)


def resnet_total(n, w=16):
    bn = lambda c: 2 * c  # noqa: E731
    total = conv(3, w, bias=False) + bn(w)
    current = w
    for width in (w, 2 * w, 4 * w):
        for _ in range(n):
            total += conv(current, width, bias=False) + bn(width) + conv(width, width, bias=False) + bn(width)
            if current != width:
                total += conv(current, width, k=1, bias=False) + bn(width)  # 1x1 projection shortcut
            current = width
    return total + fc(4 * w, 10)


# name -> (total parameters incl. biases and BN, Linear+Conv weights, conv weights only)
COUNTS = {
    # Frankle & Carbin Fig. 2: 266K weights; 784*300 + 300*100 + 100*10 = 266,200; +410 biases
    "lenet300": (fc(784, 300) + fc(300, 100) + fc(100, 10), 266_200, 0),
    # classic LeNet-5: 61,706 parameters
    "lenet5": (conv(1, 6, 5) + conv(6, 16, 5) + fc(400, 120) + fc(120, 84) + fc(84, 10), 61_470, 2_550),
    # Frankle & Carbin Fig. 2: Conv-2 4.3M / 38K conv, Conv-4 2.4M / 260K, Conv-6 "1.7M" / 1.1M (see report)
    "conv2": (conv_net_total([64, 64], 1), 4_300_992, 38_592),
    "conv4": (conv_net_total([64, 64, 128, 128], 2), 2_425_024, 259_776),
    "conv6": (conv_net_total([64, 64, 128, 128, 256, 256], 3), 2_261_184, 1_144_512),
    # OpenLTH: cifar_resnet_20 has 22 prunable tensors, 270,896 weights; He et al.: ResNet-20 0.27M, -56 0.85M
    "resnet20": (resnet_total(3), 270_896, 270_256),
    "resnet56": (resnet_total(9), 851_504, 850_864),
    # OpenLTH: cifar_vgg_11 has 9 prunable tensors, 9,222,848 weights; Frankle & Carbin: VGG-19 20.0M
    "vgg11": (9_231_114, 9_222_848, 9_217_728),
    "vgg16": (14_728_266, 14_715_584, 14_710_464),
    "vgg19": (20_040_522, 20_024_000, 20_018_880),
}


def test_count_table_covers_known_models_only():
    assert set(COUNTS) <= set(NAMES)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts(name):
    total, weights, conv_weights = COUNTS[name]
    model = shared(name)
    assert (n_params(model), n_weights(model), n_weights(model, "conv")) == (total, weights, conv_weights)


def test_headline_counts_match_the_literature():
    assert n_params(shared("lenet300")) == 266_610
    assert n_params(shared("lenet5")) == 61_706
    assert round(n_params(shared("resnet20")) / 1e6, 2) == 0.27
    assert round(n_params(shared("resnet56")) / 1e6, 2) == 0.86  # He et al. list 0.85M with option-A shortcuts
    assert round(n_weights(shared("vgg19")) / 1e6, 1) == 20.0
    assert len(prunable_tensors(shared("resnet20"))) == 22 and len(prunable_tensors(shared("vgg11"))) == 9


# ------------------------------------------------------------------------------------- architecture details
def test_other_input_shapes():
    assert n_params(build("conv2", input_shape=(1, 28, 28))) == 3_317_450  # MNIST: 14*14*64 flattened
    assert build("lenet300", input_shape=(3, 32, 32)).fc_layers[0].in_features == 3072
    assert build("lenet5", input_shape=(3, 32, 32)).fc_layers[0].in_features == 16 * 6 * 6
    assert build("vgg11", input_shape=(1, 16, 16)).layers[0].conv.in_channels == 1
    model = build("resnet20", input_shape=(1, 7, 9), num_classes=3)
    assert model(torch.randn(2, 1, 7, 9)).shape == (2, 3)


@pytest.mark.parametrize(
    "name, shape",
    [("vgg11", (3, 8, 8)), ("conv6", (1, 4, 4)), ("lenet5", (1, 4, 4)), ("conv2", (784,)), ("resnet20", (3, 32))],
)
def test_impossible_input_shapes_raise(name, shape):
    with pytest.raises(ConfigError, match=f"model '{name}'"):
        create_model(name, input_shape=shape)


@pytest.mark.parametrize("shape", [(0, 28, 28), (1, -2, 28), "abc", 5, (1.5, 28, 28), (True, 28, 28), ()])
def test_invalid_input_shapes_raise(shape):
    with pytest.raises(ConfigError, match="positive integers"):
        create_model("lenet300", input_shape=shape)


@pytest.mark.parametrize("num_classes", [0, -1, 2.0, True, "10"])
def test_invalid_num_classes_raise(num_classes):
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("lenet300", num_classes=num_classes)


def test_heads_and_shortcuts():
    vgg = shared("vgg16")
    assert isinstance(vgg.fc, nn.Linear) and vgg.fc.in_features == 512
    assert sum(isinstance(m, nn.BatchNorm2d) for m in vgg.modules()) == 13
    resnet = shared("resnet20")
    assert resnet.fc.in_features == 64
    shortcuts = {t.name: t.shape for t in prunable_tensors(resnet) if "shortcut" in t.name}
    assert shortcuts == {"blocks.3.shortcut.0.weight": (32, 16, 1, 1), "blocks.6.shortcut.0.weight": (64, 32, 1, 1)}
    conv4 = shared("conv4")
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in conv4.modules())
    assert [layer.out_features for layer in conv4.fc_layers] == [256, 256]


def test_initialisation_follows_the_papers():
    lenet = shared("lenet300")  # Gaussian Glorot, zero biases
    w = lenet.fc_layers[0].weight
    assert abs(w.std().item() / math.sqrt(2 / (784 + 300)) - 1) < 0.02
    assert all(not m.bias.any() for m in lenet.modules() if isinstance(m, nn.Linear))
    conv6 = shared("conv6")
    w = conv6.convs[5].weight  # fan_in = 256 * 9, fan_out = 256 * 9
    assert abs(w.std().item() / math.sqrt(2 / (2 * 256 * 9)) - 1) < 0.02
    resnet = shared("resnet56")  # kaiming normal (fan-in, ReLU gain), BatchNorm weight ~ U(0, 1), bias 0
    w = resnet.blocks[20].conv1.weight
    assert abs(w.std().item() / math.sqrt(2 / (64 * 9)) - 1) < 0.02
    bns = [m for m in resnet.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(0 <= m.weight.min() and m.weight.max() < 1 and not m.bias.any() for m in bns)


# ------------------------------------------------------------------------------------------------- registry
def test_unknown_model_message_lists_names_and_suggests():
    listing = ", ".join(NAMES)
    with pytest.raises(ConfigError) as err:
        create_model("lenet")
    assert str(err.value) == f"unknown model 'lenet'; choose one of: {listing} (did you mean 'lenet5'?)"
    with pytest.raises(ConfigError) as err:
        get_model_spec("transformer")
    assert str(err.value) == f"unknown model 'transformer'; choose one of: {listing}"
    with pytest.raises(ConfigError, match="did you mean 'vgg16'"):
        get_model_spec("VGG16")


@pytest.fixture
def scratch_registry(monkeypatch):
    scratch = type(registry.MODELS)(registry.MODELS.kind)
    for name, spec in registry.MODELS.items():
        scratch.register(name, spec)
    monkeypatch.setattr(registry, "MODELS", scratch)


def test_register_model_adds_and_rejects_duplicates(scratch_registry):
    @register_model("tiny", input_shape=(1, 2, 2), description="4-2 MLP", reference="none")
    def tiny(num_classes=10, input_shape=None):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape or (1, 2, 2)), num_classes))

    assert "tiny" in [s.name for s in list_models()]
    assert [s.name for s in list_models()] == sorted(s.name for s in list_models())
    assert create_model("tiny", num_classes=2)(torch.zeros(3, 1, 2, 2)).shape == (3, 2)
    assert get_model_spec("tiny").input_shape == (1, 2, 2)
    with pytest.raises(ConfigError, match="already registered"):
        register_model("tiny", input_shape=(1, 2, 2), description="", reference="")
    with pytest.raises(ConfigError, match="already registered"):
        register_model("lenet300", input_shape=(1, 28, 28), description="", reference="")
    with pytest.raises(ConfigError, match="positive integers"):
        register_model("bad", input_shape=(0, 2), description="", reference="")
    with pytest.raises(ConfigError, match="non-empty"):
        register_model("", input_shape=(1, 2, 2), description="", reference="")


# ------------------------------------------------------------------------------------------- exclude, names
def test_exclude_names_and_patterns():
    model = shared("resnet20")
    names = [t.name for t in prunable_tensors(model)]
    only_fc = prunable_tensors(model, exclude=["fc.weight"])
    assert [t.name for t in only_fc if not t.pruned] == ["fc.weight"]
    assert [t.name for t in only_fc] == names
    assert prunable_tensors(model, exclude="fc.weight") == only_fc  # a single string is one name
    assert prunable_tensors(model, exclude=[output_layer(model)]) == only_fc
    shortcuts = [t.name for t in prunable_tensors(model, exclude=["*shortcut*"]) if not t.pruned]
    assert shortcuts == ["blocks.3.shortcut.0.weight", "blocks.6.shortcut.0.weight"]
    both = prunable_tensors(model, exclude=["conv.weight", "blocks.?.conv2.*", "fc.weight"])
    assert sum(not t.pruned for t in both) == 1 + 9 + 1
    assert all(t.pruned for t in prunable_tensors(model, exclude=()))


def test_exclude_that_matches_nothing_lists_the_tensors():
    model = shared("lenet300")
    with pytest.raises(ConfigError) as err:
        prunable_tensors(model, exclude=["fc.weight", "fc3.weight"])
    assert "'fc3.weight'" in str(err.value)
    assert "fc_layers.0.weight, fc_layers.1.weight, fc.weight" in str(err.value)
    with pytest.raises(ConfigError, match="matches no prunable tensor"):
        prunable_tensors(model, exclude=["fc.bias"])  # biases are never prunable
    with pytest.raises(ConfigError, match="names or patterns"):
        prunable_tensors(model, exclude=[3])


class _Compiled(nn.Module):
    """Stands in for torch.compile's OptimizedModule, which holds the model as ``_orig_mod``."""

    def __init__(self, model):
        super().__init__()
        self._orig_mod = model


def test_wrapper_prefixes_are_stripped():
    model = build("lenet300")
    plain = prunable_tensors(model, exclude=["fc.weight"])
    wrapped = nn.DataParallel(_Compiled(model))
    assert next(iter(dict(wrapped.named_parameters()))).startswith("module._orig_mod.")
    assert prunable_tensors(wrapped, exclude=["fc.weight"]) == plain
    assert prunable_tensors(wrapped, exclude=["module.fc.weight"]) == plain
    assert output_layer(wrapped) == "fc.weight"
    assert canonical_name("module._orig_mod.layers.0.conv.weight") == "layers.0.conv.weight"
    assert canonical_name("blocks.0.module.weight") == "blocks.0.module.weight"


def test_reparametrised_weights_keep_their_names():
    model = build("conv2")
    before = prunable_tensors(model)
    prune.l1_unstructured(model.convs[0], "weight", amount=0.5)
    prune.random_unstructured(model.fc, "weight", amount=0.5)
    assert prunable_tensors(model) == before
    assert output_layer(model) == "fc.weight"


def test_other_layer_kinds_and_models_without_linear():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Conv3d(3, 4, 1), nn.BatchNorm1d(4), nn.Linear(4, 5))
    assert [(t.name, t.kind) for t in prunable_tensors(model)] == [
        ("0.weight", "conv"), ("1.weight", "conv"), ("3.weight", "linear")]
    assert [t.name for t in prunable_tensors(nn.Linear(3, 2))] == ["weight"]
    with pytest.raises(ConfigError, match="no nn.Linear"):
        output_layer(nn.Sequential(nn.Conv2d(1, 1, 3)))
