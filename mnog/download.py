"""Downloading and verifying the files the experiments read: data sets and pretrained weights.

Every such file is listed in `checksums.txt` at the repository root with its accepted
checksums and its download URL. `fetch` returns a file only once its content matches one
of them: a download goes to a temporary file in the destination folder and is renamed into
place after it verified, so an interrupted or corrupted download never looks like data.
Where a file cannot be downloaded (no network, host gone), `DataUnavailable` says in one
message which file to place where, where to get it, and which checksum it must have.
"""
from __future__ import annotations

import argparse
import http.client
import hashlib
import os
import string
import sys
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mnog.errors import UserError, cli
from mnog.results import ROOT

# The checksums table; MNOG_CHECKSUMS names another (a mirror's re-packed files, a rehearsal's
# synthetic archive: mnog.rehearsal).
CHECKSUMS = Path(os.environ.get("MNOG_CHECKSUMS") or ROOT / "checksums.txt")

# A checksums.txt algorithm -> (hashlib name, digest length in hex digits or None if any).
# "sha256-prefix" is a leading part of the SHA-256, where only that is published (torchvision's
# weights carry the first 8 hex digits of their SHA-256 in their file name).
ALGORITHMS = {"md5": ("md5", 32), "sha256": ("sha256", 64), "sha256-prefix": ("sha256", None)}

USER_AGENT = "mnog/0.1"  # some hosts refuse urllib's default "Python-urllib" agent
TIMEOUT_S = 60        # per network operation, not for the whole download
CHUNK = 1 << 20       # bytes read per network read


class DataUnavailable(UserError, RuntimeError):
    """A needed file is missing and cannot be downloaded: the message says what to place where."""


class ChecksumError(UserError, RuntimeError):
    """A downloaded file matches none of the checksums accepted for it."""


@dataclass(frozen=True)
class Resource:
    """One accepted copy of a file: its name, where to download it, and its checksum."""
    filename: str
    url: str
    algorithm: str  # a key of ALGORITHMS
    digest: str     # lowercase hex

    def __str__(self) -> str:
        return f"{self.algorithm} {self.digest}"

    def matches(self, digests: dict[str, str]) -> bool:
        """Whether a file with these hex digests (hashlib name -> digest) is this copy."""
        found = digests[ALGORITHMS[self.algorithm][0]]
        if self.algorithm == "sha256-prefix":
            return found.startswith(self.digest)
        return found == self.digest


class ChecksumsTableError(UserError, ValueError):
    """A checksums table that cannot be read, or holds a malformed line."""


