import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class Wrapped(nn.Module):
    """Not an nn.Sequential, so a linear chain inside takes the general (materialized or
    layerwise) projection path, not the "linear" one."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


class TwoHeadCNN(nn.Module):
    """A small classifier with BatchNorm and two heads (content, color), like ColorResNet."""

    def __init__(self, heads=(4, 3)):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 16), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(16, h) for h in heads)

    def forward(self, x):
        features = self.trunk(x)
        return tuple(head(features) for head in self.heads)


@pytest.fixture
def two_head_data():
    """A retain and a forget set for TwoHeadCNN: 8×8 images, labels (content, color)."""
    g = torch.Generator().manual_seed(1)
    x_r, x_f = torch.randn(24, 3, 8, 8, generator=g), torch.randn(8, 3, 8, 8, generator=g)
    y_r = (torch.randint(4, (24,), generator=g), torch.randint(3, (24,), generator=g))
    y_f = (torch.randint(4, (8,), generator=g), torch.randint(3, (8,), generator=g))
    return (x_r, y_r), (x_f, y_f)


@pytest.fixture
def vector_data():
    """Regression on 5-d inputs: per-sample gradients well conditioned, unlike 1-d sine data."""
    g = torch.Generator().manual_seed(3)
    x_r, x_f = torch.randn(12, 5, generator=g), torch.randn(3, 5, generator=g)
    return (x_r, x_r.sum(1, keepdim=True).sin()), (x_f, torch.full((3, 1), 1.5))


@pytest.fixture
def sine_data():
    g = torch.Generator().manual_seed(2)
    x_r, x_f = torch.rand(20, 1, generator=g) * 6 - 3, torch.rand(4, 1, generator=g) * 6 - 3
    return (x_r, torch.sin(x_r)), (x_f, torch.full_like(x_f, 1.5))
