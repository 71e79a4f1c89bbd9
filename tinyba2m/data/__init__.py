"""Data sets and the input pipeline.

- :func:`load_cifar100` — the official CIFAR-100 archive: download (progress bar), md5 checks of the
  archive and of each member, safe extraction, uint8 arrays (:mod:`.cifar100`).
"""
from __future__ import annotations

from .cifar100 import (ARCHIVE_MD5, ARCHIVE_NAME, ARCHIVE_SIZE, MEMBER_MD5, URL, CifarData, CifarSource,
                       DatasetError, default_data_dir, load_cifar100)
