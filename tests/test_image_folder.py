"""Image folders (torchvision's ImageFolder layout) as a data set: from a folder, a .tar.gz or a
.zip, decoded once and cached; every malformed layout named in one error; and a real slice of
CIFAR-10 as JPEGs, where a copy is present (MNOG_TEST_CIFAR_JPEG, else
shared/data/cifar10-jpeg.tar.gz beside the checkout)."""
import io
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnog import datasets
from mnog.datasets import ImageFolderError, dataset_id, load_image_data, load_image_folder

CIFAR_JPEG = Path(os.environ.get("MNOG_TEST_CIFAR_JPEG")
                  or Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10-jpeg.tar.gz")


def make_folder(root: Path, classes=("cat", "ant"), per_split=(3, 2), size=(6, 5), gray_one=True) -> Path:
    """root/train/<class>/*.png and root/test/<class>/*.png of random pixels (one grayscale)."""
    generator = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_split):
        for label in classes:
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                pixels = generator.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                image = Image.fromarray(pixels)
                if gray_one and i == 0 and label == classes[0]:
                    image = image.convert("L")
                image.save(root / split / label / f"{i:03d}.png")
    return root


def pil_rgb(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def test_a_folder_loads_with_sorted_classes_and_pils_pixels(tmp_path):
    root = make_folder(tmp_path / "pets")
    data = load_image_folder(root, cache_root=tmp_path / "cache")
    assert data.classes == ("ant", "cat")                                    # sorted, as torchvision's ImageFolder
    assert data.train_images.shape == (6, 3, 5, 6) and data.test_images.shape == (4, 3, 5, 6)
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1, 1] and data.test_labels.tolist() == [0, 0, 1, 1]
    files = sorted((root / "train" / "ant").glob("*.png")) + sorted((root / "train" / "cat").glob("*.png"))
    assert torch.equal(data.train_images, torch.stack([pil_rgb(f) for f in files]))
    gray = data.train_images[3]                                              # cat/000.png was grayscale
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


@pytest.mark.parametrize("kind", ["tar.gz", "zip", "zip without a root folder"])
def test_an_archive_loads_as_its_folder_does(kind, tmp_path):
    root = make_folder(tmp_path / "pets")
    folder = load_image_folder(root, cache_root=tmp_path / "cache")
    archive = tmp_path / ("pets.tar.gz" if kind == "tar.gz" else "pets.zip")
    if kind == "tar.gz":
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(root, arcname="pets")
    else:
        with zipfile.ZipFile(archive, "w") as z:
            for path in sorted(root.rglob("*.png")):
                inside = path.relative_to(root if "without" in kind else tmp_path)
                z.write(path, inside.as_posix())
    data = load_image_folder(archive, cache_root=tmp_path / "cache")
    assert data.classes == folder.classes
    for a, b in [(data.train_images, folder.train_images), (data.test_images, folder.test_images),
                 (data.train_labels, folder.train_labels), (data.test_labels, folder.test_labels)]:
        assert torch.equal(a, b)


def test_a_tar_gz_in_any_member_order_is_read_once_front_to_back(tmp_path, monkeypatch):
    """GNU tar writes members in directory order: read in sorted order, a .tar.gz went back to its
    start for every member out of order (hours for 60,000 images). Members in reverse order,
    named ./pets/...: the archive loads as its folder does, its gzip stream never rewound."""
    import gzip
    root = make_folder(tmp_path / "pets")
    folder = load_image_folder(root, cache_root=tmp_path / "cache")
    archive = tmp_path / "pets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(root.rglob("*"), reverse=True):
            tar.add(path, arcname=f"./pets/{path.relative_to(root).as_posix()}", recursive=False)
    rewinds = []
    rewind = gzip._GzipReader._rewind
    monkeypatch.setattr(gzip._GzipReader, "_rewind", lambda self: rewinds.append(1) or rewind(self))
    data = load_image_folder(archive, cache_root=tmp_path / "cache")
    assert torch.equal(data.train_images, folder.train_images) and torch.equal(data.test_labels, folder.test_labels)
    assert len(rewinds) <= 1                                  # (opening the archive may rewind once)


def test_decoding_happens_once_until_the_source_changes(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "pets")
    load_image_folder(root, cache_root=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("folder-pets-*.decoded.pt"))) == 1
    decode = datasets._decode_image_folder
    monkeypatch.setattr(datasets, "_decode_image_folder", lambda *a: pytest.fail("decoded again"))
    load_image_folder(root, cache_root=tmp_path / "cache")                   # from the cache
    monkeypatch.setattr(datasets, "_decode_image_folder", decode)
    Image.new("RGB", (6, 5), (255, 0, 0)).save(root / "train" / "ant" / "009.png")
    assert len(load_image_folder(root, cache_root=tmp_path / "cache").train_labels) == 7   # changed: decoded again


