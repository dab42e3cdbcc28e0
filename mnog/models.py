"""The paper's models (docs/protocol.md#colored-copies-and-models) and re-initialization for Retrain."""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from mnog import rehearsal
from mnog.ensemble import Ensemble


def mlp(width: int = 300, hidden_layers: int = 2, inputs: int = 1, outputs: int = 1) -> nn.Sequential:
    """Data Poisoning's MLP: 1 → 300 → 300 → 1 with SiLU (docs/protocol.md#data-poisoning; 91,201 parameters).

    An nn.Sequential of Linear layers and activations, so MinNorm-OG's projection takes
    the fast "linear" path (mnog.projection)."""
    layers, features = [], inputs
    for _ in range(hidden_layers):
        layers += [nn.Linear(features, width), nn.SiLU()]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, outputs))


class ColorResNet(nn.Module):
    """A torchvision ResNet trunk with one linear head per task (docs/protocol.md#colored-copies-and-models).

    depth 18: a 3×3 stride-1 first convolution and no max-pool (32×32 inputs), as the
    authors replace them after construction; `width` scales every layer's channels
    (64 is torchvision's ResNet-18; the CPU profiles use 16). depth 50: torchvision's
    ResNet-50 unchanged, optionally from its ImageNet weights (`imagenet=True`, docs/protocol.md#label-erasure).
    heads=(10, 3) gives (content class, color) logits; a single head's logits come back
    as a tensor, several heads' as a tuple."""

    def __init__(self, depth: int = 18, heads: tuple[int, ...] = (10, 3), width: int = 64,
                 imagenet: bool = False):
        super().__init__()
        if depth not in (18, 50):
            raise ValueError(f"depth must be 18 or 50, got {depth}")
        if depth == 50 and width != 64:
            raise ValueError("ColorResNet-50 has torchvision's widths; width applies to depth 18")
        self.config = {"depth": depth, "heads": tuple(heads), "width": width, "imagenet": imagenet}
        if depth == 18:
            if imagenet:
                raise ValueError("only ColorResNet-50 starts from ImageNet weights")
            trunk = _ResNet18(width)
            trunk.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
            trunk.maxpool = nn.Identity()
        else:
            trunk = torchvision.models.resnet50()
            if imagenet:
                trunk.load_state_dict(imagenet_resnet50_weights())
        features = 8 * width if depth == 18 else trunk.fc.in_features
        trunk.fc = nn.Identity()
        self.trunk = trunk
        self.heads = nn.ModuleList(nn.Linear(features, size) for size in heads)

    def forward(self, x):
        features = self.trunk(x)
        outputs = tuple(head(features) for head in self.heads)
        return outputs if len(outputs) > 1 else outputs[0]

    def reset_parameters(self) -> None:
        """A freshly constructed model's random parameters (Retrain), as the authors' code:
        ColorResNet-50 too starts from random weights, not from ImageNet's
        (docs/authors-code.md#retrain-starts-from-random-weights)."""
        fresh = ColorResNet(**{**self.config, "imagenet": False}).to(next(self.parameters()).device)
        self.load_state_dict(fresh.state_dict())


def imagenet_resnet50_weights() -> dict:
    """torchvision's ResNet50_Weights.IMAGENET1K_V1, fetched into $MNOG_DATA and verified
    against checksums.txt like every other download (mnog.download.fetch). A rehearsal
    (mnog.rehearsal) that cannot have them goes on with random weights of the same shapes."""
    from mnog.datasets import DATA
    from mnog.download import DataUnavailable, fetch
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    try:
        if rehearsal.weights_missing():          # said once; not downloaded again for every model
            raise DataUnavailable(rehearsal.weights_missing())
        path = fetch(url.rsplit("/", 1)[1], DATA)
    except DataUnavailable as exc:
        if not rehearsal.active():
            raise
        rehearsal.without_weights(exc)
        return torchvision.models.resnet50().state_dict()
    return torch.load(path, map_location="cpu", weights_only=True)


class _ResNet18(torchvision.models.ResNet):
    """torchvision's ResNet-18 with every layer's channels scaled by width / 64."""

    def __init__(self, width: int):
        self.width = width
        super().__init__(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2])
        self.bn1 = nn.BatchNorm2d(width)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:                      # layer1: its input is the stem's `width` channels
            self.inplanes = self.width
        return super()._make_layer(block, planes * self.width // 64, blocks, stride, dilate)


@torch.no_grad()
def reinitialize(model: nn.Module, seed: int) -> None:
    """Draw fresh initial parameters in place, reproducibly from `seed` (Retrain).

    A model that defines `reset_parameters` itself is re-initialized by it; otherwise
    every submodule that has one (Linear, Conv, BatchNorm, ...) is reset. Ensemble
    members are re-initialized independently. The global RNG is left untouched."""
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=devices[:1]):
        torch.manual_seed(seed)
        if isinstance(model, Ensemble):
            fresh = [model.member(i) for i in range(model.num_members)]
            for member in fresh:
                _reset(member)
            model.load_members(fresh)
        else:
            _reset(model)


def _reset(model: nn.Module) -> None:
    if "reset_parameters" in type(model).__dict__:
        model.reset_parameters()
        return
    resettable = [m for m in model.modules() if hasattr(m, "reset_parameters")]
    if not resettable:
        raise ValueError(f"{type(model).__name__} has no reset_parameters(); Retrain cannot re-initialize it")
    for m in resettable:
        m.reset_parameters()
