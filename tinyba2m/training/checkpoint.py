"""Checkpoints: one ``.npz`` file (``allow_pickle=False``) per saved state, written atomically.

Layout of the archive:

- ``model/<qualified name>``  every parameter and buffer (``Module.state_dict``),
- ``optim/<name>``            the optimiser's arrays (SGD momentum buffers),
- ``meta``                    a uint8 array holding UTF-8 JSON: format tag and version, package
                              version, architecture (``model``, ``attention``, ``ba2m_placement``,
                              ``num_classes``), ``epoch`` (completed epochs), ``global_step``,
                              best metric, the run's config, the host RNG state and the
                              optimiser's hyper-parameters.

Atomic: the archive is written to a temporary file in the same folder, flushed and fsync'ed, then
moved over the target with ``os.replace`` — a crash leaves either the old or the new file, never
a torn one. Loading reads only .npz archives (checked by their first bytes), never unpickles
anything (``allow_pickle=False``: a file holding pickled objects is refused as not a checkpoint),
checks the format tag; :func:`check_architecture` compares the stored
architecture with the model about to receive it before any array is copied.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile

from .. import __version__, backend
from ..nn.module import StateValueError

FORMAT = "tinyba2m-checkpoint"
FORMAT_VERSION = 1
ARCH_KEYS = ("model", "attention", "ba2m_placement", "num_classes")
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz file is a zip archive


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or not a tinyba2m checkpoint."""


class ArchitectureMismatchError(CheckpointError):
    """A checkpoint was written for a different architecture than the model it is loaded into."""


class WriteError(OSError):
    """Writing a file failed (a full disk, a file-size limit, ...); ``filename`` is the file meant,
    not its temporary name."""


def write_error(exc: OSError, path) -> WriteError:
    return exc if isinstance(exc, WriteError) else WriteError(exc.errno, exc.strerror or str(exc), str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_prefix(name: str, pid: int) -> str:
    """The start of an atomic write's temporary file name; mkstemp adds 8 random characters and
    ``.tmp``. The pid lets a later start remove only the files of writers that are gone."""
    return f".{name}.{pid}."


# the names temp_prefix + mkstemp make (group ``pid``), and the pid-less ones of earlier versions
TEMP_NAME = re.compile(r"^\..+\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.tmp$")
TEMP_NAME_BEFORE_PID = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it over ``path``.
    An ``OSError`` (ENOSPC, EFBIG, ...) leaves ``path`` as it was and raises :class:`WriteError`
    naming ``path``."""
    path = pathlib.Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name, os.getpid()), suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            pathlib.Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(exc, path) from exc
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def architecture(meta_or_config: dict) -> dict:
    return {k: meta_or_config.get(k) for k in ARCH_KEYS}


def describe_architecture(arch: dict) -> str:
    return (f"{arch.get('model')} with attention={arch.get('attention')} "
            f"(placement {arch.get('ba2m_placement')}), {arch.get('num_classes')} classes")


def save_checkpoint(path, model_state: dict, optim_arrays: dict, meta: dict) -> None:
    """Write model and optimiser arrays plus ``meta`` (JSON-able; must hold the ARCH_KEYS)."""
    missing = [k for k in ARCH_KEYS if k not in meta]
    if missing:
        raise ValueError(f"save_checkpoint: meta lacks the architecture keys {missing}")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__, **meta}
    arrays = {f"model/{k}": v for k, v in model_state.items()}
    arrays.update({f"optim/{k}": v for k, v in optim_arrays.items()})
    np = backend.numpy_module
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8).copy()
    atomic_write(path, lambda f: backend.save_npz(f, arrays))


def _kind_of_file(head: bytes) -> str:
    """What a file that is not an .npz archive looks like, from its first bytes."""
    if not head:
        return "it is empty"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array"
    if head[:1] == b"\x80":
        return "it is a Python pickle, which is never loaded"
    return "it is not a zip archive"


def load_checkpoint(path):
    """Read a checkpoint: returns ``(meta, model_state, optim_arrays)`` (host arrays).
    Anything but a tinyba2m checkpoint raises :class:`CheckpointError` saying so."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith(ZIP_SIGNATURES):
        raise CheckpointError(f"{path} is not a tinyba2m checkpoint ({_kind_of_file(head)}; not a readable .npz "
                              f"checkpoint). Give the checkpoint.npz or best.npz of a run folder")
    try:
        data = backend.load_npz(path)       # allow_pickle=False
    except Exception as exc:  # ValueError, zipfile.BadZipFile, OSError, EOFError
        if isinstance(exc, ValueError) and "pickle" in str(exc):
            raise CheckpointError(f"{path} is not a tinyba2m checkpoint (it holds pickled Python objects, "
                                  f"which are never loaded)") from None
        detail = exc if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise CheckpointError(f"{path} is not a tinyba2m checkpoint: not a readable .npz checkpoint archive "
                              f"({detail})") from exc
    if "meta" not in data:
        raise CheckpointError(f"{path} is an .npz file but not a tinyba2m checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(bytes(data["meta"].tobytes()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint metadata ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tinyba2m checkpoint (format {meta.get('format')!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer tinyba2m (checkpoint format {meta['format_version']}, "
                              f"this version reads {FORMAT_VERSION})")
    model_state = {k[len("model/"):]: v for k, v in data.items() if k.startswith("model/")}
    optim_arrays = {k[len("optim/"):]: v for k, v in data.items() if k.startswith("optim/")}
    return meta, model_state, optim_arrays


def check_architecture(meta: dict, expected: dict, path="checkpoint") -> None:
    """Raise :class:`ArchitectureMismatchError` naming both architectures if they differ."""
    stored, wanted = architecture(meta), architecture(expected)
    if stored != wanted:
        diff = ", ".join(f"{k}: checkpoint {stored[k]!r} vs requested {wanted[k]!r}" for k in ARCH_KEYS if stored[k] != wanted[k])
        raise ArchitectureMismatchError(
            f"{path} holds a {describe_architecture(stored)}, but the requested model is a "
            f"{describe_architecture(wanted)} ({diff})")


def load_model_state(model, model_state: dict, path="checkpoint") -> None:
    """``model.load_state_dict(model_state)``, with its refusals as checkpoint errors: unusable
    values (NaN, inf, integers for float arrays) as :class:`CheckpointError`, names or shapes
    that do not match as :class:`ArchitectureMismatchError`, each naming ``path``."""
    try:
        model.load_state_dict(model_state)
    except StateValueError as exc:
        raise CheckpointError(f"{path}: damaged checkpoint: {exc}") from exc
    except ValueError as exc:
        raise ArchitectureMismatchError(f"{path}: {exc}") from exc
