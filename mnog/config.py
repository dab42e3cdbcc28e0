"""Profiles and command-line overrides for the artifact scripts.

A script's configuration is a frozen dataclass; its profiles ("smoke", "cpu", "paper")
are named instances. The command line picks a profile (--profile, or $PROFILE, default
"auto": "paper" with a GPU, "cpu" otherwise) and may override any field by name
(--trials 5); every override is type-checked and unknown flags are rejected.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from typing import Sequence, TypeVar

import torch

C = TypeVar("C")
PROFILES = ("smoke", "cpu", "paper")


def auto_profile() -> str:
    return "paper" if torch.cuda.is_available() else "cpu"


def parse_config(cls: type[C], profiles: dict[str, C], description: str,
                 argv: Sequence[str] | None = None) -> tuple[C, str]:
    """The profile's config with command-line overrides applied, and the profile's name."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--profile", default=os.environ.get("PROFILE") or "auto",
                        choices=["auto", *profiles],
                        help="named configuration; auto = paper with a GPU, cpu otherwise")
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
            parser.add_argument(flag, dest=field.name, type=item, nargs="+", default=None, help=helptext)
        else:
            parser.add_argument(flag, dest=field.name, type=kind, default=None, choices=choices, help=helptext)
    args = parser.parse_args(argv)
    profile = auto_profile() if args.profile == "auto" else args.profile
    if profile not in profiles:
        parser.error(f"profile {profile!r} is not defined here; choose one of {sorted(profiles)}")
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    try:
        return dataclasses.replace(profiles[profile], **overrides), profile
    except ValueError as exc:  # a config's own check (__post_init__) of the combined values
        parser.error(str(exc))


def field(default, help: str, choices: Sequence | None = None):
    """A dataclass field with a help string (and the values it may take) for the command line."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})
