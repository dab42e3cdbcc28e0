"""Evaluation metrics."""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from mnog import rehearsal
from mnog.colors import ERASURE_RGB, GRAY, GREEN, RED, ColoredImages, render
from mnog.ensemble import Ensemble


@torch.no_grad()
def sup_error(model: nn.Module, x: Tensor) -> Tensor:
    """sup_x |f(θ, x) − sin(x)| over the grid x of shape (n, 1) (docs/protocol.md#data-poisoning).

    A scalar for one model, one value per member (E,) for an Ensemble."""
    was_training = model.training
    model.eval()
    inputs = model.broadcast(x) if isinstance(model, Ensemble) else x
    error = (model(inputs) - torch.sin(inputs)).abs().amax(dim=(-2, -1))
    model.train(was_training)
    return error


EVAL_PRECISIONS = ("float32", "bfloat16")


@contextlib.contextmanager
def scoring(model: nn.Module, precision: str = "float32"):
    """Eval mode and inference mode for the block; precision="bfloat16" adds bf16 autocast on
    the model's device, and on CUDA the model runs channels-last (convolutions' fast layout; the
    inputs are converted by the first convolution). Afterwards: the model's own mode and layout.
    Metrics compare argmaxes and softmaxes in float32 either way (outputs are cast back)."""
    if precision not in EVAL_PRECISIONS:
        raise ValueError(f"precision must be one of {EVAL_PRECISIONS}, got {precision!r}")
    was_training = model.training
    tensor = next(model.parameters(), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    model.eval()
    channels_last = precision == "bfloat16" and device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=precision == "bfloat16"):
            yield
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)


def scoring_batch(model: nn.Module) -> int:
    """The metrics' batch size on the model's device: 256 images on a CPU, where larger batches
    fall out of the caches (ColorResNet-18 of width 8 on the 2-core CPU, AMD EPYC: 2,000 images
    in 0.59 s at 256 a batch, 1.19 s at 1,000), 1,024 on a GPU."""
    tensor = next(model.parameters(), None)
    return 1024 if tensor is not None and tensor.device.type == "cuda" else 256


def _float(outputs):
    return tuple(o.float() for o in outputs) if isinstance(outputs, tuple) else outputs.float()


def color_accuracy(model: nn.Module, images: Tensor, palette, norm, batch_size: int | None = None,
                   precision: str = "float32") -> float:
    """Representation Collapse's metric: every test image is shown in each palette
    color; a prediction is correct when it names the color shown. Fraction over all.
    `precision`: as `scoring` (float32, or bfloat16 autocast); batch_size None: `scoring_batch`."""
    correct, batch_size = 0, batch_size or scoring_batch(model)
    images = images[:rehearsal.scored(len(images), f"color accuracy {tuple(images.shape[1:])}", len(palette))]
    with scoring(model, precision):
        for color in range(len(palette)):
            for part in images.split(batch_size):
                colors = torch.full((len(part),), color, device=part.device)
                correct += int((_float(model(render(part, colors, palette, norm))).argmax(-1) == color).sum())
    return correct / (len(images) * len(palette))


def erasure_metrics(model: nn.Module, images: Tensor, labels: Tensor, norm, batch_size: int | None = None,
                    precision: str = "float32") -> tuple[float, float]:
    """Label Erasure's two metrics (docs/protocol.md#label-erasure), in eval mode, on test images:

    retain quality: the fraction of gray copies whose content class and color (gray) are
    both predicted correctly (higher is better); forget-quality error: the mean of
    (1 − p_θ(gray | x))² over the gray, red and green copies of every image (lower is
    better). The ideal point is (1, 0). `precision`: as `scoring`; batch_size None: `scoring_batch`."""
    correct, error, batch_size = 0, 0.0, batch_size or scoring_batch(model)
    keep = rehearsal.scored(len(images), f"erasure metrics {tuple(images.shape[1:])}", 3)
    images, labels = images[:keep], labels[:keep]
    with scoring(model, precision):
        for part, part_labels in zip(images.split(batch_size), labels.split(batch_size)):
            for color in (GRAY, RED, GREEN):
                colors = torch.full((len(part),), color, device=part.device)
                content, color_logits = _float(model(render(part, colors, ERASURE_RGB, norm)))
                error += float((1 - color_logits.softmax(-1)[:, GRAY]).pow(2).sum())
                if color == GRAY:
                    correct += int(((content.argmax(-1) == part_labels) & (color_logits.argmax(-1) == GRAY)).sum())
    return correct / len(images), error / (3 * len(images))


@torch.no_grad()
def fit_accuracy(model: nn.Module, inputs, targets=None, batch_size: int = 500) -> tuple[float, ...]:
    """How well a classifier fits a set (D_r or D_f, as a Trial holds them: inputs and one
    label tensor per head, or a ColoredImages, rendered a batch at a time, with its own
    targets): per head, the fraction of samples predicted right, in eval mode; for several
    heads, last, the fraction with every head right. A model that interpolates its training
    set has 1.0 everywhere: the regime the paper's argument assumes."""
    colored = isinstance(inputs, ColoredImages)
    targets = inputs.targets() if colored else targets
    device = inputs.images.device if colored else inputs.device
    was_training = model.training
    model.eval()
    heads = targets if isinstance(targets, tuple) else (targets,)
    hits = []
    for index in torch.arange(len(inputs), device=device).split(batch_size):
        outputs = model(inputs.inputs(index) if colored else inputs[index])
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        hits.append(torch.stack([o.argmax(-1) == t[index] for o, t in zip(outputs, heads)]))
    model.train(was_training)
    hits = torch.cat(hits, dim=1).float()                              # (heads, samples)
    per_head = [float(h.mean()) for h in hits]
    return tuple(per_head) if len(per_head) == 1 else (*per_head, float(hits.prod(0).mean()))
