"""Data sets and the input pipeline.

- :func:`load_cifar100` — the official CIFAR-100 archive: download (new host, old address, or a
  mirror; redirects, resume, retries, progress bar: :mod:`.download`), md5 checks of the archive
  and of each member, safe extraction, uint8 arrays (:mod:`.cifar100`).
- :func:`make_synthetic` — an offline, learnable, seeded stand-in of the same format (:mod:`.synthetic`).
- :func:`load_digits_dataset` — scikit-learn's 8x8 digits, a small real set, offline (:mod:`.digits`).
- :func:`load_dataset` — either of them by name, optionally cut to the first ``subset`` images per split.
- :class:`BatchIterator` / :func:`iterate_batches`, :func:`normalize`, :func:`random_crop_flip` —
  the input pipeline on the active backend (:mod:`.pipeline`).
"""
from __future__ import annotations

from .cifar100 import (ARCHIVE_MD5, ARCHIVE_NAME, ARCHIVE_SIZE, MEMBER_MD5, URL, URL_ENV_VAR, URLS, CifarData,
                       CifarSource, DatasetError, default_data_dir, load_cifar100)
from .pipeline import (CIFAR100_MEAN, CIFAR100_STD, LAST_BATCH_POLICY, BatchIterator, crop_flip, draw_crop_flip,
                       iterate_batches, normalize, num_batches, random_crop_flip)
from .digits import load_digits_dataset
from .synthetic import make_synthetic

DATASETS = ("cifar100", "synthetic", "digits")
SYNTHETIC_SIZES = (10_000, 2_000)  # default (train, test) sizes of --dataset synthetic


def load_dataset(name: str, data_dir=None, subset: int | None = None, seed: int = 0, download: bool = True,
                 progress: bool = True, url: str | None = None) -> CifarData:
    """``"cifar100"`` (from ``data_dir``, downloaded from ``url`` or the official addresses when
    missing) or ``"synthetic"`` (from ``seed``; ``data_dir`` and ``url`` unused), cut to the first
    ``subset`` images of each split when given. The synthetic set is generated at that size
    directly (it is prefix-stable, so this equals cutting the full set)."""
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise ValueError(f"load_dataset: subset must be an integer >= 1 or None, got {subset!r}")
    if name not in DATASETS:
        raise ValueError(f"load_dataset: unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if name == "synthetic":
        n_train, n_test = SYNTHETIC_SIZES
        if subset is not None:
            n_train, n_test = min(n_train, subset), min(n_test, subset)
        return make_synthetic(n_train, n_test, seed=seed)
    data = (load_cifar100(data_dir, download=download, progress=progress, url=url) if name == "cifar100"
            else load_digits_dataset())
    return data if subset is None else data.subset(subset)


__all__ = ["ARCHIVE_MD5", "ARCHIVE_NAME", "ARCHIVE_SIZE", "BatchIterator", "CIFAR100_MEAN", "CIFAR100_STD",
           "CifarData", "CifarSource", "DATASETS", "DatasetError", "LAST_BATCH_POLICY", "MEMBER_MD5",
           "SYNTHETIC_SIZES", "URL", "URLS", "URL_ENV_VAR", "crop_flip", "default_data_dir", "draw_crop_flip", "iterate_batches",
           "load_cifar100", "load_dataset", "load_digits_dataset", "make_synthetic", "normalize", "num_batches", "random_crop_flip"]
