"""Timing and memory measurement for the benchmark.

Every figure comes from ``repeats`` runs after ``warmup`` runs (their median; ``--vs-torch`` also
keeps the minimum); GPU work is synchronised before each clock read. Host memory: peak resident
set size (``ru_maxrss``) and the peak of traced allocations during one call (``tracemalloc`` sees
NumPy's buffers); device memory: the CuPy memory pool's high-water mark.
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
import tracemalloc

from .. import backend


def timed_call(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``, with queued GPU work finished before and after the call."""
    backend.synchronize()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    backend.synchronize()
    return out, time.perf_counter() - start


def interleaved_seconds(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """name -> {"min_s", "median_s", "runs_s"} for each callable of ``fns``, timed in turn (one run
    of each per round, ``repeats`` rounds, after ``warmup`` rounds)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            runs[name].append(timed_call(fn)[1])
    return {name: {"min_s": min(r), "median_s": statistics.median(r), "runs_s": r} for name, r in runs.items()}


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    return interleaved_seconds({"fn": fn}, repeats, warmup)["fn"]["median_s"]


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
