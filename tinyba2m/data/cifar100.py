"""CIFAR-100: download, verify, extract and load into uint8 arrays.

Flow of :func:`load_cifar100` (``data_dir`` defaults to :func:`default_data_dir`):

1. the extracted members (``cifar-100-python/{train,test,meta}``) exist and match their md5s
   -> load them. A small stamp file remembers each member's size and mtime after a successful
   check, so the 150 MB are hashed once, and any changed file is hashed again;
2. else the archive ``cifar-100-python.tar.gz`` exists -> check its size and md5, extract the
   members safely (no absolute paths, no ``..``, no links), check each member's md5, load;
3. else download it (:mod:`.download`: redirects, resume of ``<archive>.part`` with HTTP Range,
   retries with backoff, a progress bar with rate and time left), rename, then step 2. The
   addresses: ``url`` if given (``--data-url``), else ``$TINYBA2M_CIFAR100_URL``, else the official
   ones (:data:`URLS`: the new host first, the old address second). torchvision's layout is the
   same (``<root>/cifar-100-python.tar.gz``, ``<root>/cifar-100-python/{train,test,meta}``), so its
   root folder, or its ``cifar-100-python`` folder itself, serves as ``data_dir`` as it is.

Every failure is a :class:`DatasetError` that says what is wrong and what to do. A file the user
has (a damaged archive, a damaged member) is never deleted; a partial download (``.part``) is kept
for the next run to resume; only members we extracted from a verified archive may be replaced, and
the message says so. Nothing damaged is ever loaded.

Tests use their own archives by passing ``source=CifarSource(...)`` (or by replacing the module
attribute ``SOURCE``): the same code path, with their own addresses and checksums; they shorten
the waits by replacing ``DOWNLOAD_POLICY``.

Layout of the pickles: ``b"data"`` uint8 (n, 3072), each row 1024 red, 1024 green, 1024 blue
values of a row-major 32x32 image, so ``data.reshape(n, 3, 32, 32)[i, c, y, x]`` is the pixel
of channel c at row y, column x (NCHW).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import pickle
import shutil
import sys
import tarfile
import urllib.parse
import zlib

from .. import backend
from .download import DownloadError, RetryPolicy, fetch

np = backend.numpy_module  # host-only code: file I/O and pickles

URL = "https://cave.cs.toronto.edu/kriz/cifar-100-python.tar.gz"      # the host since 2026
OLD_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"   # redirects to URL
URLS = (URL, OLD_URL)
URL_ENV_VAR = "TINYBA2M_CIFAR100_URL"  # a mirror to use instead of URLS
ARCHIVE_NAME = "cifar-100-python.tar.gz"
ARCHIVE_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
ARCHIVE_SIZE = 169_001_437
MEMBER_MD5 = {
    "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
    "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48",
}
DATA_DIR_ENV_VAR = "TINYBA2M_DATA_DIR"
STAMP_NAME = ".tinyba2m-verified.json"
IMAGE_SHAPE = (3, 32, 32)
LEFT_IN_PLACE = ("It was left in place. Remove it (rm '{archive}') and re-run to download it again, "
                 "or place a complete copy of {url} at {archive}.")  # the fix for a bad archive


class DatasetError(RuntimeError):
    """The data set cannot be obtained or is damaged; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class CifarSource:
    """Where the archive comes from and what it must hash to.

    ``urls``: the addresses tried in order (a single string is taken as one address);
    ``members`` maps the three member paths inside the archive (``<folder>/train``, ``/test``,
    ``/meta``) to their md5s; ``size`` (bytes) may be ``None`` to skip the size check.
    """
    urls: tuple
    md5: str
    members: dict
    size: int | None = None
    filename: str = ARCHIVE_NAME

    def __post_init__(self):
        urls = (self.urls,) if isinstance(self.urls, str) else tuple(self.urls)
        if not urls:
            raise ValueError("CifarSource needs at least one address")
        object.__setattr__(self, "urls", urls)

    @property
    def url(self) -> str:
        """The first address (the one to name when telling a user where to get the archive)."""
        return self.urls[0]

    def member(self, split: str) -> str:
        for name in self.members:
            if name.rsplit("/", 1)[-1] == split:
                return name
        raise DatasetError(f"CIFAR source lists no '{split}' member (members: {sorted(self.members)})")


SOURCE = CifarSource(urls=URLS, md5=ARCHIVE_MD5, members=dict(MEMBER_MD5), size=ARCHIVE_SIZE)
DOWNLOAD_POLICY = RetryPolicy()  # 5 tries per address without progress, waits 2, 4, 8, 16 s; 60 s timeout


