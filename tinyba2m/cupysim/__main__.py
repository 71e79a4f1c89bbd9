"""``python -m tinyba2m.cupysim --write-snapshot``: rewrite the committed CuPy namespace snapshot
from the installed ``cupy`` (importing it needs no GPU). Without arguments: print where the names
come from."""
from __future__ import annotations

import argparse
import sys

from tinyba2m.cupysim import namespace


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyba2m.cupysim", description=__doc__)
    parser.add_argument("--write-snapshot", action="store_true", help=f"rewrite {namespace.SNAPSHOT.name}")
    args = parser.parse_args(argv)
    if args.write_snapshot:
        try:
            version = namespace.write_snapshot()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {namespace.SNAPSHOT} from cupy {version}")
        return 0
    spec, source = namespace.read_namespace()
    print(f"cupysim names from {source}: {len(spec['top'])} top-level names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
