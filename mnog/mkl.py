"""MKL's fast kernels on AMD CPUs, which it otherwise keeps for Intel's.

torch's x86 Linux wheels do their float32 matrix products with Intel's MKL, which chooses its
kernels by CPU vendor before instruction set: on an AMD CPU it runs slower, generic ones. On
a 2-core AMD EPYC (Zen 4, AVX-512) they ran the batched 300 × 300 by
300 × 55 products of Table 5's ensembles 2.8× slower, and a 2000³ sgemm 1.6× slower, than the
kernels MKL picks for an Intel CPU of the same instruction sets (benchmarks/bench_mkl.py;
docs/benchmarks.md#mkl-on-amd-cpus). The vendor test is one
function that libtorch_cpu.so exports, `mkl_serv_intel_cpu_true`; a tiny library that defines
it first (mnog/mkl_intel.c, loaded with LD_PRELOAD) makes MKL choose by instruction set alone.
The products stay correct (tests/test_mkl.py checks them against float64) but round
differently, so records computed with and without it differ in their last digits, as records
of an Intel and an AMD machine already do; every record names MKL's choice in its provenance
(`mkl_code_path`, `code_path()`).

Who loads it: the Makefile exports LD_PRELOAD for everything it runs (`python3 mnog/mkl.py
ld-preload`), and every artifact script started directly re-executes itself with it once
(`reexec`). Nothing changes on an Intel CPU, on another architecture or where torch has no
MKL. MNOG_MKL_INTEL=0 turns it off; MNOG_MKL_INTEL=<path> names a prebuilt library (the Docker
image builds one); otherwise it is compiled once with the C compiler (`cc`) into
~/.cache/mnog/. Without a compiler the scripts say so and run MKL's slow path.

This file imports only the standard library at the top, so that the Makefile runs it before
the virtual environment exists:

    python3 mnog/mkl.py ld-preload   # LD_PRELOAD with the library added where it helps
    python -m mnog.mkl               # what this machine needs and what is loaded
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("mkl_intel.c")
ENV = "MNOG_MKL_INTEL"             # "0": off; a path: that prebuilt library
TRIED = "MNOG_MKL_INTEL_REEXEC"    # "1": the re-executed process (never again); "noted": the slow path was said


def cpu_vendor() -> str | None:
    """The CPU's vendor string ("GenuineIntel", "AuthenticAMD"), None where /proc/cpuinfo is absent."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def wanted() -> bool:
    """True where MKL would take its slow path: Linux on an x86-64 AMD CPU, not turned off."""
    return (os.environ.get(ENV) != "0" and sys.platform.startswith("linux")
            and platform.machine() == "x86_64" and cpu_vendor() == "AuthenticAMD")


def library() -> Path | None:
    """The library's path, compiled into the cache on first use; None without a C compiler."""
    given = os.environ.get(ENV)
    if given and given != "0":
        return Path(given) if Path(given).is_file() else None
    source = SOURCE.read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnog"
    target = cache / f"mkl_intel-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if target.is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:  # built aside, then moved: two runs may race
            built = Path(tmp) / target.name
            subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-O2", "-nostdlib", "-o", str(built),
                            str(SOURCE)], check=True, capture_output=True, timeout=60)
            os.replace(built, target)
    except (OSError, subprocess.SubprocessError):
        return None
    return target


def ld_preload() -> str:
    """LD_PRELOAD as it should be: the current value, with the library first where it is wanted."""
    current = os.environ.get("LD_PRELOAD", "")
    path = library() if wanted() else None
    if path is None or str(path) in current.replace(":", " ").split():
        return current
    return f"{path} {current}".strip()


def preloaded() -> bool:
    """Whether this process has the library loaded (its marker symbol is visible)."""
    try:
        return hasattr(ctypes.CDLL(None), "mnog_mkl_intel")
    except OSError:
        return False


def reexec() -> None:
    """Re-execute this process with the library preloaded where MKL would otherwise take its
    slow path (once: the re-executed process does not try again); a note on stderr where the
    library cannot be built or loaded. Call it before any work: it replaces the process."""
    tried = os.environ.get(TRIED)
    if tried == "noted" or not wanted() or preloaded() or not _torch_has_mkl():
        return
    path = None if tried else library()
    if path is None:
        why = ("it did not load" if tried
               else f"{ENV}={os.environ[ENV]} is no file" if os.environ.get(ENV)
               else "no C compiler (cc) to build mnog/mkl_intel.c")
        print(f"note: MKL runs its slow kernels on this AMD CPU ({why}); see docs/benchmarks.md#mkl-on-amd-cpus",
              file=sys.stderr)
        os.environ[TRIED] = "noted"  # child processes stay quiet
        return
    env = {**os.environ, "LD_PRELOAD": ld_preload(), TRIED: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


@functools.cache
def code_path() -> int | None:
    """MKL's own code-path number for this CPU (its mkl_serv_cpu_detect: 0 for the generic
    kernels it gives a non-Intel CPU, larger for an instruction-set path), None without MKL."""
    import torch  # only here: the rest of this file runs before the environment exists

    if not torch.backends.mkl.is_available():
        return None
    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        return int(lib.mkl_serv_cpu_detect())
    except (OSError, AttributeError):
        return None


def _torch_has_mkl() -> bool:
    torch = sys.modules.get("torch")
    return torch is None or torch.backends.mkl.is_available()


def main(argv: list[str]) -> int:
    if argv == ["ld-preload"]:
        print(ld_preload())
    elif not argv:
        path = library() if wanted() else None
        print(f"CPU vendor: {cpu_vendor()}; library wanted: {wanted()}; built: {path}; loaded: {preloaded()}; "
              f"MKL code path: {code_path()}")
    else:
        print("usage: python3 mnog/mkl.py [ld-preload]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