@dataclasses.dataclass
class CifarData:
    """A CIFAR-style data set on the host.

    train_images / test_images: uint8 (N, 3, 32, 32), NCHW, RGB;
    train_labels / test_labels: int64 (N,) fine labels in [0, len(fine_names));
    train_coarse / test_coarse: int64 (N,) coarse labels in [0, len(coarse_names));
    fine_names (100) and coarse_names (20): class names.
    """
    train_images: object
    train_labels: object
    test_images: object
    test_labels: object
    train_coarse: object
    test_coarse: object
    fine_names: list
    coarse_names: list
    name: str = "cifar100"
    augment: bool = True  # random crop + flip in training (off for data sets where a mirror changes the class)

    @property
    def num_classes(self) -> int:
        return len(self.fine_names)

    def subset(self, n_train: int | None, n_test: int | None = None) -> "CifarData":
        """The first ``n_train`` training and ``n_test`` test images (``None``: all;
        ``n_test`` defaults to ``n_train``)."""
        n_test = n_train if n_test is None else n_test
        tr, te = (slice(None if n is None else int(n)) for n in (n_train, n_test))
        return dataclasses.replace(
            self, train_images=self.train_images[tr], train_labels=self.train_labels[tr],
            train_coarse=self.train_coarse[tr], test_images=self.test_images[te],
            test_labels=self.test_labels[te], test_coarse=self.test_coarse[te])


def default_data_dir() -> pathlib.Path:
    """``$TINYBA2M_DATA_DIR``, else ``$XDG_CACHE_HOME/tinyba2m/cifar100``, else
    ``~/.cache/tinyba2m/cifar100``."""
    env = os.environ.get(DATA_DIR_ENV_VAR, "").strip()
    if env:
        return pathlib.Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = pathlib.Path(cache).expanduser() if cache else pathlib.Path.home() / ".cache"
    return base / "tinyba2m" / "cifar100"


def md5_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def load_cifar100(data_dir=None, download: bool = True, progress: bool = True,
                  source: CifarSource | None = None, url: str | None = None) -> CifarData:
    """Load CIFAR-100 from ``data_dir``, extracting or downloading it first when needed.

    ``url``: download from this address (a mirror) instead of the official ones; ``None``:
    ``$TINYBA2M_CIFAR100_URL`` if set, else the official addresses. Whatever the address, the
    archive must match the official md5. Returns a :class:`CifarData` with uint8 (N, 3, 32, 32)
    images and int64 labels (50,000 train and 10,000 test images for the official archive).
    Raises :class:`DatasetError` on a failed download, a checksum mismatch or a damaged archive.
    """
    src = SOURCE if source is None else source
    root = _root(pathlib.Path(default_data_dir() if data_dir is None else data_dir).expanduser(), src)
    members = {name: root / name for name in src.members}
    archive = root / src.filename
    if all(p.is_file() for p in members.values()):
        bad = _check_members(root, src, members)
        if not bad:
            return _load_members(src, members)
        if not archive.is_file():
            raise DatasetError("CIFAR-100 file(s) failed the md5 check, so they will not be used: " + "; ".join(bad)
                               + ". The file(s) were left in place. To fix: remove the damaged file(s) and re-run "
                               "(the archive will be downloaded and extracted again), or place a good copy of "
                               f"{src.filename} at {archive}.")
        _say(f"extracted CIFAR-100 files do not match their md5 ({'; '.join(bad)}); "
             f"replacing them with fresh copies extracted from {archive}")
    origin = None
    if not archive.is_file():
        if not download:
            part = archive.with_name(archive.name + ".part")
            kept = (f" A partial download {part} ({part.stat().st_size:,} bytes) is there: re-run with downloading "
                    f"on to resume it." if part.is_file() else "")
            raise DatasetError(f"CIFAR-100 archive not found at {archive} and downloading is switched off. "
                               f"Download {src.url} by hand, place it at {archive} (exactly this path), and re-run."
                               + kept)
        origin = _download(dataclasses.replace(src, urls=_addresses(src, url)), archive, progress)
    _verify_archive(src, archive, progress, origin)
    _extract(src, archive, root, progress)
    return _load_members(src, members)


def _addresses(src: CifarSource, url: str | None) -> tuple:
    """``url``, else ``$TINYBA2M_CIFAR100_URL``, else the source's own addresses."""
    given, what = (url, "the data URL") if url else (os.environ.get(URL_ENV_VAR, "").strip(), f"${URL_ENV_VAR}")
    if not given:
        return src.urls
    if urllib.parse.urlsplit(given).scheme not in ("http", "https", "file"):
        raise DatasetError(f"{what} {given!r} is not an http://, https:// or file:// address. To use a copy of "
                           f"{src.filename} you already have, place it in the data folder (--data-dir) instead.")
    return (given,)


