"""Training the models that are later unlearned, with atomic checkpoints and resume."""
from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from mnog import rehearsal
from mnog.colors import ColoredImages
from mnog.errors import NonFiniteError
from mnog.results import atomically, exclusive
from mnog.tasks import Task, as_heads


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    atomically(lambda tmp: torch.save(obj, tmp), path)


def train_full_batch(model: nn.Module, inputs: Tensor, targets: Tensor, task: Task, epochs: int, lr: float, *,
                     checkpoint: Path | None = None, every: int = 10_000, desc: str = "train") -> None:
    """AdamW(lr, PyTorch defaults otherwise) on the full batch for `epochs` epochs, in place.

    With `checkpoint`, model and optimizer are saved every `every` epochs and a later call
    resumes from the last save (the checkpoint is removed once training completes). Raises
    NonFiniteError when training diverges (checked every 1,000 epochs and at the end)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    check_every = min(every, 1000)           # epochs between checks that the loss is finite (each one syncs)
    start = 0
    state = load_cached(checkpoint, inputs.device)
    if state is not None and state["epochs"] == epochs:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["epoch"]
    model.train()
    for epoch in tqdm(range(start, epochs), initial=start, total=epochs, desc=desc, unit="epoch",
                      unit_scale=True, mininterval=1.0, dynamic_ncols=True):
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        if ((epoch + 1) % check_every == 0 or epoch + 1 == epochs) and not (
                torch.isfinite(loss) and all(bool(torch.isfinite(p).all()) for p in model.parameters())):
            raise NonFiniteError(f"{desc}: training diverged, the loss or the parameters hold NaN/Inf after "
                                 f"{epoch + 1} of {epochs} epochs at lr {lr:g}")
        if checkpoint is not None and (epoch + 1) % every == 0 and epoch + 1 < epochs:
            save_atomic({"epochs": epochs, "epoch": epoch + 1, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict()}, checkpoint)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# Image classifiers (docs/protocol.md#label-erasure and #representation-collapse)
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SGDConfig:
    """SGD with momentum and a step schedule: lr × gamma every `step_size` epochs."""
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    step_size: int = 20
    gamma: float = 0.1
    batch_size: int = 256


@dataclass(frozen=True)
class Phase:
    """`epochs` epochs over `data`; `head_weights` scales each head's loss (e.g. (1, 0): the
    class loss only, as Tiny ImageNet's first 10 epochs); `augment` as in docs/protocol.md#label-erasure."""
    data: ColoredImages
    epochs: int
    head_weights: tuple[float, ...] | None = None
    augment: bool = False


def load_cached(path: Path | None, device=None):
    """torch.load(path) of a file this project wrote (weights only), or None when it is absent.
    A file that does not load (truncated, overwritten) is moved aside with a warning naming
    it, so that the caller computes it again."""
    if path is None or not path.exists():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises OSError, RuntimeError, UnpicklingError, EOFError...)
        aside = path.with_name(f"{path.name}.corrupt-{os.getpid()}")
        os.replace(path, aside)
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        warnings.warn(f"{path} is corrupt ({type(exc).__name__}: {reason}); moved it to {aside.name} and computing "
                      "it again", stacklevel=2)
        return None


_LOAD_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("load_only", default=False)


@contextlib.contextmanager
def load_only():
    """Within the block, `cached_state` loads and never computes: a sweep's workers run this
    way, so that a worker that cannot see the driver's cache says so instead of training."""
    token = _LOAD_ONLY.set(True)
    try:
        yield
    finally:
        _LOAD_ONLY.reset(token)


