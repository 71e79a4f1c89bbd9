"""``python -m lessons`` (from the repository root): JupyterLab on the repository, where a
double-click on a lesson opens it as a notebook with this environment's Python kernel running.

For this session only (nothing is written to your Jupyter settings, the environment or the lessons):

1. A temporary folder, removed when the server stops, receives two files:
   - ``config/labconfig/default_setting_overrides.json``: a new default for JupyterLab's setting
     ``@jupyterlab/docmanager-extension:plugin`` -> ``defaultViewers`` = ``{"markdown": "Jupytext Notebook"}``,
     so a double-click opens any ``.md`` file with jupytext's notebook view (your own JupyterLab
     settings still win, and right-click -> Open With -> Editor still shows the text);
   - ``data/kernels/python3/kernel.json``: the ``python3`` kernel spelled with this Python's full
     path. jupytext gives a Markdown notebook that names no kernel the Python kernel whose command is
     this very interpreter; the spec that pip installs says only ``python``, which jupytext does not
     match, so without this JupyterLab asks which kernel to start.
2. It puts those folders first on ``JUPYTER_CONFIG_PATH`` and ``JUPYTER_PATH`` and runs ``jupyter lab``
   in this process, rooted at the repository (``--ServerApp.root_dir``), with the file browser on
   ``lessons/``. Other arguments go to ``jupyter lab`` unchanged (``--no-browser``, ``--port=8899``, ...).
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIRED = ("jupyterlab", "jupytext", "ipykernel")
DOCMANAGER = "@jupyterlab/docmanager-extension:plugin"
VIEWERS = {"markdown": "Jupytext Notebook"}   # the widget factory that jupyterlab-jupytext registers
KERNEL = "python3"                            # the name a pip-installed ipykernel gives this environment's kernel


def write_session_settings(folder: Path) -> tuple[Path, Path]:
    """Write the viewer default and the kernel spec under ``folder``; return (config dir, data dir)."""
    from ipykernel.kernelspec import write_kernel_spec   # argv = [sys.executable, "-m", "ipykernel_launcher", ...]

    config, data = folder / "config", folder / "data"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "default_setting_overrides.json").write_text(
        json.dumps({DOCMANAGER: {"defaultViewers": VIEWERS}}, indent=1) + "\n")
    write_kernel_spec(data / "kernels" / KERNEL)
    return config, data


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _prepend(var: str, path: Path) -> None:
    os.environ[var] = os.pathsep.join([str(path)] + ([os.environ[var]] if os.environ.get(var) else []))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    missing = [name for name in REQUIRED if not _importable(name)]
    if missing:
        print(f"python -m lessons: needs the lessons extra (missing {', '.join(missing)}): "
              'pip install -e ".[lessons]"', file=sys.stderr)
        return 1
    from jupyterlab.labapp import LabApp

    with tempfile.TemporaryDirectory(prefix="tinyba2m-lessons-") as tmp:
        config, data = write_session_settings(Path(tmp))
        _prepend("JUPYTER_CONFIG_PATH", config)
        _prepend("JUPYTER_PATH", data)
        print(f"python -m lessons: JupyterLab on {REPO}; for this session Markdown opens as a Jupytext "
              f"notebook and the {KERNEL} kernel is {sys.executable} (settings in {tmp}, removed on exit)",
              file=sys.stderr, flush=True)
        LabApp.launch_instance(argv=[f"--ServerApp.root_dir={REPO}", "--LabApp.default_url=/lab/tree/lessons", *argv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
