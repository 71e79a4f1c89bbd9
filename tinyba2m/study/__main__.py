"""``python -m tinyba2m.study <name> ...`` — run a study by name: ``ba2m`` (the BA²M readings) or
``paper`` (the paper's comparison of BA²M with classical attention and focal loss)."""
from __future__ import annotations

import sys

from . import ba2m, paper

STUDIES = {"ba2m": ba2m.main, "paper": paper.main}

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m tinyba2m.study {ba2m,paper} [options]   (python -m tinyba2m.study paper --help)")
        sys.exit(0 if argv else 2)
    if argv[0] not in STUDIES:
        print(f"unknown study {argv[0]!r}: the studies are: {', '.join(STUDIES)}", file=sys.stderr)
        sys.exit(2)
    sys.exit(STUDIES[argv[0]](argv[1:]))
