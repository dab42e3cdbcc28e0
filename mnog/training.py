"""Training the models that are later unlearned, with atomic checkpoints and resume."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mnog.tasks import Task


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_full_batch(model: nn.Module, inputs: Tensor, targets: Tensor, task: Task, epochs: int, lr: float, *,
                     checkpoint: Path | None = None, every: int = 10_000, desc: str = "train") -> None:
    """AdamW(lr, PyTorch defaults otherwise) on the full batch for `epochs` epochs, in place.

    With `checkpoint`, model and optimizer are saved every `every` epochs and a later call
    resumes from the last save (the checkpoint is removed once training completes)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=inputs.device, weights_only=True)
        if state["epochs"] == epochs:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start = state["epoch"]
    model.train()
    for epoch in tqdm(range(start, epochs), initial=start, total=epochs, desc=desc, unit="epoch",
                      unit_scale=True, mininterval=1.0, dynamic_ncols=True):
        optimizer.zero_grad(set_to_none=True)
        task.loss(model(inputs), targets).backward()
        optimizer.step()
        if checkpoint is not None and (epoch + 1) % every == 0 and epoch + 1 < epochs:
            save_atomic({"epochs": epochs, "epoch": epoch + 1, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict()}, checkpoint)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
