"""Colored copies of images, as tensor operations on whole batches (docs/protocol.md#colored-copies-and-models).

Images are uint8 tensors (B, 3, H, W) (RGB) or (B, 1, H, W) (already grayscale). The
grayscale L is PIL's `convert("L")` exactly (ITU-R 601-2 luma in PIL's fixed-point
arithmetic), and a colored copy scales L per channel: gray = (L, L, L), red = (L, 0, 0),
green = (0, L, 0), palette color k = L · c_k / 255 per channel, rounded to an integer as
PIL's `Image.point(lambda p: p * c / 255)` does (the authors' transform). `render` turns uint8 colored copies into
the normalized float inputs of a model. Everything runs on the images' device, so
coloring a batch costs nothing next to the model's forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from mnog.tasks import as_heads

# Label Erasure's colors (docs/protocol.md#label-erasure): color label 0 = gray, 1 = red, 2 = green.
GRAY, RED, GREEN = 0, 1, 2
ERASURE_RGB = ((255, 255, 255), (255, 0, 0), (0, 255, 0))

# Representation Collapse's palette (docs/protocol.md#colored-copies-and-models): class k is shown in color k.
PALETTE = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255),
           (0, 255, 255), (255, 128, 0), (128, 0, 255), (128, 128, 128), (0, 128, 128))
PALETTE_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "purple", "gray", "teal")

# Per-channel normalization (docs/protocol.md#colored-copies-and-models).
CIFAR_NORM = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def luminance(images: Tensor) -> Tensor:
    """PIL's convert("L"): (B, 1, H, W) uint8, L = (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.to(torch.int32).unbind(1)
    return ((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16).to(torch.uint8).unsqueeze(1)


def colorize(images: Tensor, colors: Tensor, palette: tuple[tuple[int, int, int], ...]) -> Tensor:
    """Image i in color palette[colors[i]]: (B, 3, H, W) uint8.

    Channel c of the result is round(L · palette[k][c] / 255) = ⌊(L · c + 127) / 255⌋ (no
    ties: 255 is odd), so 255 gives L and 0 gives 0 (the gray, red and green copies)."""
    rgb = torch.tensor(palette, dtype=torch.int32, device=images.device)[colors.long()]   # (B, 3)
    return ((luminance(images).to(torch.int32) * rgb[:, :, None, None] + 127) // 255).to(torch.uint8)


def render(images: Tensor, colors: Tensor, palette: tuple[tuple[int, int, int], ...] | None,
           norm: tuple[tuple[float, ...], tuple[float, ...]], dtype: torch.dtype = torch.float32) -> Tensor:
    """Colored copies as normalized model inputs: (x / 255 − mean) / std per channel; with
    palette None the images in their own colors (the standard benchmark's plain images)."""
    mean, std = (torch.tensor(v, dtype=dtype, device=images.device).view(1, 3, 1, 1) for v in norm)
    shown = images if palette is None else colorize(images, colors, palette)
    return (shown.to(dtype) / 255 - mean) / std


@dataclass(frozen=True)
class ColoredImages:
    """A set of images, each shown in one color of `palette`, with its labels and loss weight.

    The images stay uint8 (on the GPU when there is one); `inputs` renders any subset as
    model inputs in one batched operation, so no per-image Python work is ever done."""
    images: Tensor                        # (N, C, H, W) uint8
    colors: Tensor                        # (N,) index into palette
    labels: Tensor | tuple[Tensor, ...]   # (N,) per head
    palette: tuple[tuple[int, int, int], ...] | None   # None: the images in their own colors
    norm: tuple[tuple[float, ...], tuple[float, ...]]
    weights: Tensor | None = None         # (N,) per-sample loss weight; None = 1

    def __len__(self) -> int:
        return len(self.images)

    def inputs(self, index: Tensor | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        if index is None:
            return render(self.images, self.colors, self.palette, self.norm, dtype)
        return render(self.images[index], self.colors[index], self.palette, self.norm, dtype)

    def targets(self, index: Tensor | None = None):
        pick = (lambda t: t) if index is None else (lambda t: t[index])
        heads = tuple(pick(t) for t in as_heads(self.labels))
        return heads if isinstance(self.labels, tuple) else heads[0]

    def sample_weights(self, index: Tensor) -> Tensor:
        return torch.ones(len(index), device=self.images.device) if self.weights is None else self.weights[index]

    def take(self, index: Tensor) -> "ColoredImages":
        return replace(self, images=self.images[index], colors=self.colors[index], labels=self.targets(index),
                       weights=None if self.weights is None else self.weights[index])

    def to(self, device) -> "ColoredImages":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        labels = tuple(move(t) for t in as_heads(self.labels))
        return replace(self, images=move(self.images), colors=move(self.colors), weights=move(self.weights),
                       labels=labels if isinstance(self.labels, tuple) else labels[0])


def rendered(data) -> tuple:
    """(inputs, targets) of a set given as a ColoredImages (rendered now, all of it) or as such a pair."""
    return (data.inputs(), data.targets()) if isinstance(data, ColoredImages) else data


def concat(a: ColoredImages, b: ColoredImages) -> ColoredImages:
    """D_r ∪ D_f: two sets with the same palette and normalization."""
    if a.palette != b.palette or a.norm != b.norm:
        raise ValueError("only sets with the same palette and normalization can be joined")
    weights = None if a.weights is None and b.weights is None else torch.cat(
        [x.sample_weights(torch.arange(len(x), device=x.images.device)) for x in (a, b)])
    labels = tuple(torch.cat(pair) for pair in zip(as_heads(a.labels), as_heads(b.labels)))
    return replace(a, images=torch.cat([a.images, b.images]), colors=torch.cat([a.colors, b.colors]),
                   labels=labels if isinstance(a.labels, tuple) else labels[0], weights=weights)
