"""Profiles and command-line overrides for the artifact scripts.

A script's configuration is a frozen dataclass; its profiles ("smoke", "cpu", "paper")
are named instances. The command line picks a profile (--profile, or $PROFILE, default
"auto": "paper" with a GPU, "cpu" otherwise) and may override any field by name
(--trials 5); every override is type-checked and unknown flags are rejected.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import typing
from typing import Sequence, TypeVar

import torch

C = TypeVar("C")
PROFILES = ("smoke", "cpu", "paper")


def auto_profile() -> str:
    return "paper" if torch.cuda.is_available() else "cpu"


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: "<script>: error: <what> (see --help)", exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_config(cls: type[C], profiles: dict[str, C], description: str, argv: Sequence[str] | None = None,
                 sweeps: bool = True):
    """(the profile's config with command-line overrides applied, the profile's name, and
    the executor options) for a script that `sweeps`; (config, profile) for one that does
    not. The executor options (--executor, --workers, --address: where a sweep's jobs run,
    mnog.executors.ExecutorConfig) are parsed beside the experiment's config, not part of
    it: they never change a result. Every field is checked here (type, choices, bounds,
    devices, a reachable Ray address), before anything runs."""
    from mnog.executors import ExecutorConfig
    parser = OneLineParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--profile", default=os.environ.get("PROFILE") or "auto",
                        choices=["auto", *profiles],
                        help="named configuration; auto = paper with a GPU, cpu otherwise")
    _add_fields(parser, cls)
    parser.add_argument("--plan", action="store_true",
                        help="print what this run would train and run and its projected time on this machine "
                             "(mnog.plan), and run nothing")
    if sweeps:
        _add_fields(parser.add_argument_group("where the sweep's jobs run"), ExecutorConfig)
    args = parser.parse_args(argv)
    profile = auto_profile() if args.profile == "auto" else args.profile
    if profile not in profiles:
        parser.error(f"profile {profile!r} is not defined here; choose one of {sorted(profiles)}")
    try:
        cfg = dataclasses.replace(profiles[profile], **_overrides(args, cls))
        check_fields(cfg)
        check_results_folder()
        executor = ExecutorConfig(**_overrides(args, ExecutorConfig)) if sweeps else None
        if executor is not None:
            check_fields(executor)
    except ValueError as exc:  # a field's bounds, or a config's own check (__post_init__) of the combined values
        parser.error(str(exc))
    if args.plan:                              # the core prints the plan instead (mnog.experiment.script_main)
        raise PlanRequested(cfg, profile, executor)
    if executor is not None:
        executor.check_reachable()             # an unreachable cluster fails now, not after the models train
    return (cfg, profile, executor) if sweeps else (cfg, profile)


class PlanRequested(Exception):
    """Raised by parse_config for --plan, once the command line is checked: the script's `main`
    stops there and `script_main` prints the script's plan (its `plan(cfg)`, mnog.plan)."""

    def __init__(self, cfg, profile: str, executor=None):
        super().__init__(f"--plan at profile {profile}")
        self.cfg, self.profile, self.executor = cfg, profile, executor


def _add_fields(parser, cls) -> None:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        flag = "--" + field.name.replace("_", "-")
        helptext = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=None, help=helptext)
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            parser.add_argument(flag, dest=field.name, type=item, nargs="+", default=None, choices=choices,
                                help=helptext)
        else:
            parser.add_argument(flag, dest=field.name, type=kind, default=None, choices=choices, help=helptext)


def _overrides(args, cls) -> dict:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}


def check_results_folder() -> None:
    """ValueError unless the results folder (MNOG_RESULTS) is, or can be made, a writable folder."""
    from mnog.results import RESULTS
    try:
        RESULTS.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"the results folder {RESULTS} (MNOG_RESULTS) cannot be created: {exc.strerror}") from None
    if not os.access(RESULTS, os.W_OK | os.X_OK):
        raise ValueError(f"the results folder {RESULTS} (MNOG_RESULTS) is not writable")


def check_fields(cfg) -> None:
    """ValueError naming the flag when a field breaks its declared bounds: finite numbers,
    `minimum` (inclusive) and `above` (exclusive) bounds for numbers and for each entry of a
    tuple, non-empty tuples, choices, and devices that exist on this machine."""
    for f in dataclasses.fields(cfg):
        value, meta, flag = getattr(cfg, f.name), f.metadata, "--" + f.name.replace("_", "-")
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and not value:
            raise ValueError(f"{flag} needs at least one value")
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{flag} must be a finite number, got {v}")
            if meta.get("minimum") is not None and v < meta["minimum"]:
                raise ValueError(f"{flag} must be at least {meta['minimum']}, got {v}")
            if meta.get("above") is not None and v <= meta["above"]:
                raise ValueError(f"{flag} must be greater than {meta['above']}, got {v}")
            if meta.get("choices") is not None and v not in meta["choices"]:
                raise ValueError(f"{flag}: {v!r} is not one of {', '.join(map(str, meta['choices']))}")
            if meta.get("device"):
                check_device(v, flag)
            if meta.get("dataset") and v:
                from mnog.datasets import check_dataset
                try:
                    check_dataset(v)
                except ValueError as exc:
                    raise ValueError(f"{flag}: {exc}") from None


def check_device(value: str, flag: str = "--device") -> None:
    """A torch device name this machine has ("auto" included), else ValueError."""
    if value == "auto":
        return
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{flag}: {value!r} is not a torch device (try auto, cpu, cuda or cuda:0)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{flag} {value}: no CUDA device is visible on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{flag} {value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "cpu" and device.index not in (None, 0):
        raise ValueError(f"{flag} {value}: torch has one CPU device, cpu (or cpu:0), which uses every core")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{flag} {value}: mnog runs on cpu or cuda devices")


def field(default, help: str, choices: Sequence | None = None, minimum: float | None = None,
          above: float | None = None, device: bool = False, dataset: bool = False):
    """A dataclass field with a help string and what it may hold: `choices`, an inclusive
    `minimum` or exclusive `above` bound (for a tuple: for each entry), a torch `device`, or
    a `dataset` name (mnog.datasets: one it knows, or folder:PATH of an existing path);
    checked at parse time (`check_fields`)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum,
                                                        "above": above, "device": device, "dataset": dataset})
