"""Result records and their provenance.

Every (experiment, method, T, configuration, trial) result is one JSON line of a
`RecordStore`, carrying the full configuration, seed, metric, wall time, package versions,
device and git commit. A record's `key` is a hash of everything that determines it, so a
re-run skips what is stored and stores from different settings never mix. Lines are
appended with a single write() on an O_APPEND descriptor and fsync'ed; a line torn by a
crash is never read back as a result.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("MNOG_RESULTS") or ROOT / "results")  # every script writes below here


def stable_hash(obj, length: int = 16) -> str:
    """A short SHA-256 of obj's canonical JSON (sorted keys): equal settings, equal hash."""
    return hashlib.sha256(json.dumps(to_jsonable(obj), sort_keys=True).encode()).hexdigest()[:length]


def to_jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


@functools.cache
def provenance() -> dict:
    """Where and with what a result was computed."""
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device_name(),
        "threads": torch.get_num_threads(),
    }


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return _cpu_model() or platform.processor() or "cpu"


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return None


def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_text(path: Path, text: str) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


class RecordStore:
    """An append-only JSON-lines file of records, each with a unique "key"."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> list[dict]:
        if not self.path.exists():
            return []
        records, seen = [], set()
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            torn = number == len(lines)  # the last line has no newline: a write was cut short
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if torn or record is None or "key" not in record:
                warnings.warn(f"{self.path}:{number}: skipping an incomplete record (interrupted write)")
                continue
            if record["key"] not in seen:
                seen.add(record["key"])
                records.append(record)
        return records

    def keys(self) -> set[str]:
        return {r["key"] for r in self.load()}

    def append(self, records: Iterable[dict]) -> None:
        payload = b"".join(json.dumps(to_jsonable(r), sort_keys=True).encode() + b"\n" for r in records)
        if not payload:
            return
        self._drop_torn_tail()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _drop_torn_tail(self) -> None:
        """Cut a last line left without its newline by a crash, so new lines start clean."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            f.truncate(f.read().rfind(b"\n") + 1)