def cached_state(path: Path, desc: str, compute: Callable[[Path], dict], device=None, spec: dict | None = None) -> dict:
    """The state dict stored at `path`, or `compute(checkpoint)`'s, saved there atomically.

    The caller names `path` by a hash of everything that determines the result, `spec`; the
    file stores `spec` too (as "spec", beside what `compute` returns), and a file whose stored
    spec differs from `spec`, or which stores none (replaced by hand, written by an older
    mnog), is moved aside with a warning saying how it differs, and computed again: a cache
    never stands in for another configuration. `compute` may checkpoint to the path it is
    given and resume from it. Two processes that need the same state take turns (the second
    loads what the first saved); a file that does not load is moved aside and computed again
    (`load_cached`); under `load_only` a missing or mismatched file is an error, never a
    computation."""
    wanted = None if spec is None else _canonical(spec)
    state = load_cached(path, device)
    if state is not None and _differences(state, wanted) is None:
        return state
    if _LOAD_ONLY.get():
        why = "" if state is None else f" for this configuration (the file there holds {desc} " \
                                       f"{_differences(state, wanted)})"
        raise FileNotFoundError(f"no cached {desc}{why} at {path}: the driver trains it before the sweep, and "
                                f"workers on other machines need the driver's results folder at the same path")
    with exclusive(path.with_name(f".{path.name}.lock"), desc):       # a concurrent run computes it once
        state = load_cached(path, device)                             # ... and may just have
        if state is not None and (difference := _differences(state, wanted)) is not None:
            aside = path.with_name(f"{path.name}.mismatch-{os.getpid()}")
            os.replace(path, aside)
            warnings.warn(f"{path} holds {desc} {difference}; moved it to {aside.name} and computing it again",
                          stacklevel=2)
            state = None
        if state is None:
            state = compute(path.with_suffix(".ckpt"))
            if wanted is not None:
                state = {**state, "spec": wanted}
            save_atomic(state, path)
    return state


def _canonical(spec: dict) -> dict:
    """`spec` as a cache file stores it: JSON values (anything else by its str)."""
    return json.loads(json.dumps(spec, default=str))


