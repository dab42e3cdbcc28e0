"""Result records and their provenance.

Every (experiment, method, T, configuration, trial) result is one JSON line of a
`RecordStore`, carrying the full configuration, seed, metric, wall time, package versions,
device and git commit. A record's `key` is a hash of everything that determines it, so a
re-run skips what is stored and stores from different settings never mix. Lines are
appended with a single write() on an O_APPEND descriptor and fsync'ed, under an exclusive
lock on the file (flock) shared by every process that writes it, so concurrent writers
never lose each other's records; a line torn by a crash is never read back as a result.

`exclusive(path, what)` is the lock two runs of the same work take (a sweep, a model's
training): the second waits for the first, naming it, and then reuses what it stored.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from mnog import mkl
from mnog.errors import UserError

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
        "mkl_code_path": mkl.code_path(),  # which of MKL's kernels ran (mnog.mkl)
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


@contextlib.contextmanager
def writing(path: Path, verb: str = "write"):
    """Run the block that writes `path`; an OSError in it (a read-only folder, a folder where a
    file should be, a full disk) is a ResultsFolderError naming the file, in one line."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            reason = "it is a folder, where mnog keeps a file (move it away)"
        elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
            reason = "a file stands where a folder of this path belongs (move it away)"
        else:
            hint = " (MNOG_RESULTS moves the results folder)" if _under_results(path) else ""
            reason = f"{exc.strerror or exc}{hint}"
        raise ResultsFolderError(f"cannot {verb} {path}: {reason}") from None


def _under_results(path: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(RESULTS))


def atomically(save, path: Path, suffix: str = "") -> None:
    """`save(tmp)` into a temporary file beside `path`, then renamed over it: a reader never sees
    half a file."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
        try:
            save(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_text(path: Path, text: str) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    atomically(lambda tmp: tmp.write_text(text), path)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """numpy.savez, atomically (a temporary file in the same folder, then rename)."""
    atomically(lambda tmp: np.savez(tmp, **arrays), path, suffix=".npz")


REQUIRED = ("key", "method", "trial")  # what every record holds; a JSON line without them is not a record


class RecordStore:
    """An append-only JSON-lines file of records, each with a unique "key". Safe with several
    writing processes: every append (and the repair of a torn last line before it) happens
    under an exclusive lock, every read under a shared one."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsFolderError(f"cannot create the results folder {self.path.parent}: {exc.strerror}") from None

    def load(self) -> list[dict]:
        if not self.path.exists():
            return []
        with writing(self.path, "read"), open(self.path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_SH)                        # no append is half-way through
            data = f.read()
        records, seen = [], set()
        lines = data.split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            torn = number == len(lines)  # the last line has no newline: a write was cut short
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if torn or record is None:
                warnings.warn(f"{self.path}:{number}: skipping an incomplete record (interrupted write)")
                continue
            if not isinstance(record, dict) or any(k not in record for k in REQUIRED):
                warnings.warn(f"{self.path}:{number}: skipping a line that is not a record (it needs "
                              f"{', '.join(REQUIRED)})")
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
        with writing(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _drop_torn_tail(fd)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)                                           # releases the lock


def _drop_torn_tail(fd: int) -> None:
    """Cut a last line left without its newline by a crash, so new lines start clean (the
    caller holds the exclusive lock, so no other writer is half-way through a line)."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    os.ftruncate(fd, os.pread(fd, size, 0).rfind(b"\n") + 1)


class ResultsFolderError(UserError):
    """The results folder cannot be created or written."""


@contextlib.contextmanager
def exclusive(path: Path, what: str):
    """Hold an exclusive lock on `path` (a lock file) for the block. If another process holds
    it, say which (its pid, host, command and start time, written into the file) and wait:
    two runs of the same work cooperate, the second reusing what the first stored."""
    with writing(path, "lock"):
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            print(f"{what}: waiting for {holder}, which holds {path}", file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
            print(f"{what}: the other run finished; going on with what it stored", file=sys.stderr, flush=True)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)[:200]}), since {now()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
