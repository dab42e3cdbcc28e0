"""Data sets of the paper's experiments."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SinePoisoning:
    """SPEC §5: 50 retain points y = sin(x) and 5 forget points y = 1.5, x ~ U[-5π, 5π]."""
    n_retain: int = 50
    n_forget: int = 5
    x_max: float = 5 * math.pi   # x ∈ [-x_max, x_max]
    poison: float = 1.5          # the forget points' label

    def sample(self, seed: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """((x_r, y_r), (x_f, y_f)) of one trial, each x of shape (n, 1)."""
        generator = torch.Generator().manual_seed(seed)
        x_r = (torch.rand(self.n_retain, 1, generator=generator) * 2 - 1) * self.x_max
        x_f = (torch.rand(self.n_forget, 1, generator=generator) * 2 - 1) * self.x_max
        return (x_r, torch.sin(x_r)), (x_f, torch.full_like(x_f, self.poison))

    def sample_trials(self, seeds: list[int]):
        """The trials stacked along a leading member dim: ((E, 50, 1), ...) for an Ensemble."""
        trials = [self.sample(s) for s in seeds]
        stack = lambda part, i: torch.stack([t[part][i] for t in trials])  # noqa: E731
        return (stack(0, 0), stack(0, 1)), (stack(1, 0), stack(1, 1))

    def test_grid(self, points: int = 1000) -> Tensor:
        """The evaluation inputs: `points` evenly spaced x in [-x_max, x_max], shape (points, 1)."""
        return torch.linspace(-self.x_max, self.x_max, points).unsqueeze(1)