def _differences(state, wanted: dict | None) -> str | None:
    """How the configuration a cache file stores differs from `wanted` ("for another
    configuration (epochs 1000, not 2000)"); None when it does not, or nothing is wanted."""
    if wanted is None:
        return None
    stored = state.get("spec") if isinstance(state, dict) else None
    if not isinstance(stored, dict):
        return "with no record of the configuration they were computed for (written by an older mnog, or not by mnog)"
    if stored == wanted:
        return None
    changed = [f"{k} {json.dumps(stored.get(k, '(none)'))}, not {json.dumps(wanted.get(k, '(none)'))}"
               for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
    return f"for another configuration ({'; '.join(changed)})"


def train_cached(path: Path, model: nn.Module, phases: list[Phase], sgd: SGDConfig, *, seed: int,
                 desc: str, spec: dict, **options) -> nn.Module:
    """`model` trained by `train_classifier`, or loaded from `path` if a finished run left it
    there for the same configuration `spec` (`cached_state`). The caller names `path` by a hash
    of `spec`, everything that determines the model."""
    def train(checkpoint: Path) -> dict:
        train_classifier(model, phases, sgd, seed=seed, checkpoint=checkpoint, desc=desc, **options)
        return {"model": model.state_dict()}

    model.load_state_dict(cached_state(path, desc, train, next(model.parameters()).device, spec=spec)["model"])
    rehearsal.log("model", what=path.name)
    return model


def label_erasure_recipe(dataset: str, data: ColoredImages, epochs: int = 100,
                         ground_truth: bool = False) -> tuple[SGDConfig, list[Phase]]:
    """Label Erasure's training of its initial (or ground-truth) model on `data` (docs/protocol.md#label-erasure).

    CIFAR-10 (ColorResNet-18): SGD lr 3e-2, momentum 0.9, weight decay 5e-4, batch 256,
    lr × 0.1 at epoch 50, loss = class CE + color CE. Tiny ImageNet (ColorResNet-50 from
    ImageNet weights): RandomResizedCrop(64, scale 0.7-1.0) + flip, SGD lr 0.1, momentum
    0.9, weight decay 1e-4, batch 512, lr × 0.3 every 25 epochs; the initial model's loss is
    the class loss alone for the first 10 epochs, then class + color; the ground-truth
    model's is class + color from epoch 0 (the authors' code:
    docs/authors-code.md#tiny-imagenets-ground-truth-model)."""
    if dataset == "cifar10":
        return (SGDConfig(lr=3e-2, weight_decay=5e-4, step_size=epochs // 2, gamma=0.1, batch_size=256),
                [Phase(data, epochs)])
    if dataset == "tiny_imagenet":
        sgd = SGDConfig(lr=0.1, weight_decay=1e-4, step_size=epochs // 4, gamma=0.3, batch_size=512)
        if ground_truth:
            return sgd, [Phase(data, epochs, augment=True)]
        return sgd, [Phase(data, 10, head_weights=(1.0, 0.0), augment=True), Phase(data, epochs - 10, augment=True)]
    raise ValueError(f"Label Erasure trains on cifar10 or tiny_imagenet, not {dataset!r}")


PRECISIONS = ("float32", "bfloat16")


def train_classifier(model: nn.Module, phases: list[Phase], sgd: SGDConfig, *, seed: int,
                     checkpoint: Path | None = None, precision: str = "float32", channels_last: bool = True,
                     compile: bool = False, deterministic: bool = False, desc: str = "train") -> None:
    """Train in place through `phases` with one SGD optimizer and one step schedule spanning
    all of them (the authors' warm start shares both with the main phase).

    Loss per batch: mean over samples of weight_i · Σ_h head_weight_h · CE_h. Batches are
    drawn by a seeded permutation of GPU-resident uint8 images and rendered on the fly.
    precision="float32" trains in float32, as the authors' code (docs/authors-code.md#training-precision; on a GPU
    PyTorch's default TF32 convolutions, as theirs); "bfloat16" runs the forward and backward
    in bf16 autocast (on any device). On CUDA the model runs channels-last, and `compile`
    runs it through torch.compile. `deterministic` makes CUDA reproduce
    bit for bit (slower). With `checkpoint`, everything (model, optimizer, schedule, RNG,
    position) is saved atomically after every epoch and a later call resumes from the
    last save. In a rehearsal (mnog.rehearsal) each phase is one epoch cut to a few batches."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = next(model.parameters()).device
    optimizer = torch.optim.SGD(model.parameters(), lr=sgd.lr, momentum=sgd.momentum, weight_decay=sgd.weight_decay)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=sgd.step_size, gamma=sgd.gamma)
    generator = torch.Generator(device=device).manual_seed(seed)
    done = 0  # epochs finished, over all phases
    state = load_cached(checkpoint, device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"].cpu())
        done = state["epochs_done"]
    cuda = device.type == "cuda"
    if channels_last and cuda:
        model.to(memory_format=torch.channels_last)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    forward = torch.compile(model) if compile else model
    epochs = [rehearsal.train_epochs(p.epochs) for p in phases]
    total = sum(epochs)
    bar = tqdm(total=total, initial=done, desc=desc, unit="epoch", dynamic_ncols=True)
    epoch = 0
    for phase, phase_epochs in zip(phases, epochs):
        for _ in range(phase_epochs):
            epoch += 1
            if epoch <= done:
                continue
            batches = rehearsal.train_batches()
            with rehearsal.timed("train", model=_label(model, phase, sgd.batch_size, precision), what=desc,
                                 batches=min(batches or 0, -(-len(phase.data) // sgd.batch_size))):
                loss = _train_epoch(model, forward, phase, optimizer, sgd.batch_size, generator, batches=batches,
                                    amp=precision == "bfloat16", channels_last=channels_last and cuda)
            schedule.step()
            bar.update()
            bar.set_postfix_str(f"loss {loss:.3f} lr {schedule.get_last_lr()[0]:.2g}")
            if checkpoint is not None and epoch < total:
                save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "schedule": schedule.state_dict(), "generator": generator.get_state(),
                             "epochs_done": epoch}, checkpoint)
    bar.close()
    if deterministic:
        torch.use_deterministic_algorithms(False)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    model.to(memory_format=torch.contiguous_format)


def _label(model: nn.Module, phase: Phase, batch_size: int, precision: str) -> str:
    """What a training batch's cost depends on, in words (a rehearsal's log groups by it)."""
    config = getattr(model, "config", {})
    name = f"ResNet-{config['depth']} w{config['width']}" if config else type(model).__name__
    side = phase.data.images.shape[-1]
    return f"{name} {side}×{side} batch {batch_size}{' augmented' if phase.augment else ''} {precision}"


def _train_epoch(model, forward, phase: Phase, optimizer, batch_size: int, generator, *, amp: bool,
                 channels_last: bool, batches: int | None = None) -> float:
    """One epoch (its first `batches` batches, if given); `forward` is the model itself or its
    torch.compile'd version."""
    model.train()
    data = phase.data
    device = data.images.device
    order = torch.randperm(len(data), generator=generator, device=device)
    head_weights = phase.head_weights
    total, count = torch.zeros((), device=device), 0
    for index in order.split(batch_size)[:batches]:
        inputs = data.inputs(index)
        if phase.augment:
            inputs = random_resized_crop_flip(inputs, generator)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = as_heads(forward(inputs))
        targets = as_heads(data.targets(index))
        weights = head_weights or (1.0,) * len(outputs)
        per_sample = sum(w * F.cross_entropy(o.float(), t, reduction="none")
                         for w, o, t in zip(weights, outputs, targets) if w)
        loss = (per_sample * data.sample_weights(index)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(index)
        count += len(index)
    return float(total) / count


def random_resized_crop_flip(images: Tensor, generator: torch.Generator, scale=(0.7, 1.0),
                             ratio=(3 / 4, 4 / 3)) -> Tensor:
    """torchvision's RandomResizedCrop(size, scale, ratio) + RandomHorizontalFlip, drawn per
    image (`crop_boxes`) and applied to the whole batch at once by one affine resampling
    (bilinear) back to the input's own size."""
    n, device = len(images), images.device
    height, width = images.shape[-2:]
    top, left, h, w = crop_boxes(n, height, width, generator, scale, ratio)
    flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0)
    # Output pixel centers map onto the box [left, left + w) × [top, top + h) (align_corners=False).
    theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = w / width * flip, (2 * left + w) / width - 1
    theta[:, 1, 1], theta[:, 1, 2] = h / height, (2 * top + h) / height - 1
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_boxes(n: int, height: int, width: int, generator: torch.Generator, scale=(0.7, 1.0),
               ratio=(3 / 4, 4 / 3), attempts: int = 10) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(top, left, box height, box width) of n crops, in whole pixels, drawn as torchvision's
    RandomResizedCrop.get_params draws one (docs/authors-code.md#tiny-imagenets-augmentation): up to
    `attempts` tries of an area fraction in `scale` and a log-uniform aspect ratio, the first box
    that fits inside the image kept at a uniform integer offset; when none fits, the central-crop
    fallback."""
    device = generator.device
    uniform = lambda lo, hi, *shape: lo + (hi - lo) * torch.rand(*shape, generator=generator, device=device)  # noqa: E731
    area = height * width * uniform(*scale, attempts, n)
    aspect = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1]), attempts, n))
    w, h = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)                     # (attempts, n)
    first = fits.int().argmax(0, keepdim=True)                                  # the first try that fits
    # The fallback: the largest central box whose aspect ratio lies in `ratio`.
    fallback_w, fallback_h = width, height
    if width / height < min(ratio):
        fallback_h = round(width / min(ratio))
    elif width / height > max(ratio):
        fallback_w = round(height * max(ratio))
    found = fits.any(0)
    w = torch.where(found, w.gather(0, first)[0], torch.full((n,), float(fallback_w), device=device))
    h = torch.where(found, h.gather(0, first)[0], torch.full((n,), float(fallback_h), device=device))
    top = torch.where(found, torch.floor(uniform(0, 1, n) * (height - h + 1)).clamp(max=height - h),
                      torch.div(height - h, 2, rounding_mode="floor"))
    left = torch.where(found, torch.floor(uniform(0, 1, n) * (width - w + 1)).clamp(max=width - w),
                       torch.div(width - w, 2, rounding_mode="floor"))
    return top, left, h, w
