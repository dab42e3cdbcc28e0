"""benchmarks/gpu_check.sh end to end at smoke scale on the CPU, as it runs at full scale on a GPU."""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def cifar_like_archive(folder: Path, per_class: int = 100, test_per_class: int = 5) -> Path:
    """An ImageFolder archive shaped as the CIFAR-10 JPEG copy: 10 classes of 32×32 JPEGs."""
    rng = np.random.default_rng(0)
    tree = folder / "cifar10-jpeg"
    for split, count in (("train", per_class), ("test", test_per_class)):
        for k in range(10):
            (tree / split / f"class{k}").mkdir(parents=True)
            base = rng.integers(0, 256, (1, 1, 3))
            for i in range(count):
                pixels = (base + rng.integers(-40, 40, (32, 32, 3))).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(tree / split / f"class{k}" / f"{i:04d}.jpg", quality=90)
    archive = folder / "cifar10-jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-jpeg")
    return archive


def test_the_gpu_check_runs_every_part_at_smoke_scale(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_SCALE": "smoke", "GPU_CHECK_CIFAR10": str(cifar_like_archive(tmp_path)),
           "OUT": str(out), "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    env.pop("MNOG_DATA", None)
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=7200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    for part in ("a_slice", "b_calibration", "c_minnorm", "d_workers"):
        line = next((line for line in summary.splitlines() if line.startswith(f"{part}: ")), summary)
        assert line.endswith("exit status 0"), line
    files = {p.name for p in out.iterdir()}
    assert len(files) <= 8 and {"a_slice.txt", "kept.tar.gz", "summary.txt"} <= files
    assert any(name.startswith("calibration-") for name in files)
    slice_ = (out / "a_slice.txt").read_text()
    assert "one trial has no standard error" in slice_ and "98.5 ± 0.1" in slice_ and "94.7 ± 1.1" in slice_
    assert "plan at profile smoke" in (out / "b_calibration.txt").read_text()
    assert "goal MinNorm-OG ≤ 5× GD in eval mode" in (out / "c_minnorm.txt").read_text()
    workers = (out / "d_workers.txt").read_text()
    assert "--workers-per-gpu 1:" in workers and "--workers-per-gpu 2:" in workers
    with tarfile.open(out / "kept.tar.gz") as tar:
        kept = {Path(name).name for name in tar.getnames()}
    assert {"slice.json", "workers.json", "slice_records.jsonl"} <= kept
    assert not list(tmp_path.glob("mnog-gpu-check.*"))            # the run's scratch folder is gone
