"""``python -m tinyba2m.gradcheck`` — check hand-derived backward passes, print a table.

Exit status: 0 if every check passes, 1 if any fails (including a --target whose code raises,
e.g. an exercise stub still raising NotImplementedError), 2 on bad usage.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
import traceback

from .. import backend
from ..nn.module import Module
from .checker import DEFAULT_TOLERANCE, CheckResult, check_module, check_op
from .registry import all_cases

EPILOG = """examples:
  python -m tinyba2m.gradcheck                      check every built-in op and module
  python -m tinyba2m.gradcheck conv2d batchnorm2d   check only these
  python -m tinyba2m.gradcheck --list               list the names
  python -m tinyba2m.gradcheck --target mypkg.layers:MyConv --input-shape 2,3,6,6
        check your own Module subclass (built with no arguments): the input gradient and
        every entry of its params/grads dicts
  python -m tinyba2m.gradcheck --target mypkg.ops:my_op_forward --shapes 2,3 3,4
        check your own pair my_op_forward(*arrays) -> (out, cache) and
        my_op_backward(dout, cache) -> gradient or tuple of gradients (one per array)

Checks run in float64 with central differences; the error is ||a - n|| / (||a|| + ||n||)."""


def parse_shape(text: str) -> tuple:
    try:
        shape = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: expected comma-separated integers such as 2,3,5,5") from None
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: sizes must be positive integers")
    return shape


def load_target(spec: str):
    if ":" not in spec:
        raise ValueError(f"--target must look like package.module:Name, got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"--target: cannot import module {mod_name!r} ({exc})") from exc
    if not hasattr(mod, attr):
        raise ValueError(f"--target: module {mod_name!r} has no attribute {attr!r}")
    return mod, getattr(mod, attr)


def check_target(spec: str, input_shape, shapes, tolerance) -> CheckResult:
    """Check a user's Module subclass (or instance) or forward/backward pair named by ``spec``."""
    mod, obj = load_target(spec)
    if inspect.isclass(obj) and issubclass(obj, Module):
        obj = obj()
    if isinstance(obj, Module):
        if input_shape is None:
            raise ValueError("--target names a module: give its input with --input-shape, e.g. --input-shape 2,3,6,6")
        return check_module(obj, input_shape, tolerance=tolerance, name=spec)
    if callable(obj):
        fname = obj.__name__
        if not fname.endswith("_forward"):
            raise ValueError(f"--target {spec}: a function must be named <op>_forward, with <op>_backward beside it")
        bname = fname[: -len("_forward")] + "_backward"
        if not hasattr(mod, bname):
            raise ValueError(f"--target {spec}: no {bname} found in {mod.__name__}")
        if not shapes:
            raise ValueError("--target names an op pair: give the input shapes with --shapes, e.g. --shapes 2,3 3,4")
        rng = backend.new_host_rng(0)
        inputs = [backend.get_xp().asarray(rng.standard_normal(s)) for s in shapes]
        return check_op(obj, getattr(mod, bname), inputs, tolerance=tolerance, name=spec)
    raise ValueError(f"--target {spec}: expected a Module subclass or an <op>_forward function, got {type(obj).__name__}")


def raised_at(exc) -> str:
    """`` (raised at file:line)`` for the innermost frame of ``exc``'s traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (raised at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def print_table(results, out=None) -> None:
    out = out or sys.stdout
    width = max([len(r.name) for r in results] + [4])
    out.write(f"{'name':<{width}}  {'worst rel. error':>16}  {'tolerance':>9}  result\n")
    out.write("-" * (width + 38) + "\n")
    for r in results:
        out.write(f"{r.name:<{width}}  {r.worst:>16.2e}  {r.tolerance:>9.0e}  {'PASS' if r.passed else 'FAIL'}\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyba2m.gradcheck", description=(
        "Check hand-derived backward passes against central finite differences in float64. "
        "Prints name, worst relative error, tolerance and PASS/FAIL; exits 1 if any check fails."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="built-in checks to run (default: all; see --list)")
    parser.add_argument("--list", action="store_true", help="list the built-in check names and exit")
    parser.add_argument("--target", action="append", default=[], metavar="PKG.MODULE:NAME",
                        help="your own Module subclass or <op>_forward function to check (repeatable)")
    parser.add_argument("--input-shape", type=parse_shape, default=None, help="input shape for a --target module, e.g. 2,3,6,6")
    parser.add_argument("--shapes", type=parse_shape, nargs="+", default=None, help="input shapes for a --target op pair")
    parser.add_argument("--tol", type=float, default=DEFAULT_TOLERANCE, help=f"tolerance for --target checks (default {DEFAULT_TOLERANCE:g})")
    args = parser.parse_args(argv)

    cases = all_cases()
    if args.list:
        print("\n".join(sorted(cases)))
        return 0
    unknown = [n for n in args.names if n not in cases]
    if unknown:
        parser.error(f"unknown check name(s): {', '.join(unknown)}. Known: {', '.join(sorted(cases))}")
    names = args.names or ([] if args.target else sorted(cases))
    results = []
    start = time.perf_counter()
    for n in names:
        results.append(cases[n]())
    raised = []
    for spec in args.target:
        try:
            results.append(check_target(spec, args.input_shape, args.shapes, args.tol))
        except ValueError as exc:
            parser.error(str(exc))
        except Exception as exc:  # the user's code raised (e.g. a stub's NotImplementedError): a FAIL, not a crash
            results.append(CheckResult(spec, {"raised": float("inf")}, args.tol))
            raised.append(f"{spec}: {type(exc).__name__}: {exc}{raised_at(exc)}")
    print_table(results)
    for line in raised:
        print(f"FAIL {line}")
    failed = [r.name for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)}/{len(results)} passed in {time.perf_counter() - start:.1f}s on backend {backend.name}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
