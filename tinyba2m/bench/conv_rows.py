"""``--vs-torch`` conv rows, each side timed in a process of its own.

Timed interleaved in one process (one run of ours, one of PyTorch's, in turn), our conv rows came
out slower than timed alone: PyTorch's OpenMP workers keep spinning for a while after each of its
calls, competing with our host pool for the two cores, and each side evicts the other's operands
from cache. So each side's conv rows run in a fresh process (``python -m tinyba2m.bench.conv_rows``,
a JSON request on stdin, a JSON answer on stdout) with its own warm-up, then ``repeats``
consecutive runs per shape; the processes alternate, ``rounds`` of each side, and a row keeps the
minimum over all of a side's runs and the median of its processes' medians. Each process also
times the (n, n) @ (n, n) NumPy/CuPy product, the ceiling, right after its rows.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from .. import backend
from ..ops.conv import conv2d_backward, conv2d_forward
from .kernels import ConvShape, conv_operands, matmul_call
from .timing import interleaved_seconds

SIDES = ("tinyba2m", "torch")


def conv_call(side: str, shape: ConvShape, threads: int):
    """One forward + backward (dx, dw) of ``shape`` on ``side``, as a callable."""
    if side == "torch":
        from .torch_ref import torch_conv
        return torch_conv(shape, threads)
    x, w, dout, kw = conv_operands(shape)
    return lambda: conv2d_backward(dout, conv2d_forward(x, w, None, **kw)[1])


def side_seconds(side: str, shapes, repeats: int, threads: int, matmul_size: int) -> dict:
    """In this process: {"convs": [{"min_s", "median_s", "runs_s"} per shape], "matmul": {...}}."""
    convs = [interleaved_seconds({"f": conv_call(side, s, threads)}, repeats, warmup=1)["f"] for s in shapes]
    return {"convs": convs, "matmul": interleaved_seconds({"f": matmul_call(matmul_size)}, repeats, warmup=1)["f"]}


def _request(side, shapes, repeats, threads, matmul_size) -> dict:
    return {"side": side, "backend": backend.name, "repeats": repeats, "threads": threads, "matmul_size": matmul_size,
            "shapes": [[list(s.x_shape), list(s.w_shape), list(s.stride), list(s.padding), list(s.dilation)]
                       for s in shapes]}


def run_in_subprocess(side, shapes, repeats, threads, matmul_size) -> dict:
    """:func:`side_seconds` in a fresh Python process (same interpreter, environment and working folder)."""
    request = json.dumps(_request(side, shapes, repeats, threads, matmul_size))
    root = os.path.dirname(os.path.dirname(os.path.abspath(backend.__file__)))  # the folder holding this tinyba2m
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run([sys.executable, "-m", "tinyba2m.bench.conv_rows"], input=request, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": path})
    if done.returncode != 0:
        raise RuntimeError(f"bench conv rows ({side}) in a subprocess failed (exit {done.returncode}): "
                           f"{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def per_process_seconds(shapes, repeats: int, threads: int, matmul_size: int, rounds: int = 2) -> dict:
    """side -> {"convs": [...], "matmul": {...}} over ``rounds`` alternating processes per side
    ("min_s": over all runs; "median_s": the median of the processes' medians)."""
    results = {side: [] for side in SIDES}
    for _ in range(rounds):
        for side in SIDES:
            results[side].append(run_in_subprocess(side, shapes, repeats, threads, matmul_size))
    return {side: {"convs": [_merge([r["convs"][i] for r in runs]) for i in range(len(shapes))],
                   "matmul": _merge([r["matmul"] for r in runs]), "processes": len(runs)}
            for side, runs in results.items()}


def _merge(parts: list) -> dict:
    return {"min_s": min(p["min_s"] for p in parts), "median_s": statistics.median(p["median_s"] for p in parts),
            "runs_s": [t for p in parts for t in p["runs_s"]]}


def main() -> int:
    request = json.loads(sys.stdin.read())
    backend.use_backend(request["backend"])
    shapes = [ConvShape(*(tuple(v) for v in s)) for s in request["shapes"]]
    answer = side_seconds(request["side"], shapes, request["repeats"], request["threads"], request["matmul_size"])
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
