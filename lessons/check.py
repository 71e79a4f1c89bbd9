"""Exercise checks as Python calls, for a notebook cell (or any Python session in the repository root).

``check("--target lessons.exercises.ex03_leaky_relu:leaky_relu_forward --shapes 4,5")`` runs exactly
``python -m tinyba2m.gradcheck --target ... --shapes 4,5`` in this process: it prints the checker's table
and returns True on PASS. It never raises, so "Run All" goes on past an unfinished exercise, and it
re-imports the exercise file each time, so an edit is seen without restarting the kernel.
"""
from __future__ import annotations

import importlib
import shlex
import sys
import traceback
import warnings

import numpy as np

from tinyba2m.gradcheck.__main__ import main as gradcheck_main


def _forget(module_name: str) -> None:
    """Drop a module from the import cache so that the next import reads the (edited) file again."""
    sys.modules.pop(module_name, None)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (raised at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def check(command: str) -> bool:
    """Run ``python -m tinyba2m.gradcheck <command>`` here; print its table; True on PASS, never raises."""
    argv = shlex.split(command)
    for i, arg in enumerate(argv[:-1]):
        if arg == "--target":
            _forget(argv[i + 1].split(":", 1)[0])
    try:
        status = gradcheck_main(argv)
    except SystemExit as exc:        # a usage error: argparse has printed why
        status = exc.code if isinstance(exc.code, int) else 2
    except Exception as exc:         # anything else the checker let through
        print(f"FAIL {type(exc).__name__}: {exc}{_where(exc)}")
        status = 1
    if status != 0:
        print(f"exercise check FAILED (exit status {status}); fix the code and run this cell again")
    return status == 0


def check_values(target: str, x, out, dx, rtol: float = 1e-12) -> bool:
    """Probe a one-input op pair at chosen inputs: ``<op>_forward(x)`` must equal ``out`` and
    ``<op>_backward(ones, cache)`` must equal ``dx`` (float64, relative tolerance ``rtol``, all
    finite). Catches what random N(0, 1) inputs never reach, e.g. overflow at x = 1000. Runs on the
    host (NumPy arrays). Prints PASS/FAIL for the forward and the backward; True on PASS, never raises."""
    mod_name, fname = target.split(":", 1)
    _forget(mod_name)
    try:
        mod = importlib.import_module(mod_name)
        rows = value_rows(getattr(mod, fname), getattr(mod, fname[: -len("_forward")] + "_backward"),
                          x, out, dx, rtol, label=target)
    except Exception as exc:
        print(f"FAIL {target} at x = {np.asarray(x, dtype=np.float64).tolist()}: {type(exc).__name__}: {exc}{_where(exc)}")
        return False
    for good, row in rows:
        print(f"{'PASS' if good else 'FAIL'} {row}")
    return all(good for good, _ in rows)


def value_rows(forward, backward, x, out, dx, rtol: float = 1e-12, label: str = "the op") -> list:
    """The work of :func:`check_values` on the functions themselves: ``[(ok, text)]`` for the forward
    and the backward; raises what they raise (the grader, ``lessons/grading.py``, calls this)."""
    x, out, dx = (np.asarray(v, dtype=np.float64) for v in (x, out, dx))
    with warnings.catch_warnings(), np.errstate(all="ignore"):   # an overflow is judged below
        warnings.simplefilter("ignore")
        got_out, cache = forward(x.copy())
        got_dx = backward(np.ones_like(x), cache)
    rows = []
    for what, got, want in (("forward", got_out, out), ("backward", got_dx, dx)):
        got = np.asarray(got, dtype=np.float64)
        good = got.shape == want.shape and bool(np.isfinite(got).all()) and np.allclose(got, want, rtol=rtol, atol=1e-300)
        rows.append((good, f"{what} of {label} at x = {x.tolist()}: got {got.tolist()}, expected {want.tolist()}"))
    return rows


def receptive_field_row(receptive_field, dilations, size) -> tuple:
    """One case of :func:`check_receptive_field`: (ok, text); raises what ``receptive_field`` raises."""
    want = reachable(dilations, size)
    got = set(receptive_field(dilations, size))
    good = got == want
    return good, (f"dilations {dilations} on {size}x{size}: {len(got)} pixels"
                  + ("" if good else f", expected {len(want)} (missing {sorted(want - got)[:4]}, extra {sorted(got - want)[:4]})"))


RECEPTIVE_FIELD_CASES = [((4,), 11), ((4,), 8), ((1, 2, 4), 17), ((4, 4), 17), ((1, 2, 4), 8), ((4, 4), 8), ((2, 3), 9)]


def reachable(dilations, size) -> set:
    """Input pixels that can reach the centre output of a stack of 3x3 convs (dilation d, padding d,
    stride 1) on a size x size map: walk back from the output, one layer at a time; a path through
    the zero padding (outside the map) is cut."""
    pixels = {(size // 2, size // 2)}
    for d in reversed(dilations):
        pixels = {(i + a * d, j + b * d) for i, j in pixels for a in (-1, 0, 1) for b in (-1, 0, 1)
                  if 0 <= i + a * d < size and 0 <= j + b * d < size}
    return pixels


def check_receptive_field(target: str) -> bool:
    """Exercise 8: ``receptive_field(dilations, size)`` must return exactly the reachable input pixels
    for each case of RECEPTIVE_FIELD_CASES. Prints PASS/FAIL per case; True on PASS, never raises."""
    mod_name, fname = target.split(":", 1)
    _forget(mod_name)
    ok = True
    for dilations, size in RECEPTIVE_FIELD_CASES:
        try:
            good, row = receptive_field_row(getattr(importlib.import_module(mod_name), fname), dilations, size)
        except Exception as exc:
            print(f"FAIL dilations {dilations} on {size}x{size}: {type(exc).__name__}: {exc}{_where(exc)}")
            return False
        ok &= good
        print(f"{'PASS' if good else 'FAIL'} {row}")
    if not ok:
        print("exercise check FAILED; fix the code and run this cell again")
    return ok
