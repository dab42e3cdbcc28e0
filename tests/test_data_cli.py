"""`make data` and `make verify` (mnog/download.py's command line) on small files, a local file:// mirror
and a checksums table of their own: no network."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnog import download
from mnog.datasets import FASHION_MNIST_FILES, FASHION_MNIST_FOLDER

ROOT = Path(__file__).resolve().parent.parent
FILES = {  # name -> (algorithm, content)
    "cifar-10-python.tar.gz": ("md5", b"pretend CIFAR-10 archive " * 100),
    "resnet50-0123abcd.pth": ("sha256-prefix", b"pretend weights " * 100),
    "train-images-idx3-ubyte.gz": ("sha256", b"pretend Fashion-MNIST images " * 100),  # lands in fashion-mnist/
}


def digest(algorithm: str, content: bytes) -> str:
    if algorithm == "md5":
        return hashlib.md5(content).hexdigest()
    full = hashlib.sha256(content).hexdigest()
    return full[:8] if algorithm == "sha256-prefix" else full


@pytest.fixture
def store(tmp_path):
    """A mirror holding every file plus one the table does not list, a checksums table whose own
    URLs do not resolve, and an empty data folder."""
    mirror, data = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    lines = []
    for name, (algorithm, content) in FILES.items():
        (mirror / name).write_bytes(content)
        lines.append(f"{algorithm}  {digest(algorithm, content)}  {name}  https://unreachable.invalid/{name}")
    (mirror / "unlisted.bin").write_bytes(b"not in the table")
    checksums = tmp_path / "checksums.txt"
    checksums.write_text("# test table\n" + "\n".join(lines) + "\n")
    return {"mirror": mirror, "data": data, "checksums": checksums}


def make(target: str, store: dict, mirror: bool = True) -> subprocess.CompletedProcess:
    """`make <target>` as a user runs it, with this interpreter (-o: never rebuild .venv here)."""
    env = {**os.environ, "MNOG_DATA": str(store["data"])}
    env.pop("MNOG_MIRROR", None)
    if mirror:
        env["MNOG_MIRROR"] = store["mirror"].as_uri()
    return subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", target,
                           f"PYTHON={sys.executable}", f"CHECKSUMS={store['checksums']}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)


def place(store, name) -> Path:
    folder = store["data"] / FASHION_MNIST_FOLDER if name.endswith("-ubyte.gz") else store["data"]
    return folder / name


def test_make_data_replaces_a_corrupt_file_and_make_verify_detects_one(store, capsys):
    corrupt = place(store, "cifar-10-python.tar.gz")
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"truncated")
    good = place(store, "resnet50-0123abcd.pth")
    good.write_bytes(FILES[good.name][1])
    before = good.stat().st_mtime_ns

    fetched = make("data", store)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert f"corrupt     {corrupt}" in fetched.stdout
    assert "3 of 3 files present and verified" in fetched.stdout
    for name, (_, content) in FILES.items():          # every listed file, verified, where the loaders read it
        assert place(store, name).read_bytes() == content
    assert good.stat().st_mtime_ns == before            # a verified file is left alone
    assert not (store["data"] / "unlisted.bin").exists()  # and nothing but the table's files is fetched
    assert not list(store["data"].rglob("*.part"))

    assert download.verify_all(store["data"], download.load_checksums(store["checksums"])) == 0
    assert "3 verified, 0 corrupt, 0 not present" in capsys.readouterr().out

    good.write_bytes(b"bit rot")
    checked = make("verify", store, mirror=False)
    assert checked.returncode != 0                      # make's status for a failed recipe
    assert f"CORRUPT     {good}" in checked.stderr
    assert "2 verified, 1 corrupt" in checked.stderr
    assert good.read_bytes() == b"bit rot"              # verify only checks; `make data` repairs


def test_fetch_all_reports_what_it_could_not_get(store, capsys):
    (store["mirror"] / "resnet50-0123abcd.pth").unlink()
    table = download.load_checksums(store["checksums"])
    assert download.fetch_all(store["data"], table, mirror=store["mirror"].as_uri()) == 1
    err = capsys.readouterr().err
    assert "2 of 3 files present and verified" in err
    assert "resnet50-0123abcd.pth is needed but unavailable" in err and "Place the file by hand" in err
    assert place(store, "cifar-10-python.tar.gz").is_file()  # the others were still fetched


def test_verify_all_ignores_missing_files_and_counts_a_verified_copy_elsewhere(store, tmp_path, monkeypatch, capsys):
    """Fashion-MNIST may be read in place from a system folder: a verified copy there is enough."""
    system = tmp_path / "system"
    system.mkdir()
    name = "train-images-idx3-ubyte.gz"
    (system / name).write_bytes(FILES[name][1])
    monkeypatch.setattr("mnog.datasets.FASHION_MNIST_SYSTEM_DIRS", (system,))
    table = download.load_checksums(store["checksums"])
    assert download.verify_all(store["data"], table) == 0
    assert "1 verified, 0 corrupt, 2 not present" in capsys.readouterr().out
    assert download.fetch_all(store["data"], table, mirror=store["mirror"].as_uri()) == 0
    assert not place(store, name).exists()  # not downloaded again: the system copy is read in place


def test_every_listed_file_has_a_home_the_loaders_read():
    """checksums.txt's files go where mnog.datasets and mnog.models look for them."""
    table = download.load_checksums()
    homes = {name: download.locations(name, Path("/d"))[0] for name in table}
    assert homes["cifar-10-python.tar.gz"] == Path("/d")
    assert homes["resnet50-0676ba61.pth"] == Path("/d")
    fashion = {name for files in FASHION_MNIST_FILES.values() for name in files}
    assert {homes[n] for n in fashion} == {Path("/d") / FASHION_MNIST_FOLDER}
    assert fashion <= set(table)
