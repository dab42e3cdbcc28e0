"""The paper's models (SPEC §5, §6) and re-initialization for Retrain."""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from mnog.ensemble import Ensemble


def mlp(width: int = 300, hidden_layers: int = 2, inputs: int = 1, outputs: int = 1) -> nn.Sequential:
    """Data Poisoning's MLP: 1 → 300 → 300 → 1 with SiLU (SPEC §5; 91,201 parameters).

    An nn.Sequential of Linear layers and activations, so MinNorm-OG's projection takes
    the fast "linear" path (mnog.projection)."""
    layers, features = [], inputs
    for _ in range(hidden_layers):
        layers += [nn.Linear(features, width), nn.SiLU()]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, outputs))


class ColorResNet(nn.Module):
    """A torchvision ResNet trunk with one linear head per task (SPEC §6).

    depth 18: 3×3 stride-1 first convolution and no max-pool (32×32 inputs);
    depth 50: the standard stem. heads=(10, 3) gives (content class, color) logits;
    heads=(10,) a single head, whose logits are returned as a tensor, not a tuple."""

    def __init__(self, depth: int = 18, heads: tuple[int, ...] = (10, 3)):
        super().__init__()
        if depth not in (18, 50):
            raise ValueError(f"depth must be 18 or 50, got {depth}")
        self.depth, self.head_sizes = depth, tuple(heads)
        trunk = torchvision.models.resnet18() if depth == 18 else torchvision.models.resnet50()
        if depth == 18:
            trunk.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            trunk.maxpool = nn.Identity()
        features = trunk.fc.in_features
        trunk.fc = nn.Identity()
        self.trunk = trunk
        self.heads = nn.ModuleList(nn.Linear(features, size) for size in self.head_sizes)

    def forward(self, x):
        features = self.trunk(x)
        outputs = tuple(head(features) for head in self.heads)
        return outputs if len(outputs) > 1 else outputs[0]

    def reset_parameters(self) -> None:
        """torchvision's constructor initialization (not each layer's reset_parameters)."""
        self.load_state_dict(ColorResNet(self.depth, self.head_sizes).to(next(self.parameters()).device).state_dict())


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
