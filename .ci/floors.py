"""Read the support floor from pyproject.toml, so that CI tests what the project declares.

    python .ci/floors.py python     ->  3.10                         (from requires-python = ">=3.10")
    python .ci/floors.py pins       ->  numpy==1.23 matplotlib==3.6 tqdm==4.60
                                        (each ``>=`` floor of [project] dependencies, pinned exactly)

A dependency without a ``>=`` floor, or a requires-python that is not ``>=X.Y``, is an error: the
minimum-versions job would otherwise test something other than what users are promised. Runs on
any Python 3 (tomllib where there is one, else a reading of the two keys this needs).
"""
from __future__ import annotations

import pathlib
import re
import sys

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"


def project_table(text: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the two keys, read with regular expressions
        python = re.search(r'^requires-python\s*=\s*"([^"]*)"', text, re.M)
        deps = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.M | re.S)
        return {"requires-python": python.group(1) if python else "",
                "dependencies": re.findall(r'"([^"]*)"', deps.group(1)) if deps else []}
    return tomllib.loads(text)["project"]


def floor(spec: str, what: str) -> tuple:
    """(name, version) of ``name>=version`` (extra clauses such as ``,<3`` are ignored)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]*)\s*>=\s*([0-9][0-9.]*)\s*(,.*)?", spec)
    if not m:
        raise SystemExit(f".ci/floors.py: {what} {spec!r} in {PYPROJECT} has no '>=' floor")
    return m.group(1), m.group(2)


def main(argv) -> int:
    project = project_table(PYPROJECT.read_text(encoding="utf-8"))
    if argv == ["python"]:
        print(floor(project["requires-python"], "requires-python")[1])
    elif argv == ["pins"]:
        print(" ".join("{}=={}".format(*floor(d, "dependency")) for d in project["dependencies"]))
    else:
        print("usage: python .ci/floors.py python|pins", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
