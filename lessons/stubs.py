"""Which exercise files in ``lessons/exercises/`` are still the untouched stubs.

The tests check each exercise on the stub (its check must FAIL, with the stub's
NotImplementedError) and on the reference solution (it must PASS). Once you write your answer,
the file is no longer the stub, and the tests check *your answer* instead: PASS, or FAIL with the
checker's table, never "passed on the stub".

A file is the stub when the SHA-256 of its text equals the one recorded for it in
``lessons/exercises/stubs.sha256`` (``sha256sum`` format, one ``<hash>  <file>`` line per stub).
The text is hashed with ``\\r\\n`` read as ``\\n``, so a checkout with Windows line endings still
counts as the stub. The record is a file, not git history, because a copy unpacked from an
archive has no history.

    python -m lessons.stubs            each exercise: stub, or edited (your answer)
    python -m lessons.stubs --record   re-record every exercise file as the stub: only for whoever
                                       changes a stub on purpose (it would make your answer "the stub")
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

EXERCISES = Path(__file__).resolve().parent / "exercises"
RECORD = EXERCISES / "stubs.sha256"


def text_hash(path: Path) -> str:
    """SHA-256 of the file's text with ``\\r\\n`` line endings read as ``\\n``."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def exercise_files() -> list[Path]:
    return sorted(EXERCISES.glob("ex[0-9][0-9]_*.py"))


def recorded() -> dict[str, str]:
    """File name -> recorded SHA-256 of its stub."""
    hashes = {}
    for line in RECORD.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            hashes[name.lstrip("*")] = digest
    return hashes


def exercise_path(name: str) -> Path:
    """``ex03_leaky_relu``, ``ex03_leaky_relu.py``, ``lessons.exercises.ex03_leaky_relu`` or
    ``lessons.exercises.ex03_leaky_relu:leaky_relu_forward`` -> the exercise file."""
    stem = name.split(":", 1)[0].rsplit(".", 1)[-1] if not name.endswith(".py") else name[:-3]
    return EXERCISES / f"{stem}.py"


def is_stub(name: str) -> bool:
    """True when the exercise file is the untouched stub (its text hash is the recorded one)."""
    path = exercise_path(name)
    want = recorded().get(path.name)
    if want is None:
        raise ValueError(f"{path.name} has no stub hash in {RECORD} (new exercise? run: python -m lessons.stubs --record)")
    return path.is_file() and text_hash(path) == want


def record() -> None:
    """Write every exercise file's hash as its stub's."""
    RECORD.write_text("".join(f"{text_hash(p)}  {p.name}\n" for p in exercise_files()))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--record"]:
        record()
        print(f"recorded {len(exercise_files())} stubs in {RECORD}")
        return 0
    if argv:
        print("usage: python -m lessons.stubs [--record]", file=sys.stderr)
        return 2
    for p in exercise_files():
        print(f"{p.name:<36} {'stub' if is_stub(p.name) else 'edited (your answer)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
