"""``--vs-torch``: this project and PyTorch eager side by side, in one process, on one machine.

The machine this is measured on may be shared, so the two sides are timed *interleaved* (one
run of each in turn, ``repeats`` rounds) and both the minimum (the least disturbed run) and the
median are kept; a ratio compares figures of the same rounds. ``speed_ratio`` is
(PyTorch seconds) / (tinyba2m seconds): 0.5 means tinyba2m runs at half PyTorch's speed.
Both sides use the same float32 data sizes, batch and thread count (``torch.set_num_threads`` =
the BLAS threads tinyba2m uses), and on CuPy the same GPU.

The conv rows are timed per process by default (``bench.conv_rows``: each side in processes of
its own, alternating), since interleaving made ours look slower than they run alone;
``conv_timing="interleaved"`` keeps the one-process method for comparison. The steps stay
interleaved.
"""
from __future__ import annotations

from .. import backend
from ..ops.conv import conv2d_backward, conv2d_forward
from .conv_rows import per_process_seconds
from .kernels import conv_operands, matmul_call
from .step import make_training_step
from .timing import interleaved_seconds
from .torch_ref import torch_conv, torch_training_step

TORCH_HINT = ('PyTorch is not installed, so there is no side-by-side comparison. For it: '
              'pip install -e ".[bench]" (the CPU wheel: pip install torch --index-url '
              'https://download.pytorch.org/whl/cpu), then python -m tinyba2m.bench --vs-torch')


def _pair(ours: dict, theirs: dict) -> dict:
    return {"tinyba2m": ours, "torch": theirs,
            "speed_ratio_min": theirs["min_s"] / ours["min_s"],
            "speed_ratio_median": theirs["median_s"] / ours["median_s"]}


def compare_steps(rows, batch_size: int, repeats: int, threads: int) -> dict:
    """step-table row (``bench.step.STEP_ROWS``) -> both sides' step seconds, images/s (from the
    minimum) and the speed ratios."""
    results = {}
    for row in rows:
        _, ours = make_training_step("resnet20", row, batch_size)
        theirs = torch_training_step(row, batch_size, threads)
        t = interleaved_seconds({"tinyba2m": ours, "torch": theirs}, repeats)
        entry = _pair(t["tinyba2m"], t["torch"])
        entry["images_per_s"] = {k: batch_size / t[k]["min_s"] for k in t}
        results[row] = entry
        del ours, theirs
        backend.free_device_memory()
    return results


CONV_TIMINGS = ("per-process", "interleaved")


def compare_convs(shapes, repeats: int, threads: int, matmul_size: int = 1024, conv_timing: str = "per-process",
                  rounds: int = 2) -> list:
    """For each conv shape: forward + backward (dx, dw) seconds of both sides, the speed ratio and
    their fraction of the matmul ceiling — an (n, n) @ (n, n) float32 product timed in the same
    processes or rounds (a ceiling read minutes earlier on a shared machine says little about this
    moment). ``conv_timing``: "per-process" (see ``bench.conv_rows``; ``rounds`` processes per side,
    the ceiling the best product any of them timed) or "interleaved" (one process, one run of each
    side in turn, ``repeats`` rounds)."""
    if conv_timing not in CONV_TIMINGS:
        raise ValueError(f"compare_convs: conv_timing must be one of {', '.join(CONV_TIMINGS)}, got {conv_timing!r}")
    if conv_timing == "per-process":
        sides = per_process_seconds(shapes, repeats, threads, matmul_size, rounds)
        best = min(sides[k]["matmul"]["min_s"] for k in sides)
        rows = [{"tinyba2m": sides["tinyba2m"]["convs"][i], "torch": sides["torch"]["convs"][i],
                 "matmul": {"min_s": best}} for i in range(len(shapes))]
    else:
        matmul = matmul_call(matmul_size)
        rows = []
        for shape in shapes:
            x, w, dout, kw = conv_operands(shape)

            def ours():
                conv2d_backward(dout, conv2d_forward(x, w, None, **kw)[1])

            rows.append(interleaved_seconds({"tinyba2m": ours, "torch": torch_conv(shape, threads), "matmul": matmul},
                                            repeats))
    results = []
    for shape, t in zip(shapes, rows):
        entry = _pair(t["tinyba2m"], t["torch"])
        flops = 3 * shape.forward_flops()
        ceiling = 2.0 * matmul_size ** 3 / t["matmul"]["min_s"] / 1e9
        entry.update(shape=shape.label(), matmul_gflops=ceiling, timing=conv_timing,
                     fraction_of_ceiling={k: flops / t[k]["min_s"] / 1e9 / ceiling for k in ("tinyba2m", "torch")})
        results.append(entry)
    return results
