"""Data sets of the paper's experiments.

The image data sets are read from DATA (the environment variable MNOG_DATA, else `data/`
in the repository), downloaded there when missing and verified against `checksums.txt`
(see mnog.download) before anything is extracted or decoded.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import math
import os
import pickle
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from mnog import rehearsal
from mnog.download import Resource, fetch, load_checksums, matching, verify
from mnog.errors import UserError
from mnog.results import ROOT
from mnog.training import load_cached, save_atomic

DATA = Path(os.environ.get("MNOG_DATA") or ROOT / "data")


@dataclass(frozen=True)
class SinePoisoning:
    """Data Poisoning (docs/protocol.md#data-poisoning): 50 retain points y = sin(x) and 5 forget
    points y = 1.5, x ~ U[-5π, 5π]."""
    n_retain: int = 50
    n_forget: int = 5
    x_max: float = 5 * math.pi   # x ∈ [-x_max, x_max]
    poison: float = 1.5          # the forget points' label

    def sample(self, seed: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """((x_r, y_r), (x_f, y_f)) of one trial, each x of shape (n, 1)."""
        generator = torch.Generator().manual_seed(seed)
        x_r = (torch.rand(self.n_retain, 1, generator=generator) * 2 - 1) * self.x_max
        x_f = (torch.rand(self.n_forget, 1, generator=generator) * 2 - 1) * self.x_max
        return (x_r, torch.sin(x_r)), (x_f, torch.full_like(x_f, self.poison))

    def sample_trials(self, seeds: list[int]):
        """The trials stacked along a leading member dim: ((E, 50, 1), ...) for an Ensemble."""
        trials = [self.sample(s) for s in seeds]
        stack = lambda part, i: torch.stack([t[part][i] for t in trials])  # noqa: E731
        return (stack(0, 0), stack(0, 1)), (stack(1, 0), stack(1, 1))

    def test_grid(self, points: int = 1000) -> Tensor:
        """The evaluation inputs: `points` evenly spaced x in [-x_max, x_max], shape (points, 1)."""
        return torch.linspace(-self.x_max, self.x_max, points).unsqueeze(1)


# ------------------------------------------------------------------------------ image data sets

@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value to compare by
class ImageData:
    """A labelled image data set: uint8 images (N, C, H, W) and int64 labels (N,) per split."""
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: tuple[str, ...]  # the name of each label value


CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"


def load_cifar10(root: Path | str | None = None, download: bool = True, *,
                 resources: dict[str, list[Resource]] | None = None, mirror: str | None = None) -> ImageData:
    """CIFAR-10: 50,000 train and 10,000 test images, (N, 3, 32, 32).

    The archive root/cifar-10-python.tar.gz is verified on every call (a fraction of a second)
    and its batch files are read straight out of it, never from an extracted folder: they are
    pickles, and unpickling a file anyone can write into data/ would be a way to run code. The
    unpickler admits nothing but numpy arrays and plain containers, in case the verified
    archive itself were not what checksums.txt promises. resources, mirror: as for `fetch`.
    """
    root = DATA if root is None else Path(root)
    archive = fetch(CIFAR10_ARCHIVE, root, resources=resources, mirror=mirror, download=download)
    with tarfile.open(archive) as tar:
        def member(name: str) -> dict:
            file = tar.extractfile(f"{CIFAR10_FOLDER}/{name}")
            if file is None:
                raise ValueError(f"{archive}: {CIFAR10_FOLDER}/{name} is not a regular file")
            return _ArrayUnpickler(file, encoding="bytes").load()

        try:
            train = [_read_cifar_batch(member(f"data_batch_{i}"), f"data_batch_{i}") for i in range(1, 6)]
            test_images, test_labels = _read_cifar_batch(member("test_batch"), "test_batch")
            label_names = member("batches.meta")[b"label_names"]
        except KeyError as exc:
            raise ValueError(f"{archive} lacks {exc.args[0]}: not the CIFAR-10 python archive") from None
    return ImageData(torch.cat([images for images, _ in train]), torch.cat([labels for _, labels in train]),
                     test_images, test_labels, tuple(name.decode() for name in label_names))


class _ArrayUnpickler(pickle.Unpickler):
    """Python 2's CIFAR-10 pickles (byte-string keys, numpy arrays) and nothing that runs code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # protocol 2 writes bytes via encode

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a CIFAR-10 batch may hold numpy arrays only, not {module}.{name}")


def _read_cifar_batch(batch: dict, name: str) -> tuple[Tensor, Tensor]:
    """One CIFAR-10 batch: images (n, 3, 32, 32) uint8 and labels (n,) int64."""
    data, labels = batch[b"data"], batch[b"labels"]  # data (n, 3072): each row the R, G, B planes, 32×32 each
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 \
            or len(data) != len(labels):
        raise ValueError(f"{name}: expected uint8 data (n, 3072) and n labels, "
                         f"got {getattr(data, 'dtype', type(data))} {getattr(data, 'shape', '')} and {len(labels)} labels")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.tensor(labels, dtype=torch.int64)


TINY_IMAGENET_ARCHIVE = "tiny-imagenet-200.zip"
TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
TINY_IMAGENET_CACHE = "tiny-imagenet-200.decoded.pt"


def load_tiny_imagenet(root: Path | str | None = None, download: bool = True, *,
                       resources: dict[str, list[Resource]] | None = None,
                       mirror: str | None = None) -> ImageData:
    """Tiny ImageNet: 100,000 train images (500 for each of 200 classes) and, as the test split,
    its 10,000 validation images; (N, 3, 64, 64), grayscale images repeated over the 3 channels.

    Decoding 110,000 JPEGs takes a while, so the decoded tensors are cached in
    root/tiny-imagenet-200.decoded.pt, labelled with the checksum of the archive they were
    decoded from; later calls read the cache alone. The extracted tree root/tiny-imagenet-200
    is only read: validation labels come from val/val_annotations.txt, nothing is moved.
    resources, mirror: as for `fetch`.
    """
    root = DATA if root is None else Path(root)
    table = load_checksums() if resources is None else resources
    cache = root / TINY_IMAGENET_CACHE
    stored = load_cached(cache)                                 # a corrupt cache is moved aside and rebuilt
    if stored is not None and stored.get("archive") in {str(r) for r in table.get(TINY_IMAGENET_ARCHIVE, [])}:
        return ImageData(**stored["data"])
    archive = fetch(TINY_IMAGENET_ARCHIVE, root, resources=table, mirror=mirror, download=download)
    source = matching(archive, table[TINY_IMAGENET_ARCHIVE])  # which accepted archive it is: the cache's label
    data = _read_tiny_imagenet(_extract(archive, root, TINY_IMAGENET_FOLDER))
    save_atomic({"archive": str(source), "data": vars(data)}, cache)
    return data


def write_tiny_imagenet(path: Path | str, classes: int = 200, train_per_class: int = 500, val: int = 10_000,
                        test: int = 10_000, seed: int = 0) -> Path:
    """A synthetic tiny-imagenet-200.zip in the official archive's layout (wnids.txt,
    words.txt, train/<wnid>/images/<wnid>_<i>.JPEG with <wnid>_boxes.txt, val/images/val_<i>.JPEG
    listed in val/val_annotations.txt, test/images/test_<i>.JPEG), 64×64 JPEGs, 1% of them
    grayscale as some of the real ones; by default at the real image count (100,000 train,
    10,000 val, 10,000 test). Each class is its own smooth texture under random brightness and
    noise (mnog.rehearsal rehearses the Tiny ImageNet targets on it where the official archive
    cannot be downloaded; its checksum is no official one)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    wnids = [f"n{90000000 + k:08d}" for k in range(classes)]
    textures = torch.nn.functional.interpolate(torch.from_numpy(rng.random((classes, 3, 8, 8), np.float32)), size=64,
                                               mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()

    def jpeg(label: int) -> bytes:
        pixels = textures[label] * rng.uniform(0.5, 1.5) + rng.normal(0, 0.08, (64, 64, 3))
        image = Image.fromarray((pixels.clip(0, 1) * 255).round().astype(np.uint8))
        out = io.BytesIO()
        (image.convert("L") if rng.random() < 0.01 else image).save(out, "JPEG", quality=90)
        return out.getvalue()

    root = TINY_IMAGENET_FOLDER
    val_labels = rng.integers(classes, size=val)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/wnids.txt", "".join(f"{w}\n" for w in wnids))
        archive.writestr(f"{root}/words.txt", "".join(f"{w}\tsynthetic class {k}\n" for k, w in enumerate(wnids)))
        for k, wnid in enumerate(tqdm(wnids, desc="synthetic Tiny ImageNet train", unit="class", mininterval=1.0)):
            archive.writestr(f"{root}/train/{wnid}/{wnid}_boxes.txt",
                             "".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(train_per_class)))
            for i in range(train_per_class):
                archive.writestr(f"{root}/train/{wnid}/images/{wnid}_{i}.JPEG", jpeg(k))
        archive.writestr(f"{root}/val/val_annotations.txt",
                         "".join(f"val_{i}.JPEG\t{wnids[k]}\t0\t0\t63\t63\n" for i, k in enumerate(val_labels)))
        for i, k in enumerate(val_labels):
            archive.writestr(f"{root}/val/images/val_{i}.JPEG", jpeg(int(k)))
        for i in range(test):
            archive.writestr(f"{root}/test/images/test_{i}.JPEG", jpeg(int(rng.integers(classes))))
    os.replace(partial, path)
    return path


def _read_tiny_imagenet(tree: Path) -> ImageData:
    """Decode an extracted Tiny ImageNet tree; class index = line of the wnid in wnids.txt."""
    wnids = (tree / "wnids.txt").read_text().split()
    label_of = {wnid: i for i, wnid in enumerate(wnids)}
    train = []
    for wnid in wnids:
        files = sorted((tree / "train" / wnid / "images").glob("*.JPEG"))
        if not files:
            raise ValueError(f"{tree / 'train' / wnid / 'images'} holds no JPEG: the extracted tree is incomplete")
        train += [(file, label_of[wnid]) for file in files]
    # The validation images all lie in val/images; their classes are listed in val_annotations.txt.
    annotations = tree / "val" / "val_annotations.txt"
    test = []
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")  # file, wnid, then the bounding box x0, y0, x1, y1 (unused)
        if len(fields) < 2 or fields[1] not in label_of:
            raise ValueError(f"{annotations}:{number}: expected '<file>\\t<wnid of wnids.txt>\\t...', got {line!r}")
        test.append((tree / "val" / "images" / fields[0], label_of[fields[1]]))
    names = {}  # wnid -> "goldfish, Carassius auratus"; words.txt lists every ImageNet synset, and is optional
    if (tree / "words.txt").is_file():
        names = dict(line.split("\t", 1) for line in (tree / "words.txt").read_text().splitlines() if "\t" in line)
    train_images, train_labels = _decode_jpegs(train, 64, "decode Tiny ImageNet train")
    test_images, test_labels = _decode_jpegs(test, 64, "decode Tiny ImageNet val")
    return ImageData(train_images, train_labels, test_images, test_labels,
                     tuple(names.get(wnid, wnid).strip() for wnid in wnids))


def _decode_jpegs(samples: list[tuple[Path, int]], size: int, desc: str) -> tuple[Tensor, Tensor]:
    """(file, label) pairs as uint8 RGB images (n, 3, size, size) and int64 labels (n,)."""
    images = torch.empty((len(samples), 3, size, size), dtype=torch.uint8)  # filled in place: no stacked copy
    for i, (file, _) in enumerate(tqdm(samples, desc=desc, unit="img", mininterval=1.0)):
        with Image.open(file) as image:
            if image.size != (size, size):
                raise ValueError(f"{file}: expected a {size}×{size} image, got {image.size[0]}×{image.size[1]}")
            pixels = np.array(image.convert("RGB"))  # (size, size, 3); a grayscale JPEG: its plane three times
        images[i] = torch.from_numpy(pixels).permute(2, 0, 1)
    return images, torch.tensor([label for _, label in samples], dtype=torch.int64)


FASHION_MNIST_FOLDER = "fashion-mnist"
# The idx files of each split: (images, labels).
FASHION_MNIST_FILES = {split: (f"{split}-images-idx3-ubyte.gz", f"{split}-labels-idx1-ubyte.gz")
                       for split in ("train", "t10k")}
# Where system packages install Fashion-MNIST (Debian's dataset-fashion-mnist); read in place.
FASHION_MNIST_SYSTEM_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDX_IMAGES, IDX_LABELS = 2051, 2049  # idx magic numbers: 0x08 (unsigned bytes) << 8 | number of dimensions


def load_fashion_mnist(root: Path | str | None = None, download: bool = True, *,
                       resources: dict[str, list[Resource]] | None = None, mirror: str | None = None,
                       system_dirs: tuple[Path, ...] = FASHION_MNIST_SYSTEM_DIRS) -> ImageData:
    """Fashion-MNIST: 60,000 train and 10,000 test grayscale images, (N, 1, 28, 28).

    Each of the four idx files comes from the first folder holding a verified copy:
    root/fashion-mnist, then `system_dirs` (read in place, not copied); otherwise it is
    downloaded into root/fashion-mnist. resources, mirror: as for `fetch`.
    """
    root = DATA if root is None else Path(root)
    table = load_checksums() if resources is None else resources
    folders = (root / FASHION_MNIST_FOLDER, *map(Path, system_dirs))
    splits = {}
    for split, (images_file, labels_file) in FASHION_MNIST_FILES.items():
        images = _read_idx(_locate(images_file, folders, table, mirror, download), IDX_IMAGES)
        labels = _read_idx(_locate(labels_file, folders, table, mirror, download), IDX_LABELS)
        if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max(initial=0) >= 10:
            raise ValueError(f"Fashion-MNIST {split}: expected n 28×28 images and n labels in 0-9, got images "
                             f"{images.shape} and {len(labels)} labels up to {labels.max(initial=0)}")
        splits[split] = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()
    return ImageData(*splits["train"], *splits["t10k"], FASHION_MNIST_CLASSES)


def _locate(filename: str, folders: tuple[Path, ...], table: dict[str, list[Resource]],
            mirror: str | None, download: bool) -> Path:
    """The first verified copy of `filename` in `folders`, else `fetch` it into the first folder."""
    for folder in folders:
        if verify(folder / filename, table.get(filename, [])):
            return folder / filename
    return fetch(filename, folders[0], resources=table, mirror=mirror, download=download)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """A gzipped idx file (the MNIST format) as uint8: (n, rows, cols) images or (n,) labels.

    An idx file is a big-endian header, the magic number and then each dimension's size as
    4-byte integers, followed by the values as unsigned bytes."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise ValueError(f"{path}: not an idx file of {'images' if magic == IDX_IMAGES else 'labels'} "
                         f"(expected the magic number {magic}, found {int.from_bytes(data[:4], 'big')})")
    shape = tuple(np.frombuffer(data, ">u4", count=ndim, offset=4).tolist())
    if len(data) - header != math.prod(shape):
        raise ValueError(f"{path}: the header announces {shape} = {math.prod(shape)} values, "
                         f"the file holds {len(data) - header}: truncated or malformed")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy()  # copy: frombuffer is read-only


