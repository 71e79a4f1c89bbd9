"""Up-front checks of the folders a run uses, and the clean-up of an interrupted write.

- :func:`run_folder_problem` — can ``--out`` serve as the run folder (a folder, or creatable;
  writable; holding a run exactly when resuming)? Checked before any data is loaded, by making
  the missing folders and a probe file and removing them again, so the answer is the operating
  system's own (permissions, read-only file systems, names too long, a file in the way) and no
  half-made run folder is left behind.
- :func:`data_dir_problem` — the same for the CIFAR-100 folder (``--data-dir``), which may be
  read-only when the data is already there; the archive's own path is a common slip.
- :func:`run_folder_lock` — the run's exclusive hold on its folder (``run.lock``, an advisory
  ``flock`` the kernel drops when the process dies, holding the PID, host and start time), taken
  for the whole of a run, a resume or an ``--eval-only --out``.
- :func:`remove_stale_temp_files` — the ``.<name>.<pid>.XXXXXXXX.tmp`` files an atomic write
  (:func:`.checkpoint.atomic_write`) leaves when the process is killed mid-write.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import socket
import sys
import tempfile
import time

from .checkpoint import TEMP_NAME, TEMP_NAME_BEFORE_PID

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

PROBE_PREFIX = ".tinyba2m-write-test."
LOCK_NAME = "run.lock"


def missing_folders(path: pathlib.Path) -> list:
    """``path`` and those of its ancestors that do not exist (lexists), deepest first."""
    return [p for p in (path, *path.parents) if not os.path.lexists(p)]


def remove_empty_folders(folders) -> None:
    """Remove each of ``folders`` (deepest first: those a ``mkdir(parents=True)`` made) that is empty."""
    for p in folders:
        with contextlib.suppress(OSError):
            p.rmdir()


RETRIES = 5  # a folder that another run's probe or clean-up removed between our mkdir and our file


def _probe(path: pathlib.Path) -> str | None:
    """Make ``path`` (with its missing parents) and a file in it, then remove all that was made;
    returns the operating system's complaint, or None when it worked. (A run started at the same
    moment on the same folder may remove the empty folder between the two steps: tried again.)"""
    for attempt in range(RETRIES):
        missing = missing_folders(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=path)
            os.close(fd)
            os.unlink(probe)
            return None
        except FileNotFoundError as exc:
            if attempt == RETRIES - 1:
                return exc.strerror or str(exc)
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


def process_is_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one we may not signal counts as running)."""
    if pid <= 0 or sys.platform == "win32":  # (os.kill(pid, 0) would stop the process on Windows)
        return pid > 0
    try:
        with contextlib.suppress(PermissionError):  # another user's process: it runs
            os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _is_stale_temp(name: str) -> bool:
    """``name`` is a temporary file of an atomic write whose writer is gone: this process (which
    writes nothing while it starts or resumes) or one no longer running; or a pre-pid name."""
    m = TEMP_NAME.match(name)
    if m:
        pid = int(m["pid"])
        return pid == os.getpid() or not process_is_alive(pid)
    return TEMP_NAME_BEFORE_PID.match(name) is not None


def remove_stale_temp_files(folder) -> list:
    """Remove the temporary files of atomic writes that never finished (a kill mid-write) from
    ``folder``; returns their paths. Only plain files named ``.<name>.<pid>.XXXXXXXX.tmp`` whose
    process is this one or no longer runs (and the pid-less ``.<name>.XXXXXXXX.tmp`` of earlier
    versions). Called with the run folder's lock held, so no other run is writing there."""
    folder = pathlib.Path(folder)
    removed = []
    if not os.path.isdir(folder):
        return removed
    for p in sorted(folder.iterdir()):
        if _is_stale_temp(p.name) and os.path.isfile(p) and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (an existing run without --resume, nothing to resume, a
    damaged metrics.csv)."""


# -- the lock on a run folder ------------------------------------------------------------------------

class RunFolderLocked(RuntimeError):
    """Another live process holds the run folder's lock."""


_held: dict = {}  # real path of a folder this process has locked -> [lock file descriptor, depth]


def _holder(fd: int) -> str:
    """The lock file's record (PID, host, start), in words; '' when it is empty."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        rec = json.loads(text) if text.strip() else None
        return f"PID {rec['pid']} on {rec['host']}, started {rec['started']}" if rec else ""
    except (OSError, ValueError, KeyError, TypeError):
        return "its record is unreadable"


def _lock_file(path: pathlib.Path, log) -> int | None:
    """Open and flock ``path`` (creating it); the descriptor, or None where the file system has no locks.
    A record left by a process that died (the kernel dropped its lock) is taken over with a note."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            for _ in range(40):  # a holder that has just taken the lock writes its record at once
                if holder:
                    break
                time.sleep(0.025)
                holder = _holder(fd)
            os.close(fd)
            holder = holder or "it is just starting"
            raise RunFolderLocked(f"--out {path.parent} is in use by another run ({holder}; lock file {path}). "
                                  f"Wait for it to end, or choose another --out") from None
        except OSError as exc:  # e.g. ENOLCK on a network file system without locks
            os.close(fd)
            log(f"warning: cannot lock {path.parent} ({exc.strerror}); make sure no other run uses this folder")
            return None
        try:  # the previous holder may have removed the file between our open and flock: lock the new one
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    previous = _holder(fd)
    if previous:
        log(f"note: {path} was left by a run that is no longer running ({previous}); taking the folder over")
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
              "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
    return fd


@contextlib.contextmanager
def run_folder_lock(folder, log=print):
    """Hold ``folder``'s lock (``run.lock``) for the block, making the folder (and its missing
    parents) if needed; raises :class:`RunFolderLocked` naming the holder when another live run
    has it. Re-entrant within a process. On leaving, the lock file and the folders made here that
    stayed empty are removed. A killed run's lock is released by the kernel, so its ``run.lock``
    is stale: the next run takes it over, saying so. (Without ``fcntl``, e.g. on Windows, no lock
    is taken and a note says so.)"""
    folder = pathlib.Path(folder)
    key = os.path.realpath(folder)
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    made = missing_folders(folder)
    path = folder / LOCK_NAME
    try:
        for attempt in range(RETRIES):
            folder.mkdir(parents=True, exist_ok=True)
            if fcntl is None:
                log(f"note: no file locks on this system; make sure no other run uses {folder}")
                fd = None
                break
            try:
                fd = _lock_file(path, log)
                break
            except FileNotFoundError:  # another run's probe or clean-up removed the empty folder: again
                if attempt == RETRIES - 1:
                    raise
    except BaseException:
        remove_empty_folders(made)
        raise
    _held[key] = [fd, 1]
    try:
        yield
    finally:
        del _held[key]
        if fd is not None:
            with contextlib.suppress(OSError):
                path.unlink()  # before the unlock: a run that opens the file now locks a new one
            os.close(fd)
        remove_empty_folders(made)
