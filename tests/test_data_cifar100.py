"""CIFAR-100 loader on archives built here in the official format (no network)."""
from __future__ import annotations

import io
import os
import shutil
import tarfile

import numpy as np
import pytest
from cifar_archive import COARSE_NAMES, FINE_NAMES, FOLDER, build_archive, md5_bytes, write_tar_gz

from tinyba2m.data import cifar100
from tinyba2m.data.cifar100 import CifarSource, DatasetError, load_cifar100

UNREACHABLE = "http://127.0.0.1:9/cifar-100-python.tar.gz"  # discard port: connection refused at once


@pytest.fixture
def arch(tmp_path):
    """A small official-format archive already placed in the data folder ``tmp_path/data``."""
    return build_archive(tmp_path / "data" / "cifar-100-python.tar.gz", n_train=24, n_test=12, seed=3)


def load(arch, **kw):
    kw.setdefault("source", arch.source())
    return load_cifar100(arch.path.parent, download=kw.pop("download", False), progress=False, **kw)


def test_official_constants_match_the_dataset_facts():
    s = cifar100.SOURCE
    assert s.urls == ("https://cave.cs.toronto.edu/kriz/cifar-100-python.tar.gz",      # the new host first
                      "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz")      # the old address second
    assert s.url == s.urls[0] == cifar100.URL
    assert (s.md5, s.size) == ("eb9058c3a382ffc7106e4002c42a8d85", 169_001_437)
    assert s.members == {"cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
                         "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
                         "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48"}


def test_loads_archive_shapes_dtypes_labels(arch):
    d = load(arch)
    assert d.train_images.shape == (24, 3, 32, 32) and d.test_images.shape == (12, 3, 32, 32)
    assert d.train_images.dtype == np.uint8 and d.test_images.dtype == np.uint8
    for lab, n, k in ((d.train_labels, 24, 100), (d.test_labels, 12, 100), (d.train_coarse, 24, 20), (d.test_coarse, 12, 20)):
        assert lab.dtype == np.int64 and lab.shape == (n,) and lab.min() >= 0 and lab.max() < k
    np.testing.assert_array_equal(d.train_labels, arch.splits["train"]["fine"])
    np.testing.assert_array_equal(d.test_coarse, arch.splits["test"]["coarse"])
    np.testing.assert_array_equal(d.test_images.reshape(12, -1), arch.splits["test"]["data"])
    assert d.fine_names == FINE_NAMES and d.coarse_names == COARSE_NAMES and d.num_classes == 100
    for name in arch.member_md5:
        assert (arch.path.parent / name).read_bytes() == arch.member_bytes[name]


def test_channel_order_a_known_pixel_lands_at_c_y_x(tmp_path):
    n = 4
    data = np.zeros((n, 3072), dtype=np.uint8)
    spots = [(0, 0, 5, 7, 11), (1, 1, 31, 0, 22), (2, 2, 0, 31, 33), (3, 1, 16, 9, 44)]  # (i, c, y, x, value)
    for i, c, y, x, v in spots:
        data[i, c * 1024 + y * 32 + x] = v                      # R block, then G, then B; row-major 32x32
    split = {"data": data, "fine": np.arange(n, dtype=np.int64), "coarse": np.zeros(n, dtype=np.int64)}
    arch = build_archive(tmp_path / "cifar-100-python.tar.gz", splits={"train": split, "test": split})
    d = load(arch)
    for imgs in (d.train_images, d.test_images):
        for i, c, y, x, v in spots:
            assert imgs[i, c, y, x] == v
            assert int(imgs[i].sum()) == v, "the value must appear nowhere else in the image"


def test_second_load_uses_stamp_and_changed_member_is_rechecked(arch, monkeypatch):
    load(arch)
    calls = []
    real = cifar100.md5_file
    monkeypatch.setattr(cifar100, "md5_file", lambda p, *a: calls.append(p) or real(p, *a))
    load(arch)
    assert calls == [], "verified members must not be hashed again"
    os.remove(arch.path)                                         # no archive to repair from
    member = arch.path.parent / FOLDER / "train"
    blob = bytearray(member.read_bytes())
    blob[-5] ^= 0xFF                                             # same size, different content
    member.write_bytes(bytes(blob))
    os.utime(member, ns=(member.stat().st_atime_ns, member.stat().st_mtime_ns + 10**9))
    with pytest.raises(DatasetError, match="md5") as e:
        load(arch)
    assert str(member) in str(e.value) and arch.member_md5[f"{FOLDER}/train"] in str(e.value)
    assert "left in place" in str(e.value)
    assert member.read_bytes() == bytes(blob), "the user's file must not be touched"
    assert [p for p in calls if str(p).endswith("train")], "the changed member must be hashed again"