def _extract(archive: Path, root: Path, folder: str) -> Path:
    """root/folder, extracted from `archive` (a verified .zip or tar) unless it exists already.

    The archive is unpacked into a temporary folder beside it and `folder` then renamed into
    place, so a half-extracted tree (an interrupted first run) is never mistaken for data."""
    target = root / folder
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}.", suffix=".extracting"))
    print(f"extracting {archive.name} into {target} (once; a minute or so for a large archive) ...", file=sys.stderr,
          flush=True)
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zip_file:
                zip_file.extractall(staging)  # zipfile strips absolute paths and ".." from member names
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")  # refuses absolute paths, "..", links out, devices
        if not (staging / folder).is_dir():
            raise ValueError(f"{archive} holds no folder {folder}/")
        try:
            os.replace(staging / folder, target)
        except OSError:
            if not target.is_dir():  # else another process extracted it meanwhile
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------
# Image folders: torchvision's ImageFolder layout, from a folder or an archive of one
# ---------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SPLITS = ("train", "test")


class ImageFolderError(UserError, ValueError):
    """An image folder that is not in the layout <root>/{train,test}/<class>/<image>."""


def load_image_folder(source: Path | str, cache_root: Path | str | None = None) -> ImageData:
    """An image data set in torchvision's ImageFolder layout, `<root>/train/<class>/*` and
    `<root>/test/<class>/*`, from the folder `source` or a .tar.gz / .tgz / .tar / .zip
    archive of one (holding `train/` and `test/` at its top or inside one folder). Classes
    are the sorted folder names (torchvision's order, the same in both splits); images are
    decoded to RGB uint8 (N, 3, H, W), all of one size, in sorted file order.

    Decoding is done once: the tensors are cached in cache_root (default: the data folder)
    under a hash of the source's content (an archive's SHA-256; a folder's file names, sizes
    and modification times), so a changed source is decoded again. Raises ImageFolderError
    naming the problem: a missing split, an empty class, different classes in the two
    splits, an unreadable image or one of another size (naming the file)."""
    source = Path(source).expanduser()
    if not source.exists():
        raise ImageFolderError(f"{source}: no such folder or archive (an image folder: <root>/train/<class>/*, "
                               f"<root>/test/<class>/*, or a .tar.gz or .zip of one)")
    cache = Path(cache_root or DATA) / f"folder-{source.name.split('.')[0]}-{_content_hash(source)}.decoded.pt"
    stored = load_cached(cache)
    if stored is not None:
        return ImageData(**stored)
    files = _layout(source, _archive_members(source) if source.is_file() else _folder_members(source))
    data = _decode_image_folder(source, files)
    save_atomic(vars(data), cache)
    return data


