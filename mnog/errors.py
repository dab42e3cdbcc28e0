"""Errors that name what went wrong in the user's terms.

`UserError` marks a known error: bad input, missing or corrupt data, an unreachable cluster.
The artifact scripts (and so every `make` target) print one as its message alone and exit
with status 2 (`cli`); any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import math
import sys
from typing import Callable

import numpy as np


class UserError(Exception):
    """A known error, whose message says what is wrong and what to do."""


class NonFiniteError(FloatingPointError):
    """A model, gradient or projection holds NaN or Inf."""


def is_integer(value) -> bool:
    """An integer (Python's or numpy's), and not a bool, which Python counts as one."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite real number (an integer or a float, Python's or numpy's), and not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def cli(main: Callable[[], int | None]) -> int:
    """Run a script's `main`: a UserError prints as one line on stderr and gives exit status 2."""
    try:
        return main() or 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished records are stored; run the same command again to resume", file=sys.stderr)
        return 130
