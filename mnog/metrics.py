"""Evaluation metrics."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mnog.ensemble import Ensemble


@torch.no_grad()
def sup_error(model: nn.Module, x: Tensor) -> Tensor:
    """sup_x |f(θ, x) − sin(x)| over the grid x of shape (n, 1) (SPEC §5).

    A scalar for one model, one value per member (E,) for an Ensemble."""
    was_training = model.training
    model.eval()
    inputs = model.broadcast(x) if isinstance(model, Ensemble) else x
    error = (model(inputs) - torch.sin(inputs)).abs().amax(dim=(-2, -1))
    model.train(was_training)
    return error
