"""Host threads: chunks of host (NumPy) work side by side on every core.

- ``blas_threads()``           threads the host BLAS uses for one matrix product.
- ``host_threads()``           threads of the pool (the BLAS thread count; 1, the pool off,
                               without threadpoolctl); ``set_host_threads(n)`` overrides it.
- ``chunk_slices(n, item_bytes, budget, like)``  the one chunker: slices of ``range(n)`` (samples
                               or channels) whose items take about ``budget`` bytes of working
                               memory per chunk, in a multiple of ``host_threads()`` equal chunks;
                               one slice, the whole range, for device arrays.
- ``sample_chunks(x, budget, min_bytes)``  chunk_slices over the samples of an array for its
                               element-wise passes, one chunk for a small array.
- ``map_chunks(fn, chunks, like)``  ``[fn(c) for c in chunks]`` on the pool; ``total(parts)`` adds
                               up the per-chunk partial sums it returned.

NumPy releases the GIL in its copies, ufuncs and matrix products, so independent chunks (each
writing its own slice of a result) run on all cores. Sits beside ``backend.py`` (which only
decides the array module) and asks it only whether an array lives on a device.
"""
from __future__ import annotations

import contextlib
import functools
import os

from . import backend

_host_threads = None  # None: not decided yet (see host_threads)
_host_pool = None


@functools.cache
def _blas_controller():
    """threadpoolctl's controller of the BLAS thread pool (found once), or None where
    threadpoolctl is absent."""
    try:
        from threadpoolctl import ThreadpoolController
        return ThreadpoolController().select(user_api="blas")
    except ImportError:
        return None


def blas_threads() -> int:
    """Threads the host BLAS uses for one matrix product: as threadpoolctl reports it, else the
    usual environment variables, else the usable cores (OpenBLAS's default)."""
    ctl = _blas_controller()
    counts = [lib.num_threads for lib in ctl.lib_controllers] if ctl is not None else []
    if counts:
        return max(1, min(counts))
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def host_threads() -> int:
    """Threads :func:`map_chunks` uses on the host: the BLAS thread count (what a matrix product
    would use anyway), or 1 — the pool off — where threadpoolctl, which can hold BLAS to one thread
    inside the workers, is not installed. ``set_host_threads`` overrides it."""
    global _host_threads
    if _host_threads is None:
        _host_threads = blas_threads() if _blas_controller() is not None else 1
    return _host_threads


def set_host_threads(n: int) -> None:
    """Use ``n`` threads in :func:`map_chunks` (1 turns the pool off)."""
    global _host_threads, _host_pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_host_threads: n must be an integer >= 1, got {n!r}")
    _host_threads, _host_pool = n, None


def chunk_slices(n: int, item_bytes: int, budget: int, like=None) -> list:
    """Slices of ``range(n)`` handled per step. On the host: groups of items (samples or channels)
    whose working memory, ``item_bytes`` each, takes about ``budget`` bytes (cache-sized, so every
    pass over a chunk reads it from cache, not memory), in a multiple of :func:`host_threads` equal
    chunks (they run side by side, see :func:`map_chunks`). For a device array ``like``: one slice."""
    if like is not None and backend.is_device_array(like):
        return [slice(0, n)]
    if n < 1:
        return []
    fit = max(1, min(n, budget // max(1, item_bytes)))  # items within the budget
    count = -(-n // fit)                                  # ceil: chunks within the budget
    count = min(n, -(-count // host_threads()) * host_threads())  # up to a multiple of the threads
    step = -(-n // count)
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


POOL_MIN_BYTES = 2 ** 18  # an array smaller than this is one chunk: the pool would cost more than the work


def sample_chunks(x, budget: int, min_bytes: int = POOL_MIN_BYTES) -> list:
    """Chunks of the samples (first axis) of ``x`` for element-wise passes and per-chunk sums:
    :func:`chunk_slices` with ``budget`` bytes of x per chunk, but one slice, the whole batch, when
    x takes under ``min_bytes``; ``[Ellipsis]`` for a 0-d x."""
    if x.ndim == 0:
        return [Ellipsis]
    if x.nbytes < min_bytes:
        return [slice(0, x.shape[0])]
    return chunk_slices(x.shape[0], x.nbytes // max(1, x.shape[0]), budget, like=x)


def total(parts):
    """The sum of the per-chunk partial sums ``parts`` (a list of arrays, or of numbers)."""
    return sum(parts[1:], parts[0])


def map_chunks(fn, chunks, like=None) -> list:
    """``[fn(c) for c in chunks]``, spread over :func:`host_threads` threads for host arrays.

    BLAS is held to one thread inside (else each of the workers' products would start its own
    team of threads). Serial for device arrays (``like``), for one chunk and for one thread."""
    global _host_pool
    chunks = list(chunks)
    threads = host_threads()
    if threads == 1 or len(chunks) < 2 or (like is not None and backend.is_device_array(like)):
        return [fn(c) for c in chunks]
    if _host_pool is None:
        from concurrent.futures import ThreadPoolExecutor
        _host_pool = ThreadPoolExecutor(threads, thread_name_prefix="tinyba2m-host")
    ctl = _blas_controller()
    with contextlib.nullcontext() if ctl is None else ctl.limit(limits=1):
        return list(_host_pool.map(fn, chunks))
