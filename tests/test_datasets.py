"""Download, verification, extraction and loading of the image data sets.

The archives are small ones built here in the real formats (CIFAR-10's pickled batches in
a .tar.gz, Tiny ImageNet's zip tree, Fashion-MNIST's gzipped idx files) and served from a
file:// mirror, so the real fetch → verify → extract → decode path runs without a network.
"""
import gzip
import hashlib
import http.server
import pickle
import shutil
import struct
import tarfile
import threading
import traceback
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnog import datasets
from mnog.datasets import (FASHION_MNIST_CLASSES, load_cifar10, load_fashion_mnist, load_tiny_imagenet)
from mnog.download import ChecksumError, DataUnavailable, Resource, fetch, load_checksums, verify

OFFICIAL = "file:///nonexistent/official"  # stands for the dataset hosts: unreachable, as offline


@pytest.fixture(autouse=True)
def _no_mirror_from_environment(monkeypatch):
    monkeypatch.delenv("MNOG_MIRROR", raising=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksums_for(mirror: Path, names, path: Path) -> dict[str, list[Resource]]:
    """A checksums file for the files `names` of `mirror`, their URLs on the unreachable host."""
    path.write_text("# test table\n" + "".join(f"sha256  {sha256(mirror / name)}  {name}  {OFFICIAL}/{name}\n"
                                              for name in names))
    return load_checksums(path)


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder below `folder` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# ------------------------------------------------------------------------- archives in the real formats

CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def make_cifar10(mirror: Path, per_batch: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """cifar-10-python.tar.gz with 5 train batches and a test batch; returns the images (n, 3, 32, 32) and labels."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6 * per_batch, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 6 * per_batch)
    batches = mirror / "build" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        part = slice(b * per_batch, (b + 1) * per_batch)
        # The CIFAR row layout, written out: the 1024 red values row by row, then green, then blue.
        rows = np.concatenate([images[part, c].reshape(per_batch, 1024) for c in range(3)], axis=1)
        batch = {b"batch_label": name.encode(), b"labels": labels[part].tolist(), b"data": rows,
                 b"filenames": [f"img{i}.png".encode() for i in range(per_batch)]}
        (batches / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": CIFAR_NAMES, b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (batches / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    with tarfile.open(mirror / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    shutil.rmtree(mirror / "build")
    n_train = 5 * per_batch
    return images[:n_train], labels[:n_train], images[n_train:], labels[n_train:]


WNIDS = ["n01443537", "n01629819", "n01641577"]
WORDS = {"n01443537": "goldfish, Carassius auratus", "n01629819": "European fire salamander",
         "n01641577": "bullfrog, Rana catesbeiana", "n00001740": "entity"}


def make_tiny_imagenet(mirror: Path) -> Path:
    """tiny-imagenet-200.zip: 3 classes of 3 train JPEGs (one grayscale), 4 val JPEGs; returns the tree."""
    rng = np.random.default_rng(1)
    tree = mirror / "build" / "tiny-imagenet-200"
    (tree / "val" / "images").mkdir(parents=True)
    (tree / "wnids.txt").write_text("".join(f"{w}\n" for w in WNIDS))
    (tree / "words.txt").write_text("".join(f"{w}\t{names}\n" for w, names in WORDS.items()))
    for wnid in WNIDS:
        images = tree / "train" / wnid / "images"
        images.mkdir(parents=True)
        (tree / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(3):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            image = Image.fromarray(pixels[..., 0], "L") if (wnid, i) == (WNIDS[1], 2) else Image.fromarray(pixels)
            image.save(images / f"{wnid}_{i}.JPEG", quality=90)
    annotations = [("val_0.JPEG", WNIDS[2]), ("val_1.JPEG", WNIDS[0]), ("val_2.JPEG", WNIDS[2]),
                   ("val_3.JPEG", WNIDS[1])]
    for name, _ in annotations:
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tree / "val" / "images" / name)
    (tree / "val" / "val_annotations.txt").write_text(
        "".join(f"{name}\t{wnid}\t0\t5\t62\t60\n" for name, wnid in annotations))
    with zipfile.ZipFile(mirror / "tiny-imagenet-200.zip", "w") as zip_file:
        for path in sorted(tree.rglob("*")):
            zip_file.write(path, path.relative_to(tree.parent))
    return tree


def decoded_with_pil(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


FASHION_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def make_fashion_mnist(folder: Path, n_train: int = 30, n_test: int = 10) -> tuple[np.ndarray, ...]:
    """The four Fashion-MNIST idx .gz files in `folder`; returns train images, labels, test images, labels."""
    rng = np.random.default_rng(2)
    arrays = (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test))
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(FASHION_FILES, arrays):
        write_idx(folder / name, 2051 if "images" in name else 2049, array)
    return arrays


# --------------------------------------------------------------------------------- checksums.txt

def test_repository_checksums_list_every_file():
    table = load_checksums()
    assert [str(r) for r in table["cifar-10-python.tar.gz"]] == ["md5 c58f30108f718f92721af3b95e74349a"]
    assert [str(r) for r in table["tiny-imagenet-200.zip"]] == ["md5 90528d7ca1a48142e341f4ef8d21d0de"]
    for name in FASHION_FILES:  # the official copy (downloaded from its first line) and Debian's
        assert [r.algorithm for r in table[name]] == ["md5", "sha256"]
        assert table[name][0].url == f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{name}"
    assert [str(r) for r in table["resnet50-0676ba61.pth"]] == ["sha256-prefix 0676ba61"]
    assert all(r.url.endswith("/" + name) for name, copies in table.items() for r in copies)


@pytest.mark.parametrize("line", ["sha1  da39a3ee5e6b4b0d3255bfef95601890afd80709  f  http://x/f",
                                  "md5  c58f30108f718f92721af3b95e74349a  f",
                                  "sha256  c58f30108f718f92721af3b95e74349a  f  http://x/f"])
def test_malformed_checksum_lines_are_rejected(tmp_path, line):
    (tmp_path / "checksums.txt").write_text(f"# header\n\n{line}\n")
    with pytest.raises(ValueError, match=r"checksums.txt:3"):
        load_checksums(tmp_path / "checksums.txt")


def test_verify_sha256_prefix(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"weights")
    digest = sha256(path)
    assert verify(path, [Resource("weights.pth", "u", "sha256-prefix", digest[:8])])
    assert not verify(path, [Resource("weights.pth", "u", "sha256-prefix", "00000000")])
    assert not verify(tmp_path / "missing.pth", [Resource("missing.pth", "u", "sha256-prefix", digest[:8])])


# ------------------------------------------------------------------------------------- CIFAR-10

def test_cifar10_download_verify_extract_load(tmp_path):
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    train_images, train_labels, test_images, test_labels = make_cifar10(mirror)
    table = checksums_for(mirror, ["cifar-10-python.tar.gz"], tmp_path / "checksums.txt")

    data = load_cifar10(root, resources=table, mirror=mirror.as_uri())
    assert data.train_images.shape == (100, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert torch.equal(data.train_images, torch.from_numpy(train_images))
    assert torch.equal(data.test_images, torch.from_numpy(test_images))
    assert data.train_labels.dtype == torch.int64
    assert data.train_labels.tolist() == train_labels.tolist()
    assert data.test_labels.tolist() == test_labels.tolist()
    assert data.classes[:3] == ("airplane", "automobile", "bird") and len(data.classes) == 10
    # Only the verified archive remains (its batches are read out of it): no temporary files.
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]
    # The verified archive in place is enough: no download needed the second time.
    assert torch.equal(load_cifar10(root, download=False, resources=table).test_images, data.test_images)


def test_cifar10_never_unpickles_files_written_into_the_data_folder(tmp_path):
    # A pickle that runs code, dropped where an extracted CIFAR-10 would be, is never read.
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    make_cifar10(mirror)
    table = checksums_for(mirror, ["cifar-10-python.tar.gz"], tmp_path / "checksums.txt")
    planted = root / "cifar-10-batches-py"
    planted.mkdir(parents=True)
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"]:
        (planted / name).write_bytes(pickle.dumps(Exploit()))
    load_cifar10(root, resources=table, mirror=mirror.as_uri())
    assert not marker.exists()


def test_a_cifar10_batch_that_is_not_arrays_is_refused(tmp_path):
    # Even inside an archive that matches its checksum, a pickle may only rebuild numpy arrays.
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    batches = mirror / "build" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"]:
        (batches / name).write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with tarfile.open(mirror / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    table = checksums_for(mirror, ["cifar-10-python.tar.gz"], tmp_path / "checksums.txt")
    with pytest.raises(pickle.UnpicklingError, match="numpy arrays only"):
        load_cifar10(root, resources=table, mirror=mirror.as_uri())
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_bad_download_raises_checksum_error_and_is_deleted(tmp_path, damage):
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    make_cifar10(mirror)
    archive = mirror / "cifar-10-python.tar.gz"
    table = checksums_for(mirror, [archive.name], tmp_path / "checksums.txt")
    content = archive.read_bytes()
    if damage == "corrupt":
        archive.write_bytes(content[:1000] + bytes([content[1000] ^ 0xFF]) + content[1001:])
    else:  # a transfer cut short, served as if complete
        archive.write_bytes(content[: len(content) // 2])

    with pytest.raises(ChecksumError) as error:
        load_cifar10(root, resources=table, mirror=mirror.as_uri())
    message = str(error.value)
    assert "cifar-10-python.tar.gz" in message
    assert f"expected sha256 {table[archive.name][0].digest}" in message
    assert f"found sha256 {sha256(archive)}" in message
    assert list(root.iterdir()) == []  # the bad download is gone, nothing was extracted


def test_corrupt_file_present_is_downloaded_again(tmp_path):
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    root.mkdir()
    make_cifar10(mirror)
    table = checksums_for(mirror, ["cifar-10-python.tar.gz"], tmp_path / "checksums.txt")
    (root / "cifar-10-python.tar.gz").write_bytes(b"not the archive")

    with pytest.warns(UserWarning, match="matches none of its checksums"):
        path = fetch("cifar-10-python.tar.gz", root, resources=table, mirror=mirror.as_uri(), progress=False)
    assert path.read_bytes() == (mirror / "cifar-10-python.tar.gz").read_bytes()


def test_mirror_from_the_environment(tmp_path, monkeypatch):
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    make_cifar10(mirror)
    table = checksums_for(mirror, ["cifar-10-python.tar.gz"], tmp_path / "checksums.txt")
    monkeypatch.setenv("MNOG_MIRROR", mirror.as_uri() + "/")
    assert verify(fetch("cifar-10-python.tar.gz", root, resources=table, progress=False), table["cifar-10-python.tar.gz"])


def test_offline_raises_one_clear_data_unavailable(tmp_path):
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    make_cifar10(mirror)
    table = checksums_for(mirror, ["cifar-10-python.tar.gz"], tmp_path / "checksums.txt")
    digest = table["cifar-10-python.tar.gz"][0].digest

    for download in (True, False):  # the host unreachable; downloads switched off
        with pytest.raises(DataUnavailable) as error:
            load_cifar10(root, download=download, resources=table)
        message = str(error.value)
        assert "file:     cifar-10-python.tar.gz" in message
        assert f"folder:   {root}" in message
        assert f"url:      {OFFICIAL}/cifar-10-python.tar.gz" in message
        assert f"checksum: sha256 {digest}" in message
        assert "URLError" not in "".join(traceback.format_exception(error.value))  # the message alone
    assert not any(root.iterdir())


def test_download_cut_by_the_server_is_data_unavailable(tmp_path):
    class CutShort(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)  # then the connection closes

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), CutShort)
    threading.Thread(target=server.handle_request, daemon=True).start()
    table = {"f.bin": [Resource("f.bin", "http://unused/f.bin", "sha256", "0" * 64)]}
    try:
        with pytest.raises(DataUnavailable, match="stopped after 10 of 1000 bytes"):
            fetch("f.bin", tmp_path, resources=table, mirror=f"http://127.0.0.1:{server.server_port}",
                  progress=False)
    finally:
        server.server_close()
    assert list(tmp_path.iterdir()) == []


def test_archive_members_outside_the_folder_are_refused(tmp_path):
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    (tmp_path / "evil").write_text("overwrite")
    with tarfile.open(mirror / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "evil", arcname="cifar-10-batches-py/../../evil")
    table = checksums_for(mirror, ["cifar-10-python.tar.gz"], tmp_path / "checksums.txt")
    with pytest.raises(ValueError, match="not the CIFAR-10 python archive"):      # read in place, never extracted
        load_cifar10(root, resources=table, mirror=mirror.as_uri())
    with pytest.raises(tarfile.OutsideDestinationError):                        # and extraction refuses it
        datasets._extract(root / "cifar-10-python.tar.gz", root, "cifar-10-batches-py")
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]  # no staging folder left
    assert (tmp_path / "evil").read_text() == "overwrite"


# --------------------------------------------------------------------------------- Tiny ImageNet

def test_tiny_imagenet_download_extract_decode(tmp_path):
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    tree = make_tiny_imagenet(mirror)
    table = checksums_for(mirror, ["tiny-imagenet-200.zip"], tmp_path / "checksums.txt")

    data = load_tiny_imagenet(root, resources=table, mirror=mirror.as_uri())
    train_files = [tree / "train" / w / "images" / f"{w}_{i}.JPEG" for w in WNIDS for i in range(3)]
    assert data.train_images.shape == (9, 3, 64, 64) and data.train_images.dtype == torch.uint8
    assert torch.equal(data.train_images, torch.stack([decoded_with_pil(f) for f in train_files]))
    gray = data.train_images[5]  # the grayscale JPEG: its plane on all three channels
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2])
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # The val split, in val_annotations.txt's order and with its labels.
    assert data.test_labels.tolist() == [2, 0, 2, 1]
    assert torch.equal(data.test_images[3], decoded_with_pil(tree / "val" / "images" / "val_3.JPEG"))
    assert data.classes == ("goldfish, Carassius auratus", "European fire salamander", "bullfrog, Rana catesbeiana")
    assert (root / "tiny-imagenet-200" / "val" / "images" / "val_0.JPEG").is_file()  # not moved into class folders


def test_tiny_imagenet_leaves_the_users_files_untouched(tmp_path):
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    tree = make_tiny_imagenet(mirror)
    table = checksums_for(mirror, ["tiny-imagenet-200.zip"], tmp_path / "checksums.txt")
    shutil.copytree(tree, root / "tiny-imagenet-200")  # as a user who unpacked the archive by hand
    shutil.copy(mirror / "tiny-imagenet-200.zip", root)
    before = listing(root)

    data = load_tiny_imagenet(root, download=False, resources=table)
    assert data.test_labels.tolist() == [2, 0, 2, 1]
    after = listing(root)
    assert after.pop("tiny-imagenet-200.decoded.pt")
    assert after == before


def test_tiny_imagenet_decoded_cache_is_reused(tmp_path, monkeypatch):
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    mirror.mkdir()
    make_tiny_imagenet(mirror)
    table = checksums_for(mirror, ["tiny-imagenet-200.zip"], tmp_path / "checksums.txt")
    decoded = []
    open_image = datasets.Image.open
    monkeypatch.setattr(datasets.Image, "open", lambda *args: decoded.append(1) or open_image(*args))

    first = load_tiny_imagenet(root, resources=table, mirror=mirror.as_uri())
    assert len(decoded) == 13
    # The cache alone is enough: neither the archive nor the extracted tree is read again.
    (root / "tiny-imagenet-200.zip").unlink()
    shutil.rmtree(root / "tiny-imagenet-200")
    second = load_tiny_imagenet(root, download=False, resources=table)
    assert len(decoded) == 13
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(first, field), getattr(second, field))
    assert second.classes == first.classes

    # A cache from another archive is not used: the data is decoded again and the cache replaced.
    stored = torch.load(root / "tiny-imagenet-200.decoded.pt", weights_only=True)
    torch.save({**stored, "archive": "md5 " + "0" * 32}, root / "tiny-imagenet-200.decoded.pt")
    load_tiny_imagenet(root, resources=table, mirror=mirror.as_uri())
    assert len(decoded) == 26
    assert torch.load(root / "tiny-imagenet-200.decoded.pt", weights_only=True)["archive"] == str(
        table["tiny-imagenet-200.zip"][0])


# --------------------------------------------------------------------------------- Fashion-MNIST

def test_fashion_mnist_download_and_idx_round_trip(tmp_path):
    mirror, root = tmp_path / "mirror", tmp_path / "data"
    train_images, train_labels, test_images, test_labels = make_fashion_mnist(mirror)
    table = checksums_for(mirror, FASHION_FILES, tmp_path / "checksums.txt")

    data = load_fashion_mnist(root, resources=table, mirror=mirror.as_uri(), system_dirs=())
    assert data.train_images.shape == (30, 1, 28, 28) and data.test_images.shape == (10, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert torch.equal(data.train_images[:, 0], torch.from_numpy(train_images))
    assert torch.equal(data.test_images[:, 0], torch.from_numpy(test_images))
    assert data.train_labels.tolist() == train_labels.tolist()
    assert data.test_labels.tolist() == test_labels.tolist()
    assert data.classes == FASHION_MNIST_CLASSES
    assert sorted(p.name for p in (root / "fashion-mnist").iterdir()) == sorted(FASHION_FILES)


def test_fashion_mnist_found_in_a_system_folder_and_read_in_place(tmp_path):
    debian, root = tmp_path / "usr-share-datasets-fashion-mnist", tmp_path / "data"
    _, train_labels, _, test_labels = make_fashion_mnist(debian)
    table = checksums_for(debian, FASHION_FILES, tmp_path / "checksums.txt")
    data = load_fashion_mnist(root, download=False, resources=table, system_dirs=(debian,))
    assert data.train_labels.tolist() == train_labels.tolist()
    assert data.test_labels.tolist() == test_labels.tolist()
    assert not root.exists()  # nothing copied

    # A system copy that does not verify is not used.
    write_idx(debian / "t10k-labels-idx1-ubyte.gz", 2049, np.zeros(10, np.uint8))
    with pytest.raises(DataUnavailable, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(root, download=False, resources=table, system_dirs=(debian,))


@pytest.mark.parametrize("damage, error", [("magic", "expected the magic number 2051, found 2049"),
                                           ("short", "truncated or malformed")])
def test_malformed_idx_file_is_reported(tmp_path, damage, error):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    images = np.zeros((4, 28, 28), np.uint8)
    if damage == "magic":
        write_idx(path, 2049, images)
    else:
        with gzip.open(path, "wb") as f:
            f.write(struct.pack(">4I", 2051, 5, 28, 28) + images.tobytes())
    with pytest.raises(ValueError, match=error):
        datasets._read_idx(path, datasets.IDX_IMAGES)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_loads(tmp_path):
    data = load_fashion_mnist(tmp_path, download=False)  # an empty data folder: the system copy is found
    assert data.train_images.shape == (60000, 1, 28, 28) and data.test_images.shape == (10000, 1, 28, 28)
    assert data.train_labels.bincount().tolist() == [6000] * 10
    assert data.test_labels.bincount().tolist() == [1000] * 10
    assert list(tmp_path.iterdir()) == []
