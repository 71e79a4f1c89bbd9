"""Up-front checks of the folders a run uses, and the clean-up of an interrupted write.

- :func:`run_folder_problem` — can ``--out`` serve as the run folder (a folder, or creatable;
  writable; holding a run exactly when resuming)? Checked before any data is loaded, by making
  the missing folders and a probe file and removing them again, so the answer is the operating
  system's own (permissions, read-only file systems, names too long, a file in the way) and no
  half-made run folder is left behind.
- :func:`data_dir_problem` — the same for the CIFAR-100 folder (``--data-dir``), which may be
  read-only when the data is already there; the archive's own path is a common slip.
- :func:`remove_stale_temp_files` — the ``.<name>.XXXXXXXX.tmp`` files an atomic write
  (:func:`.checkpoint.atomic_write`) leaves when the process is killed mid-write.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import re
import tempfile

# atomic_write's temporary files: mkstemp(prefix=".<name>.", suffix=".tmp"), 8 random characters
STALE_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
PROBE_PREFIX = ".tinyba2m-write-test."


def missing_folders(path: pathlib.Path) -> list:
    """``path`` and those of its ancestors that do not exist (lexists), deepest first."""
    return [p for p in (path, *path.parents) if not os.path.lexists(p)]


def remove_empty_folders(folders) -> None:
    """Remove each of ``folders`` (deepest first: those a ``mkdir(parents=True)`` made) that is empty."""
    for p in folders:
        with contextlib.suppress(OSError):
            p.rmdir()


def _probe(path: pathlib.Path) -> str | None:
    """Make ``path`` (with its missing parents) and a file in it, then remove all that was made;
    returns the operating system's complaint, or None when it worked."""
    missing = missing_folders(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=path)
        os.close(fd)
        os.unlink(probe)
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        remove_empty_folders(missing)


def folder_problem(label: str, path) -> str | None:
    """Why ``path`` cannot be a folder we write in (a file in the way, no permission, a name too
    long, ...), or None; ``label`` names it in the message (e.g. ``"--out"``)."""
    path = pathlib.Path(path)
    if "\x00" in str(path):
        return f"{label} {str(path)!r} contains a NUL character, which no file name may hold"
    if os.path.lexists(path) and not os.path.isdir(path):
        return f"{label} {path} {'is a file' if os.path.isfile(path) else 'exists'}, not a folder"
    missing = missing_folders(path)
    base = missing[-1].parent if missing else path  # the nearest that exists (lexists: a dangling link counts)
    if base != path and not os.path.isdir(base):
        return f"{label} {path} cannot be created: {base} is a file, not a folder"
    why = _probe(path)
    if why is not None:
        made = "cannot be written to" if os.path.isdir(path) else "cannot be created"
        return f"{label} {path} {made}: {why}"
    return None


def run_folder_problem(out, resume: bool, run_files) -> str | None:
    """Why ``out`` cannot serve as the run folder, or None. ``resume``: it must hold
    ``checkpoint.npz``; otherwise it must hold no run (none of ``run_files``)."""
    out = pathlib.Path(out)
    if resume:
        if not os.path.isdir(out):
            return f"--resume: there is no run folder {out}" + (" (it is a file)" if os.path.lexists(out) else "")
        if not os.path.isfile(out / run_files[0]):
            return f"--resume: nothing to resume: no {run_files[0]} in {out}"
        return folder_problem("--out", out)
    problem = folder_problem("--out", out)
    if problem is None and any(os.path.lexists(out / name) for name in run_files):
        problem = (f"{out} already holds a run ({' / '.join(run_files)}); pass --resume to continue it, or choose "
                   f"another --out")
    return problem


def data_dir_problem(data_dir, label: str, archive_name: str, members=()) -> str | None:
    """Why ``data_dir`` cannot serve as the CIFAR-100 folder, or None. It may be read-only when
    the archive or the extracted ``members`` are already there (nothing needs writing)."""
    path = pathlib.Path(data_dir).expanduser()
    if os.path.isfile(path):
        if path.name == archive_name or path.name.endswith((".tar.gz", ".tgz")):
            return (f"{label} {path} is the archive itself; give the folder that holds it: "
                    f"--data-dir {path.parent}")
        return f"{label} {path} is a file, not a folder (give the folder that holds {archive_name})"
    if os.path.isdir(path):
        names = [archive_name, *members, *(pathlib.PurePosixPath(m).name for m in members)]
        if any(os.path.isfile(path / n) for n in names):
            return None              # data in place: reading is enough
    return folder_problem(label, path)


def remove_stale_temp_files(folder) -> list:
    """Remove the temporary files of atomic writes that never finished (a kill mid-write) from
    ``folder``; returns their paths. Only plain files named ``.<name>.XXXXXXXX.tmp``."""
    folder = pathlib.Path(folder)
    removed = []
    if not os.path.isdir(folder):
        return removed
    for p in sorted(folder.iterdir()):
        if STALE_TEMP.match(p.name) and os.path.isfile(p) and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed
