"""``python -m tinyba2m.gradcheck`` — check hand-derived backward passes, print a table.

Exit status: 0 if every check passes, 1 if any fails (a FAIL row names each gradient above the
tolerance with its error — NaN and inf are FAILs and print as such — and says when the forward's
output or a gradient is not float64; a --target whose code raises is a FAIL naming the target, the
phase — construction, forward or backward — and the file:line in that code, with the original
message), 2 on bad usage, printed as one line (an unknown name, a --target that cannot be
imported, a --shapes count that does not match the forward's inputs, a --tol that is not a finite
number > 0). ``--json PATH`` / ``--junit-xml PATH`` also write every check as a
record (see report.py), even when a check raises; the table is printed as without them.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import os
import pathlib
import sys
import time
import traceback

from .. import backend
from ..nn.module import Module
from .checker import DEFAULT_TOLERANCE, CheckResult, check_module, check_op, check_tolerance, format_error
from .registry import all_cases
from .report import Report, exception_record, result_record

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
  python -m tinyba2m.gradcheck ... --json out.json --junit-xml out.xml
        also write one record per check (for CI and autograders; see python -m tinyba2m.grade)

Run it from the folder that holds your package (for the course: the repository root, so that
lessons.exercises... imports). Checks run in float64 with central differences; the error is
||a - n|| / (||a|| + ||n||)."""

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]


class UsageError(ValueError):
    """The command line asks for something impossible: exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (``prog: error: ...; see --help``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class TargetFailure(Exception):
    """A --target's own code raised: reported as a FAIL row, with where and in which phase."""

    def __init__(self, spec: str, phase: str, exc: BaseException, code_file=None):
        self.phase, self.error, self.where = phase, exc, raised_where(exc, code_file)
        at = f" (raised at {self.where[0]}:{self.where[1]})" if self.where else ""
        super().__init__(f"{spec}: {phase} raised {type(exc).__name__}: {exc}{at}")


def parse_shape(text: str) -> tuple:
    try:
        shape = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: expected comma-separated integers such as 2,3,5,5") from None
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: sizes must be positive integers")
    return shape


def parse_tolerance(text: str) -> float:
    """``--tol``: a finite number > 0 (a NaN or negative one would fail every check)."""
    try:
        return check_tolerance(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 such as 1e-6, got {text!r}") from None


def import_target_module(mod_name: str):
    """Import ``mod_name``. When it (or a module it imports) is not found from the working
    directory but is in a folder above it — ``lessons/`` run from inside ``lessons/`` — that
    folder is put on the path with a note; otherwise a UsageError says where to run from."""
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or mod_name).split(".")[0]
        cwd = pathlib.Path.cwd()  # root: the nearest folder at or above it that holds ``missing``
        root = next((folder for folder in (cwd, *cwd.parents)
                     if (folder / missing).is_dir() or (folder / f"{missing}.py").is_file()), None)
        if root is None or str(root) in sys.path:
            hint = "" if missing != mod_name.split(".")[0] else (
                f". Run from the folder that holds {missing}/ (for the course's exercises: the repository root, "
                f"the folder with lessons/ and tinyba2m/), or put that folder on PYTHONPATH")
            raise UsageError(f"--target: cannot import module {mod_name!r} ({exc}){hint}") from None
        print(f"note: {missing!r} is not importable from {cwd}; using {root} (run from there to skip this)",
              file=sys.stderr)
        sys.path.insert(0, str(root))
        return import_target_module(mod_name)
    except ImportError as exc:
        raise UsageError(f"--target: cannot import module {mod_name!r} ({exc})") from exc


def load_target(spec: str):
    if ":" not in spec:
        raise UsageError(f"--target must look like package.module:Name, got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    mod = _guarded(import_target_module, spec, "import")(mod_name)  # the module's own code may raise
    if not hasattr(mod, attr):
        raise UsageError(f"--target: module {mod_name!r} has no attribute {attr!r}")
    return mod, getattr(mod, attr)


def _guarded(fn, spec, phase, code_file=None):
    """``fn`` whose exceptions become a TargetFailure naming ``spec`` and ``phase`` (a UsageError stays one).
    Keeps ``fn``'s signature (the checker names the inputs from it)."""
    @functools.wraps(fn, updated=())
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UsageError:
            raise
        except Exception as exc:
            raise TargetFailure(spec, phase, exc, code_file) from exc
    return call


def _input_count(fn):
    """(required, most) positional inputs of ``fn``; most is None for ``*args``."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is p.empty for p in positional)
    most = None if any(p.kind == p.VAR_POSITIONAL for p in params) else len(positional)
    return required, most


def check_target(spec: str, input_shape, shapes, tolerance) -> CheckResult:
    """Check a user's Module subclass (or instance) or forward/backward pair named by ``spec``.
    Raises UsageError for what the command line got wrong, TargetFailure when the code raised."""
    mod, obj = load_target(spec)
    code_file = getattr(mod, "__file__", None)
    if isinstance(obj, Module) or inspect.isclass(obj) and issubclass(obj, Module):
        if input_shape is None:
            raise UsageError("--target names a module: give its input with --input-shape, e.g. --input-shape 2,3,6,6")
        if inspect.isclass(obj):
            obj = _guarded(obj, spec, "construction", code_file)()
        obj.forward = _guarded(obj.forward, spec, "forward", code_file)
        obj.backward = _guarded(obj.backward, spec, "backward", code_file)
        return check_module(obj, input_shape, tolerance=tolerance, name=spec)
    if callable(obj):
        fname = obj.__name__
        if not fname.endswith("_forward"):
            raise UsageError(f"--target {spec}: a function must be named <op>_forward, with <op>_backward beside it")
        bname = fname[: -len("_forward")] + "_backward"
        if not hasattr(mod, bname):
            raise UsageError(f"--target {spec}: no {bname} found in {mod.__name__}")
        if not shapes:
            raise UsageError("--target names an op pair: give the input shapes with --shapes, e.g. --shapes 2,3 3,4")
        required, most = _input_count(obj)
        if len(shapes) < required or (most is not None and len(shapes) > most):
            want = str(required) if most == required else f"{required} to {'any number' if most is None else most}"
            raise UsageError(f"--target {spec}: {fname} takes {want} input array(s) "
                             f"({', '.join(inspect.signature(obj).parameters)}), but --shapes gave {len(shapes)}")
        rng = backend.new_host_rng(0)
        inputs = [backend.get_xp().asarray(rng.standard_normal(s)) for s in shapes]
        return check_op(_guarded(obj, spec, "forward", code_file), _guarded(getattr(mod, bname), spec, "backward", code_file),
                        inputs, tolerance=tolerance, name=spec)
    raise UsageError(f"--target {spec}: expected a Module subclass or an <op>_forward function, got {type(obj).__name__}")


def raised_where(exc, code_file=None):
    """(file, line) of ``exc``: for a SyntaxError the line it names; else the innermost frame of its
    traceback in ``code_file`` (the user's module), else the innermost outside this package, else
    the innermost. None without a traceback."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, exc.lineno
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    mine = [f for f in frames if code_file and os.path.abspath(f.filename) == os.path.abspath(code_file)]
    outside = [f for f in frames if not os.path.abspath(f.filename).startswith(str(PACKAGE_DIR) + os.sep)]
    frame = (mine or outside or frames)[-1]
    return frame.filename, frame.lineno


def print_table(results) -> None:
    """name, worst error, tolerance, PASS/FAIL; a FAIL row names every gradient above the tolerance
    or not finite (``b=NaN``), with its note (e.g. ``returned float32: the check runs in float64``)."""
    width = max([len(r.name) for r in results] + [4])
    print(f"{'name':<{width}}  {'worst rel. error':>16}  {'tolerance':>9}  result")
    print("-" * (width + 38))
    for r in results:
        line = f"{r.name:<{width}}  {format_error(r.worst):>16}  {r.tolerance:>9.0e}  {'PASS' if r.passed else 'FAIL'}"
        if not r.passed:
            line += "  " + r.failure_summary()
        print(line)


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m tinyba2m.gradcheck", description=(
        "Check hand-derived backward passes against central finite differences in float64. "
        "Prints name, worst relative error, tolerance and PASS/FAIL; exits 1 if any check fails."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="built-in checks to run (default: all; see --list)")
    parser.add_argument("--list", action="store_true", help="list the built-in check names and exit")
    parser.add_argument("--json", metavar="PATH", help="also write one record per check to PATH as JSON "
                        "(name, shapes, each gradient's error and tolerance, PASS/FAIL, where an exception was raised)")
    parser.add_argument("--junit-xml", metavar="PATH", help="also write the checks to PATH as JUnit XML (one testcase each)")
    parser.add_argument("--target", action="append", default=[], metavar="PKG.MODULE:NAME",
                        help="your own Module subclass or <op>_forward function to check (repeatable)")
    parser.add_argument("--input-shape", type=parse_shape, default=None, help="input shape for a --target module, e.g. 2,3,6,6")
    parser.add_argument("--shapes", type=parse_shape, nargs="+", default=None, help="input shapes for a --target op pair")
    parser.add_argument("--tol", type=parse_tolerance, default=DEFAULT_TOLERANCE, help=f"tolerance for --target checks (default {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--backend", choices=backend.BACKENDS, default=None,
                        help="array backend of the checks (default: $TINYBA2M_BACKEND, else numpy); cupysim "
                             "runs them under CuPy's rules without a GPU")
    args = parser.parse_args(argv)
    if args.backend:
        try:
            backend.use_backend(args.backend)
        except backend.BackendUnavailableError as exc:
            parser.error(str(exc))

    cases = all_cases()
    if args.list:
        print("\n".join(sorted(cases)))
        return 0
    unknown = [n for n in args.names if n not in cases]
    if unknown:
        parser.error(f"unknown check name(s): {', '.join(unknown)}. Known: {', '.join(sorted(cases))}")
    names = args.names or ([] if args.target else sorted(cases))
    start = time.perf_counter()
    report = Report(args.json, args.junit_xml, backend.name)  # both files are rewritten after every check
    try:
        report.write(complete=False)
    except OSError as exc:
        parser.error(f"cannot write {' / '.join(p for p in (args.json, args.junit_xml) if p)}: {exc}")
    results = [report.run_builtin(n, cases[n], raised_where) for n in names]
    raised = []
    target_shapes = [args.input_shape] if args.input_shape else args.shapes
    for spec in args.target:
        try:
            results.append(check_target(spec, args.input_shape, args.shapes, args.tol))
            report.add(result_record(results[-1], "target", target_shapes))
        except UsageError as exc:
            parser.error(str(exc))
        except TargetFailure as exc:  # the user's code raised (e.g. a stub's NotImplementedError): a FAIL, not a crash
            key = f"{exc.phase} raised"
            results.append(CheckResult(spec, {key: float("inf")}, args.tol, notes={key: "see the FAIL line below"}))
            raised.append(str(exc))
            report.add(exception_record(spec, exc.phase, exc.error, exc.where, "target", target_shapes, args.tol))
        except Exception as exc:  # the checker refused what the code returned (gradient count or shape)
            results.append(CheckResult(spec, {"check": float("inf")}, args.tol, notes={"check": "see the FAIL line below"}))
            raised.append(f"{spec}: {type(exc).__name__}: {exc}")
            report.add(exception_record(spec, "check", exc, None, "target", target_shapes, args.tol))
    report.write()
    print_table(results)
    for line in raised:
        print(f"FAIL {line}")
    failed = [r.name for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)}/{len(results)} passed in {time.perf_counter() - start:.1f}s on backend {backend.name}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
