"""``python -m tinyba2m.study <name> ...`` — run a study by name (today: ``ba2m``)."""
from __future__ import annotations

import sys

from .ba2m import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m tinyba2m.study ba2m [options]   (python -m tinyba2m.study ba2m --help)")
        sys.exit(0 if argv else 2)
    if argv[0] != "ba2m":
        print(f"unknown study {argv[0]!r}: the studies are: ba2m", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(argv[1:]))
