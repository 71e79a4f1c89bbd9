"""Timing and memory measurement for the benchmark.

Every figure is the median of ``repeats`` runs after ``warmup`` runs; GPU work is synchronised
before each clock read. Host memory: peak resident set size (``ru_maxrss``) and the peak of
traced allocations during one call (``tracemalloc`` sees NumPy's buffers); device memory: the
CuPy memory pool's high-water mark.
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
import tracemalloc

from .. import backend


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    backend.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        backend.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def peak_call_memory(fn) -> int:
    """Peak bytes allocated while ``fn()`` runs: traced host allocations on NumPy, the device
    memory pool's high-water mark on CuPy."""
    if backend.name == "cupy":
        backend.synchronize()
        backend.free_device_memory()
        fn()
        backend.synchronize()
        return backend.device_memory_pool_bytes()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