def load_checksums(path: Path | str | None = None) -> dict[str, list[Resource]]:
    """The checksums table, file name -> its accepted copies (default: repository-root checksums.txt)."""
    path = CHECKSUMS if path is None else Path(path)
    try:
        text = path.read_text()
    except IsADirectoryError:
        raise ChecksumsTableError(f"the checksums table {path} is a folder; give a file of lines '<algorithm>  "
                                  "<hex digest>  <file name>  <url>' (as checksums.txt)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChecksumsTableError(f"cannot read the checksums table {path}: "
                                  f"{getattr(exc, 'strerror', None) or exc}") from None
    table: dict[str, list[Resource]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4:
            raise ChecksumsTableError(f"{path}:{number}: expected '<algorithm>  <hex digest>  <file name>  <url>', "
                                      f"got {line!r}")
        algorithm, digest, filename, url = fields
        if algorithm not in ALGORITHMS:
            raise ChecksumsTableError(f"{path}:{number}: unknown algorithm {algorithm!r}; known: "
                                      f"{sorted(ALGORITHMS)}")
        length = ALGORITHMS[algorithm][1]
        if not set(digest) <= set(string.hexdigits) or (length is not None and len(digest) != length):
            raise ChecksumsTableError(f"{path}:{number}: {digest!r} is not a {algorithm} digest")
        table.setdefault(filename, []).append(Resource(filename, url, algorithm, digest.lower()))
    return table


def file_digests(path: Path, resources: list[Resource]) -> dict[str, str]:
    """The hex digests of `path` that `resources` are checked against, one streamed pass per algorithm."""
    digests = {}
    for name in dict.fromkeys(ALGORITHMS[r.algorithm][0] for r in resources):
        with open(path, "rb") as f:
            digests[name] = hashlib.file_digest(f, name).hexdigest()
    return digests


def matching(path: Path, resources: list[Resource]) -> Resource | None:
    """The accepted copy that the file at `path` is, or None (also when there is no file)."""
    if not Path(path).is_file():
        return None
    digests = file_digests(path, resources)
    return next((r for r in resources if r.matches(digests)), None)


def verify(path: Path, resources: list[Resource]) -> bool:
    """Whether the file at `path` exists and matches one of the accepted copies `resources`."""
    return matching(path, resources) is not None


def fetch(filename: str, root: Path | str, *, resources: dict[str, list[Resource]] | None = None,
          mirror: str | None = None, download: bool = True, progress: bool = True) -> Path:
    """`root/filename`, verified against its checksums; downloaded first if missing or corrupt.

    resources: the checksums table (default: `load_checksums()`). The file is downloaded from
    the URL on its first line there, or from `mirror/filename` where `mirror` (or else the
    environment variable MNOG_MIRROR) is set; any URL urllib opens works, file:// included.
    A corrupt file already in `root` is replaced once a good copy has been downloaded, and
    kept if none can be (the error message then reports what it is).
    Raises ChecksumError when the download does not match (the download is deleted), and
    DataUnavailable when it cannot be made (or `download` is False).
    """
    table = load_checksums() if resources is None else resources
    if filename not in table:
        raise LookupError(f"{filename} is not listed in the checksums table ({CHECKSUMS.name})")
    accepted = table[filename]
    root = Path(root)
    path = root / filename
    problem = None
    if path.exists():
        digests = file_digests(path, accepted)
        if any(r.matches(digests) for r in accepted):
            return path
        problem = f"the copy present, {path}, matches none of its checksums (found {_listing(digests)})"
        warnings.warn(f"{problem}; downloading it again", stacklevel=2)

    mirror = mirror or os.environ.get("MNOG_MIRROR")
    url = f"{mirror.rstrip('/')}/{filename}" if mirror else accepted[0].url
    if not download:
        raise DataUnavailable(_unavailable(path, accepted, problem or "not present and download=False"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        download_path = _download(url, root, filename, progress)
    except (OSError, http.client.HTTPException) as error:  # urllib's URLError and HTTPError are OSErrors
        reason = f"downloading {url} failed: {error}" + (f"; {problem}" if problem else "")
        raise DataUnavailable(_unavailable(path, accepted, reason)) from None

    try:
        digests = file_digests(download_path, accepted)
        if not any(r.matches(digests) for r in accepted):
            raise ChecksumError(
                f"{filename} downloaded from {url} matches none of its checksums: expected "
                f"{' or '.join(map(str, accepted))}, found {_listing(digests)}. The download was deleted; "
                f"a truncated transfer or a changed file on the server are the usual causes.")
        os.replace(download_path, path)
    finally:
        download_path.unlink(missing_ok=True)
    return path


def _download(url: str, folder: Path, filename: str, progress: bool) -> Path:
    """Stream `url` into a new temporary file in `folder` (the caller renames or deletes it)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        size = int(response.headers.get("Content-Length") or 0) or None
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
        received = 0
        try:
            with os.fdopen(fd, "wb") as out, tqdm(total=size, desc=filename, unit="B", unit_scale=True,
                                                  unit_divisor=1024, disable=not progress) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            # http.client ends a response cut by the server like a complete one: compare lengths.
            if size is not None and received != size:
                raise ConnectionError(f"the transfer stopped after {received} of {size} bytes")
        except BaseException:
            os.unlink(name)
            raise
    return Path(name)


def _listing(digests: dict[str, str]) -> str:
    return ", ".join(f"{name} {digest}" for name, digest in digests.items())


def _unavailable(path: Path, accepted: list[Resource], reason: str) -> str:
    checksums = "\n".join(f"  checksum: {r}" for r in accepted)
    return (f"{path.name} is needed but unavailable ({reason}).\n"
            f"Place the file by hand:\n"
            f"  file:     {path.name}\n"
            f"  folder:   {path.parent}\n"
            f"  url:      {accepted[0].url}\n"
            f"{checksums}\n"
            f"(MNOG_DATA moves the data folder; MNOG_MIRROR=<url> downloads <url>/{path.name} instead.)")


# -- command line: `make data` (fetch) and `make verify` ------------------------------------------------

def locations(filename: str, data: Path) -> list[Path]:
    """The folders the loaders read `filename` from, the one it is downloaded into first:
    Fashion-MNIST's files from DATA/fashion-mnist or, in place, a system folder; the rest from DATA."""
    from mnog.datasets import FASHION_MNIST_FILES, FASHION_MNIST_FOLDER, FASHION_MNIST_SYSTEM_DIRS
    if any(filename in files for files in FASHION_MNIST_FILES.values()):
        return [data / FASHION_MNIST_FOLDER, *FASHION_MNIST_SYSTEM_DIRS]
    return [data]


def fetch_all(data: Path, table: dict[str, list[Resource]], mirror: str | None = None) -> int:
    """`make data`: every file of the table, one verified copy each; 1 if one could not be had."""
    problems = []
    for filename, accepted in table.items():
        folders = locations(filename, data)
        found = next((f / filename for f in folders if verify(f / filename, accepted)), None)
        if found is not None:
            print(f"ok          {found}")
            continue
        target = folders[0] / filename
        if target.exists():
            print(f"corrupt     {target}: matches none of its checksums ({_listing(file_digests(target, accepted))}); "
                  f"downloading it again")
        try:
            with warnings.catch_warnings():  # fetch warns about the corrupt copy too; said above
                warnings.simplefilter("ignore")
                path = fetch(filename, folders[0], resources=table, mirror=mirror)
        except (DataUnavailable, ChecksumError) as error:
            problems.append(str(error))
            print(f"FAILED      {target}", file=sys.stderr)
            continue
        print(f"downloaded  {path} ({matching(path, accepted)})")
    for problem in problems:
        print(f"\n{problem}", file=sys.stderr)
    print(f"make data: {len(table) - len(problems)} of {len(table)} files present and verified",
          file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


def verify_all(data: Path, table: dict[str, list[Resource]]) -> int:
    """`make verify`: re-check every file of the table that is present; 1 if one is corrupt.

    A corrupt copy counts unless the loaders read a verified copy of the same file elsewhere
    (a Fashion-MNIST system folder), and a system folder's copy that matches nothing is not read."""
    verified, corrupt = 0, []
    for filename, accepted in table.items():
        folders = locations(filename, data)
        copies = {folder / filename: matching(folder / filename, accepted)
                  for folder in folders if (folder / filename).is_file()}        # each file hashed once
        good = [(path, copy) for path, copy in copies.items() if copy is not None]
        for path, copy in good:
            print(f"ok          {path} ({copy})")
        verified += bool(good)
        path = folders[0] / filename
        if path in copies and copies[path] is None:
            found = f"found {_listing(file_digests(path, accepted))}"
            if good:
                print(f"unused      {path}: matches none of its checksums ({found}); the copy above is read instead")
            else:
                corrupt.append(path)
                print(f"CORRUPT     {path}: expected {' or '.join(map(str, accepted))}, {found}", file=sys.stderr)
    missing = len(table) - verified - len(corrupt)
    print(f"make verify: {verified} verified, {len(corrupt)} corrupt, {missing} not present"
          + ("; `make data` downloads the corrupt ones again" if corrupt else ""),
          file=sys.stderr if corrupt else sys.stdout)
    return 1 if corrupt else 0


def main(argv=None) -> int:
    from mnog.datasets import DATA
    parser = argparse.ArgumentParser(description="Download (fetch) or re-check (verify) the files of checksums.txt.")
    parser.add_argument("command", choices=["fetch", "verify"])
    parser.add_argument("--checksums", type=Path, default=CHECKSUMS, help="the checksums table")
    parser.add_argument("--data", type=Path, default=DATA, help="the data folder (default: $MNOG_DATA or data/)")
    parser.add_argument("--mirror", default=os.environ.get("MNOG_MIRROR"),
                        help="download <mirror>/<file name> instead of each file's URL (default: $MNOG_MIRROR)")
    args = parser.parse_args(argv)
    table = load_checksums(args.checksums)
    if args.command == "fetch":
        return fetch_all(args.data, table, args.mirror)
    return verify_all(args.data, table)


if __name__ == "__main__":
    sys.exit(cli(main))
