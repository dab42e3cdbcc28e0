"""mnog.mkl: MKL's fast kernels on an AMD CPU, through a preloaded one-function library; the
products it gives stay correct, and nothing changes where it is not wanted."""
import ctypes
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from mnog import mkl

needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
needs_mkl = pytest.mark.skipif(not (torch.backends.mkl.is_available() and platform.machine() == "x86_64"
                                    and sys.platform.startswith("linux")), reason="torch without MKL here")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty build cache and no setting of the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for name in (mkl.ENV, mkl.TRIED):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "mnog"


def _env_without_library(cache_dir) -> dict:
    """This process's environment minus the library (the Makefile preloads it on an AMD CPU)."""
    others = [p for p in os.environ.get("LD_PRELOAD", "").replace(":", " ").split() if "mkl_intel" not in p]
    env = {**os.environ, "LD_PRELOAD": " ".join(others), "XDG_CACHE_HOME": str(cache_dir.parent)}
    env.pop(mkl.TRIED, None)
    env.pop(mkl.ENV, None)
    return env


@needs_cc
def test_the_library_is_built_once_and_answers_intel(cache):
    built = mkl.library()
    assert built is not None and built.parent == cache and built.suffix == ".so"
    stamp = built.stat().st_mtime_ns
    assert mkl.library() == built and built.stat().st_mtime_ns == stamp   # cached, not rebuilt
    assert ctypes.CDLL(str(built)).mkl_serv_intel_cpu_true() == 1
    assert [p.name for p in cache.iterdir()] == [built.name]              # no build folder left behind


def test_a_named_library_is_used_as_given(cache, monkeypatch, tmp_path):
    given = tmp_path / "prebuilt.so"
    given.write_bytes(b"")
    monkeypatch.setenv(mkl.ENV, str(given))
    assert mkl.library() == given
    monkeypatch.setenv(mkl.ENV, str(tmp_path / "missing.so"))
    assert mkl.library() is None


@needs_cc
def test_ld_preload_gains_the_library_on_an_amd_cpu_only_and_once(cache, monkeypatch):
    monkeypatch.setattr(mkl.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(mkl.sys, "platform", "linux")
    monkeypatch.setenv("LD_PRELOAD", "/opt/other.so")
    monkeypatch.setattr(mkl, "cpu_vendor", lambda: "GenuineIntel")
    assert mkl.ld_preload() == "/opt/other.so"
    monkeypatch.setattr(mkl, "cpu_vendor", lambda: "AuthenticAMD")
    added = mkl.ld_preload()
    assert added.split() == [str(mkl.library()), "/opt/other.so"]
    monkeypatch.setenv("LD_PRELOAD", added)
    assert mkl.ld_preload() == added
    monkeypatch.setenv("LD_PRELOAD", "/opt/other.so")
    monkeypatch.setenv(mkl.ENV, "0")                                       # turned off
    assert mkl.ld_preload() == "/opt/other.so"


def test_without_a_compiler_a_script_says_so_once_and_runs_on(cache, monkeypatch, capsys):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setattr(mkl, "wanted", lambda: True)
    monkeypatch.setattr(mkl, "preloaded", lambda: False)
    monkeypatch.setattr(mkl, "_torch_has_mkl", lambda: True)
    assert mkl.library() is None
    mkl.reexec()                                                           # returns: nothing to load
    assert "MKL runs its slow kernels on this AMD CPU (no C compiler" in capsys.readouterr().err
    assert os.environ[mkl.TRIED] == "noted"
    mkl.reexec()                                                           # said once
    assert capsys.readouterr().err == ""


@needs_cc
@needs_mkl
def test_the_preloaded_library_switches_mkls_kernels_and_products_stay_correct(cache):
    """In a process of its own with and without the library: float32 products against float64,
    and MKL's code path, which the library raises on an AMD CPU and leaves alone on an Intel one."""
    probe = textwrap.dedent("""
        import json, torch
        from mnog import mkl
        torch.manual_seed(0)
        a, b = torch.randn(300, 700), torch.randn(700, 500)
        w, x = torch.randn(10, 300, 300), torch.randn(10, 300, 55)
        def error(out, ref):
            return float((out.double() - ref).abs().max() / ref.abs().max())
        print(json.dumps({"loaded": mkl.preloaded(), "path": mkl.code_path(),
                          "mm": error(a @ b, a.double() @ b.double()),
                          "bmm": error(torch.bmm(w, x), torch.bmm(w.double(), x.double()))}))
    """)
    without = _env_without_library(cache)
    library = mkl.library()
    runs = {}
    for name, env in (("without", without), ("with", {**without, "LD_PRELOAD": f"{library} {without['LD_PRELOAD']}"})):
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        runs[name] = json.loads(done.stdout.splitlines()[-1])
    assert not runs["without"]["loaded"] and runs["with"]["loaded"]
    for run in runs.values():
        assert run["mm"] < 1e-5 and run["bmm"] < 1e-5
    if mkl.cpu_vendor() == "AuthenticAMD":
        assert runs["without"]["path"] < runs["with"]["path"]
    else:
        assert runs["without"]["path"] == runs["with"]["path"]


@needs_cc
def test_a_script_reexecutes_itself_with_the_library_once(cache):
    script = textwrap.dedent("""
        import os, sys
        from mnog import mkl
        mkl.cpu_vendor = lambda: "AuthenticAMD"        # as on an AMD CPU, whatever this one is
        print("start", flush=True)
        mkl.reexec()
        print(mkl.preloaded(), os.environ.get(mkl.TRIED), sys.argv[1:])
    """)
    done = subprocess.run([sys.executable, "-c", script, "--an", "argument"], env=_env_without_library(cache),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["start", "start", "True 1 ['--an', 'argument']"]
