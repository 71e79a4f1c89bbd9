"""The host thread pool and the one chunker (tinyba2m/hostpool.py)."""
import pytest

from tinyba2m import backend, hostpool


@pytest.fixture
def host_threads_restored(monkeypatch):
    monkeypatch.setattr(hostpool, "_host_threads", hostpool.host_threads())
    monkeypatch.setattr(hostpool, "_host_pool", None)


def test_map_chunks_runs_every_chunk_on_the_pool_in_order(host_threads_restored):
    import threading
    hostpool.set_host_threads(2)
    names = []

    def work(i):
        names.append(threading.current_thread().name)
        return i * i

    assert hostpool.map_chunks(work, range(7)) == [i * i for i in range(7)]
    assert len(names) == 7 and all(n.startswith("tinyba2m-host") for n in names)
    hostpool.set_host_threads(1)
    names.clear()
    assert hostpool.map_chunks(work, range(3)) == [0, 1, 4]
    assert names == [threading.current_thread().name] * 3     # pool off: in the caller's thread


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_set_host_threads_rejects_bad_counts(bad, host_threads_restored):
    with pytest.raises(ValueError, match="integer >= 1"):
        hostpool.set_host_threads(bad)


def test_host_threads_is_positive():
    assert isinstance(hostpool.host_threads(), int) and hostpool.host_threads() >= 1


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n, item_bytes, budget", [(1, 8, 100), (7, 8, 1), (128, 1000, 4000), (10, 10, 10 ** 9), (5, 0, 1)])
def test_chunk_slices_cover_the_range_once_in_equal_chunks(threads, n, item_bytes, budget, host_threads_restored):
    hostpool.set_host_threads(threads)
    chunks = hostpool.chunk_slices(n, item_bytes, budget)
    assert [i for sl in chunks for i in range(n)[sl]] == list(range(n))
    sizes = [sl.stop - sl.start for sl in chunks]
    assert max(sizes) - min(sizes) <= 1 or sizes[-1] < sizes[0]   # equal chunks, a shorter last one
    if budget >= n * max(1, item_bytes):   # all fits: one chunk per thread, at most one per item
        assert len(chunks) == min(n, threads)
    if item_bytes and budget < 2 * item_bytes:
        assert len(chunks) == n            # one item per chunk


def test_chunk_slices_one_slice_on_a_device(host_threads_restored, monkeypatch):
    monkeypatch.setattr(backend, "is_device_array", lambda x: True)
    assert hostpool.chunk_slices(9, 8, 1, like=object()) == [slice(0, 9)]


def test_sample_chunks_one_chunk_for_small_or_0d_arrays(host_threads_restored):
    import numpy as np
    hostpool.set_host_threads(2)
    assert hostpool.sample_chunks(np.float64(3.0), 1) == [Ellipsis]
    small = np.zeros((8, 4), dtype=np.float32)                    # 128 bytes, under POOL_MIN_BYTES
    assert hostpool.sample_chunks(small, 1) == [slice(0, 8)]
    assert hostpool.sample_chunks(small, 1, min_bytes=0) == hostpool.chunk_slices(8, 16, 1)
    assert hostpool.total([np.ones(2), 2 * np.ones(2), 3 * np.ones(2)]).tolist() == [6.0, 6.0]