def _content_hash(source: Path) -> str:
    """An archive's SHA-256, or a folder's file names, sizes and modification times, hashed
    (once per process for an unchanged archive); hidden files, which are not read, do not count."""
    if source.is_file():
        stat = source.stat()
        return _file_hash(str(source.resolve()), stat.st_size, stat.st_mtime_ns)
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()
                       and _hidden_part(p.relative_to(source).as_posix()) is None):
        stat = path.stat()
        digest.update(f"{path.relative_to(source)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _folder_members(root: Path) -> dict[str, Callable[[], bytes]]:
    """{"<path under root>": a reader of its bytes} of every file and folder (a folder's name
    ends with "/", so that an empty class is seen, and named)."""
    return {p.relative_to(root).as_posix() + ("/" if p.is_dir() else ""): p.read_bytes for p in root.rglob("*")}


def _archive_members(archive: Path) -> dict[str, Callable[[], bytes]]:
    """As _folder_members, for the members of a zip or tar archive (read in place, never extracted)."""
    if zipfile.is_zipfile(archive):
        handle = zipfile.ZipFile(archive)
        names = [i.filename for i in handle.infolist()]                  # folders end with "/"
        read = lambda name: lambda: handle.read(name)  # noqa: E731
    else:
        try:
            handle = tarfile.open(archive)
        except tarfile.TarError:
            raise ImageFolderError(f"{archive}: not a folder, a zip or a tar archive") from None
        # Read front to back, once: a .tar.gz read in any other order decompresses from its start
        # again for every backward step (GNU tar writes members in directory order, not sorted):
        # hours for 60,000 images, where the small archives of a test take no time.
        contents = {}
        with handle:
            for member in handle:
                if member.isfile() or member.isdir():
                    data = handle.extractfile(member).read() if member.isfile() else b""
                    contents[member.name + ("/" if member.isdir() else "")] = data
        names = list(contents)
        read = lambda name: lambda: contents[name]  # noqa: E731
    return {name: read(name) for name in names}


def _layout(source: Path, members: dict[str, Callable[[], bytes]]) -> dict[str, Callable[[], bytes]]:
    """The members under the folder that holds train/ and test/, named from there ("train/<class>/
    <file>"). Hidden files and folders (a name starting with ".": .ipynb_checkpoints/, .DS_Store,
    macOS's ._<file>) are skipped, as `ls` skips them, and counted in one line on stderr."""
    cleaned = {re.sub(r"^(\./|/)+", "", name): reader for name, reader in members.items()}    # "./train/..." (tar)
    hidden = {h for h in map(_hidden_part, cleaned) if h is not None}
    if hidden:
        shown = ", ".join(sorted(hidden)[:3]) + (", ..." if len(hidden) > 3 else "")
        print(f"{source}: skipped {len(hidden)} hidden file(s) and folder(s) (names starting with '.', as ls does): "
              f"{shown}", file=sys.stderr)
    visible = {name: reader for name, reader in cleaned.items() if name and _hidden_part(name) is None}
    prefix = _split_root(source, list(visible))
    return {name[len(prefix):]: reader for name, reader in visible.items() if name.startswith(prefix)}


def _hidden_part(name: str) -> str | None:
    """The path up to a member's first hidden part ("train/.ipynb_checkpoints" of
    "train/.ipynb_checkpoints/x.png"), or None when no part of its name starts with "."."""
    parts = name.rstrip("/").split("/")
    hidden = next((i for i, part in enumerate(parts) if part.startswith(".")), None)
    return None if hidden is None else "/".join(parts[:hidden + 1])


def _split_root(source: Path, names: list[str]) -> str:
    """The prefix under which train/ and test/ lie: "" or "<folder>/"."""
    for prefix in ("", *sorted({n.split("/", 1)[0] + "/" for n in names if "/" in n})):
        found = {n[len(prefix):].split("/", 1)[0] for n in names if n.startswith(prefix) and n.count("/") >= 2}
        if "train" in found or "test" in found:
            missing = [split for split in SPLITS if split not in found]
            if missing:
                raise ImageFolderError(f"{source}: no {missing[0]}/ split beside {prefix}{'test' if missing[0] == 'train' else 'train'}/ "
                                       f"(an image folder holds train/<class>/* and test/<class>/*)")
            return prefix
    raise ImageFolderError(f"{source}: no train/<class>/ and test/<class>/ folders (the ImageFolder layout)")


def _decode_image_folder(source: Path, files: dict[str, Callable[[], bytes]]) -> ImageData:
    by_split: dict[str, dict[str, list[str]]] = {split: {} for split in SPLITS}
    for name in sorted(files):
        parts = name.rstrip("/").split("/")
        if len(parts) in (2, 3) and parts[0] in SPLITS and (len(parts) == 3 or name.endswith("/")):
            by_split[parts[0]].setdefault(parts[1], [])                   # a class folder, empty or not
            if len(parts) == 3 and not name.endswith("/") and parts[2].lower().endswith(IMAGE_SUFFIXES):
                by_split[parts[0]][parts[1]].append(name)
    classes = sorted(by_split["train"])
    if sorted(by_split["test"]) != classes:
        only_train = sorted(set(classes) - set(by_split["test"]))
        only_test = sorted(set(by_split["test"]) - set(classes))
        raise ImageFolderError(f"{source}: train/ and test/ hold different classes (only in train: "
                               f"{', '.join(only_train) or 'none'}; only in test: {', '.join(only_test) or 'none'})")
    for split in SPLITS:
        for label in classes:
            if not by_split[split][label]:
                raise ImageFolderError(f"{source}: {split}/{label}/ holds no image ({', '.join(IMAGE_SUFFIXES)})")
    size = None
    decoded = {}
    for split in SPLITS:
        samples = [(name, k) for k, label in enumerate(classes) for name in by_split[split][label]]
        images = None
        for i, (name, _) in enumerate(tqdm(samples, desc=f"decode {source.name} {split}", unit="img",
                                           mininterval=1.0)):
            try:
                with Image.open(io.BytesIO(files[name]())) as image:
                    pixels = np.array(image.convert("RGB"))
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise ImageFolderError(f"{source}: cannot read the image {name}: {exc}") from None
            size = size or pixels.shape[:2]
            if pixels.shape[:2] != size:
                raise ImageFolderError(f"{source}: {name} is {pixels.shape[1]}×{pixels.shape[0]}, the images before "
                                       f"it {size[1]}×{size[0]}; every image of a folder data set has one size")
            if images is None:
                images = torch.empty((len(samples), 3, *size), dtype=torch.uint8)
            images[i] = torch.from_numpy(pixels).permute(2, 0, 1)
        decoded[split] = (images, torch.tensor([k for _, k in samples], dtype=torch.int64))
    return ImageData(*decoded["train"], *decoded["test"], tuple(classes))


# ---------------------------------------------------------------------------------------
# Choosing a data set for an experiment's profile
# ---------------------------------------------------------------------------------------

def synthetic_images(classes: int = 10, per_class: int = 40, test_per_class: int = 10, size: int = 32,
                     seed: int = 0) -> ImageData:
    """A small image set generated in memory (no download), for the smoke profiles.

    Each class has its own smooth random texture; an image is its class's texture under
    a random brightness and contrast, plus pixel noise, so content is learnable but not
    trivial."""
    generator = torch.Generator().manual_seed(seed)
    textures = torch.nn.functional.interpolate(torch.rand(classes, 3, 4, 4, generator=generator), size=size,
                                               mode="bilinear", align_corners=False)

    def draw(count: int) -> tuple[Tensor, Tensor]:
        labels = torch.arange(classes).repeat_interleave(count)
        gain = 0.5 + torch.rand(len(labels), 1, 1, 1, generator=generator)
        noise = 0.15 * torch.randn(len(labels), 3, size, size, generator=generator)
        images = (textures[labels] * gain + noise).clamp(0, 1)
        return (images * 255).round().to(torch.uint8), labels

    train_images, train_labels = draw(per_class)
    test_images, test_labels = draw(test_per_class)
    return ImageData(train_images, train_labels, test_images, test_labels,
                     tuple(f"texture {k}" for k in range(classes)))


def per_class_subset(data: ImageData, per_class: int = 0, test_per_class: int = 0) -> ImageData:
    """The first `per_class` training and `test_per_class` test images of every class (0: all)."""
    def first(labels: Tensor, count: int) -> Tensor:
        if not count:
            return torch.arange(len(labels))
        order = torch.argsort(labels, stable=True)
        grouped = labels[order]
        rank = torch.arange(len(labels)) - torch.searchsorted(grouped, grouped)   # position within its class
        return order[rank < count].sort().values

    train, test = first(data.train_labels, per_class), first(data.test_labels, test_per_class)
    return ImageData(data.train_images[train], data.train_labels[train], data.test_images[test],
                     data.test_labels[test], data.classes)


DATASETS = ("cifar10", "tiny_imagenet", "fashion_mnist", "synthetic")  # the names load_image_data takes, and folder:PATH
# (classes, training images per class, test images per class, image side) of every data set,
# for planning without loading it (mnog.plan); synthetic: load_image_data's defaults.
SIZES = {"cifar10": (10, 5000, 1000, 32), "tiny_imagenet": (200, 500, 50, 64), "fashion_mnist": (10, 6000, 1000, 28),
         "synthetic": (10, 40, 10, 32)}


def planned_sizes(name: str, per_class: int = 0, test_per_class: int = 0) -> tuple[int, int, int, int]:
    """(classes, training images per class, test images in all, image side) that
    `load_image_data(name, per_class, test_per_class)` gives, without loading anything (an
    image folder, folder:PATH, is decoded once, or read from its cache, to count its images)."""
    if name.startswith("folder:"):
        data = load_image_data(name, per_class, test_per_class)
        counts = torch.bincount(data.train_labels)
        return len(data.classes), int(counts.min()), len(data.test_labels), int(data.train_images.shape[-1])
    classes, train, test, side = SIZES[name]
    if name == "synthetic":
        return classes, per_class or train, classes * (test_per_class or test), side
    return classes, min(per_class, train) if per_class else train, \
        classes * (min(test_per_class, test) if test_per_class else test), side


def load_image_data(name: str, per_class: int = 0, test_per_class: int = 0) -> ImageData:
    """An experiment's data set by name (one of DATASETS, or folder:PATH for an image folder or
    an archive of one: `load_image_folder`), optionally cut to its first images of every class."""
    with rehearsal.timed("data", name=name) as logged:
        data = _load_image_data(name, per_class, test_per_class)
        logged.update(train=len(data.train_labels), test=len(data.test_labels), side=int(data.train_images.shape[-1]))
    return data


def _load_image_data(name: str, per_class: int, test_per_class: int) -> ImageData:
    if name == "synthetic":
        return synthetic_images(per_class=per_class or 40, test_per_class=test_per_class or 10)
    if name.startswith("folder:"):
        return per_class_subset(load_image_folder(name.removeprefix("folder:")), per_class, test_per_class)
    loaders = {"cifar10": load_cifar10, "tiny_imagenet": load_tiny_imagenet, "fashion_mnist": load_fashion_mnist}
    if name not in loaders:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)} or folder:PATH")
    return per_class_subset(loaders[name](), per_class, test_per_class)


@functools.lru_cache(maxsize=None)
def dataset_id(name: str) -> str:
    """What identifies a data set in records and cache keys: its name, or for folder:PATH the
    source's file name and content hash (not its path, which differs between machines)."""
    if not name.startswith("folder:"):
        return name
    source = Path(name.removeprefix("folder:")).expanduser()
    return f"folder:{source.name}:{_content_hash(source)}" if source.exists() else name


def check_dataset(name: str) -> None:
    """ValueError unless `name` is a known data set or folder:PATH of an existing path."""
    if name.startswith("folder:"):
        if not Path(name.removeprefix("folder:")).expanduser().exists():
            raise ValueError(f"{name}: no such folder or archive (folder:PATH names an image folder, "
                             f"<root>/train/<class>/* and <root>/test/<class>/*, or a .tar.gz or .zip of one)")
    elif name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)} or folder:PATH")
