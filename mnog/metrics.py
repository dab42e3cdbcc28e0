"""Evaluation metrics."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mnog.colors import ERASURE_RGB, GRAY, GREEN, RED, render
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


@torch.no_grad()
def color_accuracy(model: nn.Module, images: Tensor, palette, norm, batch_size: int = 1000) -> float:
    """Representation Collapse's metric (SPEC §8): every test image is shown in each palette
    color; a prediction is correct when it names the color shown. Fraction over all."""
    was_training = model.training
    model.eval()
    correct = 0
    for color in range(len(palette)):
        for part in images.split(batch_size):
            colors = torch.full((len(part),), color, device=part.device)
            correct += int((model(render(part, colors, palette, norm)).argmax(-1) == color).sum())
    model.train(was_training)
    return correct / (len(images) * len(palette))


@torch.no_grad()
def erasure_metrics(model: nn.Module, images: Tensor, labels: Tensor, norm, batch_size: int = 500
                    ) -> tuple[float, float]:
    """Label Erasure's two metrics (SPEC §7), in eval mode, on test images:

    retain quality: the fraction of gray copies whose content class and color (gray) are
    both predicted correctly (higher is better); forget-quality error: the mean of
    (1 − p_θ(gray | x))² over the gray, red and green copies of every image (lower is
    better). The ideal point is (1, 0)."""
    was_training = model.training
    model.eval()
    correct, error = 0, 0.0
    for part, part_labels in zip(images.split(batch_size), labels.split(batch_size)):
        for color in (GRAY, RED, GREEN):
            colors = torch.full((len(part),), color, device=part.device)
            content, color_logits = model(render(part, colors, ERASURE_RGB, norm))
            error += float((1 - color_logits.softmax(-1)[:, GRAY]).pow(2).sum())
            if color == GRAY:
                correct += int(((content.argmax(-1) == part_labels) & (color_logits.argmax(-1) == GRAY)).sum())
    model.train(was_training)
    return correct / len(images), error / (3 * len(images))


@torch.no_grad()
def fit_accuracy(model: nn.Module, inputs: Tensor, targets, batch_size: int = 500) -> tuple[float, ...]:
    """How well a classifier fits a set (D_r or D_f, as a Trial holds them: inputs and one
    label tensor per head): per head, the fraction of samples predicted right, in eval mode;
    for several heads, last, the fraction with every head right. A model that interpolates its
    training set has 1.0 everywhere: the regime the paper's argument assumes."""
    was_training = model.training
    model.eval()
    heads = targets if isinstance(targets, tuple) else (targets,)
    hits = []
    for index in torch.arange(len(inputs), device=inputs.device).split(batch_size):
        outputs = model(inputs[index])
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        hits.append(torch.stack([o.argmax(-1) == t[index] for o, t in zip(outputs, heads)]))
    model.train(was_training)
    hits = torch.cat(hits, dim=1).float()                              # (heads, samples)
    per_head = [float(h.mean()) for h in hits]
    return tuple(per_head) if len(per_head) == 1 else (*per_head, float(hits.prod(0).mean()))
