"""``python -m tinyba2m.bench`` — where the time goes, in figures.

Prints, for float32 on the active backend: the matmul ceiling (GFLOP/s), each distinct conv
shape of ResNet-20 at the batch size (forward/backward time, GFLOP/s, fraction of the
ceiling), full training steps of ResNet-20 with attention none / se / ba2m where the library puts
it (the last block of each stage) and, as an extra row, ba2m-every (BA²M in every block) (images/s,
ratio to none, peak memory of the step), the time share of each part of the plain step (conv,
batch norm, the fused batch norm + ReLU, activations, the rest) and of each BA²M part. Every figure is the
median of several repeats after a warm-up. On ``--backend cupysim``, and alone with ``--counters``
(on any machine), it prints the host syncs and array-module calls of one training step of
none / SE / BA²M, counted on the simulated device, and where CuPy's names came from. ``--vs-torch``
adds the same conv shapes and steps in PyTorch eager with the ratios: the conv rows with each side
in processes of its own (see ``bench.conv_rows``), the steps interleaved with ours (see ``bench.versus``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from .. import __version__, backend, hostpool
from ..attention import BA2MOptions
from ..models import build_model
from .kernels import conv_shapes_of, matmul_gflops, time_conv
from .step import BA2M_PARTS, STEP_ROWS, bench_training_steps, device_counts
from .timing import peak_rss_bytes
from .torch_ref import torch_available, torch_device
from .versus import CONV_TIMINGS, TORCH_HINT, compare_convs, compare_steps


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    return {"backend": backend.name, "cpu": cpu_model(), "cores": os.cpu_count(), "gpu": backend.device_description(),
            "python": platform.python_version(), "numpy": backend.numpy_module.__version__, "tinyba2m": __version__}


def host_pool_line() -> str:
    """Whether the host thread pool (``hostpool.map_chunks``) is on, and why not when it is off."""
    if backend.name == "cupy":
        return "host thread pool: not used (the convolutions run on the GPU)"
    try:
        import threadpoolctl
    except ImportError:
        return ("host thread pool: OFF (threadpoolctl is not installed, so BLAS cannot be held to one thread "
                "inside the workers; pip install threadpoolctl, a dependency of tinyba2m)")
    n = hostpool.host_threads()
    state = f"on, {n} threads" if n > 1 else "off (one BLAS thread: a single core)"
    return f"host thread pool: {state} (threadpoolctl {threadpoolctl.__version__})"


def run(args) -> dict:
    say = print if not args.json_only else (lambda *a, **k: None)
    info = machine_info()
    say(f"tinyba2m {info['tinyba2m']} benchmark | backend {info['backend']} | {info['cpu']} | {info['cores']} cores"
        + (f" | GPU {info['gpu']}" if info["gpu"] else "") + f" | float32, batch {args.batch_size}"
        + (" | --quick" if args.quick else ""))
    say(host_pool_line())
    info["host_pool"] = host_pool_line()
    start = time.perf_counter()
    ceiling = matmul_gflops(args.matmul_size, repeats=args.repeats)
    say(f"\nmatmul ceiling ({args.matmul_size}x{args.matmul_size} @ {args.matmul_size}x{args.matmul_size}): {ceiling:.1f} GFLOP/s")

    shapes = conv_shapes_of(build_model("resnet20", "none"), (args.batch_size, 3, 32, 32))
    say(f"\nResNet-20 conv shapes at batch {args.batch_size} ({len(shapes)} distinct):")
    say(f"  {'shape':<22} {'fwd ms':>8} {'bwd ms':>8} {'fwd GF/s':>9} {'bwd GF/s':>9} {'f+b GF/s':>9} {'of ceiling':>10}")
    convs = []
    for shape in shapes:
        r = time_conv(shape, repeats=args.repeats)
        r["fraction_of_ceiling"] = r["total_gflops"] / ceiling
        convs.append(r)
        say(f"  {r['shape']:<22} {1e3 * r['forward_s']:>8.1f} {1e3 * r['backward_s']:>8.1f} {r['forward_gflops']:>9.1f} "
            f"{r['backward_gflops']:>9.1f} {r['total_gflops']:>9.1f} {100 * r['fraction_of_ceiling']:>9.0f}%")

    steps = bench_training_steps("resnet20", args.batch_size, repeats=args.repeats, warmup=1)
    mem_label = "device pool" if backend.name == "cupy" else "traced host"
    say(f"\nResNet-20 training step (forward, backward, SGD) at batch {args.batch_size}; se and ba2m with the "
        f"default placement '{BA2MOptions().placement}', ba2m-every with BA²M in every block:")
    say(f"  {'attention':<10} {'step s':>8} {'images/s':>9} {'vs none':>8} {'peak MiB (' + mem_label + ')':>26}")
    for att, r in steps.items():
        say(f"  {att:<10} {r['step_s']:>8.3f} {r['images_per_s']:>9.1f} {r['ratio_to_none']:>7.2f}x "
            f"{r['peak_step_memory_bytes'] / 2**20:>26.1f}")
    if "none" in steps and "part_time_share" in steps["none"]:
        shares = steps["none"]["part_time_share"]
        say("  share of the plain (none) step: " + ", ".join(f"{p} {100 * v:.1f}%" for p, v in shares.items()))
    if "ba2m" in steps and "ba2m_time_share" in steps["ba2m"]:
        shares = steps["ba2m"]["ba2m_time_share"]
        say("  BA²M share of the ba2m step: " + ", ".join(f"{p} {100 * shares[p]:.1f}%" for p in BA2M_PARTS)
            + f" (total {100 * sum(shares.values()):.1f}%)")
    say(f"  peak RSS of this process: {peak_rss_bytes() / 2**20:.0f} MiB")
    figures = {"machine": info, "batch_size": args.batch_size, "quick": args.quick, "matmul_gflops": ceiling,
               "convs": convs, "training_steps": steps}
    if backend.name == "cupysim":
        figures["device_counts"] = print_counts(say)
    if args.vs_torch:
        figures["vs_torch"] = side_by_side(args, shapes, say)
    figures["seconds"] = elapsed = time.perf_counter() - start
    say(f"\nbenchmark took {elapsed:.0f} s")
    return figures


def print_counts(say) -> dict:
    """Syncs and calls per training step of ResNet-20 none / SE / BA²M, counted on cupysim."""
    counts = device_counts("resnet20")
    say(f"\ncupysim counters per ResNet-20 training step (forward, loss, backward, SGD; CuPy names from "
        f"{counts['names']}):")
    say(f"  {'attention':<10} {'syncs/step':>10} {'calls/step':>10}  sync kinds")
    for row, c in counts["rows"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in c["sync_kinds"].items()) or "-"
        say(f"  {row:<10} {c['syncs_per_step']:>10} {c['calls_per_step']:>10}  {kinds}")
    return counts


def load_average() -> list:
    """The 1, 5 and 15 minute load averages (the machine may be shared), or [] where unknown."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def side_by_side(args, shapes, say) -> dict:
    """The conv shapes and the steps of every row in PyTorch eager, interleaved with ours."""
    ok, version = torch_available()
    if not ok:
        say(f"\n{version}. {TORCH_HINT}")
        return {"available": False, "reason": version}
    threads = hostpool.blas_threads()
    load_before = load_average()
    say(f"\nSide by side with PyTorch {version} eager on {torch_device()} ({threads} threads on both sides; "
        f"ratio = PyTorch time / tinyba2m time, from the fastest run; load average {load_before}).")
    if args.conv_timing == "per-process":
        say(f"  conv rows: each side in a process of its own (warm-up, then {args.repeats} runs per shape), "
            f"{args.rounds} processes per side, alternating; the fastest run of each side")
    else:
        say(f"  conv rows: interleaved in this process, one run of each side in turn, {args.repeats} rounds")
    say(f"  {'conv f+b':<22} {'tinyba2m ms':>11} {'torch ms':>9} {'ratio':>6} {'tinyba2m of ceiling':>20} "
        f"{'torch of ceiling':>17} {'ceiling GF/s':>13}")
    convs = compare_convs(shapes, args.repeats, threads, args.matmul_size, args.conv_timing, args.rounds)
    for r in convs:
        say(f"  {r['shape']:<22} {1e3 * r['tinyba2m']['min_s']:>11.1f} {1e3 * r['torch']['min_s']:>9.1f} "
            f"{r['speed_ratio_min']:>5.2f}x {100 * r['fraction_of_ceiling']['tinyba2m']:>19.0f}% "
            f"{100 * r['fraction_of_ceiling']['torch']:>16.0f}% {r['matmul_gflops']:>13.1f}")
    steps = compare_steps(STEP_ROWS, args.batch_size, args.repeats, threads)
    say(f"  steps: interleaved in this process, one step of each side in turn, {args.repeats} rounds")
    say(f"  {'ResNet-20 step':<22} {'tinyba2m img/s':>14} {'torch img/s':>12} {'ratio':>6} {'ratio (medians)':>16}")
    for att, r in steps.items():
        say(f"  {att:<22} {r['images_per_s']['tinyba2m']:>14.1f} {r['images_per_s']['torch']:>12.1f} "
            f"{r['speed_ratio_min']:>5.2f}x {r['speed_ratio_median']:>15.2f}x")
    load_after = load_average()
    say(f"  load average after: {load_after}")
    return {"available": True, "torch_version": version, "device": torch_device(), "threads": threads,
            "conv_timing": args.conv_timing, "conv_rounds": args.rounds if args.conv_timing == "per-process" else None,
            "load_average_before": load_before, "load_average_after": load_after, "convs": convs,
            "training_steps": steps}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyba2m.bench", description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller matmul (under a minute on 2 idle cores)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--vs-torch", action="store_true",
                        help="also time the conv shapes and the training steps in PyTorch eager (if installed), "
                             "interleaved with ours, and print the ratios")
    parser.add_argument("--conv-timing", choices=CONV_TIMINGS, default="per-process",
                        help="how --vs-torch times the conv rows: each side in processes of its own (default) or "
                             "interleaved in one process")
    parser.add_argument("--rounds", type=int, default=2,
                        help="--vs-torch per-process conv rows: processes per side (default 2)")
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=128, help="batch size of the conv and step figures (default 128)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per figure (default 5, --quick 2)")
    parser.add_argument("--backend", choices=backend.BACKENDS, default=None,
                        help="array backend (default: $TINYBA2M_BACKEND or numpy)")
    parser.add_argument("--counters", action="store_true",
                        help="only print the host syncs and array-module calls per training step of none / SE / "
                             "BA²M, counted on cupysim (seconds; any machine)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.backend:
        try:
            backend.use_backend(args.backend)
        except backend.BackendUnavailableError as exc:
            parser.error(str(exc))
    if args.counters:
        figures = {"device_counts": print_counts(print)}
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(figures, fh, indent=2)
        return 0
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.matmul_size = 1024 if args.quick else 2048
    figures = run(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
