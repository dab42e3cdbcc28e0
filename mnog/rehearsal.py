"""The switches of a rehearsal (mnog.rehearse, `make rehearse`): set, the core cuts its loops short.

A rehearsal runs every image target's own script at the paper profile, at the paper's shapes,
with $MNOG_REHEARSE holding the cuts as JSON (so the sweep's worker processes see them too).
The core reads them here, each at the one place its loop runs:

- mnog.training.train_classifier: each training phase one epoch of `train_batches` batches;
- mnog.experiment.sweep: the first configuration of each method (`jobs`; the rest counted);
- mnog.loop.unlearn: `steps` steps per run;
- the metrics (mnog.metrics, mnog.experiment.field_sets, training_fit): the first `scored`
  images, except once per metric and set shape in the whole rehearsal, in a driver process,
  which scores the whole set (`scored`);
- mnog.models.imagenet_resnet50_weights: without the weights, random ones of the same shapes.

Every process appends what it measured to the rehearsal's JSON-lines log (`log`, `timed`):
seconds per training batch and per unlearning step, data set sizes, its peak memory.
Outside a rehearsal ($MNOG_REHEARSE unset) every switch leaves the loop whole and nothing is
logged. This module imports only the standard library: the core imports it everywhere.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "MNOG_REHEARSE"   # JSON of `Cuts`: set, the core cuts its loops short (this module's hooks)


@dataclass(frozen=True)
class Cuts:
    """How short every loop is cut; with `log`, the file every process appends its measurements to."""
    log: str
    train_batches: int = 2   # training batches per phase of every model (instead of the phase's epochs)
    steps: int = 2           # unlearning steps per run (instead of T epochs of steps)
    scored: int = 256        # images each metric scores, after its one full pass in the driver


@functools.cache
def cuts() -> Cuts | None:
    """The rehearsal's cuts, or None outside a rehearsal (the core then runs in full)."""
    value = os.environ.get(ENV)
    return Cuts(**json.loads(value)) if value else None


def active() -> bool:
    return cuts() is not None


def train_epochs(epochs: int) -> int:
    """Epochs of a training phase: one (cut to `train_batches` batches) in a rehearsal."""
    return min(epochs, 1) if active() else epochs


def train_batches() -> int | None:
    """Batches of a training epoch: `train_batches` in a rehearsal, else None (all)."""
    return cuts().train_batches if active() else None


def unlearn_steps() -> int | None:
    """Steps of an unlearning run: `steps` in a rehearsal, else None (all of its T epochs')."""
    return cuts().steps if active() else None


def jobs(planned: list, desc: str) -> list:
    """A sweep's jobs: in a rehearsal the first of each method (logged with the count of all)."""
    if not active():
        return planned
    first = list({job.method: job for job in reversed(planned)}.values())[::-1]
    log("sweep", what=desc, jobs=len(planned), run=len(first))
    return first


_FULL: set[str] = set()   # the metrics this process has seen scored on their whole set


def scored(n: int, what: str, predictions: int = 1, full: bool = True) -> int:
    """How many of a metric's `n` images to score: all outside a rehearsal. In a rehearsal,
    with `full`, all once per metric and set size in the whole rehearsal (the first target's
    driver process to get there; logged with its `predictions` per image), else the
    rehearsal's `scored`."""
    if not active():
        return n
    import multiprocessing
    key = f"{what}, {n} images"
    if full and key not in _FULL and multiprocessing.parent_process() is None:
        _FULL.add(key)
        marker = Path(cuts().log).with_name(f".full-{hashlib.sha256(key.encode()).hexdigest()[:16]}")
        try:
            marker.touch(exist_ok=False)             # this rehearsal's first full pass of this metric and set
        except FileExistsError:
            log("score", what=key, predictions=n * predictions, earlier=True)
        else:
            log("score", what=key, predictions=n * predictions, earlier=False)
            return n
    return min(n, cuts().scored)


@contextlib.contextmanager
def timed(stage: str, **fields):
    """Time the block (CUDA synchronized) and log it with `fields`, to which the block may add
    (it gets the dict); nothing is timed or logged outside a rehearsal."""
    fields = dict(fields)
    if not active():
        yield fields
        return
    import torch
    sync = torch.cuda.synchronize if torch.cuda.is_available() and torch.cuda.is_initialized() else (lambda: None)
    sync()
    start = time.perf_counter()
    yield fields
    sync()
    log(stage, seconds=time.perf_counter() - start, **fields)


def log(stage: str, **fields) -> None:
    """Append one measurement (with this process's peak memory so far) to the rehearsal's log."""
    if not active():
        return
    entry = {"stage": stage, "pid": os.getpid(), "time": time.time(), **fields, **_peaks()}
    with open(cuts().log, "a") as f:       # one write per line, O_APPEND: lines of processes never mix
        f.write(json.dumps(entry) + "\n")


def _peaks() -> dict:
    peaks = {"rss_peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # Linux: KiB
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peaks["cuda_peak_gb"] = torch.cuda.max_memory_reserved() / 2**30
    return peaks


_MISSING: list[str] = []   # why this process has no ResNet-50 ImageNet weights (once known)


def without_weights(error: Exception) -> None:
    """A rehearsal goes on without the ResNet-50 ImageNet weights: said once per process, in one line."""
    first = str(error).splitlines()[0]
    if not _MISSING:
        _MISSING.append(first)
        log("weights", missing=first)
        print(f"rehearsal: {first} Tiny ImageNet's models start from random weights of the same shapes",
              file=sys.stderr, flush=True)


def weights_missing() -> str | None:
    """Why the ResNet-50 ImageNet weights are unavailable, once a rehearsal found out; else None."""
    return _MISSING[0] if active() and _MISSING else None


if os.environ.get(ENV):
    atexit.register(lambda: log("exit"))