def test_load_image_data_takes_folder_colon_path_and_its_id_is_the_content(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DATA", tmp_path / "data")
    root = make_folder(tmp_path / "pets", per_split=(4, 3))
    data = load_image_data(f"folder:{root}", per_class=2, test_per_class=1)
    assert data.train_labels.tolist() == [0, 0, 1, 1] and data.test_labels.tolist() == [0, 1]
    copy = tmp_path / "elsewhere" / "pets"
    shutil.copytree(root, copy)
    for path in root.rglob("*.png"):                                         # the same files, the same times
        shutil.copystat(path, copy / path.relative_to(root))
    assert dataset_id(f"folder:{root}") == dataset_id(f"folder:{copy}") != f"folder:{root}"
    # `make plan` sizes a folder data set as the loader cuts it: (classes, per class, test images, side)
    assert datasets.planned_sizes(f"folder:{root}", 2, 1) == (2, 2, 2, 6)
    assert datasets.planned_sizes(f"folder:{root}") == (2, 4, 6, 6)


@pytest.mark.parametrize("kind", ["folder", "tar.gz of ./", "zip made on macOS"])
def test_hidden_files_and_folders_are_skipped_as_ls_skips_them_and_counted(kind, tmp_path, capsys):
    clean = load_image_folder(make_folder(tmp_path / "clean"), cache_root=tmp_path / "cache")
    root = make_folder(tmp_path / "pets")
    (root / "train" / ".ipynb_checkpoints").mkdir()                        # not a class
    (root / "train" / ".ipynb_checkpoints" / "000-checkpoint.png").write_bytes(b"a notebook's copy")
    (root / "test" / "cat" / "._000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")   # not an image
    (root / ".DS_Store").write_bytes(b"Finder")
    source = root
    if kind == "tar.gz of ./":
        source = tmp_path / "pets.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            tar.add(root, arcname=".")                                     # members ./train/..., as `tar -C pets .`
    elif kind == "zip made on macOS":
        source = tmp_path / "pets.zip"
        with zipfile.ZipFile(source, "w") as z:
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                inside = path.relative_to(tmp_path).as_posix()
                z.write(path, inside)
                z.writestr(f"__MACOSX/{Path(inside).parent.as_posix()}/._{path.name}", b"AppleDouble")
    capsys.readouterr()
    data = load_image_folder(source, cache_root=tmp_path / "cache")
    for a, b in [(data.train_images, clean.train_images), (data.test_images, clean.test_images),
                 (data.train_labels, clean.train_labels), (data.test_labels, clean.test_labels)]:
        assert torch.equal(a, b)
    assert data.classes == clean.classes
    skipped = [line for line in capsys.readouterr().err.splitlines() if "hidden" in line]
    count = 3 if kind != "zip made on macOS" else 3 + 13               # and an AppleDouble file per file
    assert len(skipped) == 1 and skipped[0].startswith(f"{source}: skipped {count} hidden file(s) and folder(s)")


def write_png(path: Path, size=(6, 5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)


@pytest.mark.parametrize("damage, message", [
    ("no test split", r"no test/ split beside train/"),
    ("an empty class", r"test/cat/ holds no image"),
    ("different classes", r"train/ and test/ hold different classes \(only in train: cat; only in test: cow\)"),
    ("an unreadable image", r"cannot read the image train/ant/001.png"),
    ("an image of another size", r"train/cat/002.png is 7×5, the images before it 6×5"),
    ("no layout at all", r"no train/<class>/ and test/<class>/ folders"),
    ("no such path", r"no such folder or archive"),
])
def test_a_malformed_image_folder_is_named_in_one_error(damage, message, tmp_path):
    root = make_folder(tmp_path / "pets", gray_one=False)
    if damage == "no test split":
        shutil.rmtree(root / "test")
    elif damage == "an empty class":
        for path in (root / "test" / "cat").iterdir():
            path.unlink()
    elif damage == "different classes":
        (root / "test" / "cat").rename(root / "test" / "cow")
    elif damage == "an unreadable image":
        (root / "train" / "ant" / "001.png").write_bytes(b"not a png")
    elif damage == "an image of another size":
        write_png(root / "train" / "cat" / "002.png", size=(7, 5))
    elif damage == "no layout at all":
        shutil.rmtree(root / "train")
        shutil.rmtree(root / "test")
        write_png(root / "photo.png")
    else:
        root = tmp_path / "nowhere"
    with pytest.raises(ImageFolderError, match=message):
        load_image_folder(root, cache_root=tmp_path / "cache")


def test_a_bad_folder_dataset_on_the_command_line_is_one_line(capsys, tmp_path):
    from artifact import table2_representation_collapse as table2
    with pytest.raises(SystemExit) as stop:
        table2.main(["--profile", "smoke", "--dataset", f"folder:{tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--dataset: folder:" in err and "no such folder or archive" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not CIFAR_JPEG.is_file(), reason=f"{CIFAR_JPEG} is not here (set MNOG_TEST_CIFAR_JPEG)")
def test_a_real_slice_of_cifar10_as_jpegs(tmp_path):
    """200 images of the JPEG copy of CIFAR-10 (10 train and 10 test per class),
    re-packed as an archive of the same layout, load as PIL decodes them."""
    slice_ = tmp_path / "cifar10-slice.tar.gz"
    kept = {}
    with tarfile.open(CIFAR_JPEG) as source, tarfile.open(slice_, "w:gz") as target:
        counts = {}
        for member in source:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4:
                continue
            key = tuple(parts[1:3])                                          # (split, class)
            if counts.get(key, 0) < 10:
                counts[key] = counts.get(key, 0) + 1
                data = source.extractfile(member).read()
                kept[member.name] = data
                info = tarfile.TarInfo(member.name)
                info.size = len(data)
                target.addfile(info, io.BytesIO(data))
    data = load_image_folder(slice_, cache_root=tmp_path / "cache")
    assert data.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert data.train_images.shape == (100, 3, 32, 32) and data.test_images.shape == (100, 3, 32, 32)
    assert data.train_labels.tolist() == [k for k in range(10) for _ in range(10)]
    first_truck = sorted(n for n in kept if "/train/truck/" in n)[0]
    expected = torch.from_numpy(np.array(Image.open(io.BytesIO(kept[first_truck])).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(data.train_images[90], expected)