def _root(data_dir: pathlib.Path, src: CifarSource) -> pathlib.Path:
    """``data_dir``, or its parent when ``data_dir`` is itself the extracted ``cifar-100-python``
    folder (holding ``train``, ``test``, ``meta``), as torchvision leaves it."""
    names = [pathlib.PurePosixPath(m) for m in src.members]
    folders = {n.parent.as_posix() for n in names}
    if (len(folders) == 1 and data_dir.name == folders.pop() and not (data_dir / names[0]).is_file()
            and all((data_dir / n.name).is_file() for n in names)):
        return data_dir.parent
    return data_dir


# --- verification -------------------------------------------------------------------------

def _stamp_entry(path: pathlib.Path, md5: str) -> dict:
    st = path.stat()
    return {"md5": md5, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_stamp(root: pathlib.Path) -> dict:
    try:
        return json.loads((root / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _write_stamp(root: pathlib.Path, src: CifarSource, members: dict) -> None:
    """Remember that ``members`` (name -> path) matched their md5s at their current size/mtime."""
    stamp = _read_stamp(root)
    for name, path in members.items():
        stamp[name] = _stamp_entry(path, src.members[name])
    tmp = root / (STAMP_NAME + ".tmp")
    with contextlib.suppress(OSError):  # a read-only data folder: we just hash again next time
        tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True))
        os.replace(tmp, root / STAMP_NAME)


def _check_members(root: pathlib.Path, src: CifarSource, members: dict) -> list:
    """Names of members whose md5 does not match (hashing only files the stamp does not vouch for)."""
    stamp = _read_stamp(root)
    bad, good = [], {}
    for name, path in members.items():
        if stamp.get(name) == _stamp_entry(path, src.members[name]):
            continue
        actual = md5_file(path)
        if actual == src.members[name]:
            good[name] = path
        else:
            bad.append(f"{path}: md5 {actual}, expected {src.members[name]}")
    if good:
        _write_stamp(root, src, good)
    return bad


def _verify_archive(src: CifarSource, archive: pathlib.Path, progress: bool, origin: str | None) -> None:
    """Size and md5 check; ``origin``: the address it was just downloaded from, if it was."""
    how = LEFT_IN_PLACE.format(archive=archive, url=src.url)
    if origin is not None:
        how = (f"It was downloaded just now from {origin}, which therefore does not serve the official archive "
               f"(or the file was damaged on the way). " + how)
    size = archive.stat().st_size
    if src.size is not None and size != src.size:
        kind = ("truncated (an interrupted download?)" if size < src.size and origin is None
                else "smaller than expected" if size < src.size else "larger than expected")
        raise DatasetError(f"CIFAR-100 archive {archive} is {kind}: {size} bytes, expected {src.size} bytes. {how}")
    _say(f"verifying md5 of {archive}", progress)
    actual = md5_file(archive)
    if actual != src.md5:
        raise DatasetError(f"CIFAR-100 archive {archive} failed the md5 check: md5 {actual}, expected {src.md5}; "
                           f"the file is damaged or not the official archive. {how}")


# --- extraction ---------------------------------------------------------------------------

def _safe_name(name: str) -> bool:
    parts = pathlib.PurePosixPath(name).parts
    return bool(parts) and not name.startswith(("/", "\\")) and ".." not in parts and ":" not in parts[0]


def _extract(src: CifarSource, archive: pathlib.Path, root: pathlib.Path, progress: bool) -> None:
    """Write the members listed in ``src`` under ``root``, checking paths and md5s."""
    damaged = LEFT_IN_PLACE.format(archive=archive, url=src.url)
    _say(f"extracting {archive} into {root}", progress)
    written, part = {}, None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:
                if not _safe_name(info.name):
                    raise DatasetError(f"CIFAR-100 archive {archive} contains an unsafe member path {info.name!r} "
                                       f"(absolute or with '..'); refusing to extract it. {damaged}")
                name = pathlib.PurePosixPath(info.name).as_posix()
                if name not in src.members:
                    continue
                if not info.isfile():
                    raise DatasetError(f"CIFAR-100 archive {archive}: member {name} is not a regular file "
                                       f"(a link or device); refusing to extract it. {damaged}")
                dest = root / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(dest.name + ".part")
                with tar.extractfile(info) as fin, open(part, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                actual = md5_file(part)
                if actual != src.members[name]:
                    part.unlink()
                    raise DatasetError(f"CIFAR-100 member {name} in {archive} failed the md5 check: md5 {actual}, "
                                       f"expected {src.members[name]}; the partly extracted copy was removed. {damaged}")
                os.replace(part, dest)
                written[name] = dest
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if part is not None and part.exists():
            part.unlink()
        raise DatasetError(f"CIFAR-100 archive {archive} could not be read ({type(exc).__name__}: {exc}); "
                           f"it is truncated or damaged. {damaged}") from exc
    missing = sorted(set(src.members) - set(written))
    if missing:
        raise DatasetError(f"CIFAR-100 archive {archive} lacks the member(s) {', '.join(missing)}; "
                           f"it is not the official archive. {damaged}")
    _write_stamp(root, src, written)


# --- download -----------------------------------------------------------------------------

def _download(src: CifarSource, archive: pathlib.Path, progress: bool) -> str:
    """Fetch the archive from ``src.urls`` (in order) to ``archive``; return the address that served it."""
    part = archive.with_name(archive.name + ".part")
    official = set(src.urls) <= set(URLS)
    mb = f" ({src.size / 1e6:.0f} MB)" if src.size else ""
    note = (" The official server is slow: this can take up to an hour (30-60 minutes reported). If it is "
            f"interrupted, re-run: it resumes where it stopped. A faster mirror: ${URL_ENV_VAR} or --data-url."
            if official else " If it is interrupted, re-run: it resumes where it stopped.")
    _say(f"downloading CIFAR-100{mb} from {src.url} to {archive}.{note}")
    try:
        return fetch(src.urls, archive, size=src.size, policy=DOWNLOAD_POLICY, progress=progress,
                     say=_say, desc="CIFAR-100")
    except DownloadError as exc:
        offline = "" if exc.have else " The machine may be offline or the site blocked."
        raise DatasetError(
            f"Could not download CIFAR-100: {exc}{offline} To place the archive by hand: download it from "
            f"{' or '.join(src.urls)} (md5 {src.md5}), e.g. with `curl -L -C - -o '{part}' {src.url}` (resumes "
            f"the partial file) and then `mv '{part}' '{archive}'`, or with a browser, put it at {archive} "
            f"(exactly this path), and re-run; or set ${URL_ENV_VAR} (--data-url) to a mirror.") from exc
    except OSError as exc:  # writing the file, not the network
        raise DatasetError(f"Could not write the CIFAR-100 download to {part} ({exc}); check the free space and "
                           f"permissions of {archive.parent}, or choose another --data-dir.") from exc


def _say(msg: str, progress: bool = True) -> None:
    if progress:
        print(f"[cifar100] {msg}", file=sys.stderr, flush=True)


# --- loading ------------------------------------------------------------------------------

def _unpickle(path: pathlib.Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")  # noqa: S301 (md5-verified official file)


def _load_split(path: pathlib.Path, n_fine: int, n_coarse: int):
    d = _unpickle(path)
    try:
        data = np.asarray(d[b"data"], dtype=np.uint8)
        fine = np.asarray(d[b"fine_labels"], dtype=np.int64)
        coarse = np.asarray(d[b"coarse_labels"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path} is not a CIFAR-100 pickle ({exc!r})") from exc
    n = data.shape[0] if data.ndim == 2 else -1
    if data.ndim != 2 or data.shape[1] != 3072 or fine.shape != (n,) or coarse.shape != (n,):
        raise DatasetError(f"{path}: expected data (n, 3072) and n fine/coarse labels, got data {data.shape}, "
                           f"fine {fine.shape}, coarse {coarse.shape}")
    for what, lab, k in (("fine", fine, n_fine), ("coarse", coarse, n_coarse)):
        if n and (lab.min() < 0 or lab.max() >= k):
            raise DatasetError(f"{path}: {what} labels must lie in [0, {k}), got [{lab.min()}, {lab.max()}]")
    return data.reshape((n,) + IMAGE_SHAPE), fine, coarse


def _load_members(src: CifarSource, members: dict) -> CifarData:
    path = {split: members[src.member(split)] for split in ("meta", "train", "test")}
    meta = _unpickle(path["meta"])
    try:
        fine_names = [b.decode("utf-8") for b in meta[b"fine_label_names"]]
        coarse_names = [b.decode("utf-8") for b in meta[b"coarse_label_names"]]
    except (KeyError, AttributeError) as exc:
        raise DatasetError(f"{path['meta']} is not a CIFAR-100 meta pickle ({exc!r})") from exc
    tr_x, tr_y, tr_c = _load_split(path["train"], len(fine_names), len(coarse_names))
    te_x, te_y, te_c = _load_split(path["test"], len(fine_names), len(coarse_names))
    return CifarData(train_images=tr_x, train_labels=tr_y, test_images=te_x, test_labels=te_y,
                     train_coarse=tr_c, test_coarse=te_c, fine_names=fine_names, coarse_names=coarse_names)
