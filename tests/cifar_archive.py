"""Build small CIFAR-100 archives in the exact official format, for tests (no network).

The archive is a ``.tar.gz`` holding ``cifar-100-python/{train,test,meta}`` (plus the directory
entry and a ``file.txt~`` as the official one has). ``train``/``test`` are pickled dicts with
``b"data"`` uint8 (n, 3072) — 1024 red, 1024 green, 1024 blue values of a row-major 32x32
image — ``b"fine_labels"``, ``b"coarse_labels"``, ``b"filenames"``, ``b"batch_label"``; ``meta``
holds ``b"fine_label_names"`` (100) and ``b"coarse_label_names"`` (20) as bytes.

:func:`build_archive` returns a :class:`FakeArchive` with the arrays it wrote, the md5s of the
archive and of each member, and :meth:`FakeArchive.source` makes the ``CifarSource`` that
``load_cifar100`` checks them against.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pathlib
import pickle
import tarfile

import numpy as np

from tinyba2m.data.cifar100 import CifarSource

FOLDER = "cifar-100-python"
FINE_NAMES = [f"fine_{k:02d}" for k in range(100)]
COARSE_NAMES = [f"coarse_{k:02d}" for k in range(20)]


@dataclasses.dataclass
class FakeArchive:
    path: pathlib.Path
    md5: str
    size: int
    member_md5: dict           # "cifar-100-python/train" -> md5 of the pickle bytes
    member_bytes: dict         # "cifar-100-python/train" -> the pickle bytes
    splits: dict               # "train"/"test" -> dict(data (n, 3072) uint8, fine (n,), coarse (n,))

    def source(self, url=None, md5: str | None = None, members: dict | None = None,
               size: int | None | str = "actual") -> CifarSource:
        """A CifarSource for this archive (``url``: one address or a tuple tried in order, default its
        file:// address; ``size="actual"``: its real size; ``None``: unchecked)."""
        return CifarSource(urls=url or self.path.resolve().as_uri(), md5=md5 or self.md5,
                           members=dict(self.member_md5 if members is None else members),
                           size=self.size if size == "actual" else size, filename=self.path.name)


def md5_bytes(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def random_split(rng, n: int) -> dict:
    return {"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "fine": rng.integers(0, 100, size=n).astype(np.int64),
            "coarse": rng.integers(0, 20, size=n).astype(np.int64)}


def split_pickle(split: dict, name: str) -> bytes:
    n = split["data"].shape[0]
    d = {b"filenames": [f"img_{name}_{i}.png".encode() for i in range(n)],
         b"batch_label": f"{name} batch 1 of 1".encode(),
         b"fine_labels": [int(v) for v in split["fine"]],
         b"coarse_labels": [int(v) for v in split["coarse"]],
         b"data": np.ascontiguousarray(split["data"], dtype=np.uint8)}
    return pickle.dumps(d, protocol=2)


def meta_pickle() -> bytes:
    return pickle.dumps({b"fine_label_names": [s.encode() for s in FINE_NAMES],
                         b"coarse_label_names": [s.encode() for s in COARSE_NAMES]}, protocol=2)


def write_tar_gz(path: pathlib.Path, files: dict, dirs=(FOLDER,), mtime: int = 0) -> None:
    """A deterministic .tar.gz of ``files`` (name -> bytes) with the directory entries ``dirs``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            tar.addfile(info, io.BytesIO(data))
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=mtime, filename="") as gz:
        gz.write(raw.getvalue())


def build_archive(path, n_train: int = 20, n_test: int = 10, seed: int = 0, splits: dict | None = None) -> FakeArchive:
    """Write an official-format archive at ``path`` with random (or the given) splits."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = dict(splits or {})
    splits.setdefault("train", random_split(rng, n_train))
    splits.setdefault("test", random_split(rng, n_test))
    members = {f"{FOLDER}/train": split_pickle(splits["train"], "training"),
               f"{FOLDER}/test": split_pickle(splits["test"], "testing"),
               f"{FOLDER}/meta": meta_pickle()}
    write_tar_gz(path, {f"{FOLDER}/file.txt~": b"fake\n", **members})
    blob = path.read_bytes()
    return FakeArchive(path=path, md5=md5_bytes(blob), size=len(blob),
                       member_md5={k: md5_bytes(v) for k, v in members.items()},
                       member_bytes=members, splits=splits)