def test_damaged_member_is_re_extracted_from_a_verified_archive(arch, capsys):
    load(arch)
    member = arch.path.parent / FOLDER / "test"
    member.write_bytes(b"garbage")
    d = load(arch)
    assert member.read_bytes() == arch.member_bytes[f"{FOLDER}/test"]
    assert d.test_images.shape == (12, 3, 32, 32)
    assert "do not match their md5" in capsys.readouterr().err


def test_archive_md5_mismatch_is_clear_and_keeps_the_file(arch):
    blob = bytearray(arch.path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    arch.path.write_bytes(bytes(blob))
    with pytest.raises(DatasetError) as e:
        load(arch)
    msg = str(e.value)
    assert str(arch.path) in msg and arch.md5 in msg and md5_bytes(bytes(blob)) in msg
    assert "left in place" in msg and "rm " in msg
    assert arch.path.read_bytes() == bytes(blob)
    assert not (arch.path.parent / FOLDER / "train").exists(), "nothing may be extracted from a damaged archive"


def test_truncated_archive_size_check(arch):
    blob = arch.path.read_bytes()
    arch.path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="truncated") as e:
        load(arch)
    assert f"{len(blob) // 2} bytes, expected {len(blob)} bytes" in str(e.value)
    assert "left in place" in str(e.value) and arch.path.exists()


def test_truncated_archive_with_matching_md5_fails_in_tar_reading(arch):
    """Even if size and md5 are not known, a cut archive is never loaded."""
    blob = arch.path.read_bytes()[:-300]
    arch.path.write_bytes(blob)
    with pytest.raises(DatasetError, match="truncated or damaged") as e:
        load(arch, source=arch.source(md5=md5_bytes(blob), size=None))
    assert arch.path.exists() and str(arch.path) in str(e.value)
    leftovers = list((arch.path.parent / FOLDER).glob("*.part")) if (arch.path.parent / FOLDER).exists() else []
    assert leftovers == []


def test_member_md5_mismatch_is_clear(arch):
    members = dict(arch.member_md5)
    members[f"{FOLDER}/meta"] = "0" * 32
    with pytest.raises(DatasetError, match=f"member {FOLDER}/meta .*failed the md5 check") as e:
        load(arch, source=arch.source(members=members))
    assert arch.member_md5[f"{FOLDER}/meta"] in str(e.value) and "0" * 32 in str(e.value)
    assert not (arch.path.parent / FOLDER / "meta").exists() and not (arch.path.parent / FOLDER / "meta.part").exists()
    assert arch.path.exists()


def test_archive_missing_a_member_is_clear(tmp_path, arch):
    path = tmp_path / "other" / "cifar-100-python.tar.gz"
    path.parent.mkdir()
    write_tar_gz(path, {f"{FOLDER}/train": arch.member_bytes[f"{FOLDER}/train"]})
    src = CifarSource(urls=UNREACHABLE, md5=md5_bytes(path.read_bytes()), members=arch.member_md5)
    with pytest.raises(DatasetError, match="lacks the member"):
        load_cifar100(path.parent, download=False, progress=False, source=src)


@pytest.mark.parametrize("bad_name", ["../evil", "/tmp/evil_abs", f"{FOLDER}/../../evil"])
def test_unsafe_member_paths_are_rejected(tmp_path, bad_name):
    path = tmp_path / "data" / "cifar-100-python.tar.gz"
    path.parent.mkdir()
    write_tar_gz(path, {bad_name: b"x", f"{FOLDER}/train": b"t"})
    src = CifarSource(urls=UNREACHABLE, md5=md5_bytes(path.read_bytes()), members={f"{FOLDER}/train": md5_bytes(b"t")})
    with pytest.raises(DatasetError, match="unsafe member path"):
        load_cifar100(path.parent, download=False, progress=False, source=src)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "data" / FOLDER / "train").exists()


def test_link_member_is_rejected(tmp_path):
    path = tmp_path / "data" / "cifar-100-python.tar.gz"
    path.parent.mkdir()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(f"{FOLDER}/train")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    import gzip
    path.write_bytes(gzip.compress(raw.getvalue()))
    src = CifarSource(urls=UNREACHABLE, md5=md5_bytes(path.read_bytes()), members={f"{FOLDER}/train": "0" * 32})
    with pytest.raises(DatasetError, match="not a regular file"):
        load_cifar100(path.parent, download=False, progress=False, source=src)


def test_offline_error_names_url_and_where_to_put_the_archive(tmp_path, arch):
    data_dir = tmp_path / "empty"
    src = arch.source(url=UNREACHABLE)
    with pytest.raises(DatasetError) as e:
        load_cifar100(data_dir, download=True, progress=False, source=src)
    msg = str(e.value)
    assert UNREACHABLE in msg and str(data_dir / "cifar-100-python.tar.gz") in msg and "re-run" in msg
    assert list(data_dir.glob("*")) == [], "no partial download may be left behind"


def test_missing_archive_without_download_names_the_path(tmp_path, arch):
    with pytest.raises(DatasetError, match="downloading is switched off") as e:
        load_cifar100(tmp_path / "nothing", download=False, progress=False, source=arch.source())
    assert str(tmp_path / "nothing" / "cifar-100-python.tar.gz") in str(e.value)


def test_download_from_file_url_then_verify_and_load(tmp_path, arch):
    data_dir = tmp_path / "fresh"
    d = load_cifar100(data_dir, download=True, progress=False, source=arch.source())
    assert (data_dir / "cifar-100-python.tar.gz").read_bytes() == arch.path.read_bytes()
    assert not (data_dir / "cifar-100-python.tar.gz.part").exists()
    np.testing.assert_array_equal(d.train_images.reshape(24, -1), arch.splits["train"]["data"])


def test_downloaded_file_with_wrong_md5_is_rejected_and_kept(tmp_path, arch):
    data_dir = tmp_path / "fresh"
    with pytest.raises(DatasetError, match="failed the md5 check") as e:
        load_cifar100(data_dir, download=True, progress=False, source=arch.source(md5="f" * 32))
    assert "left in place" in str(e.value) and (data_dir / "cifar-100-python.tar.gz").exists()


def test_default_data_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYBA2M_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cifar100.default_data_dir() == tmp_path / "xdg" / "tinyba2m" / "cifar100"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cifar100.default_data_dir() == tmp_path / "home" / ".cache" / "tinyba2m" / "cifar100"
    monkeypatch.setenv("TINYBA2M_DATA_DIR", str(tmp_path / "mine"))
    assert cifar100.default_data_dir() == tmp_path / "mine"


def test_module_source_can_be_replaced_and_default_dir_used(monkeypatch, tmp_path, arch):
    monkeypatch.setattr(cifar100, "SOURCE", arch.source())
    monkeypatch.setenv("TINYBA2M_DATA_DIR", str(tmp_path / "envdir"))
    d = load_cifar100(progress=False)
    assert d.train_images.shape == (24, 3, 32, 32)
    assert (tmp_path / "envdir" / FOLDER / "train").is_file()


def test_extracted_members_load_without_the_archive(arch):
    load(arch)
    os.remove(arch.path)
    assert load(arch).test_images.shape == (12, 3, 32, 32)


def test_subset_takes_the_first_images(arch):
    d = load(arch).subset(5, 3)
    assert d.train_images.shape[0] == 5 and d.test_labels.shape == (3,)
    np.testing.assert_array_equal(d.train_labels, arch.splits["train"]["fine"][:5])


def test_bad_labels_in_a_pickle_are_rejected(tmp_path):
    split = {"data": np.zeros((2, 3072), np.uint8), "fine": np.array([0, 100]), "coarse": np.array([0, 0])}
    arch = build_archive(tmp_path / "cifar-100-python.tar.gz", splits={"train": split})
    with pytest.raises(DatasetError, match=r"fine labels must lie in \[0, 100\)"):
        load(arch)


def test_progress_output_goes_to_stderr(tmp_path, arch, capsys):
    shutil.copy(arch.path, tmp_path / "x.tgz")
    load_cifar100(tmp_path / "dl", download=True, progress=True, source=arch.source(url=(tmp_path / "x.tgz").as_uri()))
    err = capsys.readouterr().err
    assert "downloading" in err and "verifying" in err and "extracting" in err


def test_load_dataset_by_name(monkeypatch, arch):
    from tinyba2m.data import load_dataset
    monkeypatch.setattr(cifar100, "SOURCE", arch.source())
    d = load_dataset("cifar100", data_dir=arch.path.parent, subset=7, download=False, progress=False)
    assert d.train_images.shape == (7, 3, 32, 32) and d.test_images.shape == (7, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="subset must be an integer >= 1"):
        load_dataset("synthetic", subset=0)
